"""``imgpipe bench``: what users care about, measured in one run on the same images and cores.

(a) a plain Pillow loop, (b) the project's own compress() in the same number of processes, and compress()
with the options a request may choose (bench_codec; ``--codec-only`` runs only these), (c) the
pipeline upload → SUCCESS, (d) a 10-row × 3-image request's latency, (e) the idle stack's CPU, (f) each
process's memory, (g) large uploads answered, (h) the pipeline with 1 and with 2 compress processes, and
the scale figures (i) to (l) of bench_scale.
It prints figures and ratios and never passes or fails; the last line is one JSON object of them all.
"""

import json
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from tqdm import tqdm

from imgpipe_ops import proc_stats
from imgpipe_ops.bench_codec import run_codec
from imgpipe_ops.bench_scale import run_scale
from imgpipe_ops.client import upload, wait_until_finished
from imgpipe_ops.processes import free_port
from imgpipe_ops.samples import LocalHttpServer, Route, photo_like_jpeg, products_csv
from imgpipe_ops.stack import LocalStack, StackConfig

UPLOAD_TIMEOUT_S = 120
# A client watching a big request polls a few times a second; 50 polls a second would cost the
# embedded database more than the request's own writes.
THROUGHPUT_POLL_S = 0.25
COLD_AFTER_S = 10.0
# Consumers keep their short fetch wait for IMGPIPE_KAFKA_IDLE_AFTER_S (5 s) after their last message:
# the idle figure is of a stack that has been doing nothing for longer than that.
IDLE_SETTLE_S = 6.0


@dataclass(frozen=True)
class BenchOptions:
    images: int = 300  # images of the throughput runs
    distinct: int = 12  # distinct photos they cycle over
    size: int = 1500
    mix: bool = False  # 1000² and 2000² photos instead of one size
    photo_dir: Path | None = None
    idle_s: float = 20.0
    processes: int = os.cpu_count() or 1
    scale_rows: int = 10_000  # rows × 2 small photos of the scale figures (i) and (j); 0 skips them and (k)
    big_rows: int | None = None  # rows of the optional upload (l)


def photos(options: BenchOptions) -> list[bytes]:
    if options.photo_dir:
        files = sorted(p for p in options.photo_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
        if not files:
            raise SystemExit(f"no .jpg, .jpeg, .png or .webp files in {options.photo_dir}")
        return [p.read_bytes() for p in files]
    sizes = (1000, 2000) if options.mix else (options.size,)
    return [
        photo_like_jpeg(sizes[i % len(sizes)], sizes[i % len(sizes)], seed=i, quality=90)
        for i in tqdm(range(options.distinct), desc="generating photos")
    ]


def run_request(
    api: str,
    urls: list[str],
    per_row: int = 3,
    timeout: float = 900,
    poll_s: float = 0.02,
    form: dict[str, str] | None = None,
) -> float:
    """Seconds from upload to SUCCESS, as a client polling the status every ``poll_s`` sees them; raises
    unless every image succeeded."""
    rows = [(r + 1, f"P{r + 1}", urls[i : i + per_row]) for r, i in enumerate(range(0, len(urls), per_row))]
    started = time.perf_counter()
    request_id = upload(api, products_csv(rows), **(form or {}))
    final = wait_until_finished(api, request_id, timeout=timeout, poll_s=poll_s)
    elapsed = time.perf_counter() - started
    if final["status"] != "SUCCESS" or final["progress"]["images_failed"]:
        raise RuntimeError(f"benchmark request did not succeed cleanly: {final}")
    return elapsed


def stack_roots(stack: LocalStack) -> dict[str, int]:
    processes = [*stack.services, *(p for p in (stack.broker, stack.database) if p)]
    names = {stack.broker: "broker", stack.database: "database"}
    return {names.get(p, p.name): p.pid for p in processes if p.pid}


def settle(stack: LocalStack, urls: list[str]) -> None:
    """One small request until it succeeds: every consumer group has its partitions."""
    run_request(stack.api_url, urls[:1], per_row=1, timeout=120)


def measure_throughput(stack: LocalStack, urls: list[str], form: dict[str, str] | None = None) -> dict:
    roots = stack_roots(stack)
    before = proc_stats.sample(roots)
    seconds = run_request(stack.api_url, urls, poll_s=THROUGHPUT_POLL_S, form=form)
    used = proc_stats.cpu_between(before, proc_stats.sample(roots))
    return {
        "images_per_s": len(urls) / seconds,
        "seconds": seconds,
        "cpu_ms_per_image": {
            label: 1000 * cpu / len(urls) for label, cpu in sorted(used.items(), key=lambda kv: -kv[1])
        },
    }


def idle_cpu(stack: LocalStack, seconds: float) -> dict[str, float]:
    """% of one core used by each part of the stack while nothing is asked of it."""
    roots = stack_roots(stack)
    before = proc_stats.sample(roots)
    time.sleep(seconds)
    used = proc_stats.cpu_between(before, proc_stats.sample(roots))
    return {label: 100 * cpu / seconds for label, cpu in used.items()}


def rss_mb(stack: LocalStack) -> dict[str, float]:
    return {label: s.rss_bytes / 2**20 for label, s in proc_stats.sample(stack_roots(stack)).items()}


def big_upload(stack: LocalStack, rows: int, source: str) -> dict:
    """Seconds to the 200 answer of a ``rows``-row upload, and ingest's peak RSS growth meanwhile."""
    ingest = stack.service("ingest").pid
    if ingest is None:
        raise RuntimeError("ingest is not running")
    base = proc_stats.rss_of(ingest)
    peak = [base]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], proc_stats.rss_of(ingest))

    data = products_csv([(r + 1, f"Product {r + 1}", [f"{source}/missing/{r}.jpg"]) for r in range(rows)])
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.perf_counter()
    status: int | str
    try:
        status = httpx.post(
            f"{stack.api_url}/api/upload/", files={"file": ("big.csv", data, "text/csv")}, timeout=UPLOAD_TIMEOUT_S
        ).status_code
    except httpx.HTTPError as exc:
        status = f"no answer ({exc.__class__.__name__})"
    seconds = time.perf_counter() - started
    done.set()
    watcher.join()
    return {
        "rows": rows,
        "status": status,
        "seconds_to_answer": seconds,
        "bytes": len(data),
        "ingest_rss_growth_mb": (peak[0] - base) / 2**20,
    }


def print_cpu_table(title: str, cpu: dict[str, float], unit: str) -> None:
    print(f"    {title}: total {sum(cpu.values()):.1f} {unit}")
    for label, value in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"      {label:<24} {value:7.2f} {unit}")


def workload_of(options: BenchOptions) -> tuple[list[bytes], list[bytes], dict]:
    """The distinct photos, the images of the throughput runs cycling over them, and the figures' header."""
    sources = photos(options)
    workload = [sources[i % len(sources)] for i in range(options.images)]
    n = options.processes
    print(f"imgpipe bench: {len(workload)} images over {len(sources)} distinct photos, {n} processes")
    return sources, workload, {"processes": n, "images": len(workload), "distinct_photos": len(sources)}


def codec_figures(workload: list[bytes], processes: int) -> dict:
    """(a), (b) and the request options' figures, in-process, with (a) and (b) also under their old names."""
    codec = run_codec(workload, processes)
    plain, ours = codec["plain"], codec["compress"]
    return {
        "codec": codec,
        "plain_images_per_s": plain["images_per_s"],
        "plain_bytes": plain["bytes"],
        "compress_images_per_s": ours["images_per_s"],
        "compress_bytes": ours["bytes"],
    }


def run_codec_only(options: BenchOptions) -> int:
    """The in-process figures alone: no stack is started."""
    _, workload, figures = workload_of(options)
    figures.update(codec_figures(workload, options.processes))
    print(json.dumps(figures, sort_keys=True, default=str))
    return 0


def run_bench(options: BenchOptions) -> int:
    n = options.processes
    sources, workload, figures = workload_of(options)
    figures.update(codec_figures(workload, n))
    plain, ours = figures["plain_images_per_s"], figures["compress_images_per_s"]

    routes = {f"/bench/{i}.jpg": Route(body) for i, body in enumerate(workload)}
    # The same photos at other URLs: every URL of a run is new to the workers, which do a repeated one once.
    routes.update({f"/baseline/{i}.jpg": Route(body) for i, body in enumerate(workload)})
    routes.update({f"/small/{i}.jpg": Route(sources[i % len(sources)]) for i in range(30)})
    with tempfile.TemporaryDirectory() as tmp, LocalHttpServer(routes=routes) as server:
        urls = [f"{server.url}/bench/{i}.jpg" for i in range(len(workload))]
        baseline_urls = [f"{server.url}/baseline/{i}.jpg" for i in range(len(workload))]
        small = [f"{server.url}/small/{i}.jpg" for i in range(30)]
        by_processes = {}
        for compress_processes in sorted({n, 1}, reverse=True):
            config = StackConfig(
                api_port=free_port(),
                kafka_port=free_port(),
                mongo_port=free_port(),
                log_dir=Path(tmp) / f"logs-{compress_processes}",
                env={"IMGPIPE_COMPRESS_PROCESSES": str(compress_processes), "IMGPIPE_MAX_ROWS": "100000"},
            )
            print(f"starting the stack with {compress_processes} compress process(es)…")
            with LocalStack(config) as stack:
                settle(stack, small)
                if compress_processes == n:
                    time.sleep(IDLE_SETTLE_S)
                    figures["rss_idle_mb"] = rss_mb(stack)
                    idle = idle_cpu(stack, options.idle_s)
                    figures["idle_cpu_percent"] = idle
                    print(
                        f"(e) idle stack over {options.idle_s:.0f} s, "
                        f"from {IDLE_SETTLE_S:.0f} s after its last request: {sum(idle.values()):.1f} % of one core"
                    )
                    print_cpu_table("per process", idle, "%")
                run = measure_throughput(stack, urls)
                by_processes[compress_processes] = run["images_per_s"]
                if compress_processes == n:
                    figures["pipeline"] = run
                    print(
                        f"(c) pipeline, upload → SUCCESS: {run['images_per_s']:.1f} images/s "
                        f"({len(urls)} images in {run['seconds']:.1f} s)"
                    )
                    print(f"    c/a {run['images_per_s'] / plain:.2f}   c/b {run['images_per_s'] / ours:.2f}")
                    print_cpu_table("CPU per image, per process", run["cpu_ms_per_image"], "ms")
                    # (a) writes baseline JPEG; the pipeline's default, progressive, costs the codec more.
                    baseline = measure_throughput(stack, baseline_urls, {"progressive": "false"})
                    figures["pipeline_baseline_jpeg"] = baseline
                    print(
                        f"(c') the same with baseline JPEG (progressive=false), as (a) writes: "
                        f"{baseline['images_per_s']:.1f} images/s, c'/a {baseline['images_per_s'] / plain:.2f}"
                    )
                    print_cpu_table("CPU per image, per process", baseline["cpu_ms_per_image"], "ms")
                    latencies = [run_request(stack.api_url, small, per_row=3, timeout=60) for _ in range(5)]
                    figures["latency_10x3_s"] = latencies
                    print(
                        f"(d) 10 rows × 3 images, upload → SUCCESS: median {statistics.median(latencies):.2f} s "
                        f"(runs {', '.join(f'{s:.2f}' for s in latencies)})"
                    )
                    cold = []
                    for _ in range(3):  # after a quiet spell the consumers wait longer per fetch (fetch_wait)
                        time.sleep(COLD_AFTER_S)
                        cold.append(run_request(stack.api_url, small, per_row=3, timeout=60))
                    figures["latency_10x3_after_idle_s"] = cold
                    print(
                        f"    the same after {COLD_AFTER_S:.0f} s idle: median {statistics.median(cold):.2f} s "
                        f"(runs {', '.join(f'{s:.2f}' for s in cold)})"
                    )
                    figures["rss_after_mb"] = rss_mb(stack)
                    print("(f) RSS, MiB, idle → after the runs:")
                    for label, after in figures["rss_after_mb"].items():
                        print(f"      {label:<24} {figures['rss_idle_mb'].get(label, 0):7.1f} → {after:7.1f}")
                else:
                    for rows in (10_000, 100_000):
                        figures[f"upload_{rows}_rows"] = result = big_upload(stack, rows, server.url)
                        print(
                            f"(g) {rows}-row upload ({result['bytes'] / 2**20:.1f} MiB): HTTP {result['status']} "
                            f"in {result['seconds_to_answer']:.2f} s, "
                            f"ingest RSS +{result['ingest_rss_growth_mb']:.1f} MiB"
                        )
        figures["pipeline_images_per_s_by_compress_processes"] = by_processes
        print(
            "(h) pipeline images/s by compress processes: "
            + ", ".join(f"{k}: {v:.1f}" for k, v in sorted(by_processes.items()))
        )
        if options.scale_rows:
            figures.update(run_scale(Path(tmp), stack_roots, settle, options.scale_rows, options.big_rows))

    pipeline = figures["pipeline"]["images_per_s"]
    figures.update(
        ratio_c_a=pipeline / plain,
        ratio_c_baseline_a=figures["pipeline_baseline_jpeg"]["images_per_s"] / plain,
        ratio_c_b=pipeline / ours,
        latency_10x3_median_s=statistics.median(figures["latency_10x3_s"]),
        idle_cpu_percent_total=sum(figures["idle_cpu_percent"].values()),
    )
    print(json.dumps(figures, sort_keys=True, default=str))
    return 0


def run_scale_only(options: BenchOptions) -> int:
    """The scale figures alone, for a quicker look at them."""
    with tempfile.TemporaryDirectory() as tmp:
        figures = run_scale(Path(tmp), stack_roots, settle, options.scale_rows, options.big_rows)
    print(json.dumps(figures, sort_keys=True, default=str))
    return 0
