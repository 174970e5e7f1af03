"""The part of a marketplace check that reads pixels: an output's background, measured the way a
marketplace's checker reads it (imgpipe_runtime.presets holds the presets and their rules). Pure."""

from typing import cast

from PIL import Image

BORDER_PX = 2  # the frame of pixels a background is measured on


def background(image: Image.Image) -> tuple[int, int, int]:
    """The background as a marketplace's check reads it, on the frame of the image's outer pixels: the lowest
    value of each channel there, which is pure white only when every pixel of the frame is."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    frame = min(BORDER_PX, width, height)
    strips = [
        rgb.crop((0, 0, width, frame)),
        rgb.crop((0, height - frame, width, height)),
        rgb.crop((0, 0, frame, height)),
        rgb.crop((width - frame, 0, width, height)),
    ]
    # An RGB image's extrema: one (min, max) per channel.
    lows = [[band[0] for band in cast(tuple[tuple[int, int], ...], strip.getextrema())] for strip in strips]
    red, green, blue = (min(low[channel] for low in lows) for channel in range(3))
    return red, green, blue
