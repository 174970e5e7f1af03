"""GET /requests/{request_id}: a request's status page, for a person with a browser.

The page is open, and shows nothing by itself: it is the same shell for every well-formed id, known or not,
so that it tells no caller whether an id is taken. Everything it shows it fetches from the JSON API
(/api/output/ and /api/rows/) with its script, under the API's own rules: while IMGPIPE_API_KEYS is set the
person types a key into the page, which keeps it for the tab only (sessionStorage) and sends it as X-API-Key,
never in a URL, where it would end up in histories and logs. The page thus shows exactly what the status API
shows to the same key; a key-less URL can be handed to a colleague, who needs a key of their own. The
script and the style sheet are served by ingest (/static/), and the Content-Security-Policy allows nothing
else: the page works offline, and a product name or an error message that holds markup stays text.
"""

import html
import uuid
from string import Template
from urllib.parse import urlsplit

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from imgpipe_ingest.deps import Blobs, SettingsDep
from imgpipe_runtime.blobs import BlobStore, output_image_stem

router = APIRouter()

PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>imgpipe request $request_id</title>
<link rel="stylesheet" href="../static/status-page.css">
<script src="../static/status-page.js" defer></script>
</head>
<body data-request-id="$request_id" data-status-api="../api/output/" data-rows-api="../api/rows/">
<header>
  <h1>imgpipe request <code>$request_id</code></h1>
  <p>Status: <strong id="status" class="status">loading…</strong> <span id="updated"></span></p>
</header>
<noscript><p class="notice">This page needs JavaScript. The JSON status API has the same data:
  <code>GET /api/output/?request_id=$request_id</code>.</p></noscript>
<p id="notice" class="notice" role="status" hidden></p>
<form id="key-form" hidden>
  <p id="key-reason"></p>
  <label>API key <input id="key-input" type="password" autocomplete="off" required></label>
  <button type="submit">Show the request</button>
</form>
<main id="request" hidden>
  <section aria-labelledby="progress-title">
    <h2 id="progress-title">Progress</h2>
    <div id="bar" class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="0">
      <div id="bar-fill" class="bar-fill"></div>
    </div>
    <p id="percent" class="percent">0 %</p>
    <ul class="counts">
      <li>Rows: <span id="rows-count"></span></li>
      <li>Images: <span id="images-count"></span></li>
    </ul>
    <p>Output CSV: <span id="output"></span> · Input CSV: <span id="input"></span></p>
  </section>
  <section id="failures" aria-labelledby="failures-title" hidden>
    <h2 id="failures-title">Failed images (<span id="failed-count">0</span>)</h2>
    <table><thead><tr><th>S. No.</th><th>Product</th><th>Source</th><th>Error</th></tr></thead>
      <tbody id="failures-body"></tbody></table>
    <p class="pager"><button type="button" id="failures-prev">Previous</button>
      <span id="failures-range"></span><button type="button" id="failures-next">Next</button></p>
  </section>
  <section aria-labelledby="rows-title">
    <h2 id="rows-title">Rows</h2>
    <table><thead><tr><th>S. No.</th><th>Product</th><th>Outcome</th><th>Output images</th></tr></thead>
      <tbody id="rows-body"></tbody></table>
    <p class="pager"><button type="button" id="rows-prev">Previous</button>
      <span id="rows-range"></span><button type="button" id="rows-next">Next</button></p>
  </section>
  <section aria-labelledby="webhooks-title">
    <h2 id="webhooks-title">Webhooks</h2>
    <p id="webhooks-none">No webhook sent (yet).</p>
    <table id="webhooks" hidden><thead><tr><th>URL</th><th>State</th><th>Attempts</th></tr></thead>
      <tbody id="webhooks-body"></tbody></table>
  </section>
  <p><button type="button" id="forget-key" hidden>Forget the API key</button></p>
</main>
</body>
</html>
""")

NOT_FOUND = "<!doctype html><title>Not found</title><p>{} is not a request id: a request id is a UUID.</p>\n"


@router.get("/requests/{request_id}", response_class=HTMLResponse, include_in_schema=False)
async def status_page(request_id: str, settings: SettingsDep, blobs: Blobs) -> HTMLResponse:
    try:
        request_id = str(uuid.UUID(request_id))
    except ValueError:
        return HTMLResponse(
            NOT_FOUND.format(html.escape(request_id[:64])), status_code=404, headers=_headers(settings, blobs)
        )
    return HTMLResponse(PAGE.substitute(request_id=request_id), headers=_headers(settings, blobs))


def _origin(url: str | None) -> str:
    parts = urlsplit(url or "")
    return f" {parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else ""


def _headers(settings, blobs: BlobStore) -> dict[str, str]:
    """Scripts, styles and API calls from ingest only; images also from where output images are: the public
    base URL, or the blob store's own (a bucket). No Referer: the page's URL holds the request id, and its
    links lead to image sources."""
    images = _origin(settings.public_base_url)
    if (bucket := _origin(blobs.url(output_image_stem(str(uuid.UUID(int=0)), 0, 0) + ".jpg"))) not in ("", images):
        images += bucket
    policy = (
        f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'{images}; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }
