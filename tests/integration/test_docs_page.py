"""/docs as ingest serves it while API keys are configured: Swagger UI from ingest's own files, no other
origin named, and a Content-Security-Policy that names no other origin either. (The page renders and its
"Try it out" works under that policy in Debian's Chromium: checked when the policy was written.)"""

import base64
import hashlib
import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from imgpipe_bus import ensure_topics
from imgpipe_ingest.api import create_api
from imgpipe_ingest.settings import Settings
from imgpipe_runtime.webhooks import generate_secret

ASSET_TYPES = {".js": ("text/javascript", "application/javascript"), ".css": ("text/css",), ".png": ("image/png",)}


@pytest.fixture
def client(bus_settings, mongo_settings):
    ensure_topics(bus_settings)
    settings = Settings(
        kafka=bus_settings,
        mongo=mongo_settings,
        webhook_secret=generate_secret(),
        api_keys="docs-test-key-3b9e",
    )
    with TestClient(create_api(settings)) as test_client:
        yield test_client


class References(HTMLParser):
    """Every URL an element of the page names, and the text of each inline script."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        named = dict(attrs)
        self.urls.extend(value for name, value in attrs if name in ("src", "href", "action") and value)
        self._in_inline_script = tag == "script" and "src" not in named

    def handle_endtag(self, tag: str) -> None:
        self._in_inline_script = False

    def handle_data(self, data: str) -> None:
        if self._in_inline_script:
            self.inline_scripts.append(data)


def test_the_docs_page_names_no_other_origin_and_its_policy_allows_none(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    references = References()
    references.feed(page.text)
    assert references.urls, page.text
    for url in references.urls:
        assert not urlsplit(url).netloc and url.startswith("/"), url
    assert not re.search(r"(https?:)?//", page.text), "the page names an origin"
    # The inline script's one URL is the API document, of ingest too.
    assert re.findall(r"url: '([^']*)'", page.text) == ["/openapi.json"]

    policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"
    hashes = {
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in references.inline_scripts
    }
    assert len(hashes) == 1 and set(policy["script-src"].split()) == {"'self'", *hashes}
    assert "http" not in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


def test_every_asset_the_docs_page_names_is_served_by_ingest_with_its_type(client):
    references = References()
    references.feed(client.get("/docs").text)
    assets = [url for url in references.urls if url.startswith("/docs/assets/")]
    assert sorted(url.rsplit(".", 1)[1] for url in assets) == ["css", "js", "png"]
    for url in assets:
        answer = client.get(url)
        assert answer.status_code == 200, url
        media_type = answer.headers["content-type"].split(";")[0]
        assert media_type in ASSET_TYPES["." + url.rsplit(".", 1)[1]], (url, media_type)
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert len(answer.content) > 1000, url
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text
    assert client.get("/openapi.json").status_code == 200  # open, like the page: it describes, it holds no data


def test_redoc_whose_page_would_load_a_cdn_is_not_served(client):
    assert client.get("/redoc").status_code == 404
    assert client.get("/docs/assets/no-such-file.js").status_code == 404
