"""The layer contract (import-linter, run by ``make test``) sees an import only as the
module it names. ``import polytask`` names the package root, which is in no layer and
re-exports the API, so ``polytask.load`` from inside the package would reach the api layer
unseen: modules import the module that holds a name instead."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "polytask"
SUBMODULES = {p.stem for p in SRC.glob("*.py")} | {p.name for p in SRC.iterdir() if p.is_dir()}


def root_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name == "polytask"]
        elif isinstance(node, ast.ImportFrom) and node.module == "polytask" and not node.level:
            names = [a.name for a in node.names if a.name not in SUBMODULES]
            found += [f"from polytask import {n}" for n in names]
    return found


def test_no_module_imports_the_package_root():
    offenders = {
        str(p.relative_to(SRC)): hits
        for p in SRC.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") or p.parent != SRC
        if (hits := root_imports(p))
    }
    assert not offenders, f"import the module that holds the name instead: {offenders}"


def test_the_check_sees_a_root_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import polytask\nfrom polytask import load, io\n")
    assert root_imports(bad) == ["import polytask", "from polytask import load"]
