"""The package's layout: no import cycles, counting imports inside functions and under
TYPE_CHECKING; nothing imports the package root; the layers the tree names."""

from __future__ import annotations

import ast
from pathlib import Path

import mfollow

ROOT = Path(mfollow.__file__).parent
LAYERS = ("cli", "edit", "sampling", "models", "weights", "preprocess", "io", "metrics", "training", "synth",
          "report", "runtime", "comfy")  # fmt: skip


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its text (functions, TYPE_CHECKING
    blocks included). ``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to
    ``a.b``."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolved against the importing module's package
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    if full in mods:
                        graph[name].add(full)
                    elif base in mods:
                        graph[name].add(base)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycles() -> None:
    assert cycles(import_graph(modules())) == []


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from a import x\n")
    (tmp_path / "c.py").write_text("import a\n")
    graph = import_graph({"a": tmp_path / "a.py", "b": tmp_path / "b.py", "c": tmp_path / "c.py"})
    assert graph == {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert cycles(graph) == [["a", "b"]]


def test_nothing_inside_imports_the_package_root() -> None:
    graph = import_graph(modules())
    assert sorted(m for m, deps in graph.items() if "mfollow" in deps and m != "mfollow") == []


def test_the_top_level_is_the_layers() -> None:
    top = sorted(p.name for p in ROOT.iterdir() if (p.suffix == ".py" or (p / "__init__.py").is_file()))
    assert top == sorted(["__init__.py", "__main__.py", "version.py", *LAYERS])


def test_every_citation_in_the_package_resolves_inside_the_repository() -> None:
    """Docstrings cite docs/*.md (and sections of docs/method.md); each must exist."""
    import re

    docs = ROOT.parent / "docs"
    sections = set(re.findall(r"^## (\d+)\. ", (docs / "method.md").read_text(encoding="utf-8"), re.M))
    cited: set[str] = set()
    for path in ROOT.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"design §|reference §|shared/reference", text), path
        cited |= set(re.findall(r"docs/[\w.-]+\.md", text))
        for number in re.findall(r"docs/method\.md, §(\d+)", text):
            assert number in sections, (path, number)
    assert cited and all((ROOT.parent / c).is_file() for c in cited), sorted(
        c for c in cited if not (ROOT.parent / c).is_file()
    )


def test_the_tests_mirror_the_layers() -> None:
    tests = Path(__file__).parent
    folders = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert folders - {"golden"} <= set(LAYERS)
    assert all(any(folder.glob("test_*.py")) for folder in (tests / name for name in folders - {"golden"}))
