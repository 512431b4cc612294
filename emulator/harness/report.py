"""How a scenario run is shown: live lines on a terminal or a pipe, a summary, JUnit and JSON files."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, TextIO
from xml.etree import ElementTree

from .scenario import HopResult

# Written as escapes (\x01, \x1b, \r) in the hop lines and the JUnit file, since a server's error text
# reaches a hop's detail as it was sent: a terminal acts on the C0 and C1 controls but tab and newline
# (ESC starts a colour, CR rewrites the line), and XML 1.0 cannot hold those C0 controls, surrogates,
# U+FFFE or U+FFFF at all (the JUnit file was not well-formed).
_UNSHOWABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def shown(text: str) -> str:
    """`text` with the characters a terminal or XML cannot take written as escapes (\\x1b)."""
    return _UNSHOWABLE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


class HopPrinter:
    """Prints each hop as it finishes: a ✓/✗/- line on a terminal, PASS/FAIL/SKIP when piped."""

    def __init__(self, out: TextIO | None = None) -> None:
        # Looked up now, not at import: the summary is printed to the sys.stdout of the run's time.
        self.out = out if out is not None else sys.stdout
        self.tty = self.out.isatty()

    def __call__(self, result: HopResult) -> None:
        if self.tty:
            mark = "-" if result.skipped else "\033[32m✓\033[0m" if result.ok else "\033[31m✗\033[0m"
        else:
            mark = _verdict(result).upper()
        print(f"{mark} {result.name} ({result.seconds:.2f}s): {shown(result.detail)}", file=self.out, flush=True)


def _verdict(result: HopResult) -> str:
    return "skip" if result.skipped else "pass" if result.ok else "fail"


def _counts(results: list[HopResult]) -> tuple[int, int, int]:
    """(passed, failed, skipped): a hop that never ran is skipped, not failed."""
    passed = sum(result.ok for result in results)
    skipped = sum(result.skipped for result in results)
    return passed, len(results) - passed - skipped, skipped


def summary_table(results: list[HopResult]) -> str:
    width = max(len(result.name) for result in results) if results else 10
    lines = [f"{'hop'.ljust(width)}  result  payloads checked  seconds"]
    for result in results:
        verdict = "FAIL" if _verdict(result) == "fail" else _verdict(result)
        lines.append(f"{result.name.ljust(width)}  {verdict:<6}  {result.payloads_checked:>16}  {result.seconds:>7.2f}")
    passed, failed, skipped = _counts(results)
    lines.append(f"{passed} passed, {failed} failed, {skipped} skipped")
    return "\n".join(lines)


def write_junit(path: Path, results: list[HopResult]) -> None:
    _, failed, skipped = _counts(results)
    suite = ElementTree.Element(
        "testsuite", name="segjet check", tests=str(len(results)), failures=str(failed), skipped=str(skipped),
        time=f"{sum(result.seconds for result in results):.3f}",
    )
    for result in results:
        case = ElementTree.SubElement(suite, "testcase", classname="segjet.roundtrip", name=result.name,
                                      time=f"{result.seconds:.3f}")
        detail = shown(result.detail)
        if result.skipped:
            ElementTree.SubElement(case, "skipped", message=detail)
        elif not result.ok:
            ElementTree.SubElement(case, "failure", message=detail).text = detail
    ElementTree.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def write_json(path: Path, results: list[HopResult], traces: dict[str, Any]) -> None:
    document = {
        "ok": all(result.ok for result in results),
        "hops": [result.__dict__ for result in results],
        "traces": traces,
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
