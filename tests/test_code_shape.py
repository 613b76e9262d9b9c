"""Code shape: no function in src/ over 60 lines and no module over 400 lines, unless the
function's or module's first lines carry a one-line ``# long: REASON`` comment.

The last exceptions went in issue 11; a new one is a `# long:` comment, not a list.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "polytask"
MAX_FUNCTION, MAX_MODULE = 60, 400


def _excused(lines: list[str], start: int) -> bool:
    """A ``# long:`` comment within the first three lines from ``start`` (0-based)."""
    return any("# long:" in line for line in lines[start : start + 3])


def oversized() -> set[str]:
    found = set()
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        text = path.read_text()
        lines = text.splitlines()
        if len(lines) > MAX_MODULE and not _excused(lines, 0):
            found.add(rel)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if length > MAX_FUNCTION and not _excused(lines, first - 1):
                    found.add(f"{rel}:{node.name}")
    return found


def test_no_oversized_functions_or_modules():
    found = oversized()
    assert not found, f"over {MAX_FUNCTION} lines (function) / {MAX_MODULE} (module): {found}"
