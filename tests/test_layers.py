"""The package's layers (docs/architecture.md): each module imports only from its own layer or
the layers below it, and no module imports, directly or through others, back into itself.

Imports are read from the source (every ``import`` statement, including those inside
functions), so a lazy import counts: it is still a dependency. Imports under
``if TYPE_CHECKING:`` are annotations only and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fdp_kernel"

# Lowest first. A module belongs to the layer of the longest prefix that names it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "fdp_kernel.version",
            "fdp_kernel.errors",
            "fdp_kernel.identifiers",
            "fdp_kernel.codes",
            "fdp_kernel.catalog",
            "fdp_kernel.progress",
            "fdp_kernel.stores",
            "fdp_kernel.engines.registry",
        ),
    ),
    ("governance", ("fdp_kernel.governance", "fdp_kernel.config")),
    ("engines", ("fdp_kernel.engines",)),
    ("metrics", ("fdp_kernel.metrics",)),
    ("presentation", ("fdp_kernel.viz", "fdp_kernel.workbench.catalogue")),
    (
        "workspace",
        (
            "fdp_kernel.workspace",
            "fdp_kernel.federation",
            "fdp_kernel.service",
            "fdp_kernel.connection",
            "fdp_kernel",
        ),
    ),
    (
        "applications",
        (
            "fdp_kernel.figures",
            "fdp_kernel.workbench",
            "fdp_kernel.reports",
            "fdp_kernel.transparency",
            "fdp_kernel.ingest",
            "fdp_kernel.synth",
            "fdp_kernel.placement",
        ),
    ),
    ("cli", ("fdp_kernel.cli",)),
]
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}
# What the issue names outright: governance and engines never reach the layers people use.
NEVER = {
    "governance": (
        "fdp_kernel.figures",
        "fdp_kernel.reports",
        "fdp_kernel.workbench",
        "fdp_kernel.cli",
    ),
    "engines": (
        "fdp_kernel.figures",
        "fdp_kernel.reports",
        "fdp_kernel.workbench",
        "fdp_kernel.cli",
    ),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    best, layer = -1, None
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), name
    assert layer is not None, f"{module} is in no layer: add it to LAYERS"
    return layer


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The fdp_kernel modules a file imports (``from fdp_kernel import codes`` is the module
    ``fdp_kernel.codes``; a name that is not a module is its package)."""
    out: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "fdp_kernel"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "fdp_kernel":
                continue
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in known else node.module)
    return {m for m in out if m in known}


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (annotations, not imports)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            test = getattr(child, "test", None)
            if isinstance(child, ast.If) and getattr(test, "id", "") == "TYPE_CHECKING":
                continue
            todo.append(child)


GRAPH = {name: imports_of(path, set(modules())) - {name} for name, path in modules().items()}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_a_module_imports_only_its_layer_or_lower(module):
    mine = layer_of(module)
    upward = sorted(m for m in GRAPH[module] if RANK[layer_of(m)] > RANK[mine])
    assert not upward, f"{module} ({mine}) imports a higher layer: {upward}"
    banned = sorted(
        m for m in GRAPH[module] for p in NEVER.get(mine, ()) if m == p or m.startswith(p + ".")
    )
    assert not banned, f"{module} ({mine}) imports {banned}"


def test_no_import_cycle_in_the_package():
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)


def test_every_module_is_in_a_layer():
    for module in GRAPH:
        layer_of(module)
