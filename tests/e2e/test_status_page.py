"""The status page as a person sees it, in a real browser (Debian's headless Chromium driven by Selenium),
against a running stack with API keys: from 0 % through mid-way to 100 %, without a reload, while the test
holds the images back and releases them; a 10,000-row request shown a page at a time; `imgpipe demo`'s link;
the API docs on the same origin. Screenshots are kept under the test's tmp dir; their paths are printed."""

import base64
import shutil
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient

from imgpipe_ingest.auth import owner_id
from imgpipe_ops.client import upload
from imgpipe_ops.processes import free_port
from imgpipe_ops.samples import photo_like_jpeg, products_csv
from imgpipe_ops.stack import LocalStack, StackConfig
from imgpipe_runtime.documents import REQUESTS, ROWS, Origin, new_request, new_row, row_id, row_results
from imgpipe_schemas import ImageResult, RequestStatus, RowProcessed
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e
API_KEY = "page-test-key-" + uuid.uuid4().hex
CHROMIUM, CHROMEDRIVER = "chromium", "chromedriver"
MISSING_BROWSER = (
    "the status page is tested in Debian's headless Chromium: `{}` is not installed. `make tools` installs it "
    "(apt-get install chromium chromium-driver)"
)


class HeldImages:
    """Serves images that wait, each until the test releases it; records the webhooks POSTed to it."""

    def __init__(self, images: dict[str, bytes]) -> None:
        self.images = images
        self.gates = {path: threading.Event() for path in images}
        self.webhooks: list[bytes] = []
        held = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path not in held.images:
                    self.send_error(404)
                    return
                held.gates[self.path].wait(120)
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(held.images[self.path])))
                self.end_headers()
                self.wfile.write(held.images[self.path])

            def do_POST(self) -> None:  # noqa: N802
                held.webhooks.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def release(self, *paths: str) -> None:
        for path in paths:
            self.gates[path].set()

    def __enter__(self) -> "HeldImages":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release(*self.gates)
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: `make install` installs the test tools (requirements-dev.txt)")
    binary, driver = shutil.which(CHROMIUM), shutil.which(CHROMEDRIVER)
    if binary is None or driver is None:
        pytest.fail(MISSING_BROWSER.format(CHROMIUM if binary is None else CHROMEDRIVER))
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    downloads = tmp_path_factory.mktemp("downloads")
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    # The system's chromedriver, named: Selenium never looks for (nor downloads) a driver or a browser.
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    chrome.downloads = downloads
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture(scope="module")
def stack(infra, tmp_path_factory):
    config = StackConfig(
        api_port=free_port(),
        log_dir=tmp_path_factory.mktemp("page-logs"),
        external_kafka=infra.bootstrap,
        external_mongo=infra.mongo_url,
        env={
            "IMGPIPE_MONGO_DATABASE": f"page_{uuid.uuid4().hex[:8]}",
            "IMGPIPE_API_KEYS": API_KEY,
            "IMGPIPE_WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"page test secret").decode(),
            "IMGPIPE_FETCH_TOTAL_TIMEOUT_S": "110",  # an image held back is not a timeout
        },
    )
    with LocalStack(config) as running:
        yield running


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("status-page-screenshots")


def screenshot(browser, folder: Path, name: str, record_property) -> Path:
    """The whole page, not only the window; its path is printed at the end of the run (tests/conftest.py),
    from whichever process ran the test."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, max(1000, height + 100))
    path = folder / f"{name}.png"
    browser.save_screenshot(str(path))
    record_property("screenshot", str(path))
    return path


def text(browser, element_id: str) -> str:
    return browser.find_element("id", element_id).text


def shows(browser, element_id: str, expected: str, timeout: float = 30) -> None:
    wait_for(lambda: expected in text(browser, element_id), timeout, f"#{element_id} to show {expected!r}", 0.1)


def rows_shown(browser) -> list[list[str]]:
    return browser.execute_script(
        "return [...document.querySelectorAll('#rows-body tr')].map(tr => [...tr.cells].map(td => td.innerText))"
    )


def thumbnails_loaded(browser) -> list[bool]:
    return browser.execute_script(
        "return [...document.querySelectorAll('#rows-body img')].map(img => img.complete && img.naturalWidth > 0)"
    )


def open_with_key(browser, url: str) -> None:
    browser.get(url)
    shown = ("key-form", "request", "notice")
    wait_for(lambda: any(visible(browser, part) for part in shown), 30, "the page to show something", 0.1)
    if visible(browser, "key-form"):
        enter_key(browser, API_KEY)


def visible(browser, element_id: str) -> bool:
    return browser.find_element("id", element_id).is_displayed()


def enter_key(browser, key: str) -> None:
    field = browser.find_element("id", "key-input")
    field.send_keys(key)
    field.submit()


def test_a_person_follows_a_request_from_0_to_100_percent(browser, stack, screenshots, record_property):
    photos = {f"/held/{n}.jpg": photo_like_jpeg(320, 240, seed=n) for n in range(4)}
    with HeldImages(photos) as held:
        table = [
            (1, "Red hat", [f"{held.url}/held/0.jpg"]),
            (2, "Blue <b>scarf</b>", [f"{held.url}/held/1.jpg", f"{held.url}/missing.jpg"]),
            (3, "Green gloves", [f"{held.url}/held/2.jpg"]),
            (4, "Boots", [f"{held.url}/held/3.jpg"]),
        ]
        request_id = upload(stack.api_url, products_csv(table), webhook_url=f"{held.url}/hook", api_key=API_KEY)
        browser.get(f"{stack.api_url}/requests/{request_id}")
        shows(browser, "key-form", "This imgpipe needs an API key")
        assert not visible(browser, "request")
        enter_key(browser, "not-the-key")
        shows(browser, "key-form", "That API key is not valid here.")
        enter_key(browser, API_KEY)

        shows(browser, "percent", "0 %")
        browser.execute_script("window.sameDocument = true")
        assert text(browser, "status") in ("PENDING", "PROCESSING")
        assert text(browser, "images-count") == "0 ok, 0 failed, 5 waiting, of 5"
        assert text(browser, "output") == "not ready yet"
        assert [row[:3] for row in rows_shown(browser)] == [
            ["1", "Red hat", "waiting"],
            ["2", "Blue <b>scarf</b>", "waiting"],
            ["3", "Green gloves", "waiting"],
            ["4", "Boots", "waiting"],
        ]
        assert not visible(browser, "failures")
        screenshot(browser, screenshots, "0-percent", record_property)

        held.release("/held/0.jpg", "/held/1.jpg")
        shows(browser, "percent", "60 %")
        wait_for(
            lambda: [row[2] for row in rows_shown(browser)] == ["ok", "1 ok, 1 failed", "waiting", "waiting"],
            30,
            "rows 1 and 2 to be shown done",
            0.1,
        )
        assert text(browser, "status") == "PROCESSING"
        assert text(browser, "images-count") == "2 ok, 1 failed, 2 waiting, of 5"
        assert text(browser, "rows-count") == "2 of 4 done"
        assert browser.find_element("id", "bar").get_attribute("aria-valuenow") == "60"
        wait_for(lambda: thumbnails_loaded(browser) == [True, True], 30, "the first thumbnails to load", 0.1)
        shows(browser, "failures-title", "Failed images (1)")
        failure = browser.execute_script(
            "return [...document.querySelector('#failures-body tr').cells].map(td => td.innerText)"
        )
        assert failure[:3] == ["2", "Blue <b>scarf</b>", f"{held.url}/missing.jpg"]
        assert failure[3].startswith("http_404")
        screenshot(browser, screenshots, "60-percent", record_property)

        held.release("/held/2.jpg", "/held/3.jpg")
        shows(browser, "percent", "100 %")
        shows(browser, "status", "SUCCESS")
        assert text(browser, "images-count") == "4 ok, 1 failed, 0 waiting, of 5"
        wait_for(lambda: thumbnails_loaded(browser) == [True] * 4, 30, "every thumbnail to load", 0.1)
        output = browser.find_element("css selector", "#output a")
        assert output.text == "output.csv"
        finished = httpx.get(
            f"{stack.api_url}/api/output/", params={"request_id": request_id}, headers={"X-API-Key": API_KEY}
        ).json()["payload"]
        assert output.get_attribute("href") == finished["output_file_url"]
        assert output.get_attribute("href").startswith(f"{stack.api_url}/api/files/{request_id}/output-")
        shows(browser, "webhooks-body", "delivered", timeout=60)
        assert f"{held.url}/hook" in text(browser, "webhooks-body") and "→ 200" in text(browser, "webhooks-body")
        assert held.webhooks
        assert browser.execute_script("return window.sameDocument") is True  # never reloaded
        screenshot(browser, screenshots, "100-percent", record_property)

        browser.find_element("css selector", "#input a").click()  # fetched with the key, handed over as a file
        downloaded = browser.downloads / "input.csv"
        wait_for(lambda: downloaded.exists() and downloaded.read_bytes() == products_csv(table), 30, "the input CSV")


def test_a_10000_row_request_is_shown_a_page_at_a_time(browser, stack, screenshots, record_property):
    request_id, rows_total = str(uuid.uuid4()), 10_000
    now = datetime.now(UTC)
    failed_rows = list(range(0, rows_total, 7))
    with MongoClient(stack.mongo_url) as mongo:
        db = mongo[stack.config.env["IMGPIPE_MONGO_DATABASE"]]
        rows = []
        for index in range(rows_total):
            url = f"http://img.test/{index}.jpg"
            row = new_row(
                request_id,
                index,
                serial=index + 1,
                product_name=f"Product {index + 1}",
                image_urls=[url],
                cells=[str(index + 1), f"Product {index + 1}", url],
            )
            if index % 7 == 0:
                failed = ImageResult(source_url=url, error_code="http_404", error_message="Not Found")
                row |= row_results(
                    RowProcessed(request_id=uuid.UUID(request_id), row_index=index, images=[failed]), now
                )
            rows.append({"_id": row_id(request_id, index), **row})
        db[ROWS].insert_many(rows)
        request = new_request(
            status=RequestStatus.PROCESSING,
            origin=Origin.UPLOAD,
            columns=["S. No.", "Product Name", "Input Image Urls"],
            rows_total=rows_total,
            images_total=rows_total,
            webhook_url=None,
            now=now,
            owner=owner_id(API_KEY),
        )
        request["live"] = {"rows_done": len(failed_rows), "images_ok": 0, "images_failed": len(failed_rows)}
        db[REQUESTS].insert_one({"_id": request_id, **request})

    open_with_key(browser, f"{stack.api_url}/requests/{request_id}")
    shows(browser, "rows-range", "rows 1–50 of 10,000")
    shown = rows_shown(browser)
    assert len(shown) == 50 and shown[0][:3] == ["1", "Product 1", "0 ok, 1 failed"] and shown[1][2] == "waiting"
    assert text(browser, "percent") == "14 %"
    assert text(browser, "failures-title") == f"Failed images ({len(failed_rows):,})"
    shows(browser, "failures-range", "rows with a failed image: 1–20")
    assert len(browser.find_elements("css selector", "#failures-body tr")) == 20
    assert not browser.find_element("id", "rows-next").get_attribute("disabled")
    screenshot(browser, screenshots, "10000-rows", record_property)

    browser.find_element("id", "rows-next").click()
    shows(browser, "rows-range", "rows 51–100 of 10,000")
    assert rows_shown(browser)[0][:2] == ["51", "Product 51"]
    browser.find_element("id", "failures-next").click()
    shows(browser, "failures-range", "rows with a failed image: 21–40")
    assert browser.find_element("css selector", "#failures-body tr").text.startswith(str(failed_rows[20] + 1))


def test_a_request_of_another_key_is_not_shown(browser, stack):
    """The page shows what the status API shows to the key: nothing of a request made with another one."""
    request_id = str(uuid.uuid4())
    with MongoClient(stack.mongo_url) as mongo:
        request = new_request(
            status=RequestStatus.SUCCESS,
            origin=Origin.UPLOAD,
            columns=[],
            rows_total=1,
            images_total=1,
            webhook_url=None,
            now=datetime.now(UTC),
            owner=owner_id("someone-else"),
        )
        mongo[stack.config.env["IMGPIPE_MONGO_DATABASE"]][REQUESTS].insert_one({"_id": request_id, **request})
    open_with_key(browser, f"{stack.api_url}/requests/{request_id}")
    shows(browser, "key-form", "No request with this id was made with this API key")
    assert not visible(browser, "request")


def test_the_demo_prints_its_status_page(browser, stack, capsys):
    from imgpipe_ops.demo import run_demo

    assert run_demo(stack.api_url, rows=1, images_per_row=1, api_key=API_KEY) == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if line.startswith("follow it in a browser: "))
    url = line.removeprefix("follow it in a browser: ")
    request_id = next(line for line in printed.splitlines() if line.startswith("request_id ")).split()[1]
    assert url == f"{stack.api_url}/requests/{request_id}"
    open_with_key(browser, url)
    shows(browser, "status", "SUCCESS")
    shows(browser, "percent", "100 %")


def test_the_api_docs_on_the_same_origin_load_nothing_from_elsewhere(browser, stack, screenshots, record_property):
    """/docs shares its origin with the page that keeps the API key: it renders, under its
    Content-Security-Policy, from ingest's own files, and a call made from it is answered."""
    browser.get(f"{stack.api_url}/docs")
    wait_for(lambda: browser.find_elements("css selector", ".opblock"), 30, "Swagger UI to show the routes", 0.1)
    health = next(
        block for block in browser.find_elements("css selector", ".opblock") if "/healthz" in block.text.split("\n")
    )
    health.find_element("css selector", ".opblock-summary").click()
    wait_for(lambda: health.find_elements("css selector", ".try-out__btn"), 10, "the route to open", 0.1)
    health.find_element("css selector", ".try-out__btn").click()
    wait_for(lambda: health.find_elements("css selector", ".execute"), 10, "the Execute button", 0.1)
    health.find_element("css selector", ".execute").click()
    answer = ".live-responses-table tr.response .response-col_status"
    wait_for(lambda: health.find_elements("css selector", answer), 30, "the call's answer", 0.1)
    assert health.find_element("css selector", answer).text.startswith("200")
    screenshot(browser, screenshots, "docs", record_property)
    fetched = browser.execute_script(
        "return [location.href].concat(performance.getEntriesByType('resource').map(entry => entry.name))"
    )
    assert any(url.endswith("/docs/assets/swagger-ui-bundle.js") for url in fetched), fetched
    others = [url for url in fetched if not url.startswith(f"{stack.api_url}/") and not url.startswith("data:")]
    assert others == []
