"""Pillow runs in a pool of processes, off the event loop. A decoder that kills its process must not
take the worker down with it: the pool is replaced and the image is tried once more, then reported."""

import asyncio
import functools
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from imgpipe_image_worker.compress import Compressed, ImageRejected, compress

log = logging.getLogger(__name__)


class CodecPool:
    def __init__(self, processes: int, max_pixels: int) -> None:
        self._processes = processes
        self._max_pixels = max_pixels
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self._processes, mp_context=multiprocessing.get_context("forkserver"))

    async def compress(self, data: bytes, quality: int, output_format: str) -> Compressed:
        call = functools.partial(compress, data, quality, self._max_pixels, output_format)
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
