"""Servers the benchmarks measure beside `segjet up`, each started as its own process.

- `bare`: a Starlette + uvicorn endpoint `POST /v1/batch` that only parses the JSON body (with
  orjson, as segjet's tracking API does) and appends its events to a list: the floor any Python
  tracking endpoint pays, served exactly as the bundle serves its apps
  (`emulator.common.server.Runner`, same uvicorn settings, same GC settings). The list keeps as
  many events as segjet's message store does (its capacity, 200,000); `--keep-all` keeps every
  event instead, and then the endpoint slows as its heap grows (a 3 s run measured twice the rate
  of a 12 s run). segjet's heap still grows beyond its store (the 24-hour dedupe index and profile
  histories keep every event, as Segment's rules need), so its side of the ratio pays for growth
  and the bare side does not: the ratio errs against segjet.
- `bundle`: the three servers in one process as `segjet up` runs them, from a BundleConfig, so a
  switch `segjet up` has no flag for (`--no-validate`: BundleConfig.validate = False) can be set.
- `moto`: moto's `ThreadedMotoServer` (Werkzeug, threaded), the reference fake for AWS.

Each writes `{"url": ...}` (the bundle: what `--ready-file` holds) to `--ready-file` once it
answers, then runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections import deque
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator.bundle import Bundle
from emulator.common.server import Runner, bind, run, tune_gc_for_serving, url_of
from emulator.config import BundleConfig


def bare_app(keep_all: bool) -> Starlette:
    received: deque[Any] = deque(maxlen=None if keep_all else BundleConfig().events_capacity)

    async def batch(request: Request) -> Response:
        received.extend(orjson.loads(await request.body())["batch"])
        return JSONResponse({"success": True})

    return Starlette(routes=[Route("/v1/batch", batch, methods=["POST"])])


async def serve_bare(ready_file: Path, keep_all: bool) -> None:
    runner = Runner()
    sock = bind("127.0.0.1", 0)
    runner.add("bare", bare_app(keep_all), sock)
    await runner.start()
    tune_gc_for_serving()
    runner.install_signal_handlers()
    ready_file.write_text(json.dumps({"url": url_of(sock)}), encoding="utf-8")
    await runner.wait()


async def serve_bundle(ready_file: Path, validate: bool) -> None:
    bundle = Bundle(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, seed=0, validate=validate))
    info = await bundle.start()
    tune_gc_for_serving()
    bundle.runner.install_signal_handlers()
    ready_file.write_text(json.dumps(info), encoding="utf-8")
    await bundle.wait()


def serve_moto(ready_file: Path) -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ready_file.write_text(json.dumps({"url": f"http://{host}:{port}"}), encoding="utf-8")
    stop.wait()
    server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", choices=("bare", "bundle", "moto"))
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--no-validate", action="store_true", help="bundle: skip contract validation at ingest")
    parser.add_argument("--keep-all", action="store_true", help="bare: keep every event, not the newest 200,000")
    args = parser.parse_args()
    if args.server == "bare":
        run(serve_bare(args.ready_file, keep_all=args.keep_all))
    elif args.server == "bundle":
        run(serve_bundle(args.ready_file, validate=not args.no_validate))
    else:
        serve_moto(args.ready_file)


if __name__ == "__main__":
    main()
