"""The Pillow process pool: a rejected image comes back as a per-image error and the pool stays usable."""

import pickle

import pytest

from imgpipe_image_worker.adapters.codec_pool import CodecPool
from imgpipe_image_worker.compress import ImageRejected, Policy
from imgpipe_ops.samples import photo_like_jpeg


def test_image_rejected_survives_pickling():
    again = pickle.loads(pickle.dumps(ImageRejected("not_an_image", "nope")))
    assert (again.code, str(again)) == ("not_an_image", "nope")


async def test_rejections_do_not_break_the_pool():
    pool = CodecPool(processes=2, policy=Policy(max_pixels=10_000_000))
    photo = photo_like_jpeg(300, 200, seed=1)
    try:
        for data, code in ((photo[: len(photo) // 3], "undecodable_image"), (b"<html>", "not_an_image")):
            with pytest.raises(ImageRejected) as rejected:
                await pool.compress(data, 50, "jpeg", "r/images/0-0")
            assert rejected.value.code == code
        assert (await pool.compress(photo, 50, "jpeg", "r/images/0-0")).content_type == "image/jpeg"
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
        "from imgpipe_image_worker.compress import Policy\n"
        "from imgpipe_ops.samples import photo_like_jpeg\n"
        "async def main():\n"
        "    pool = CodecPool(processes=2, policy=Policy())\n"
        "    await pool.compress(photo_like_jpeg(64, 64, seed=1), 50, 'jpeg', 'r/images/0-0')\n"
        "    print(*pool._pool._processes, flush=True)\n"
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
