"""The module graph of lnn flows one way (issue 17): no cycles, no imports of another module's private names, no
upward imports against the declared layering below, and no course code imported by the library.

The graph is read from the source (the AST of every module under lnn/, imports inside functions included), so the
test needs no import of torch. ``python tests/test_import_graph.py`` prints the graph (which module imports which).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "lnn"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# The layering, lowest first. A module may import modules of its own layer or of a lower one. Modules not named
# here (the chapter toolboxes: regression, layers, ntk.*, explorer, ...) are in the "toolboxes" layer.
LAYERS: list[tuple[str, set[str]]] = [
    ("shared private helpers", {"lnn._checks", "lnn._linalg"}),
    ("models and objectives", {"lnn.network", "lnn.tensor", "lnn.metrics", "lnn.tasks"}),
    ("closed-form theory", {"lnn.theory"}),
    ("the training driver", {"lnn.dynamics"}),
    ("toolboxes", set()),  # everything not named elsewhere
    ("the flat public namespace", {"lnn"}),
]
DEFAULT_LAYER = "toolboxes"

# Private modules whose underscore names any module of lnn may import, with the reason.
SHARED_PRIVATE = {
    "lnn._checks": "input validation shared by every public entry point (one message style)",
    "lnn._linalg": "the thin-SVD fractional Gram powers shared by theory and its checks",
}

# Packages that lnn itself must never import (course code lives outside the library).
FORBIDDEN = ("lnn_course",)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def discover(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p): p for p in sorted(root.rglob("*.py")) if "__pycache__" not in p.parts}


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of ``from <level dots><target> import ...`` written in ``module``."""
    if level == 0:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str | None, int]]:
    """Every import in ``path``: (imported module, imported name or None, line)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, is_package, node.level, node.module)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in modules:  # `from . import network`: the submodule itself
                    found.append((sub, None, node.lineno))
                else:
                    found.append((source, alias.name, node.lineno))
    return found


def graph(modules: dict[str, Path] | None = None) -> dict[str, set[str]]:
    """Module -> the modules of lnn it imports."""
    modules = discover() if modules is None else modules
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for m, path in modules.items():
        for target, _, _ in imports_of(m, path, modules):
            if target in modules and target != m:
                edges[m].add(target)
    return edges


def layer_of(module: str) -> int:
    names = [name for name, _ in LAYERS]
    for i, (_, members) in enumerate(LAYERS):
        if module in members:
            return i
    return names.index(DEFAULT_LAYER)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def violations(modules: dict[str, Path] | None = None) -> list[str]:
    """Every breach of the rules, as readable lines (empty when the graph is clean)."""
    modules = discover() if modules is None else modules
    problems: list[str] = []
    for m, path in modules.items():
        for target, name, line in imports_of(m, path, modules):
            where = f"{path.relative_to(ROOT.parent)}:{line}"
            if target.split(".")[0] in FORBIDDEN:
                problems.append(f"{where}: {m} imports course code {target}")
            if target not in modules or target == m:
                continue
            if name and name.startswith("_") and not name.startswith("__") and target not in SHARED_PRIVATE:
                problems.append(f"{where}: {m} imports the private name {name} of {target}")
            if layer_of(target) > layer_of(m):
                problems.append(
                    f"{where}: upward import: {m} ({LAYERS[layer_of(m)][0]}) imports {target} "
                    f"({LAYERS[layer_of(target)][0]})"
                )
    # The package root imports every public name; everything else reaching the root would be a cycle or upward.
    cycle = find_cycle({m: {t for t in ts if t != PACKAGE or m == PACKAGE} for m, ts in graph(modules).items()})
    if cycle:
        problems.append("import cycle: " + " -> ".join(cycle))
    return problems


def test_the_module_graph_is_clean():
    problems = violations()
    assert not problems, "lnn's module graph breaks its rules:\n" + "\n".join(problems)


def test_every_layer_module_exists():
    # a renamed module must not silently drop out of the layering
    modules = discover()
    named = set().union(*(members for _, members in LAYERS))
    assert named <= set(modules), sorted(named - set(modules))


def test_the_checker_catches_each_kind_of_breach(tmp_path):
    # the test can fail: a small fake package with one breach of each kind
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .dynamics import run\n")
    (pkg / "_checks.py").write_text("def check(): pass\n")
    (pkg / "network.py").write_text("from ._checks import check\nfrom .dynamics import run\n")  # upward + cycle
    (pkg / "dynamics.py").write_text("from .network import _private\ndef run(): pass\n")  # private name
    (pkg / "theory.py").write_text("def f():\n    from . import dynamics\n")  # upward, inside a function
    (pkg / "sub" / "__init__.py").write_text("from ..network import _private\nimport lnn_course.checkers\n")
    global ROOT
    saved = ROOT
    ROOT = pkg
    try:
        problems = violations(discover(pkg))
    finally:
        ROOT = saved
    text = "\n".join(problems)
    assert "upward import: lnn.network (models and objectives) imports lnn.dynamics" in text
    assert "upward import: lnn.theory (closed-form theory) imports lnn.dynamics" in text
    assert "lnn.dynamics imports the private name _private of lnn.network" in text
    assert "lnn.sub imports the private name _private of lnn.network" in text
    assert "imports course code lnn_course.checkers" in text
    assert "import cycle: lnn.dynamics -> lnn.network -> lnn.dynamics" in text
    assert "_checks" not in text  # the shared private module is allowed


if __name__ == "__main__":
    for m, ts in sorted(graph().items()):
        print(f"{m:24s} -> {', '.join(sorted(ts)) or '-'}")
    print("\n".join(violations()) or "clean", file=sys.stderr)
