"""The dashboard's HTML: a page is a template filled with escaped values, plus the JSON its script reads.

Pages carry no run data. Each is a frame that its script (``static/<page>.js``) fills from the API the
app already serves (``GET /runs``, ``GET /runs/{id}?meta``, the run's SSE stream) with the browser's
own credentials, so a page can show nothing its viewer could not read through the API.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import cache
from html import escape
from pathlib import Path
from string import Template
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from flue_core.dashboard.csrf import page_token, set_token_cookie
from flue_core.dashboard.navigation import SECTIONS

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"

#: Pages only load the dashboard's own files and talk to their own origin; nobody may frame them
#: (a framed page could be clicked through by another site).
PAGE_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}


@cache
def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text(encoding="utf-8"))


@cache
def asset_version(name: str) -> str:
    """A digest of a static file, put in its URL so that browsers may keep it as long as it is unchanged."""
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:16]


def asset_url(base: str, name: str) -> str:
    return f"{base}/static/{name}?v={asset_version(name)}"


def render(
    request: Request,
    prefix: str,
    page: str,
    title: str,
    data: dict[str, Any],
    *,
    sections: Sequence[str] = (),
    **fields: str,
) -> HTMLResponse:
    """The ``page`` template inside the layout. ``fields`` fill the page's template (escaped here);
    ``data`` goes to the page's script with what every page needs (where the API and the dashboard
    are, the anti-forgery token, the statuses runs can have). ``sections``: those the viewer may open
    (:mod:`.navigation`), linked from the top bar when there is more than the runs."""
    api = request.scope.get("root_path", "").rstrip("/")
    base = api + prefix
    token = page_token(request)
    script_data = {"page": page, "api": api, "base": base, "csrf": token, **data}
    body = _template(f"{page}.html").substitute(base=escape(base), **{k: escape(v) for k, v in fields.items()})
    html = _template("layout.html").substitute(
        title=escape(title),
        page=page,
        base=escape(base),
        favicon=escape(asset_url(base, "favicon.svg")),
        css=escape(asset_url(base, "dashboard.css")),
        common_js=escape(asset_url(base, "common.js")),
        page_js=escape(asset_url(base, f"{page}.js")),
        data=_script_json(script_data),
        nav=_nav(base, page, sections),
        body=body,
    )
    response = HTMLResponse(html, headers=PAGE_HEADERS)
    set_token_cookie(response, request, token, path=f"{base}/")
    return response


def _nav(base: str, page: str, sections: Sequence[str]) -> str:
    if set(sections) <= {"runs"}:  # the brand links to the runs already
        return ""
    current = "runs" if page == "run" else page
    mark = ' aria-current="page"'
    links = [
        f'<a href="{escape(base + path)}"{mark if name == current else ""}>{label}</a>'
        for name, label, path in SECTIONS
        if name in sections
    ]
    return f'<nav class="sections" aria-label="Sections">{"".join(links)}</nav>'


def _script_json(value: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: no ``<`` can close the element."""
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
