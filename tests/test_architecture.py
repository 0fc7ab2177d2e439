"""The shape of the house (docs/architecture.md): every part of ``pix2pix_tr/``, ``evaluation/`` and
``experiments/`` has a layer, imports point only to lower layers, and no module imports another in a cycle.

Imports are read from the source (``ast``), lazy ones inside functions included, so a test fails at the import
that breaks the order rather than somewhere downstream. A new module or sub-package must be given a layer here
and a line in docs/architecture.md."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("pix2pix_tr", "evaluation", "experiments")

# The layers, lowest first. A unit is a sub-package or a top-level module of pix2pix_tr, or a whole top-level
# package (evaluation, experiments). A unit may import units of strictly lower layers only.
LAYERS: dict[str, int] = {
    # 0: foundations that import nothing of ours (optim is the standalone torch.optim library)
    "pix2pix_tr.optim": 0,
    "pix2pix_tr.io": 0,
    "pix2pix_tr.cityscapes_labels": 0,
    "pix2pix_tr.safe_load": 0,
    "pix2pix_tr.results_folder": 0,
    # 1: shared helpers over the foundations
    "pix2pix_tr._torch_compat": 1,
    "pix2pix_tr.cli": 1,
    "pix2pix_tr.paths": 1,
    "pix2pix_tr.steps": 1,
    # 2: the parts: networks, data, HTML reports
    "pix2pix_tr.models": 2,
    "pix2pix_tr.data": 2,
    "pix2pix_tr.report": 2,
    # 3: the one option definition every entry point shares
    "pix2pix_tr.options": 3,
    # 4: the applications
    "pix2pix_tr.training": 4,
    "pix2pix_tr.inference": 4,
    # 5: the top: the package's public face (lazy Translator), the demo, the FCN-score, the experiments
    "pix2pix_tr": 5,
    "pix2pix_tr.demo": 5,
    "evaluation": 5,
    "experiments": 5,
}

# Sideways rules the layers alone do not express.
FORBIDDEN = {
    # evaluation/ scores any generator's photos: it depends on no network, data, training or inference code
    "evaluation": {"pix2pix_tr.models", "pix2pix_tr.data", "pix2pix_tr.training", "pix2pix_tr.inference",
                   "pix2pix_tr.options", "pix2pix_tr.report", "experiments"},
    # the experiments build their own small models; the pix2pix runs go through the commands (subprocesses)
    "experiments": {"pix2pix_tr.training", "pix2pix_tr.inference", "evaluation"},
    "pix2pix_tr.demo": {"pix2pix_tr.training", "pix2pix_tr.inference", "evaluation"},
}


def _modules() -> dict[str, Path]:
    mods = {}
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The modules of ours that ``name`` imports anywhere in its source (resolved to files that exist)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in mods:
                target = target.rsplit(".", 1)[0] if "." in target else ""
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def unit_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "pix2pix_tr" and len(parts) > 1:
        return f"pix2pix_tr.{parts[1]}"
    return parts[0]


MODS = _modules()
EDGES = {name: _imports(name, path, MODS) for name, path in MODS.items()}


def test_every_part_has_a_layer():
    units = {unit_of(m) for m in MODS}
    missing = sorted(units - set(LAYERS))
    assert not missing, f"give these a layer in tests/test_architecture.py and a line in docs/architecture.md: {missing}"
    gone = sorted(set(LAYERS) - units)
    assert not gone, f"LAYERS names parts that no longer exist: {gone}"


@pytest.mark.parametrize("module", sorted(MODS))
def test_imports_point_down(module):
    here = unit_of(module)
    wrong = []
    for target in sorted(EDGES[module]):
        there = unit_of(target)
        if there == here:
            continue
        if LAYERS[there] >= LAYERS[here]:
            wrong.append(f"{target} (layer {LAYERS[there]}, not below {here}'s {LAYERS[here]})")
        elif there in FORBIDDEN.get(here, ()):
            wrong.append(f"{target} ({here} must not depend on {there})")
    assert not wrong, f"{module} imports upward or sideways: {'; '.join(wrong)}"


def test_no_import_cycles():
    """No cycle among the modules, counting lazy imports (a package's import of its own sub-modules and a
    sub-module's of its package are not edges: Python resolves those without a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in EDGES[v]:
            if w.startswith(v + "."):
                continue
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
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(MODS):
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def test_the_check_would_catch_an_upward_import(tmp_path):
    """The reader resolves relative, absolute and lazy imports: a module of models/ importing training lazily
    is seen as an edge to pix2pix_tr.training."""
    path = tmp_path / "bad.py"
    path.write_text("def f():\n    from ..training import loop\n    import pix2pix_tr.inference.run\n")
    found = _imports("pix2pix_tr.models.bad", path, {**MODS, "pix2pix_tr.models.bad": path})
    assert {"pix2pix_tr.training.loop", "pix2pix_tr.inference.run"} <= found
    assert all(LAYERS[unit_of(t)] > LAYERS["pix2pix_tr.models"] for t in found)


def test_architecture_page_names_every_part():
    page = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [u for u in LAYERS if f"`{u.removeprefix('pix2pix_tr.') if u != 'pix2pix_tr' else u}" not in page
               and f"`{u}" not in page]
    assert not missing, f"docs/architecture.md does not describe: {missing}"
