"""`python -m destination --keyring FILE --port N`: the destination on its own, with uvicorn."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from .app import create_app
from .keyring import KeyRing, KeyRingError

# uvicorn's level names; another is a KeyError deep inside uvicorn.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _port(text: str) -> int:
    # The OS keeps only 16 bits of a port: 99999 would be served on 34463 while 99999 is announced.
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, got {port}")
    return port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m destination", description="Mailjet's Segment direct-destination endpoint.")
    parser.add_argument("--keyring", required=True, help='JSON file {"accounts": {auth_key: {"base_url", "api_key", "secret_key"}}}')
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=_port, default=8703)
    parser.add_argument("--log-level", default="info", type=str.lower, choices=LOG_LEVELS)
    args = parser.parse_args(argv)
    try:
        key_ring = KeyRing.from_file(args.keyring)
    except KeyRingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(create_app(key_ring), host=args.host, port=args.port, log_level=args.log_level)
    # Bound before it is announced, so that --port 0 announces the port the OS chose.
    sock = config.bind_socket()
    print(f"destination: {len(key_ring)} account(s), listening on http://{args.host}:{sock.getsockname()[1]}/", file=sys.stderr)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
