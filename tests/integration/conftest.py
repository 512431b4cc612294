"""Fixtures shared by the integration tests: real servers on free ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from starlette.types import ASGIApp

from emulator.common.server import LoopThread, Runner, serve_in_background

StartApps = Callable[[dict[str, ASGIApp]], dict[str, str]]


@pytest.fixture(scope="module")
def serve() -> Iterator[StartApps]:
    """`serve({"name": app, ...}) -> {"name": url}`: real uvicorn servers, stopped after the module."""
    started: list[tuple[LoopThread, Runner]] = []

    def start(apps: dict[str, ASGIApp]) -> dict[str, str]:
        loop_thread, runner, urls = serve_in_background(apps)
        started.append((loop_thread, runner))
        return urls

    yield start
    for loop_thread, runner in started:
        loop_thread.run(runner.stop())
        loop_thread.close()
