"""GET /docs: Swagger UI over /openapi.json, with its script, style sheet and icon served by ingest itself
(/docs/assets/, from the pinned fastapi-offline package), never from a CDN.

The docs share their origin with the status page, which keeps a person's API key in the tab's
sessionStorage: a script loaded from elsewhere would run with the right to read it. The page's
Content-Security-Policy allows ingest's own script and style sheet and the page's one inline script (by
its hash), and the page works offline. ReDoc, whose page FastAPI would load from a CDN with web fonts, is
not served: one API browser is enough.
"""

import base64
import hashlib
import re
from importlib.resources import files

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

DOCS = "/docs"
ASSETS = "/docs/assets"
ASSET_FILES = files(fastapi_offline) / "static"
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
# No badge that sends the document to swagger.io's validator, whatever the layout.
SWAGGER_PARAMETERS = {"validatorUrl": None}


class Assets(StaticFiles):
    """The package's files, each sent with the type its name says and no sniffing of another."""

    def file_response(self, *args, **kwargs) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def serve_docs(app: FastAPI) -> None:
    """Adds /docs and its assets to an app made with ``docs_url=None, redoc_url=None``."""
    app.mount(ASSETS, Assets(directory=str(ASSET_FILES)), name="docs-assets")

    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )
        page.headers.update(_headers(bytes(page.body).decode()))
        return page

    app.add_route(DOCS, docs, methods=["GET"], include_in_schema=False)


def _headers(page: str) -> dict[str, str]:
    """Scripts and styles from ingest, and the page's inline script named by its hash; calls ("Try it
    out") to ingest only. Images also from data: URLs, which Swagger UI's style sheet uses for its icons."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in INLINE_SCRIPT.findall(page)
    )
    policy = (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }
