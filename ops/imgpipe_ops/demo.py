"""``imgpipe demo``: sample photos served locally, uploaded to a running stack, output shown; and
``imgpipe samples``: the photos of examples/products.csv and a webhook receiver, for the README's curl example."""

import time

import httpx
from tqdm import tqdm

from imgpipe_ops.client import upload, wait_until_finished
from imgpipe_ops.samples import LocalHttpServer, Route, example_routes, photo_like_jpeg, products_csv


def run_demo(api: str, rows: int, images_per_row: int, api_key: str | None = None) -> int:
    """``api_key``: for a stack with IMGPIPE_API_KEYS set; the status page asks for it too."""
    try:
        httpx.get(f"{api}/healthz", timeout=3).raise_for_status()
    except httpx.HTTPError as exc:
        print(f"imgpipe is not answering at {api} ({exc}); start it with `make run` first.")
        return 1
    count = rows * images_per_row
    print(f"generating {count} sample photos…")
    routes = {f"/photos/{i}.jpg": Route(photo_like_jpeg(1200, 800, seed=i)) for i in range(count)}
    with LocalHttpServer(routes=routes) as server:
        table = [
            (
                r + 1,
                f"Sample product {r + 1}",
                [f"{server.url}/photos/{r * images_per_row + j}.jpg" for j in range(images_per_row)],
            )
            for r in range(rows)
        ]
        csv_bytes = products_csv(table)
        print(f"uploading a {rows}-row CSV; images served from {server.url}\n")
        print(csv_bytes.decode())
        started = time.monotonic()
        request_id = upload(api, csv_bytes, webhook_url=f"{server.url}/webhook", api_key=api_key)
        print(f"request_id {request_id}")
        print(f"follow it in a browser: {status_page_url(api, request_id)}")
        with tqdm(total=count, unit="image", desc="compressing") as bar:

            def show(payload: dict) -> None:
                done = payload["progress"]["images_ok"] + payload["progress"]["images_failed"]
                bar.update(done - bar.n)
                bar.set_postfix_str(payload["status"])

            final = wait_until_finished(api, request_id, timeout=300, on_progress=show, api_key=api_key)
        print(f"\n{final['status']} in {time.monotonic() - started:.2f} s: {final['progress']}")
        print(f"output CSV: {final['output_file_url']}\n")
        print(httpx.get(final["output_file_url"], timeout=10).text)
        source_bytes = sum(len(route.body) for route in routes.values())
        deadline = time.monotonic() + 30
        while not server.received and time.monotonic() < deadline:
            time.sleep(0.05)
        for hook in server.received:
            print(f"webhook received: webhook-id {hook.headers.get('webhook-id')}\n{hook.body.decode()}")
        print(f"\nsource photos: {source_bytes / 1e6:.1f} MB in total")
    return 0 if final["status"] == "SUCCESS" else 1


def status_page_url(api: str, request_id: str) -> str:
    """The request's status page, which ingest serves beside its API."""
    return f"{api.rstrip('/')}/requests/{request_id}"


def serve_samples(port: int) -> int:
    """Serves examples/products.csv's photos at http://127.0.0.1:PORT/photos/… and prints each webhook
    POSTed to /hook, until Ctrl-C."""
    try:
        server = LocalHttpServer(routes=example_routes(), port=port).start()
    except OSError as exc:
        print(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}")
        return 1
    print(f"serving the photos of examples/products.csv at {server.url}/photos/, webhooks at {server.url}/hook")
    print("Ctrl-C stops it.", flush=True)
    shown = 0
    try:
        while True:
            time.sleep(0.2)
            for hook in server.received[shown:]:
                print(
                    f"webhook {hook.path}: webhook-id {hook.headers.get('webhook-id')}\n{hook.body.decode()}",
                    flush=True,
                )
            shown = len(server.received)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
