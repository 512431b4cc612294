"""A plain `pip install segjet` runs every command: what the shipped code imports is a main dependency."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"emulator", "destination", "contracts"}
# Loaded only by pytest itself (entry point pytest11), so pytest is there whenever it is imported.
PYTEST_ONLY = {ROOT / "emulator" / "pytest_plugin.py"}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules(path: Path) -> set[str]:
    """Top-level names of every absolute import, including those inside functions (lazy imports)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_every_third_party_import_of_the_shipped_code_is_a_main_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {_normalized(re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]) for requirement in project["dependencies"]}
    distributions = packages_distributions()
    missing: dict[str, set[str]] = {}
    for package in sorted(FIRST_PARTY):
        for path in (ROOT / package).rglob("*.py"):
            if path in PYTEST_ONLY:
                continue
            for module in _imported_modules(path) - FIRST_PARTY - set(sys.stdlib_module_names):
                owners = {_normalized(name) for name in distributions.get(module, [module])}
                if not owners & declared:
                    missing.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    assert not missing, f"imported by the shipped code but not in [project].dependencies: {missing}"
