"""Pillow runs in a pool of processes, off the event loop, each process one image at a time over a pipe
of its own, so that the worker always knows which process works on which image. That is what bounds an
image's codec CPU, whoever stops waiting for it:

- Each task may use ``cpu_limit_s`` seconds of its process's CPU (RLIMIT_CPU, set anew before each task):
  the kernel ends a process that overruns, and the image's error is ``too_complex``. Nothing in the
  image (a 50-Mpx many-colour PNG, a decoder loop) can hold a process longer than that.
- A caller that stops waiting (the image's or the row's time budget ran out, shutdown) kills the process
  at once: its CPU is not spent on a result that nobody reads.
- A process that dies otherwise (a decoder crash) takes down its own image only: that image is tried once
  more on a new process, then reported as ``decoder_crashed``.

Every process that ends is replaced on its next use; the other images in flight never notice. (A shared
``ProcessPoolExecutor`` could do none of this: it cannot stop one task, and one dead process breaks every
task in flight.)

Where the blob store can be written from any process (a local directory), the codec process stores
the output itself, so that only the source's bytes cross between processes, once.

A codec process ends when the worker that started it dies, however it dies: after a kill -9 of the
worker its processes, which wait on their pipes, would otherwise live on forever."""

import asyncio
import dataclasses
import logging
import math
import multiprocessing
import os
import resource
import select
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection

from imgpipe_image_worker.compress import BlobWriter, Compressed, ImageRejected, Policy, compress

Codec = Callable[[bytes, Policy, BlobWriter | None, str], Compressed]

log = logging.getLogger(__name__)

DEFAULT_CPU_LIMIT_S = 30

# What became of a task whose process did not answer.
CRASHED, OVERRAN, ABANDONED = "crashed", "overran", "abandoned"


class CodecPool:
    def __init__(
        self,
        processes: int,
        policy: Policy,
        writer: BlobWriter | None = None,
        *,
        cpu_limit_s: int = DEFAULT_CPU_LIMIT_S,
        codec: Codec = compress,
    ) -> None:
        """``codec`` runs in the codec processes: a module-level function, which travels by its name."""
        if cpu_limit_s < 1:
            raise ValueError("a codec task needs at least one second of CPU")
        self._policy = policy
        self._writer = writer
        self._cpu_limit_s = cpu_limit_s
        self._codec = codec
        self._processes = [CodecProcess() for _ in range(processes)]
        self._idle: asyncio.Queue[CodecProcess] | None = None
        # One thread per process, blocked on its pipe while the process works.
        self._exchanges = ThreadPoolExecutor(processes, thread_name_prefix="codec-pipe")

    async def compress(self, data: bytes, quality: int, output_format: str, stem: str) -> Compressed:
        """The output of ``data``; already stored as ``<stem>.<extension>`` when its bytes are None."""
        policy = dataclasses.replace(self._policy, quality=quality, output_format=output_format)
        task = (self._codec, (data, policy, self._writer, stem), self._cpu_limit_s)
        for attempt in range(2):
            outcome = await self._run(task)
            if outcome == CRASHED:
                log.error("an image decoder process died%s", "; trying the image once more" if attempt == 0 else "")
                continue
            if outcome == OVERRAN:
                raise ImageRejected(
                    "too_complex", f"decoding and encoding this image needed more than {self._cpu_limit_s} s of CPU"
                )
            if outcome == ABANDONED:
                raise RuntimeError("the codec pool was closed while the image was being compressed")
            ok, value = outcome
            if not ok:
                raise value
            return value
        raise ImageRejected("decoder_crashed", "decoding this image crashed the decoder process twice")

    async def _run(self, task: tuple) -> tuple[bool, object] | str:
        """``task``'s outcome from the first free process. A caller that is cancelled kills the process;
        the process is free again once its pipe's thread has seen it end."""
        if self._idle is None:
            self._idle = asyncio.Queue()
            for process in self._processes:
                self._idle.put_nowait(process)
        idle = self._idle
        process = await idle.get()
        process.claim()
        exchange = asyncio.get_running_loop().run_in_executor(self._exchanges, process.exchange, task)
        exchange.add_done_callback(lambda _: idle.put_nowait(process))
        try:
            return await asyncio.shield(exchange)
        except asyncio.CancelledError:
            process.kill()
            raise

    def process_ids(self) -> list[int]:
        """The codec processes running now (each is started on its first task)."""
        return [pid for process in self._processes if (pid := process.pid) is not None]

    def close(self) -> None:
        """Ends every codec process, stopping an image in flight: nobody waits for its result any more."""
        for process in self._processes:
            process.kill()
        self._exchanges.shutdown(wait=True)
        for process in self._processes:
            process.close()


class CodecProcess:
    """One codec process and its pipe, started on first use and after it ended. ``exchange`` runs in a
    thread of its own; ``kill`` may be called from the event loop meanwhile, so both hold the lock while
    they look at the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._pipe: Connection | None = None
        self._killed = False  # the process was killed: it is replaced before its next task
        self._abandoned = False  # the task handed over last has no caller any more

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None else None

    def claim(self) -> None:
        """Called by a caller that is about to hand this process a task."""
        with self._lock:
            self._abandoned = False

    def exchange(self, task: tuple) -> tuple[bool, object] | str:
        """Sends ``task`` and waits for its outcome: (True, result), (False, exception), or what ended the
        process without one."""
        with self._lock:
            if self._abandoned:
                return ABANDONED
            if self._killed:
                self._forget()
            if self._process is None:
                self._start()
            pipe = self._pipe
        try:
            pipe.send(task)
            return pipe.recv()
        except (EOFError, OSError):
            with self._lock:
                exitcode = self._forget()
                abandoned = self._abandoned
        if exitcode == -signal.SIGXCPU:
            return OVERRAN
        return ABANDONED if abandoned else CRASHED

    def kill(self) -> None:
        """Stops the task in flight, or the one about to be handed over, and ends the process."""
        with self._lock:
            self._abandoned = True
            if self._process is not None:
                self._process.kill()
                self._killed = True

    def close(self) -> None:
        self.kill()
        with self._lock:
            self._forget()

    def _forget(self) -> int | None:
        """Waits for the process, which has ended or is ending, and drops it: its exit code."""
        process, pipe = self._process, self._pipe
        self._process = self._pipe = None
        self._killed = False
        if process is None:
            return None
        process.join()
        pipe.close()
        return process.exitcode

    def _start(self) -> None:
        context = multiprocessing.get_context("forkserver")
        ours, theirs = context.Pipe()
        process = context.Process(target=_serve, args=(theirs, os.getpid()), name="imgpipe-codec", daemon=True)
        process.start()
        theirs.close()  # so that the process's end reads as the end of the pipe
        self._process, self._pipe = process, ours


def _serve(pipe: Connection, worker_pid: int) -> None:
    """A codec process: one task at a time from its pipe until the pipe ends."""
    _end_with(worker_pid)
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)  # overrunning the CPU limit ends the process
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # and writes no core file
    while True:
        try:
            function, args, cpu_limit_s = pipe.recv()
        except EOFError:
            return
        _limit_cpu(cpu_limit_s)
        try:
            outcome = (True, function(*args))
        except Exception as exc:  # noqa: BLE001 - handed to the worker, which raises it where it waits
            outcome = (False, exc)
        try:
            pipe.send(outcome)
        except Exception as exc:  # noqa: BLE001 - an exception that does not pickle
            pipe.send((False, RuntimeError(f"{exc.__class__.__name__}: {exc}")))


def _limit_cpu(seconds: int) -> None:
    """This process may use ``seconds`` more of CPU, all its threads together (an encoder's too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(usage.ru_utime + usage.ru_stime) + seconds
    resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def _end_with(parent_pid: int) -> None:
    """Exits this codec process as soon as the worker process ``parent_pid`` has ended. Without pidfds (an
    old kernel, a sandbox that forbids them) the worker is looked for once a second instead."""
    try:
        parent = os.pidfd_open(parent_pid)
    except ProcessLookupError:
        os._exit(1)
    except (OSError, AttributeError):
        threading.Thread(target=_poll_parent, args=(parent_pid,), name="end-with-worker", daemon=True).start()
        return

    def wait_for_parent() -> None:
        select.select([parent], [], [])  # a process's pidfd turns readable when it ends
        os._exit(1)

    threading.Thread(target=wait_for_parent, name="end-with-worker", daemon=True).start()


def _poll_parent(parent_pid: int) -> None:
    while True:
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass
        time.sleep(1.0)
