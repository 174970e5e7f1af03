"""``imgpipe bench``: the raw codec loop and the full pipeline on the same images and cores, in one run."""

import io
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from imgpipe_ops.client import upload, wait_until_finished
from imgpipe_ops.processes import free_port
from imgpipe_ops.samples import LocalHttpServer, Route, photo_like_jpeg, products_csv
from imgpipe_ops.stack import LocalStack, StackConfig

SIZES = (1000, 2000)


def raw_codec(data: bytes) -> int:
    """Decode, re-encode at quality 50: the least any pipeline must do per image."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=50)
    return len(out.getvalue())


def raw_images_per_second(images: list[bytes], processes: int) -> float:
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(raw_codec, images[:processes]))  # warm the workers
        started = time.perf_counter()
        list(pool.map(raw_codec, images))
        return len(images) / (time.perf_counter() - started)


def pipeline_seconds(api: str, urls: list[str], per_row: int) -> float:
    rows = [(r + 1, f"P{r + 1}", urls[i : i + per_row]) for r, i in enumerate(range(0, len(urls), per_row))]
    started = time.perf_counter()
    request_id = upload(api, products_csv(rows))
    final = wait_until_finished(api, request_id, timeout=600, poll_s=0.05)
    elapsed = time.perf_counter() - started
    if final["status"] != "SUCCESS" or final["progress"]["images_failed"]:
        raise RuntimeError(f"benchmark request did not succeed cleanly: {final}")
    return elapsed


def run_bench(images_per_size: int, workload: int) -> int:
    processes = os.cpu_count() or 1
    print(
        f"imgpipe bench: {images_per_size} photo-like JPEGs of each of {SIZES} px², "
        f"{workload} images per throughput run, {processes} processes"
    )
    photos = [
        photo_like_jpeg(size, size, seed=size + i)
        for size in SIZES
        for i in tqdm(range(images_per_size), desc=f"generating {size}²")
    ]
    # Distinct URLs cycling over the photos, half of each size.
    routes = {f"/bench/{i}.jpg": Route(photos[i % len(photos)]) for i in range(workload)}
    for i in range(30):  # the 10-row × 3-image request, over the 1000² photos
        routes[f"/small/{i}.jpg"] = Route(photos[i % images_per_size])
    bench_paths = [path for path in routes if path.startswith("/bench/")]
    images = [routes[path].body for path in bench_paths]

    raw = raw_images_per_second(images, processes)
    print(f"(a) raw decode→q50→encode loop: {raw:.2f} images/s")

    with tempfile.TemporaryDirectory() as logs, LocalHttpServer(routes=routes) as server:
        config = StackConfig(
            api_port=free_port(), kafka_port=free_port(), mongo_port=free_port(), log_dir=Path(logs)
        )
        print("starting the pipeline (embedded broker and database, four services)…")
        with LocalStack(config) as stack:
            pipeline_seconds(stack.api_url, [f"{server.url}/small/0.jpg"], 1)  # consumer groups settle
            urls = [f"{server.url}{path}" for path in bench_paths]
            seconds = pipeline_seconds(stack.api_url, urls, 3)
            pipeline = len(urls) / seconds
            small = [pipeline_seconds(stack.api_url, [f"{server.url}/small/{i}.jpg" for i in range(30)], 3) for _ in range(3)]

    print(f"(b) full pipeline through Kafka and MongoDB: {pipeline:.2f} images/s ({len(urls)} images in {seconds:.2f} s)")
    print(f"    ratio b/a: {pipeline / raw:.2f}")
    print(
        f"10-row × 3-image CSV ({SIZES[0]}² photos), upload → SUCCESS: "
        f"median {statistics.median(small):.2f} s (runs: {', '.join(f'{s:.2f}' for s in small)})"
    )
    return 0
