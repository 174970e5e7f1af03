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

Every process that ends is replaced on its next use; the other images in flight never notice (the next
task waiting in a stopped process's pipe had not started, and goes to its replacement). A shared
``ProcessPoolExecutor`` could do none of this: it cannot stop one task, and one dead process breaks every
task in flight.

Where the blob store can be written from any process (a local directory, a bucket), the codec process stores
the output itself, so that only the source's bytes cross between processes, once.

A codec process ends when the worker that started it dies, however it dies: after a kill -9 of the
worker its processes, which wait on their pipes, would otherwise live on forever."""

import asyncio
import contextlib
import dataclasses
import functools
import logging
import math
import multiprocessing
import os
import queue
import resource
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import cast

from imgpipe_image_worker.compress import BlobWriter, Compressed, Encoding, ImageRejected, Listing, compress
from imgpipe_schemas import ImageOptions

Codec = Callable[[bytes, Encoding, BlobWriter | None, str], Compressed]

log = logging.getLogger(__name__)

DEFAULT_CPU_LIMIT_S = 30

# What became of a task whose process did not answer.
CRASHED, OVERRAN, ABANDONED = "crashed", "overran", "abandoned"


class CodecPool:
    def __init__(
        self,
        processes: int,
        encoding: Encoding,
        writer: BlobWriter | None = None,
        *,
        cpu_limit_s: int = DEFAULT_CPU_LIMIT_S,
        codec: Codec = compress,
    ) -> None:
        """``codec`` runs in the codec processes: a module-level function, which travels by its name."""
        if cpu_limit_s < 1:
            raise ValueError("a codec task needs at least one second of CPU")
        self._encoding = encoding
        self._writer = writer
        self._cpu_limit_s = cpu_limit_s
        self._codec = codec
        self._pending: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        # Hands a task to a process, or takes it back from its caller, one at a time.
        self._handover = threading.Lock()
        self._processes = [CodecProcess() for _ in range(processes)]
        # Each process has a thread that takes the next task the moment the last one is answered: going
        # through the event loop between two tasks would leave the process idle meanwhile.
        self._threads = [
            threading.Thread(target=process.serve, args=(functools.partial(self._take, process),), daemon=True)
            for process in self._processes
        ]
        for thread in self._threads:
            thread.start()

    async def compress(
        self,
        data: bytes,
        quality: int,
        output_format: str,
        stem: str,
        options: ImageOptions | None = None,
        listing: Listing = Listing(),
    ) -> Compressed:
        """The output of ``data``; already stored as ``<stem>.<extension>`` when its bytes are None."""
        encoding = self._encoding.for_request(quality, output_format, options or ImageOptions(), listing)
        call = (self._codec, (data, encoding, self._writer, stem), self._cpu_limit_s)
        for attempt in range(2):
            outcome = await self._run(call)
            if outcome == CRASHED:
                log.error("an image decoder process died%s", "; trying the image once more" if attempt == 0 else "")
                continue
            if outcome == OVERRAN:
                raise ImageRejected(
                    "too_complex", f"decoding and encoding this image needed more than {self._cpu_limit_s} s of CPU"
                )
            if outcome == ABANDONED:
                raise RuntimeError("the codec pool was closed while the image was waiting for it")
            if isinstance(outcome, str):
                raise RuntimeError(f"unexpected codec outcome {outcome!r}")
            ok, value = outcome
            if not ok:
                raise cast(BaseException, value)  # what the codec raised, pickled back
            return cast(Compressed, value)
        raise ImageRejected("decoder_crashed", "decoding this image crashed the decoder process twice")

    async def _run(self, call: tuple) -> tuple[bool, object] | str:
        """``call``'s outcome from the first free process. A caller that is cancelled takes its task back
        before a process has it, or kills the process working on it."""
        loop = asyncio.get_running_loop()
        task = Task(call, loop, loop.create_future())
        self._pending.put(task)
        try:
            return await task.outcome
        except asyncio.CancelledError:
            with self._handover:
                task.cancelled = True
                process = task.process
            if process is not None:
                process.kill(task)
            raise

    def _take(self, process: "CodecProcess", block: bool) -> "Task | None":
        """The next task for ``process``, skipping those whose callers are gone; None when there is none
        (waiting for one only if ``block``) or the pool is closing."""
        while True:
            try:
                task = self._pending.get(block=block)
            except queue.Empty:
                return None
            with self._handover:
                if task is None or not task.cancelled:
                    if task is not None:
                        task.process = process
                    return task

    def process_ids(self) -> list[int]:
        """The codec processes running now (each is started on its first task)."""
        return [pid for process in self._processes if (pid := process.pid) is not None]

    def close(self) -> None:
        """Ends every codec process, stopping the images in flight: nobody waits for their results any more."""
        for process in self._processes:
            process.kill(closing=True)
        for _ in self._threads:
            self._pending.put(None)
        for thread in self._threads:
            thread.join()
        for process in self._processes:
            process.close()


@dataclasses.dataclass(eq=False)
class Task:
    call: tuple
    loop: asyncio.AbstractEventLoop
    outcome: asyncio.Future
    cancelled: bool = False
    process: "CodecProcess | None" = None

    def settle(self, outcome: tuple[bool, object] | str) -> None:
        """Hands ``outcome`` to the caller's event loop, unless the caller or its loop is gone."""
        with contextlib.suppress(RuntimeError):  # the loop is closed
            self.loop.call_soon_threadsafe(_settle, self.outcome, outcome)


def _settle(future: asyncio.Future, outcome: object) -> None:
    if not future.done():
        future.set_result(outcome)


class CodecProcess:
    """One codec process and its pipe, started on first use and after it ended. ``serve`` runs in the
    process's thread; ``kill`` may be called from the event loop meanwhile, so both hold the lock while
    they look at the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._pipe: Connection | None = None
        self._running: Task | None = None  # the oldest task in the pipe: the one the process works on
        self._killed = False  # the process was killed: it is replaced before its next task
        self._closing = False

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None else None

    def serve(self, take: Callable[[bool], Task | None]) -> None:
        """The process's thread. It keeps up to two tasks in the pipe, the running one and the next, so that
        the process starts the next the moment it has answered, however late this thread gets a CPU."""
        window: deque[Task] = deque()  # taken, oldest first; the first ``sent`` of them are in the pipe
        sent = 0
        while True:
            while len(window) < 2 and (task := take(not window)) is not None:
                window.append(task)
            with self._lock:
                if self._closing:
                    for task in window:
                        task.settle(ABANDONED)
                    return
                if self._killed or (sent and window[0].cancelled):  # its caller is gone: stop it
                    self._forget()
                    sent = 0
                while window and window[0].cancelled:
                    window.popleft()
                if not window:
                    continue
                if self._process is None:
                    self._start()
                    sent = 0
                self._running = window[0]
                pipe = cast(Connection, self._pipe)  # started just above when there was none
            try:
                while sent < len(window):
                    pipe.send(window[sent].call)
                    sent += 1
                outcome = pipe.recv()
                sent -= 1
            except (EOFError, OSError):
                outcome = self._ended(window[0])
                sent = 0  # a task after the one running never started: it goes to the next process
            window.popleft().settle(outcome)

    def kill(self, task: Task | None = None, *, closing: bool = False) -> None:
        """Ends the process if it works on ``task`` (or whatever it does, when None)."""
        with self._lock:
            self._closing = self._closing or closing
            if task is not None and self._running is not task:
                return
            if self._process is not None:
                self._process.kill()
                self._killed = True

    def close(self) -> None:
        with self._lock:
            self._forget()

    def _ended(self, task: Task) -> str:
        """What ended the process while it worked on ``task``."""
        with self._lock:
            exitcode = self._forget()
            if exitcode == -signal.SIGXCPU:
                return OVERRAN
            return ABANDONED if task.cancelled or self._closing else CRASHED

    def _forget(self) -> int | None:
        """Waits for the process, which has ended or is ending, and drops it: its exit code."""
        process, pipe = self._process, self._pipe
        self._process = self._pipe = self._running = None
        if process is None:
            return None
        if self._killed or process.is_alive():
            process.kill()
        self._killed = False
        process.join()
        if pipe is not None:
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
    """A codec process: one task at a time, in the order they came, until the pipe ends. A thread reads the
    pipe ahead, so that the worker never waits to send the next task while this process sends a result."""
    _end_with(worker_pid)
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)  # overrunning the CPU limit ends the process
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # and writes no core file
    tasks: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
    threading.Thread(target=_read_ahead, args=(pipe, tasks), name="codec-tasks", daemon=True).start()
    while (task := tasks.get()) is not None:
        function, args, cpu_limit_s = task
        _limit_cpu(cpu_limit_s)
        try:
            outcome = (True, function(*args))
        except Exception as exc:  # noqa: BLE001 - handed to the worker, which raises it where it waits
            outcome = (False, exc)
        try:
            pipe.send(outcome)
        except Exception as exc:  # noqa: BLE001 - an exception that does not pickle
            pipe.send((False, RuntimeError(f"{exc.__class__.__name__}: {exc}")))


def _read_ahead(pipe: Connection, tasks: queue.SimpleQueue) -> None:
    try:
        while True:
            tasks.put(pipe.recv())
    except (EOFError, OSError):
        tasks.put(None)


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
