"""ASGI middleware the destination and the emulator's servers share."""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send


class QuietDisconnect:
    """A client that leaves before its body is read is no server error.

    Starlette raises ClientDisconnect from the body read; left alone it reached the error handlers
    and was logged as a bug, traceback and all (an SDK giving up on a slow upload, say). Its request
    ends unanswered: no one is there to read an answer, and uvicorn expects none once the client
    has gone.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            pass
