"""A small HTTP/1.1 load generator, run in its own process so it never shares the servers' CPU or GIL.

It writes request bytes built from a template on keep-alive connections and reads just enough of
each answer (status line, headers, Content-Length or chunked body) to know it is complete. A request
costs the client a fraction of what it costs the server (~260 µs of CPU against the bare endpoint's
~510 µs for an ingestion batch, measured), so the figure is the server's. An exchange that takes
longer than EXCHANGE_TIMEOUT_SECONDS fails the run (a server gone silent would otherwise hang it).
The same generator drives every server measured (segjet, the bare Starlette endpoint, moto), so
ratios compare servers only.

A request spec (JSON file): {"url", "method", "path", "headers": {...}, "body": "..."}; every
`@N@` in the path and body is replaced by the request's sequence number, so ids can be unique.

Modes:
- closed: `--connections` connections each send the next request as soon as the last is answered;
  `requests` and `per_s` count the 2xx answers completed during `--duration` seconds after
  `--warmup` (an error answer is never throughput); `statuses` counts every answer of the run,
  warm-up included, so the caller can refuse a run that saw any error.
- count: `--connections` connections send requests 1 to `--requests` between them, each the next
  as soon as the last is answered (to fill a server with exactly that many objects).
- paced: open loop, request n is due at start + n / `--rate`, whatever the server does; it goes
  out on the first free connection (up to `--connections`). Prints each request's due time (wall
  clock, `time.time()`), so the caller can measure latency from it.

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

PLACEHOLDER = "@N@"
EXCHANGE_TIMEOUT_SECONDS = 30.0


@dataclass
class RequestSpec:
    host: str
    port: int
    head_template: str
    body_template: str

    def __post_init__(self) -> None:
        # Split once: a 30 KB batch with 300 placeholders cost ~62 µs a request to `replace`.
        self._head_parts = self.head_template.split(PLACEHOLDER)
        self._body_parts = self.body_template.split(PLACEHOLDER)

    @classmethod
    def load(cls, path: Path) -> RequestSpec:
        spec = json.loads(path.read_text(encoding="utf-8"))
        url = urlsplit(spec["url"])
        headers = {"Host": url.netloc, **spec.get("headers", {})}
        head = f"{spec['method']} {spec['path']} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return cls(url.hostname or "127.0.0.1", url.port or 80, head, spec.get("body", ""))

    def render(self, number: int) -> bytes:
        text = str(number)
        body = text.join(self._body_parts).encode()
        head = text.join(self._head_parts)
        return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


class Connection:
    def __init__(self, spec: RequestSpec) -> None:
        self.spec = spec
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self, raw: bytes) -> int:
        """Send one request and read its whole answer; reconnect when the server closes. Answer the
        status; TimeoutError when the connection and answer take over EXCHANGE_TIMEOUT_SECONDS."""
        try:
            async with asyncio.timeout(EXCHANGE_TIMEOUT_SECONDS):
                return await self._exchange(raw)
        except TimeoutError:
            self.close()
            raise TimeoutError(
                f"no answer from {self.spec.host}:{self.spec.port} within {EXCHANGE_TIMEOUT_SECONDS:g} s"
            ) from None

    async def _exchange(self, raw: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.spec.host, self.spec.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ", 2)[:2]
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip().lower()
        if status in ("204", "304"):
            # No body, whatever the headers say (RFC 9112 §6.3): reading to EOF would wait for the
            # server's idle timeout on a keep-alive connection.
            pass
        elif "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            await self.reader.read()
            headers["connection"] = "close"
        if headers.get("connection") == "close" or (version == "HTTP/1.0" and headers.get("connection") != "keep-alive"):
            self.close()
        return int(status)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def closed_loop(spec: RequestSpec, connections: int, duration: float, warmup: float) -> dict:
    numbers = iter(range(1, 1 << 62))
    statuses: Counter[int] = Counter()
    counted = 0
    start = time.perf_counter()
    window_start, window_end = start + warmup, start + warmup + duration

    async def client() -> None:
        nonlocal counted
        connection = Connection(spec)
        while time.perf_counter() < window_end:
            status = await connection.exchange(spec.render(next(numbers)))
            now = time.perf_counter()
            statuses[status] += 1
            if window_start <= now <= window_end and 200 <= status < 300:
                counted += 1
        connection.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return {"mode": "closed", "requests": counted, "seconds": duration, "per_s": counted / duration,
            "statuses": {str(k): v for k, v in statuses.items()}, "connections": connections}


async def count(spec: RequestSpec, connections: int, requests: int) -> dict:
    numbers = iter(range(1, requests + 1))
    statuses: Counter[int] = Counter()

    async def client() -> None:
        connection = Connection(spec)
        for number in numbers:
            statuses[await connection.exchange(spec.render(number))] += 1
        connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    return {"mode": "count", "requests": requests, "seconds": time.perf_counter() - start,
            "statuses": {str(k): v for k, v in statuses.items()}, "connections": connections}


async def paced(spec: RequestSpec, connections: int, duration: float, rate: float) -> dict:
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(Connection(spec))
    statuses: Counter[int] = Counter()
    sent: list[tuple[int, float]] = []  # (number, due wall time)
    late = 0  # requests that found no free connection at their due time

    async def send(raw: bytes) -> None:
        nonlocal late
        if pool.empty():
            late += 1
        connection = await pool.get()
        try:
            statuses[await connection.exchange(raw)] += 1
        finally:
            pool.put_nowait(connection)

    total = int(duration * rate)
    tasks = []
    wall_start, mono_start = time.time(), time.perf_counter()
    for index in range(total):
        number = index + 1
        raw = spec.render(number)
        due = mono_start + 0.05 + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent.append((number, wall_start + (due - mono_start)))
        tasks.append(asyncio.create_task(send(raw)))
    await asyncio.gather(*tasks)
    return {"mode": "paced", "requests": total, "rate": rate, "late": late,
            "statuses": {str(k): v for k, v in statuses.items()}, "sent": sent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path)
    parser.add_argument("--mode", choices=("closed", "count", "paced"), default="closed")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--requests", type=int, default=1000, help="count mode: how many requests")
    args = parser.parse_args()
    spec = RequestSpec.load(args.spec)
    if args.mode == "closed":
        result = asyncio.run(closed_loop(spec, args.connections, args.duration, args.warmup))
    elif args.mode == "count":
        result = asyncio.run(count(spec, args.connections, args.requests))
    else:
        result = asyncio.run(paced(spec, args.connections, args.duration, args.rate))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
