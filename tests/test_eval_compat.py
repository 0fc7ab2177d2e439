"""The seams with other tools: results recorded at different sizes, numbered (official pix2pix) file names,
and ``import evaluation.metrics`` staying free of torch and OpenCV."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from evaluation import compare_runs
from evaluation.common import MissingFramesError
from evaluation.fcn_score import match_frames


def _results(folder, **extra):
    folder.mkdir(parents=True)
    body = {"scores": {"per_pixel_acc": 0.5, "per_class_acc": 0.25, "class_iou": 0.125}, "protocol": "pix2pix",
            "convention": "cityscapes", "num_frames": 4, "scorer": {"sha256": "ab" * 32}, **extra}
    (folder / "evaluation_results.json").write_text(json.dumps(body))
    return folder


def test_compare_runs_warns_when_rows_were_scored_at_different_sizes(tmp_path):
    a = _results(tmp_path / "a", synthesized_size=[256, 256])
    b = _results(tmp_path / "b", synthesized_size=[128, 128])
    c = _results(tmp_path / "c", synthesized_size=[256, 256])
    old = _results(tmp_path / "old")  # written before the size was recorded: not compared
    table, warnings = compare_runs.compare_table([a, b], ["A", "B"])
    assert "| A | 0.500 | 0.250 | 0.125 |" in table
    assert warnings == ["rows differ in synthesized size (A: [256, 256], B: [128, 128]); they are not directly "
                        "comparable"]
    assert compare_runs.compare_table([a, c, old])[1] == []


def test_numbered_official_file_names_get_one_sentence_on_frame_names(tmp_path):
    fake = {str(i): tmp_path / f"{i}_fake_B.png" for i in range(3)}  # what the official preparation produces
    gt = {"aachen_000000_000019": tmp_path / "x.png"}
    with pytest.raises(MissingFramesError) as info:
        match_frames(fake, gt, result_dir=tmp_path, cityscapes_dir=tmp_path, split="val", allow_subset=False)
    message = str(info.value)
    assert "named like 0_fake_B.png, not by Cityscapes frame" in message
    assert "python datasets/prepare_cityscapes_dataset.py --gtFine_dir" in message and "\n" not in message
    # frame-named photos keep the ordinary message listing what is missing
    with pytest.raises(MissingFramesError, match="have no ground truth"):
        match_frames({"bonn_000000_000019": tmp_path}, gt, result_dir=tmp_path, cityscapes_dir=tmp_path,
                     split="val", allow_subset=False)


def test_importing_the_metrics_loads_neither_torch_nor_opencv():
    code = ("import sys, evaluation.metrics, evaluation.labels; "
            "print(sorted(m for m in ('torch', 'cv2', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------------------------- import layering
#: What evaluation/ may use from pix2pix_tr: file, label, CLI and path helpers; never models/, training/, data/...
ALLOWED_FROM_PIX2PIX_TR = {"pix2pix_tr.io", "pix2pix_tr.cityscapes_labels", "pix2pix_tr.cli", "pix2pix_tr.paths",
                           "pix2pix_tr.safe_load", "pix2pix_tr.results_folder"}


def _imports_of(path):
    """Every module a file imports, at module level or inside functions (absolute names)."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _evaluation_graph():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "evaluation"
    modules = {f"evaluation.{p.stem}": p for p in root.glob("*.py") if p.stem != "__init__"}
    return {name: {m for m in _imports_of(path) if m in modules} for name, path in modules.items()}, modules


def test_evaluation_imports_point_one_way():
    """No import cycle inside evaluation/ (functions' lazy imports included), common.py imports only the labels,
    and nothing from pix2pix_tr but the helpers listed above (DESIGN.md: evaluation depends on nothing else)."""
    graph, modules = _evaluation_graph()
    assert graph["evaluation.common"] <= {"evaluation.labels"}
    state: dict[str, int] = {}

    def visit(name, stack):
        state[name] = 1
        for dep in sorted(graph[name]):
            assert state.get(dep) != 1, f"import cycle: {' -> '.join(stack + [name, dep])}"
            if dep not in state:
                visit(dep, stack + [name])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    for name, path in modules.items():
        used = {m for m in _imports_of(path) if m.split(".")[0] == "pix2pix_tr"}
        bad = {m for m in used if not any(m == a or m.startswith(a + ".") for a in ALLOWED_FROM_PIX2PIX_TR)}
        assert not bad, f"{name} imports {sorted(bad)} from pix2pix_tr"


def test_each_command_has_its_own_entry_point():
    """pyproject's console scripts point at the command's own module, and ``python -m`` reaches the same code."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    scripts = dict(re.findall(r'^(pix2pix-tr-[\w-]+) = "([\w.:]+)"$', text, re.M))
    assert scripts["pix2pix-tr-fcn-score"] == "evaluation.fcn_score:command"
    assert scripts["pix2pix-tr-train-scorer"] == "evaluation.train_scorer:command"
    for module in ("fcn_score", "train_scorer", "sanity_check", "compare_runs"):
        proc = subprocess.run([sys.executable, "-m", f"evaluation.{module}", "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and f"python -m evaluation.{module}" in proc.stdout, module
