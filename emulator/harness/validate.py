"""`segjet validate CONTRACT FILE...`: check JSON payloads against a contract, with readable errors.

A file holds one JSON document, or JSON lines (one payload per line); `-` reads standard input.
Exit codes: 0 every payload valid, 1 at least one invalid (or not JSON), 2 usage error.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import contracts

from ..common.json_body import decode_json

EXIT_VALID, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


@dataclass
class Payload:
    label: str
    value: Any = None
    parse_error: str | None = None


def _loads(text: str) -> Any:
    """`text` as the fakes read a body (ValueError otherwise): no NaN or Infinity, no 1e999, at most
    MAX_DEPTH levels deep (json.loads takes NaN and 1e999, and crashes on deep nesting)."""
    return decode_json(text.encode("utf-8"))  # the text was read as strict UTF-8, so it encodes back


def split_payloads(source: str, text: str) -> list[Payload]:
    """One payload when the whole text is JSON; otherwise one per non-empty line (JSON Lines: lines
    end at \n only, as U+2028, U+2029 and U+0085 may stand raw inside a JSON string)."""
    try:
        return [Payload(source, _loads(text))]
    except ValueError:
        pass
    payloads = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        label = f"{source}:{number}"
        try:
            payloads.append(Payload(label, _loads(line)))
        except ValueError as exc:
            payloads.append(Payload(label, parse_error=f"not valid JSON: {exc}"))
    if not payloads:
        payloads.append(Payload(source, parse_error="empty input: no JSON payload"))
    return payloads


def _read_stdin(stdin: TextIO) -> str:
    """Standard input as UTF-8, as the files are read: JSON is UTF-8 (RFC 8259 §8.1) whatever the
    locale's codec, which would misread it (latin-1) or crash on it (ASCII, strict UTF-8)."""
    buffer = getattr(stdin, "buffer", None)
    return buffer.read().decode("utf-8") if buffer is not None else stdin.read()


def run(contract: str, files: list[str], stdin: TextIO, out: TextIO, err: TextIO) -> int:
    if contract not in contracts.names():
        # Says whether the name is unknown or names shared definitions, and lists the contracts.
        print(f"segjet validate: {contracts.UnknownContract(contract)}", file=err)
        return EXIT_USAGE
    texts = []
    for name in files:
        source = "<stdin>" if name == "-" else name
        try:
            texts.append((source, _read_stdin(stdin) if name == "-" else Path(name).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            print(f"segjet validate: cannot read {source}: {exc}", file=err)
            return EXIT_USAGE
    invalid = 0
    for source, text in texts:
        for payload in split_payloads(source, text):
            problems = (
                [payload.parse_error] if payload.parse_error else [str(v) for v in contracts.validate(contract, payload.value)]
            )
            if problems:
                invalid += 1
                print(f"{payload.label}: invalid against {contract}", file=out)
                for problem in problems:
                    print(f"  {problem}", file=out)
            else:
                print(f"{payload.label}: valid", file=out)
    return EXIT_INVALID if invalid else EXIT_VALID


def main(contract: str, files: list[str]) -> int:
    return run(contract, files, sys.stdin, sys.stdout, sys.stderr)
