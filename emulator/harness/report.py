"""How a scenario run is shown: live lines on a terminal or a pipe, a summary, JUnit and JSON files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO
from xml.etree import ElementTree

from .scenario import HopResult


class HopPrinter:
    """Prints each hop as it finishes: a ✓/✗ line on a terminal, PASS/FAIL when piped."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self.tty = out.isatty()

    def __call__(self, result: HopResult) -> None:
        if self.tty:
            mark = "\033[32m✓\033[0m" if result.ok else "\033[31m✗\033[0m"
        else:
            mark = "PASS" if result.ok else "FAIL"
        print(f"{mark} {result.name} ({result.seconds:.2f}s): {result.detail}", file=self.out, flush=True)


def summary_table(results: list[HopResult], expected_hops: int) -> str:
    width = max(len(result.name) for result in results) if results else 10
    lines = [f"{'hop'.ljust(width)}  result  payloads checked  seconds"]
    for result in results:
        verdict = "pass" if result.ok else "FAIL"
        lines.append(f"{result.name.ljust(width)}  {verdict:<6}  {result.payloads_checked:>16}  {result.seconds:>7.2f}")
    passed = sum(result.ok for result in results)
    lines.append(f"{passed} passed, {expected_hops - passed} failed")
    return "\n".join(lines)


def write_junit(path: Path, results: list[HopResult], expected_hops: int) -> None:
    failures = expected_hops - sum(result.ok for result in results)
    suite = ElementTree.Element(
        "testsuite", name="segjet check", tests=str(expected_hops), failures=str(failures),
        time=f"{sum(result.seconds for result in results):.3f}",
    )
    for result in results:
        case = ElementTree.SubElement(suite, "testcase", classname="segjet.roundtrip", name=result.name,
                                      time=f"{result.seconds:.3f}")
        if not result.ok:
            ElementTree.SubElement(case, "failure", message=result.detail).text = result.detail
    ElementTree.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def write_json(path: Path, results: list[HopResult], traces: dict[str, Any], expected_hops: int) -> None:
    document = {
        "ok": len(results) == expected_hops and all(result.ok for result in results),
        "hops": [result.__dict__ for result in results],
        "traces": traces,
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
