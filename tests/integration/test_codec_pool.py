"""The Pillow process pool: a rejected image comes back as a per-image error and the pool stays usable; an
image that overruns its CPU, whose caller stops waiting, or that kills its process is stopped or reported
on its own while the other images go on."""

import asyncio
import os
import pickle
from pathlib import Path

import pytest

from imgpipe_image_worker.adapters.codec_pool import CodecPool
from imgpipe_image_worker.compress import BlobWriter, Compressed, Encoding, ImageRejected, compress
from imgpipe_ops.samples import photo_like_jpeg
from tests.waiting import eventually


def hostile_or_compress(data: bytes, policy: Encoding, writer: BlobWriter | None, stem: str) -> Compressed:
    """A codec (run in the codec processes) for which ``spin:<file>`` writes the process's id to the file and
    then works for ever, ``exit`` ends the process at once, and anything else is compressed."""
    if data.startswith(b"spin:"):
        Path(data[5:].decode()).write_text(str(os.getpid()))
        while True:
            pass
    if data == b"exit":
        os._exit(3)
    return compress(data, policy, writer, stem)


def spin(path: Path) -> bytes:
    return b"spin:" + str(path).encode()


async def compressed_photos(pool: CodecPool, count: int) -> list[str]:
    photos = [
        pool.compress(photo_like_jpeg(300, 200, seed=seed), 50, "jpeg", f"r/images/0-{seed}") for seed in range(count)
    ]
    return [output.content_type for output in await asyncio.gather(*photos)]


def running(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}") and _state(pid) != "Z"


def test_image_rejected_survives_pickling():
    again = pickle.loads(pickle.dumps(ImageRejected("not_an_image", "nope")))
    assert (again.code, str(again)) == ("not_an_image", "nope")


async def test_rejections_do_not_break_the_pool():
    pool = CodecPool(processes=2, encoding=Encoding(max_pixels=10_000_000))
    photo = photo_like_jpeg(300, 200, seed=1)
    try:
        for data, code in ((photo[: len(photo) // 3], "undecodable_image"), (b"<html>", "not_an_image")):
            with pytest.raises(ImageRejected) as rejected:
                await pool.compress(data, 50, "jpeg", "r/images/0-0")
            assert rejected.value.code == code
        assert (await pool.compress(photo, 50, "jpeg", "r/images/0-0")).content_type == "image/jpeg"
    finally:
        pool.close()


async def test_an_image_that_overruns_its_cpu_limit_is_stopped_and_the_other_images_go_on(tmp_path):
    pool = CodecPool(processes=2, encoding=Encoding(), cpu_limit_s=1, codec=hostile_or_compress)
    pid_file = tmp_path / "pid"
    try:
        hostile = asyncio.ensure_future(pool.compress(spin(pid_file), 50, "png", "r/images/0-0"))
        others = asyncio.ensure_future(compressed_photos(pool, 6))
        # Guards against a hang only: the limit is one second of CPU.
        done = await asyncio.wait_for(asyncio.gather(hostile, others, return_exceptions=True), timeout=120)
        assert isinstance(done[0], ImageRejected) and done[0].code == "too_complex", done[0]
        assert "more than 1 s of CPU" in str(done[0])
        assert done[1] == ["image/jpeg"] * 6
        assert not running(int(pid_file.read_text()))
        assert await compressed_photos(pool, 4) == ["image/jpeg"] * 4
    finally:
        pool.close()


async def test_an_image_whose_caller_stops_waiting_frees_its_codec_process_at_once(tmp_path):
    """The only process of the pool, with an hour of CPU to spend: the next image still gets it."""
    pool = CodecPool(processes=1, encoding=Encoding(), cpu_limit_s=3600, codec=hostile_or_compress)
    pid_file = tmp_path / "pid"
    try:
        hostile = asyncio.ensure_future(pool.compress(spin(pid_file), 50, "png", "r/images/0-0"))
        await eventually(lambda: pid_file.exists() and pid_file.read_text(), 60, "the codec process to take the image")
        spinning = int(pid_file.read_text())
        hostile.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hostile
        await eventually(lambda: not running(spinning), 10, "the codec process to be stopped")
        assert await compressed_photos(pool, 2) == ["image/jpeg"] * 2
        assert spinning not in pool.process_ids() and len(pool.process_ids()) == 1
    finally:
        pool.close()


async def test_an_image_whose_decoder_dies_twice_is_reported_as_decoder_crashed_and_the_others_go_on():
    pool = CodecPool(processes=2, encoding=Encoding(), codec=hostile_or_compress)
    try:
        crashing = asyncio.ensure_future(pool.compress(b"exit", 50, "jpeg", "r/images/0-0"))
        others = asyncio.ensure_future(compressed_photos(pool, 6))
        done = await asyncio.gather(crashing, others, return_exceptions=True)
        assert isinstance(done[0], ImageRejected) and done[0].code == "decoder_crashed", done[0]
        assert done[1] == ["image/jpeg"] * 6
        assert await compressed_photos(pool, 2) == ["image/jpeg"] * 2
    finally:
        pool.close()


def test_codec_processes_end_when_their_worker_is_killed(tmp_path):
    """The worker's pool, started in a child process that is then killed -9: its codec processes follow."""
    import os
    import signal
    import subprocess
    import sys

    from tests.waiting import wait_for

    script = tmp_path / "worker.py"
    script.write_text(
        "import asyncio, sys\n"
        "from imgpipe_image_worker.adapters.codec_pool import CodecPool\n"
        "from imgpipe_image_worker.compress import Encoding\n"
        "from imgpipe_ops.samples import photo_like_jpeg\n"
        "async def main():\n"
        "    pool = CodecPool(processes=2, encoding=Encoding())\n"
        "    await pool.compress(photo_like_jpeg(64, 64, seed=1), 50, 'jpeg', 'r/images/0-0')\n"
        "    print(*pool.process_ids(), flush=True)\n"
        "    await asyncio.sleep(3600)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n"
    )
    worker = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        codec_pids = [int(pid) for pid in worker.stdout.readline().split()]
        assert codec_pids, "the pool started no process"
        assert all(os.path.exists(f"/proc/{pid}") for pid in codec_pids)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)

        def gone() -> bool:
            return not any(os.path.exists(f"/proc/{pid}") and "Z" not in _state(pid) for pid in codec_pids)

        wait_for(gone, 10, "the codec processes to end with their worker")
    finally:
        worker.kill()
        worker.wait(10)


def _state(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
