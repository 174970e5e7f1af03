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
