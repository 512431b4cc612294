"""Dashboard routes of the fake Segment: pages, the live debugger feed, validation, the trace."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import uuid
from functools import cache
from typing import TYPE_CHECKING, Any, Callable

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

import contracts

from ..common.control import ControlError, control_error_response, control_token_of
from ..common.json_body import decode_json
from ..config import BundleUrls
from .common import STATIC_DIR, Broadcaster, page_routes, static_mount
from .contracts_for import contract_names, violation_json
from .trace import build_trace

if TYPE_CHECKING:
    from ..segment.models import SegmentBackend, StoredMessage

PAGES = ["/", "/debugger", "/destinations", "/deliveries", "/engage", "/trace"]
# The trace reads the default workspace's events and deliveries, and the configured Mailjet account.
TRACE_REFUSAL = (
    "the trace shows the default workspace only; read GET /_emulator/events?writeKey=K and "
    "GET /_emulator/deliveries?writeKey=K for another"
)


def segment_dashboard_routes(
    backend: SegmentBackend, urls: BundleUrls, named_write_key: Callable[[Request], str | None]
) -> list[BaseRoute]:
    """Routes to add to the fake Segment's app. Registers one listener on `backend`.
    `named_write_key(request)` is the write key a request names its workspace by, as the control API reads it."""
    feed = Broadcaster()

    def on_message(stored: StoredMessage) -> None:
        if feed.clients:  # rendering every message for nobody cost ~3 % of ingestion
            feed.publish(stored.to_json())

    backend.add_listener(on_message)
    steps = OverviewSteps(backend)
    backend.add_listener(steps.saw)

    # The store's epoch: this app's (a restarted server is another) and how many times its state
    # was replaced (a reset, a snapshot import).
    boot = uuid.uuid4().hex[:12]

    def epoch() -> str:
        return f"{boot}.{backend.generation}"

    def other_workspace(request: Request, refusal: str) -> Response | None:
        """400 when the request names a workspace other than the default one, which is all the
        dashboard's feeds read: its caller silently got the default workspace's data instead."""
        key = named_write_key(request)
        if key is not None and key not in {source.write_key for source in backend.sources}:
            return control_error_response(ControlError(refusal))
        return None

    async def stream(request: Request) -> Response:
        # Each accepted message as it is stored (the backend's listeners see accepted ones only;
        # the Debugger polls `GET /_emulator/events?status=discarded` for the others).
        refused = other_workspace(
            request, "the live feed shows the default workspace only; poll GET /_emulator/events?writeKey=K for another"
        )
        return refused or feed.stream(request, epoch)

    async def validate(request: Request) -> Response:
        name = request.path_params["contract"]
        if name not in contract_names():
            return JSONResponse({"error": str(contracts.UnknownContract(name))}, status_code=404)
        try:
            payload = decode_json(await request.body())
        except ValueError as exc:
            return JSONResponse({"error": f"body is not valid JSON: {exc}"}, status_code=400)
        try:
            found = [violation_json(v) for v in contracts.validate(name, payload)]
        except RecursionError:
            return JSONResponse({"error": "payload is nested too deeply to validate"}, status_code=400)
        return JSONResponse({"contract": name, "violations": found})

    async def list_contracts(request: Request) -> Response:
        return JSONResponse({"contracts": sorted(contract_names())})

    async def info(request: Request) -> Response:
        refusal = "the dashboard shows the default workspace only; read GET /_emulator/sources?writeKey=K for another"
        if refused := other_workspace(request, refusal):
            return refused
        return JSONResponse({"service": "segment", "segment_url": urls.segment_url, "mailjet_url": urls.mailjet_url,
                             "sources": [source.to_json() for source in backend.sources]})

    async def overview(request: Request) -> Response:
        # The default workspace's, as every dashboard feed: `other_workspace` refuses another's key.
        if refused := other_workspace(
            request, "the Overview shows the default workspace only; read GET /_emulator/events?writeKey=K for another"
        ):
            return refused
        return JSONResponse(steps.to_json())

    async def trace(request: Request) -> Response:
        if refused := other_workspace(request, TRACE_REFUSAL):
            return refused
        user = request.query_params.get("user", "").strip()
        if not user:
            return JSONResponse({"error": "give ?user= a userId or an email"}, status_code=400)
        return JSONResponse(
            await build_trace(urls.segment_url, urls.mailjet_url, user, control_token=control_token_of(request.scope))
        )

    async def trace_export(request: Request) -> Response:
        if refused := other_workspace(request, TRACE_REFUSAL):
            return refused
        user = request.query_params.get("user", "").strip()
        if not user:
            return JSONResponse({"error": "give ?user= a userId or an email"}, status_code=400)
        data = await build_trace(urls.segment_url, urls.mailjet_url, user, control_token=control_token_of(request.scope))
        filename = "segjet-trace-" + (re.sub(r"[^A-Za-z0-9._-]+", "_", user) or "user") + ".html"
        return HTMLResponse(export_html(data), headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    return [
        *page_routes("segment.html", PAGES),
        static_mount(),
        Route("/_emulator/events/stream", stream, methods=["GET"]),
        Route("/_emulator/validate/{contract}", validate, methods=["POST"]),
        Route("/_emulator/contracts", list_contracts, methods=["GET"]),
        Route("/_emulator/dashboard/info", info, methods=["GET"]),
        Route("/_emulator/dashboard/overview", overview, methods=["GET"]),
        Route("/_emulator/dashboard/trace", trace, methods=["GET"]),
        Route("/_emulator/dashboard/trace/export", trace_export, methods=["GET"]),
    ]


EMAIL_EVENT_PREFIX = "Email "  # Mailjet's email events reach Segment as tracks "Email Opened", ... (mailjet/events.py)


class OverviewSteps:
    """Whether the workspace accepted an identify, and an email event (a track named "Email ..."),
    since its state was last replaced (a reset, a snapshot import): the Overview's steps.

    Kept by the store's listener, not looked for among the newest N messages: heavy traffic after
    the identify pushed it out of any such read, and a step done went back to "to do". When the
    store's generation changes, the flags are read again from the messages it holds (none after a
    reset; those imported or restored otherwise): a restore calls no listener.
    """

    def __init__(self, backend: SegmentBackend) -> None:
        self._backend = backend
        self._generation: int | None = None  # none yet: the first use reads the store
        self.identify = False
        self.email_event = False

    def saw(self, stored: StoredMessage) -> None:
        """The store's listener: called with each accepted message, after it is stored."""
        if self.identify and self.email_event and self._generation == self._backend.generation:
            return  # both steps done: what heavy ingestion mostly sees, so it pays only this check
        if self._current():
            self._note(stored)

    def to_json(self) -> dict[str, bool]:
        self._current()
        return {"identify_accepted": self.identify, "email_event_accepted": self.email_event}

    def _current(self) -> bool:
        """True when the flags were already of this generation; else reads them from the store
        (which holds any message being told of, so that one is counted too)."""
        if self._generation == self._backend.generation:
            return True
        self._generation = self._backend.generation
        self.identify = self.email_event = False
        for stored in reversed(self._backend.messages):
            if stored.accepted:
                self._note(stored)
                if self.identify and self.email_event:
                    break
        return False

    def _note(self, stored: StoredMessage) -> None:
        kind = stored.type
        if kind == "identify":
            self.identify = True
        elif kind == "track":
            event = stored.event
            if isinstance(event, str) and event.startswith(EMAIL_EVENT_PREFIX):
                self.email_event = True


def _inline_json(data: Any) -> str:
    # Safe inside <script>: no "</" can close the element early.
    return json.dumps(data, default=str).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


# Runs after the renderer: reads the inline data and renders it.
_EXPORT_BOOT = """
  // Mailjet MessageIDs exceed 2^53: keep such integers as their exact digits.
  const exact = (key, value, context) =>
    typeof value === "number" && !Number.isSafeInteger(value) && context && /^-?\\d+$/.test(context.source) ? context.source : value;
  const data = JSON.parse(document.getElementById("trace-data").textContent, exact);
  document.getElementById("trace-user").textContent = data.user;
  SegjetTrace.render(document.getElementById("trace-result"), data);
"""


@cache
def _export_assets() -> tuple[str, str]:
    """The dashboard CSS and the trace renderer, read once (not on the event loop at each export)."""
    return (STATIC_DIR / "dashboard.css").read_text(encoding="utf-8"), (STATIC_DIR / "trace-view.js").read_text(encoding="utf-8")


def export_html(data: dict[str, Any]) -> str:
    """One self-contained HTML file: the dashboard CSS, the trace renderer and the data, inline.

    A Content-Security-Policy meta, second to the escaping of the data: nothing is fetched, and only
    the file's own style and scripts run (allowed by hash), so markup that got in runs no script.
    The data's `<script type="application/json">` is never run, so it needs no hash.
    """
    css, script = _export_assets()
    title = html.escape(f"segjet trace: {data.get('user', '')}")
    policy = (
        f"default-src 'none'; style-src {_csp_hash(css)}; script-src {_csp_hash(script)} {_csp_hash(_EXPORT_BOOT)}; "
        "base-uri 'none'; form-action 'none'"
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header class="topbar"><span class="brand">segjet</span><span class="crumb">exported trace</span></header>
<main id="view" class="view"><h1>Trace of <span id="trace-user"></span></h1><div id="trace-result"></div></main>
<script type="application/json" id="trace-data">{_inline_json(data)}</script>
<script>{script}</script>
<script>{_EXPORT_BOOT}</script>
</body>
</html>
"""
