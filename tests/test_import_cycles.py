"""The package's import graph has no cycles: every module-level *and* function-level import of a transferkit
module is an edge, so a deferred import that only hides a cycle from Python still fails here.

Parsed with ``ast`` (nothing is imported, so this stays fast). Edges:

* ``import transferkit.a.b`` / ``from transferkit.a import b`` / ``from ..a import b`` (any depth), wherever they
  appear in a module, including inside functions, classes and ``if TYPE_CHECKING:`` blocks;
* ``from PKG import name`` is an edge to the submodule ``PKG.name`` when one exists, else to ``PKG``;
* an import of a package is an edge to its ``__init__``.

The parent packages' ``__init__`` modules, which Python runs before a submodule, are not edges. A strongly
connected component of more than one module, or a module that imports itself, is a cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "transferkit"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module under src/transferkit (packages as their ``__init__``)."""
    mods = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve_from(module: str, path: Path, node: ast.ImportFrom) -> str | None:
    """The absolute module a ``from X import ...`` names (None when it is not transferkit's)."""
    if node.level == 0:
        base = node.module or ""
    else:
        package = module.split(".") if _is_package(path) else module.split(".")[:-1]
        if node.level - 1 > len(package):
            raise AssertionError(f"{path}: relative import beyond the top-level package (line {node.lineno})")
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    return base if base == PACKAGE or base.startswith(PACKAGE + ".") else None


def _known(name: str, mods: dict[str, Path]) -> str | None:
    """``name`` or its nearest enclosing module that exists (``a.b.attr`` -> ``a.b``)."""
    while name:
        if name in mods:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name == PACKAGE or a.name.startswith(PACKAGE + ".")]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve_from(module, path, node)
                if base is None:
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if alias.name != "*" and sub in mods else base)
            for t in targets:
                known = _known(t, mods)
                assert known is not None, f"{path}: imports {t!r}, which is not a module of {PACKAGE}"
                graph[module].add(known)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): every strongly connected component, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    out.append(sorted(comp))
    return out


def _describe(comp: list[str], graph: dict[str, set[str]]) -> str:
    members = set(comp)
    edges = [f"    {a} -> {b}" for a in comp for b in sorted(graph[a] & members)]
    return f"  cycle of {len(comp)} module(s): {', '.join(comp)}\n" + "\n".join(edges)


def test_the_graph_is_read():
    graph = import_graph()
    assert f"{PACKAGE}.backbones" in graph[f"{PACKAGE}.ranking.rank"]        # a function-level relative import
    assert f"{PACKAGE}.errors" in graph[f"{PACKAGE}.registry"]               # a module-level one
    assert f"{PACKAGE}.ranking.auto" in graph[f"{PACKAGE}.strategies.auto"]  # "from ..ranking import auto"


def test_no_import_cycles():
    graph = import_graph()
    cycles = [c for c in strongly_connected(graph) if len(c) > 1 or c[0] in graph[c[0]]]
    assert not cycles, "import cycles in src/transferkit:\n" + "\n".join(_describe(c, graph) for c in cycles)


# Layers that once closed a cycle: the lower module (or package) must not import the upper ones, not even lazily.
FORBIDDEN = {
    "ranking": ("strategies", "runs", "pipeline", "config"),
    "backbones": ("runs",),
    "config": ("strategies", "backbones", "engine", "features"),
    "features": ("strategies", "engine", "ranking", "runs", "pipeline"),
    "features.identity": ("",),  # a leaf: nothing of transferkit
}


def _under(module: str, prefix: str) -> bool:
    name = f"{PACKAGE}.{prefix}" if prefix else PACKAGE
    return module == name or module.startswith(name + ".")


def test_lower_layers_do_not_import_upper_ones():
    graph = import_graph()
    bad = [f"{m} -> {t}" for low, ups in FORBIDDEN.items() for m in sorted(graph) if _under(m, low)
           for t in sorted(graph[m]) for up in ups if _under(t, up)]
    assert not bad, "imports that point up:\n" + "\n".join(bad)


def test_the_detector_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}, "e": {"a"}}
    comps = strongly_connected(graph)
    assert ["a", "b", "c"] in comps and ["d"] in comps and ["e"] in comps
