"""Registry names and defaults read from the source, not imported, for ``--help``.

``train --help`` lists the balancing methods and architectures, and ``compare --help``
shows ``make_spec``'s defaults; importing those registries imports torch (seconds), so
the parser reads them from the registry modules' syntax tree instead (milliseconds).
The registries stay the one source: tests/test_cli_startup.py checks that these equal
the imported registries, and any shape this reader does not know falls back to the
import (slow but right).
"""

from __future__ import annotations

import ast
import importlib
from functools import cache
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parents[1]

#: registries keyed by a class attribute: (module, registry) -> (tuple of classes, attribute)
BUILT_FROM_CLASSES = {
    ("polytask.architectures", "ARCHITECTURES"): ("_CLASSES", "name"),
    ("polytask.tasks", "KINDS"): ("BUILTIN", "kind"),
}


def _tree(module: str) -> ast.Module:
    rel = Path(*module.split(".")[1:])
    path = PACKAGE / rel / "__init__.py" if (PACKAGE / rel).is_dir() else PACKAGE / f"{rel}.py"
    return ast.parse(path.read_text(encoding="utf-8"))


def _assigned(tree: ast.Module, name: str) -> ast.expr | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return node.value
        target = getattr(node, "target", None)
        if isinstance(node, ast.AnnAssign) and isinstance(target, ast.Name) and target.id == name:
            return node.value
    return None


def _dict_keys(module: str, name: str) -> list[str]:
    value = _assigned(_tree(module), name)
    if not isinstance(value, ast.Dict):
        raise LookupError(name)
    return [ast.literal_eval(k) for k in value.keys if k is not None]


def _class_names(module: str, classes: str, attr: str) -> list[str]:
    """The ``attr`` attribute of each class listed in ``module.classes`` (a tuple of
    names imported into ``module``)."""
    tree = _tree(module)
    value = _assigned(tree, classes)
    if not isinstance(value, ast.Tuple | ast.List):
        raise LookupError(classes)
    where = {
        a.asname or a.name: n.module
        for n in tree.body
        if isinstance(n, ast.ImportFrom) and n.module
        for a in n.names
    }
    names = []
    for elt in value.elts:
        if not isinstance(elt, ast.Name):
            raise LookupError(classes)
        source = _tree(where[elt.id])
        cls = next(n for n in source.body if isinstance(n, ast.ClassDef) and n.name == elt.id)
        value_of = _assigned(ast.Module(body=cls.body, type_ignores=[]), attr)
        if value_of is None:
            raise LookupError(elt.id)
        names.append(ast.literal_eval(value_of))
    return names


@cache
def registry(module: str, name: str) -> tuple[str, ...]:
    """The names of a registry: ``polytask.balancing.METHODS`` (a dict literal), or one
    of :data:`BUILT_FROM_CLASSES` (a tuple of classes, each naming itself)."""
    try:
        if (module, name) in BUILT_FROM_CLASSES:
            classes, attr = BUILT_FROM_CLASSES[module, name]
            return tuple(_class_names(module, classes, attr))
        return tuple(_dict_keys(module, name))
    except (LookupError, StopIteration, ValueError, SyntaxError, OSError):
        return tuple(getattr(importlib.import_module(module), name))


@cache
def defaults(module: str, function: str) -> dict[str, Any]:
    """A function's literal keyword defaults, read from its source."""
    try:
        fn = next(
            n for n in _tree(module).body if isinstance(n, ast.FunctionDef) and n.name == function
        )
        args = fn.args.args[len(fn.args.args) - len(fn.args.defaults) :]
        return {a.arg: ast.literal_eval(d) for a, d in zip(args, fn.args.defaults, strict=True)}
    except (StopIteration, ValueError, SyntaxError, OSError):
        import inspect

        sig = inspect.signature(getattr(importlib.import_module(module), function))
        return {k: v.default for k, v in sig.parameters.items()}
