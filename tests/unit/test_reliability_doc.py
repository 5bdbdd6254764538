"""docs/reliability.md names, for each guarantee, the tests that prove it: they must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
#: `tests/…/file.py::test_name`, `file.py::test_name` (a file named before) or `::test_name`
REFERENCE = re.compile(r"`((?:tests/[\w/]+/)?\w+\.py)?::(\w+)`|`(tests/[\w/]+\.py)`")


def _functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def _file(name: str) -> Path:
    """A test file by its path, or by its name alone (unique under tests/)."""
    if "/" in name:
        return ROOT / name
    found = sorted((ROOT / "tests").rglob(name))
    assert len(found) == 1, f"{name}: {len(found)} files of that name under tests/"
    return found[0]


def references() -> list[tuple[str, str | None]]:
    """(test file, test name or None) for every reference in the doc, in order.

    A bare ``::test_name`` belongs to the file named last before it in the same row.
    """
    found: list[tuple[str, str | None]] = []
    for line in DOC.read_text().splitlines():
        current: str | None = None
        for match in REFERENCE.finditer(line):
            file, test, whole = match.groups()
            if whole:
                found.append((whole, None))
                current = whole
                continue
            current = file or current
            assert current, f"{match.group(0)} in docs/reliability.md names no file before it"
            found.append((current, test))
    return found


def test_every_test_the_reliability_doc_names_exists() -> None:
    cited = references()
    assert len(cited) >= 30
    missing = [
        f"{file}::{test}" if test else file
        for file, test in cited
        if not _file(file).is_file()
        or (test is not None and test not in _functions_in(_file(file)))
    ]
    assert missing == []


def test_every_fault_and_security_test_is_in_the_reliability_doc() -> None:
    named = {test for _, test in references()}
    for name in ("test_faults.py", "test_security.py"):
        tests = {
            function for function in _functions_in(_file(name)) if function.startswith("test_")
        }
        assert tests <= named, name
