"""``imgpipe bench``'s scale figures: what a bulk catalogue costs, on a fresh stack and on a used one.

(i) 10,000 rows × 2 small photos (every URL distinct) end to end: images/s and CPU per row per process;
(j) the same on a database already holding 100,000 rows of earlier requests, and (j)/(i);
(k) a 100,000-row upload: seconds to its answer, seconds until every row is accepted, RSS before/after;
(l) optionally, a 1,000,000-row upload accepted: seconds to its answer, peak RSS of every process;
(m) a finished 100,000-row request: seconds from its last result to SUCCESS, its output CSV built.
"""

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient
from tqdm import tqdm

from imgpipe_ops import proc_stats
from imgpipe_ops.client import status, upload, wait_until_finished
from imgpipe_ops.processes import free_port
from imgpipe_ops.samples import LocalHttpServer, Route, photo_like_jpeg, products_csv
from imgpipe_ops.stack import LocalStack, StackConfig
from imgpipe_runtime.documents import REQUESTS, ROWS, Origin, new_request, new_row, row_id, row_results
from imgpipe_schemas import CSV_COLUMNS, DEFAULT_QUALITY, ImageResult, Progress, RequestStatus, RowProcessed

SMALL_SIDE = 320
PRELOAD_ROWS = 100_000
ROWS_PER_EARLIER_REQUEST = 1_000


def small_photos(count: int = 8) -> list[bytes]:
    return [photo_like_jpeg(SMALL_SIDE, SMALL_SIDE, seed=100 + i, quality=90) for i in range(count)]


def catalogue(server_url: str, rows: int, first: int, per_row: int = 2) -> bytes:
    """``rows`` rows of ``per_row`` URLs each, numbered from ``first``: every URL distinct."""
    return products_csv(
        [
            (r + 1, f"Product {r + 1}", [f"{server_url}/s/{first + r * per_row + k}.jpg" for k in range(per_row)])
            for r in range(rows)
        ]
    )


def run_catalogue(stack: LocalStack, roots: dict[str, int], data: bytes, rows: int, images: int) -> dict:
    before = proc_stats.sample(roots)
    started = time.perf_counter()
    request_id = upload(stack.api_url, data)
    with tqdm(total=rows, desc="rows done", unit="row") as bar:
        final = wait_until_finished(
            stack.api_url,
            request_id,
            timeout=7200,
            poll_s=1.0,
            on_progress=lambda s: bar.update(s["progress"]["rows_done"] - bar.n),
        )
    seconds = time.perf_counter() - started
    used = proc_stats.cpu_between(before, proc_stats.sample(roots))
    if final["status"] != "SUCCESS" or final["progress"]["images_failed"]:
        raise RuntimeError(f"scale request did not succeed cleanly: {final['status']} {final['progress']}")
    return {
        "rows": rows,
        "images": images,
        "seconds": seconds,
        "images_per_s": images / seconds,
        "cpu_ms_per_row": {label: 1000 * cpu / rows for label, cpu in sorted(used.items(), key=lambda kv: -kv[1])},
    }


def preload(mongo_url: str, rows: int) -> float:
    """``rows`` rows of earlier, finished requests written straight to the database; seconds taken."""
    started = time.perf_counter()
    long_ago = datetime.now(UTC) - timedelta(days=1)
    with MongoClient[dict[str, Any]](mongo_url) as client:
        db = client["imgpipe"]
        for _ in tqdm(range(rows // ROWS_PER_EARLIER_REQUEST), desc="preloading earlier requests", unit="request"):
            request_id = str(uuid.uuid4())
            request = new_request(
                status=RequestStatus.SUCCESS,
                origin=Origin.UPLOAD,
                columns=list(CSV_COLUMNS),
                rows_total=ROWS_PER_EARLIER_REQUEST,
                images_total=2 * ROWS_PER_EARLIER_REQUEST,
                webhook_url=None,
                now=long_ago,
                input_file=f"{request_id}/input.csv",
                quality=DEFAULT_QUALITY,
                output_format="jpeg",
            )
            db[REQUESTS].insert_one(
                {
                    "_id": request_id,
                    **request,
                    "completed_at": long_ago,
                    "completion_published": True,
                    "progress": Progress().model_dump(),
                    "rows_accepted": ROWS_PER_EARLIER_REQUEST,
                }
            )
            documents = []
            for index in range(ROWS_PER_EARLIER_REQUEST):
                urls = [f"http://earlier.example/{request_id}/{index}/{k}.jpg" for k in range(2)]
                result = RowProcessed(
                    request_id=uuid.UUID(request_id),
                    row_index=index,
                    images=[
                        ImageResult(source_url=url, output_url=f"http://api/{request_id}/{index}-{k}.jpg")
                        for k, url in enumerate(urls)
                    ],
                )
                documents.append(
                    {
                        "_id": row_id(request_id, index),
                        **new_row(
                            request_id,
                            index,
                            serial=index + 1,
                            product_name="P",
                            image_urls=urls,
                            cells=[str(index + 1), "P", ",".join(urls)],
                        ),
                        **row_results(result, long_ago),
                    }
                )
            db[ROWS].insert_many(documents, ordered=False)
    return time.perf_counter() - started


def output_of_a_finished_request(stack: LocalStack, rows: int) -> float:
    """Seconds from the last result of a ``rows``-row request (its other rows' results stored straight in
    the database) to its SUCCESS: the streamed build of its output CSV."""
    import asyncio

    from imgpipe_bus import BusSettings, EventProducer
    from imgpipe_schemas.topics import ROWS_PROCESSED

    request_id, now = str(uuid.uuid4()), datetime.now(UTC)
    with MongoClient[dict[str, Any]](stack.mongo_url) as client:
        db = client["imgpipe"]
        request = new_request(
            status=RequestStatus.PROCESSING,
            origin=Origin.UPLOAD,
            columns=list(CSV_COLUMNS),
            rows_total=rows,
            images_total=rows,
            webhook_url=None,
            now=now,
            input_file=f"{request_id}/input.csv",
            quality=DEFAULT_QUALITY,
            output_format="jpeg",
        )
        request["live"] = {"rows_done": rows - 1, "images_ok": rows - 1, "images_failed": 0}
        db[REQUESTS].insert_one({"_id": request_id, **request, "rows_accepted": rows})
        batch = []
        for index in tqdm(range(rows), desc="storing a finished request's rows", unit="row"):
            url = f"http://earlier.example/{request_id}/{index}.jpg"
            document = {
                "_id": row_id(request_id, index),
                **new_row(
                    request_id,
                    index,
                    serial=index + 1,
                    product_name="P",
                    image_urls=[url],
                    cells=[str(index + 1), "P", url],
                ),
            }
            if index:
                result = RowProcessed(
                    request_id=uuid.UUID(request_id),
                    row_index=index,
                    images=[ImageResult(source_url=url, output_url=f"http://api/{index}.jpg")],
                )
                document.update(row_results(result, now))
            batch.append(document)
            if len(batch) == 5_000:
                db[ROWS].insert_many(batch, ordered=False)
                batch = []
        if batch:
            db[ROWS].insert_many(batch, ordered=False)
    last = RowProcessed(
        request_id=uuid.UUID(request_id),
        row_index=0,
        images=[ImageResult(source_url=f"http://earlier.example/{request_id}/0.jpg", output_url="http://api/0.jpg")],
    )

    async def send() -> None:
        producer = EventProducer(BusSettings(bootstrap_servers=stack.bootstrap))
        try:
            await producer.publish(ROWS_PROCESSED, last)
        finally:
            await producer.close()

    started = time.perf_counter()
    asyncio.run(send())
    with httpx.Client() as http:
        while status(stack.api_url, request_id, http)["status"] != "SUCCESS":
            if time.perf_counter() - started > 600:
                raise TimeoutError("the request's output was not built within 600 s")
            time.sleep(0.1)
    return time.perf_counter() - started


def upload_accepted(stack: LocalStack, roots: dict[str, int], rows: int, source: str) -> dict:
    """Seconds to the answer of a ``rows``-row upload and until every row is accepted; RSS before, peak and after."""
    before = proc_stats.sample(roots)
    peak = {label: sample.rss_bytes for label, sample in before.items()}
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            for label, sample in proc_stats.sample(roots).items():
                peak[label] = max(peak.get(label, 0), sample.rss_bytes)

    data = products_csv([(r + 1, f"Product {r + 1}", [f"{source}/missing/{r}.jpg"]) for r in range(rows)])
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.perf_counter()
    try:
        request_id = upload(stack.api_url, data)
        answered = time.perf_counter() - started
        deadline = time.monotonic() + 1800
        with httpx.Client() as http, tqdm(total=rows, desc="rows accepted", unit="row") as bar:
            while (accepted := status(stack.api_url, request_id, http)["rows_accepted"]) < rows:
                bar.update(accepted - bar.n)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{accepted} of {rows} rows accepted after 1800 s")
                time.sleep(0.25)
        all_accepted = time.perf_counter() - started
    finally:
        done.set()
        watcher.join()
    after = proc_stats.sample(roots)
    mb = 2**20
    return {
        "rows": rows,
        "bytes": len(data),
        "seconds_to_answer": answered,
        "seconds_to_every_row_accepted": all_accepted,
        "rss_mb": {
            label: {
                "before": before[label].rss_bytes / mb,
                "peak": peak.get(label, 0) / mb,
                "after": after[label].rss_bytes / mb,
            }
            for label in before
            if label in after
        },
    }


def stack_config(tmp: Path, name: str, max_rows: int) -> StackConfig:
    return StackConfig(
        api_port=free_port(),
        kafka_port=free_port(),
        mongo_port=free_port(),
        log_dir=tmp / f"logs-{name}",
        env={"IMGPIPE_MAX_ROWS": str(max_rows), "IMGPIPE_MAX_UPLOAD_BYTES": str(200 * 2**20)},
    )


def print_per_process(title: str, values: dict[str, float], unit: str) -> None:
    print(f"    {title}: total {sum(values.values()):.2f} {unit}")
    for label, value in sorted(values.items(), key=lambda kv: -kv[1]):
        print(f"      {label:<24} {value:8.2f} {unit}")


def catalogue_figures(tmp: Path, roots_of, settle, rows: int) -> dict:
    """(i) and (j), on one stack."""
    figures: dict = {}
    photos = small_photos()
    images = 2 * rows
    routes = {f"/s/{i}.jpg": Route(photos[i % len(photos)]) for i in range(2 * images + 10)}
    with LocalHttpServer(routes=routes) as server, LocalStack(stack_config(tmp, "scale", 1_000_000)) as stack:
        roots = roots_of(stack)
        settle(stack, [f"{server.url}/s/{2 * images + k}.jpg" for k in range(3)])
        fresh = figures["scale_fresh"] = run_catalogue(stack, roots, catalogue(server.url, rows, 0), rows, images)
        print(
            f"(i) {rows:,} rows × 2 small photos ({SMALL_SIDE}²), end to end: {fresh['images_per_s']:.1f} images/s "
            f"({fresh['seconds']:.1f} s)"
        )
        print_per_process("CPU per row, per process", fresh["cpu_ms_per_row"], "ms")
        seconds = preload(stack.mongo_url, PRELOAD_ROWS)
        print(f"    preloaded {PRELOAD_ROWS:,} rows of earlier requests in {seconds:.0f} s")
        used = figures["scale_used"] = run_catalogue(stack, roots, catalogue(server.url, rows, images), rows, images)
        figures["ratio_j_i"] = used["images_per_s"] / fresh["images_per_s"]
        print(
            f"(j) the same on a database holding {PRELOAD_ROWS + rows:,} earlier rows: "
            f"{used['images_per_s']:.1f} images/s ({used['seconds']:.1f} s); j/i {figures['ratio_j_i']:.2f}"
        )
        print_per_process("CPU per row, per process", used["cpu_ms_per_row"], "ms")
        seconds = figures["output_100000_rows_s"] = output_of_a_finished_request(stack, 100_000)
        print(
            f"(m) a 100,000-row request's last result to SUCCESS (its output CSV streamed and stored): {seconds:.1f} s"
        )
    return figures


def run_scale(tmp: Path, roots_of, settle, rows: int = 10_000, big_rows: int | None = None) -> dict:
    """(i), (j), (k) and, given ``big_rows``, (l); ``roots_of(stack)`` names the processes to measure and
    ``settle(stack, urls)`` runs one small request first."""
    figures: dict = {}
    if rows:
        figures.update(catalogue_figures(tmp, roots_of, settle, rows))
    for name, count in (*((("k", 100_000),) if rows else ()), *((("l", big_rows),) if big_rows else ())):
        with LocalHttpServer(routes={}) as server, LocalStack(stack_config(tmp, name, count)) as stack:
            result = figures[f"upload_{count}_rows_accepted"] = upload_accepted(
                stack, roots_of(stack), count, server.url
            )
            print(
                f"({name}) {count:,}-row upload ({result['bytes'] / 2**20:.1f} MiB): answered in "
                f"{result['seconds_to_answer']:.2f} s, "
                f"every row accepted in {result['seconds_to_every_row_accepted']:.1f} s"
            )
            print("    RSS, MiB: before → peak → after")
            for label, rss in result["rss_mb"].items():
                print(f"      {label:<24} {rss['before']:7.1f} → {rss['peak']:7.1f} → {rss['after']:7.1f}")
    return figures
