"""The house rules of the package layout, read from every ``import`` in ``kosearch/``.

Imports inside functions count; imports under ``if TYPE_CHECKING:`` do not (they never run).
The layers and their allowed imports are ../shared/DESIGN.md's (kept in sync with ALLOWED).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kosearch"

# unit -> the units it may import (a unit is a subpackage or a top-level module of kosearch).
_BASE = {"errors", "types", "settings", "_version", "lazy", "_batched"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "_version": set(),
    "lazy": set(),
    "_batched": set(),
    "types": {"errors"},
    "settings": {"errors", "types"},
    # the stages of the data flow
    "lexical": _BASE,
    "ingest": _BASE | {"lexical"},  # Kiwi (lexical.kiwi) splits Korean sentences
    "encoding": _BASE,
    "storage": _BASE | {"lexical"},  # an index's parts include its BM25 part
    "retrieval": _BASE | {"storage", "lexical", "encoding"},
    "build": _BASE | {"ingest", "encoding", "storage", "lexical"},
    # the facade and the policy shared by every front end
    "index": _BASE | {"build", "retrieval", "storage", "encoding", "lexical"},
    "operations": _BASE | {"index", "build", "storage", "encoding", "lexical"},
    # front ends over the facade
    "eval": _BASE | {"index", "retrieval", "encoding", "ingest", "storage"},
    # fine-tuning: reads eval data, measures with the eval runner, mines with an index
    "train": _BASE | {"encoding", "eval", "index", "ingest", "storage"},
    "serving": _BASE | {"index", "operations"},
    "integrations": _BASE | {"index", "retrieval"},
    "cli": _BASE | {"index", "operations", "eval", "train", "serving", "encoding", "storage",
                    "ingest"},
    "__init__": _BASE | {"index"},
    "__main__": {"cli"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, modules: set[str]) -> Iterator[str]:
    """The kosearch modules ``module`` imports at run time (top level and in functions)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("kosearch"):
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = module.split(".")[: -node.level] if node.level else []
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            if base.startswith("kosearch"):
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    yield sub if sub in modules else base
        stack.extend(ast.iter_child_nodes(node))


def _graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(f) for f in files}
    graph: dict[str, set[str]] = {}
    for file in files:
        name = _module_name(file)
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        graph[name] = {m for m in _imports(tree, name, modules) if m != name}
    return graph


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


GRAPH = _graph()


def test_every_module_is_read() -> None:
    assert {"kosearch.index", "kosearch.cli", "kosearch.storage.manifest"} <= set(GRAPH)
    assert "kosearch.storage.layout" in GRAPH["kosearch.storage.manifest"]


def test_no_import_cycles() -> None:
    """Depth-first search over module imports; a back edge is a cycle."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> None:
        path.append(module)
        for dep in sorted(GRAPH.get(module, ())):
            if dep == "kosearch" or dep.startswith(f"{module}."):
                continue  # the package face, and a package importing its own modules
            if dep in path:
                cycle = path[path.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in done:
                visit(dep)
        path.pop()
        done.add(module)

    for module in sorted(GRAPH):
        if module not in done:
            visit(module)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_follow_the_layers(module: str) -> None:
    unit = _unit(module)
    assert unit in ALLOWED, f"{module}: add its unit {unit!r} to ALLOWED and to DESIGN.md"
    for dep in sorted(GRAPH[module]):
        target = _unit(dep)
        if target == unit:
            continue
        assert target in ALLOWED[unit], (
            f"{module} imports {dep}: {unit} may import only {sorted(ALLOWED[unit])}"
        )


def test_nothing_imports_the_front_ends_or_the_package_face() -> None:
    front = {"cli", "serving", "integrations"}
    for module, deps in GRAPH.items():
        for dep in deps:
            if _unit(dep) in front:
                assert _unit(module) in front | {"__main__"}, f"{module} imports {dep}"
            if dep == "kosearch":
                assert _unit(module) in {"__main__", "integrations"}, (
                    f"{module} imports the package face; import the defining module"
                )


def test_storage_never_imports_encoding() -> None:
    for module, deps in GRAPH.items():
        if _unit(module) == "storage":
            assert not [d for d in deps if _unit(d) == "encoding"], module


def test_the_rule_checker_sees_a_violation(tmp_path: Path) -> None:
    """A self-check: an import inside a function is found, one under TYPE_CHECKING is not."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from kosearch.cli import cli\n"
        "def f():\n    from kosearch.index import Index\n"
    )
    found = set(_imports(ast.parse(source), "kosearch.storage.x", {"kosearch.index"}))
    assert found == {"kosearch.index"}


def test_the_public_surface_resolves_and_covers_the_facade_signatures() -> None:
    import inspect

    import kosearch
    from kosearch.index import Index

    for name in kosearch.__all__:
        assert getattr(kosearch, name) is not None, name
    # every kosearch type named in a public Index signature is exported by the package face
    public = {n for n, _ in inspect.getmembers(Index) if not n.startswith("_")}
    named: set[str] = set()
    for member in public:
        func = getattr(Index, member)
        hints = getattr(func, "__annotations__", {}) if callable(func) else {}
        for hint in hints.values():
            named |= {w for w in str(hint).replace("|", " ").replace("[", " ").replace("]", " ")
                      .replace(",", " ").split() if w[:1].isupper()}
    def defined_in(module: object, name: str) -> bool:
        value = vars(module).get(name)
        return getattr(value, "__module__", None) == module.__name__  # type: ignore[attr-defined]

    ours = {n for n in named if defined_in(kosearch.types, n) or defined_in(kosearch.settings, n)
            or n in {"Encoder", "Reranker", "Index"}}
    assert ours and ours <= set(kosearch.__all__), sorted(ours - set(kosearch.__all__))
