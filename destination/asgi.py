"""ASGI pieces the destination and the emulator's servers share: a capped body reader, the header of
an exception handler's answer, and middleware that keeps a client's early departure out of the error
log."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Receive, Scope, Send


# Headers of the answer an app's `Exception` handler gives: Starlette raises the error again after
# it, and uvicorn then closes the connection. Said, so that a client does not reuse the connection
# and meet the close (a reset) on its next request.
CONNECTION_CLOSE = {"Connection": "close"}


class BodyTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"request body is {size} bytes")
        self.size = size


async def read_capped(request: Request, limit: int) -> bytes:
    """The raw body, never buffering more than `limit` bytes; a larger one raises BodyTooLarge.

    An oversized body is still read to its end (and thrown away) so the client, which is
    usually still sending, gets the service's error instead of a reset connection.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        raise BodyTooLarge(size)
    return b"".join(chunks)


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
