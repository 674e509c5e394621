"""The package's import arrows, read from the source with ``ast``: every arrow points down a
layer (or within one), and no import cycle exists. Lazy imports inside functions count (they are
arrows all the same); imports under ``if TYPE_CHECKING:`` do not (they never run).

Layers (README, "How the code is laid out"): 1 pure arithmetic and statistics, 2 model and
adapters, 3 tasks and analysis, 4 presentation; ``langarith/bundle/`` builds the bundle and may
use all of them, and nothing outside it imports it. A new module must be given its layer here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "langarith"

LAYERS = {
    "langarith": 0, "langarith.__init__": 0,
    "langarith.arithmetic": 1, "langarith.stats": 1, "langarith.cache": 1, "langarith.paths": 1,
    "langarith.model": 2, "langarith.loading": 2, "langarith.encoder": 2, "langarith.profiles": 2, "langarith.hosting": 2,
    "langarith.trust": 2, "langarith.lock": 2,
    "langarith.tasks": 3, "langarith.ner": 3, "langarith.qa": 3, "langarith.results": 3,
    "langarith.beyond": 3, "langarith.typology": 3, "langarith.reproduce": 3,
    "langarith.analysis": 3, "langarith.share": 3, "langarith.lambda_rules": 3,
    "langarith.mlm_texts": 3, "langarith.head_entropy": 3, "langarith.task_kinds": 3,
    "langarith.classroom": 3, "langarith.opening_curves": 3,
    "langarith.plots": 4, "langarith.cli": 4,
    "langarith.__main__": 4,
}
PREFIX_LAYERS = {"langarith.page": 4, "langarith.bundle": 5}  # packages: every module in them
# Cycles tolerated while they are being removed: none left (the page package replaced the old
# page modules and their cycle). An entry whose modules are gone is ignored.
KNOWN_CYCLES: list[set[str]] = []


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(mod: str) -> int:
    if mod in LAYERS:
        return LAYERS[mod]
    for prefix, n in PREFIX_LAYERS.items():
        if mod == prefix or mod.startswith(prefix + "."):
            return n
    raise AssertionError(f"{mod} has no layer: add it to LAYERS in tests/test_layers.py")


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:``."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports (``from . import x`` names module ``x``)."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_blocks(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "langarith"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "langarith":
                target = node.module
            else:
                continue
            for a in node.names:  # `from pkg import module` imports the module itself
                found.add(f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target)
    return {m for m in found if m in modules and m != mod}


def graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imports_of(f, modules) for f in files}


def cycles(g: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, on, stack, out, n = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_reader_sees_relative_lazy_and_absolute_imports():
    g = graph()
    assert "langarith.model" in g["langarith.tasks"]  # from .model import ...
    assert "langarith.bundle.tagging" in g["langarith.bundle.build"]  # from . import tagging (lazy)
    assert "langarith.bundle.context" not in g["langarith.bundle.tagging"]  # TYPE_CHECKING only
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_every_module_has_a_layer_and_no_arrow_points_up():
    g = graph()
    up = [f"{a} (layer {layer(a)}) -> {b} (layer {layer(b)})"
          for a, deps in sorted(g.items()) for b in sorted(deps) if layer(b) > layer(a)]
    assert not up, "imports pointing up a layer:\n" + "\n".join(up)


def test_no_import_cycle():
    g = graph()
    found = cycles(g)
    known = [c for c in KNOWN_CYCLES if c <= set(g)]
    new = [c for c in found if c not in known]
    assert not new, f"import cycles: {new}"


def test_the_bundle_build_is_acyclic_and_its_stages_share_constants_not_each_other():
    g = graph()
    for mod in ("langarith.bundle.tagging", "langarith.bundle.lowres", "langarith.bundle.context",
                "langarith.bundle.constants"):
        assert "langarith.bundle.build" not in g[mod], mod
    assert g["langarith.bundle.constants"] <= {"langarith.bundle.corpus"}
    assert "langarith.cli" not in g["langarith.bundle.report"]


def summary() -> str:
    """The tree by layer with line counts, and the arrows between layers and page modules:
    ``python tests/test_layers.py`` (what the README's layout section and issue notes quote)."""
    g = graph()
    lines = {module_name(f): len(f.read_text(encoding="utf-8").splitlines())
             for f in sorted(PACKAGE.rglob("*.py"))}
    names = {0: "package", 1: "1 arithmetic, statistics", 2: "2 model, adapters", 3: "3 tasks, analysis",
             4: "4 presentation", 5: "bundle build"}
    out = []
    for n, title in names.items():
        mods = sorted(m for m in g if layer(m) == n)
        out.append(f"{title}: {sum(lines[m] for m in mods):,} lines in {len(mods)} modules")
        out += [f"  {m.removeprefix('langarith.')} {lines[m]}" for m in mods]
    arrows: dict[tuple[int, int], int] = {}
    for a, deps in g.items():
        for b in deps:
            arrows[layer(a), layer(b)] = arrows.get((layer(a), layer(b)), 0) + 1
    out.append("import arrows between layers (from -> to: count):")
    out += [f"  {names[a]} -> {names[b]}: {k}" for (a, b), k in sorted(arrows.items()) if a != b]
    page = sorted(m for m in g if m.startswith("langarith.page."))
    inner = [f"  {a.split('.')[-1]} -> {b.split('.')[-1]}" for a in page for b in sorted(g[a]) if b in page]
    out.append("arrows inside the page package:")
    out += inner
    out.append(f"import cycles: {len(cycles(g))}")
    return "\n".join(out)


if __name__ == "__main__":
    print(summary())
