"""The in-process figures of ``imgpipe bench``: the codec alone, no stack. (a) a plain Pillow loop, (b) the
project's compress() with the default output policy, and compress() with the options a request may choose,
each in the same number of processes over the same photos: (b′) baseline JPEG (progressive=false), (n) resized
to 1024, (o) format=avif, (p) quality=auto (JPEG), (q) preset=web as the upload API resolves it.

Each figure is images per second, the CPU per image (each image's own, measured in the process that
compressed it, so that starting the processes is not counted) and the bytes written, against (a)'s."""

import functools
import io
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from PIL import Image

from imgpipe_image_worker.compress import Encoding, compress
from imgpipe_runtime.presets import presets
from imgpipe_schemas import DEFAULT_QUALITY, ImageOptions


def plain_loop(data: bytes) -> int:
    """Decode, re-encode as JPEG at quality 50: the least any pipeline must do per image."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=DEFAULT_QUALITY)
    return len(out.getvalue())


def project_compress(data: bytes, encoding: Encoding | None = None) -> int:
    return compress(data, encoding or Encoding()).length


def _timed(function, data: bytes) -> tuple[int, float]:
    """``function``'s output bytes for ``data`` and the CPU seconds of this process it took."""
    started = time.process_time()
    length = function(data)
    return length, time.process_time() - started


@dataclass(frozen=True)
class Figure:
    images_per_s: float
    cpu_ms_per_image: float
    bytes: int


def pool_figure(function, images: list[bytes], processes: int) -> Figure:
    """``function`` over ``images`` in a pool of ``processes``, started and warmed before the clock runs."""
    timed = functools.partial(_timed, function)
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(timed, images[:processes]))
        started = time.perf_counter()
        results = list(pool.map(timed, images, chunksize=4))
    seconds = time.perf_counter() - started
    return Figure(
        len(images) / seconds, 1000 * sum(cpu for _, cpu in results) / len(images), sum(size for size, _ in results)
    )


def preset_encoding(name: str) -> Encoding:
    """A preset as the upload API resolves it for a request that sets nothing else (preset_defaults)."""
    preset = presets()[name]
    mode = "auto:good" if preset.output_format == "auto" else None
    options = ImageOptions(preset=name, max_width=preset.max_width, max_height=preset.max_height, quality_mode=mode)
    return Encoding().for_request(50, preset.output_format, options)


def variants() -> dict[str, tuple[str, Encoding]]:
    """The request options measured beside (b): name in the JSON line, label in the table, encoding."""
    return {
        "baseline": ("(b′) progressive=false (baseline JPEG)", Encoding(options=ImageOptions(progressive=False))),
        "resize_1024": (
            "(n) resized to 1024 (max_width=max_height=1024)",
            Encoding(options=ImageOptions(max_width=1024, max_height=1024)),
        ),
        "avif": ("(o) format=avif", Encoding(output_format="avif")),
        "quality_auto": (
            "(p) quality=auto (JPEG, auto:good)",
            Encoding(options=ImageOptions(quality_mode="auto:good")),
        ),
        "preset_web": ("(q) preset=web (AVIF or WebP, ≤2048², auto:good)", preset_encoding("web")),
    }


def run_codec(images: list[bytes], processes: int) -> dict:
    """Prints (a), (b) and each variant, and returns them for the JSON line."""
    plain = pool_figure(plain_loop, images, processes)
    print(
        f"(a) plain Pillow loop (decode → JPEG q50): {plain.images_per_s:.1f} images/s, "
        f"{plain.cpu_ms_per_image:.1f} ms CPU per image, {plain.bytes / 2**20:.1f} MiB out"
    )
    figures = {"plain": plain}
    rows = {"compress": ("(b) compress() (the output policy)", Encoding()), **variants()}
    for name, (label, encoding) in rows.items():
        figure = pool_figure(functools.partial(project_compress, encoding=encoding), images, processes)
        figures[name] = figure
        print(
            f"{label + ':':<52} {figure.images_per_s:6.1f} images/s, {figure.cpu_ms_per_image:7.1f} ms CPU per "
            f"image, {figure.bytes / 2**20:5.1f} MiB out ({figure.bytes / plain.bytes:.2f} of (a)'s bytes)"
        )
    return {name: {**vars(figure), "bytes_vs_plain": figure.bytes / plain.bytes} for name, figure in figures.items()}
