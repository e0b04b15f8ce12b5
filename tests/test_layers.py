"""The package's layers import only downward, and no module imports itself back through others.

Every import statement of every module under src/brainseg is read from its syntax tree,
those inside functions and `if TYPE_CHECKING:` blocks included. Each module belongs to
the layer of its sub-package (or, for a module at the top of the package, of its own
name), and may import only modules of its own layer or of a lower one. On top of that,
the graph of imports between modules must have no cycle, and no module imports another
module's private (`_name`) names.

Where the design guide draws two packages side by side (data and models; training and
evaluation), one of them uses the other, and the order below fixes that direction:
models read the label regions of `data.labels`, and training validates with the metrics
of `evaluation.metrics`; data never imports models, evaluation never imports training.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "src" / "brainseg"

#: Lowest first. A module may import its own layer and the layers before it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("brainseg", "errors", "params"),  # the bottom: nothing of brainseg but each other
    ("io",),  # NIfTI, atomic writes, hashing, fetching, folder listing
    ("runtime", "parallel", "tracking", "runlock"),  # device, threads, seeding; process pool;
    # MLflow; the lock Snakemake and DVC refuse each other by
    ("data",),  # layouts, sources, labels, preprocessing, the synthetic cohort
    ("models",),  # networks, output modes, the batched-logits loop
    ("evaluation",),  # checkpoints, inference, metrics, post-processing, evaluate, predict
    ("training",),  # the training loop (validates with evaluation's metrics)
    ("reporting",),  # figures, realism
    ("cli", "__main__", "init_tracking"),  # the command line
)
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """Rank of a module `brainseg[.<part>[...]]` in `LAYERS`."""
    parts = module.split(".")
    part = parts[1] if len(parts) > 1 else parts[0]
    if part not in RANK:
        raise AssertionError(f"{module}: not in any layer of tests/test_layers.py (add it)")
    return RANK[part]


def imported(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """The brainseg modules an AST imports (`from brainseg.x import y` gives brainseg.x.y
    when that is a module, else brainseg.x)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "brainseg")
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "brainseg":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return found


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[name] = imported(tree, name, path.name == "__init__.py") - {name}
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """'a (layer) imports b (higher layer)' for every import against the order."""
    bad = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if layer_of(target) > layer_of(module):
                bad.append(f"{module} (layer {layer_of(module)}: {LAYERS[layer_of(module)]}) "
                           f"imports {target} (layer {layer_of(target)}: "
                           f"{LAYERS[layer_of(target)]})")
    return bad


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    edges = {m: {t for t in ts if t in graph} for m, ts in graph.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_module_imports_a_higher_layer():
    bad = upward_imports(import_graph())
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def private_imports(tree: ast.AST) -> list[str]:
    """`module._name` for every `from brainseg.module import _name` (a leading underscore
    says the name is no other module's business: what two modules share is public)."""
    return [f"{node.module}.{alias.name}" for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("brainseg")
            for alias in node.names
            if alias.name.startswith("_") and not alias.name.startswith("__")]


def test_no_module_imports_another_modules_private_names():
    bad = {name: private_imports(ast.parse(path.read_text())) for name, path in MODULES.items()}
    bad = {name: found for name, found in bad.items() if found}
    assert not bad, f"private names imported: {bad}"


def test_the_checks_catch_what_they_are_for():
    """The two checks on made-up graphs: an upward import, and a cycle inside one layer."""
    upward = {"brainseg.io.nifti": {"brainseg.data.layouts"}, "brainseg.data.layouts": set()}
    assert upward_imports(upward) == [
        "brainseg.io.nifti (layer 1: ('io',)) imports brainseg.data.layouts "
        "(layer 3: ('data',))"]
    loop = {"brainseg.data.a": {"brainseg.data.b"}, "brainseg.data.b": {"brainseg.data.a"}}
    assert find_cycle(loop) == ["brainseg.data.a", "brainseg.data.b", "brainseg.data.a"]
    assert find_cycle({"brainseg.data.a": {"brainseg.data.b"}, "brainseg.data.b": set()}) is None
    tree = ast.parse("from brainseg.data.synthetic.anatomy import _MASS_SIGMA, draw_transform")
    assert private_imports(tree) == ["brainseg.data.synthetic.anatomy._MASS_SIGMA"]


@pytest.mark.parametrize("source, expected", [
    ("from brainseg.data import labels", {"brainseg.data.labels"}),
    ("from brainseg.data.labels import REGIONS", {"brainseg.data.labels"}),
    ("def f():\n    import brainseg.io.nifti", {"brainseg.io.nifti"}),
    ("if TYPE_CHECKING:\n    from . import lesions", {"brainseg.data.synthetic.lesions"}),
])
def test_imports_are_read_from_everywhere_in_a_module(source, expected):
    got = imported(ast.parse(source), "brainseg.data.synthetic.anatomy", is_package=False)
    assert got == expected
