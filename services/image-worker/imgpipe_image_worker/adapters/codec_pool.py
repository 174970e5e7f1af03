"""Pillow runs in a pool of processes, off the event loop. A decoder that kills its process must not
take the worker down with it: the pool is replaced and the image is tried once more, then reported.

Where the blob store can be written from any process (a local directory), the codec process stores
the output itself, so that only the source's bytes cross between processes, once.

A codec process ends when the worker that started it dies, however it dies: after a kill -9 of the
worker the pool's processes, which wait on each other, would otherwise live on forever."""

import asyncio
import dataclasses
import functools
import logging
import multiprocessing
import os
import select
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from imgpipe_image_worker.compress import BlobWriter, Compressed, ImageRejected, Policy, compress

log = logging.getLogger(__name__)


class CodecPool:
    def __init__(self, processes: int, policy: Policy, writer: BlobWriter | None = None) -> None:
        self._processes = processes
        self._policy = policy
        self._writer = writer
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self._processes,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_end_with,
            initargs=(os.getpid(),),
        )

    async def compress(self, data: bytes, quality: int, output_format: str, stem: str) -> Compressed:
        """The output of ``data``; already stored as ``<stem>.<extension>`` when its bytes are None."""
        policy = dataclasses.replace(self._policy, quality=quality, output_format=output_format)
        call = functools.partial(compress, data, policy, self._writer, stem)
        for _ in range(2):
            pool = self._pool
            try:
                return await asyncio.get_running_loop().run_in_executor(pool, call)
            except BrokenProcessPool:
                if self._pool is pool:
                    log.error("an image decoder process died; starting a new pool")
                    self._pool = self._new_pool()
                    pool.shutdown(wait=False, cancel_futures=True)
        raise ImageRejected("decoder_crashed", "decoding this image crashed the decoder process twice")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _end_with(parent_pid: int) -> None:
    """Runs in each codec process: exits it as soon as the worker process ``parent_pid`` has ended. Without
    pidfds (an old kernel, a sandbox that forbids them) the worker is looked for once a second instead."""
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
