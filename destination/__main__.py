"""`python -m destination --keyring FILE --port N`: the destination on its own, with uvicorn."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from .app import create_app
from .keyring import KeyRing, KeyRingError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m destination", description="Mailjet's Segment direct-destination endpoint.")
    parser.add_argument("--keyring", required=True, help='JSON file {"accounts": {auth_key: {"base_url", "api_key", "secret_key"}}}')
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8703)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    try:
        key_ring = KeyRing.from_file(args.keyring)
    except KeyRingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"destination: {len(key_ring)} account(s), listening on http://{args.host}:{args.port}/", file=sys.stderr)
    uvicorn.run(create_app(key_ring), host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
