"""``pix2pix-tr-export``: ONNX (run by onnxruntime), TorchScript and exported programs equal PyTorch with test.py's
semantics, for batch 1 and 4, on random and real inputs; the documented onnxruntime snippet runs without us."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix_tr import Translator
from pix2pix_tr.inference.export import main
from pix2pix_tr.io import atomic_torch_save
from test_inference import NAME, _halves, make_run

REPO = Path(__file__).resolve().parents[1]
MISSING = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
needs_onnx = pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)} (pip install 'pix2pix-tr[export]')")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs (unet_64, ngf 8, batch norm, crop 64): with dropout, and trained with --no_dropout."""
    base = tmp_path_factory.mktemp("export")
    make_run(base / "checkpoints")
    make_run(base / "checkpoints", "nodrop", extra=("--no_dropout",))
    return base


def _export(base, name, fmt, output, *extra):
    code = main(["--name", name, "--checkpoints_dir", str(base / "checkpoints"), "--format", fmt, "--output",
                 str(output), *extra])
    assert code == 0
    return output


def _inputs(ab_root, translator):
    """Random and real batches of 1 and 4 (the real ones: the val label maps, prepared as test.py does)."""
    stems = sorted(p.stem for p in (ab_root / "val").glob("*.png"))
    real = torch.stack([translator.preprocess(Image.fromarray(np.ascontiguousarray(_halves(ab_root, s)[0])))
                        for s in stems])
    g = torch.Generator().manual_seed(7)
    return {"random_1": torch.rand(1, 3, 64, 64, generator=g) * 2 - 1,
            "random_4": torch.rand(4, 3, 64, 64, generator=g) * 2 - 1, "real_1": real[:1], "real_4": real[:4]}


@needs_onnx
@pytest.mark.parametrize("name, eval_mode", [(NAME, True), ("nodrop", False)], ids=["eval", "train_batch_stats"])
def test_onnx_matches_pytorch_on_random_and_real_inputs(runs, ab_root, tmp_path, capsys, name, eval_mode):
    import onnxruntime as ort

    path = _export(runs, name, "onnx", tmp_path / "g.onnx", *(["--eval"] if eval_mode else []))
    out = capsys.readouterr().out
    assert re.search(r"checked against PyTorch: max abs difference [\d.e-]+", out), out
    assert "input float32 (N, 3, 64, 64) in [-1, 1]" in out
    translator = Translator.from_run(runs / "checkpoints" / name, eval=eval_mode)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] not in (1, 2, 4)  # the batch axis is symbolic
    for label, x in _inputs(ab_root, translator).items():
        got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
        want = translator.forward(x)
        assert got.shape == want.shape == x.shape
        assert (got - want).abs().max() <= 1e-4, label
        assert want.std() > 0.01
    meta = json.loads({p.key: p.value for p in __import__("onnx").load(str(path)).metadata_props}["pix2pix_tr"])
    assert meta["crop_size"] == 64 and meta["eval"] is eval_mode and meta["direction"] == "BtoA"
    assert not list(tmp_path.glob(".*.tmp"))


@needs_onnx
def test_onnx_train_mode_dropout_is_random_with_pytorch_s_distribution(runs, ab_root, tmp_path, capsys):
    """Train mode with dropout: ORT draws its own masks (a new image each run); per pixel, the mean and the spread
    over 24 runs agree with PyTorch's over 24 seeded runs."""
    import onnx
    import onnxruntime as ort

    path = _export(runs, NAME, "onnx", tmp_path / "g.onnx")
    assert "dropout on: every run draws new masks" in capsys.readouterr().out
    assert "RandomUniformLike" in {n.op_type for n in onnx.load(str(path)).graph.node}
    translator = Translator.from_run(runs / "checkpoints" / NAME, eval=False, seed=3)
    x = _inputs(ab_root, translator)["real_1"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ort_runs = np.stack([session.run(None, {"input": x.numpy()})[0] for _ in range(24)])
    torch_runs = np.stack([translator.forward(x).numpy() for _ in range(24)])
    assert np.abs(ort_runs[0] - ort_runs[1]).max() > 0.01  # the noise is really there
    mean_corr = np.corrcoef(ort_runs.mean(0).ravel(), torch_runs.mean(0).ravel())[0, 1]
    spread = ort_runs.std(0).mean() / torch_runs.std(0).mean()
    assert mean_corr > 0.95 and 0.8 < spread < 1.25, (mean_corr, spread)


@pytest.mark.parametrize("fmt, suffix", [("torchscript", ".pt"), ("exported-program", ".pt2")])
@pytest.mark.parametrize("eval_mode", [True, False], ids=["eval", "train_dropout"])
def test_torchscript_and_exported_program_reload_and_match(runs, ab_root, tmp_path, fmt, suffix, eval_mode):
    path = _export(runs, NAME, fmt, tmp_path / f"g{suffix}", *(["--eval"] if eval_mode else []))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extra = {"pix2pix_tr.json": ""}
        loaded = torch.jit.load(str(path), _extra_files=extra) if fmt == "torchscript" else \
            torch.export.load(str(path), extra_files=extra).module()
    assert json.loads(extra["pix2pix_tr.json"])["crop_size"] == 64
    translator = Translator.from_run(runs / "checkpoints" / NAME, eval=eval_mode, seed=None)
    for label, x in _inputs(ab_root, translator).items():
        torch.manual_seed(11)
        want = translator.forward(x)  # seed=None: dropout draws from torch's global generator, as the file does
        torch.manual_seed(11)
        with torch.no_grad():
            got = loaded(x)
        assert (got - want).abs().max() <= 1e-5, (label, float((got - want).abs().max()))
    if not eval_mode:  # and the masks are really random from run to run
        with torch.no_grad():
            assert (loaded(x) - loaded(x)).abs().max() > 0.01


@needs_onnx
def test_the_documented_onnxruntime_snippet_runs_alone(runs, ab_root, tmp_path):
    """The block of docs/inference.md, as written, in a process that cannot import torch or pix2pix_tr."""
    doc = (REPO / "docs" / "inference.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    snippet = next(b for b in blocks if "onnxruntime" in b)
    _export(runs, NAME, "onnx", tmp_path / "generator.onnx", "--eval")
    label = Image.fromarray(np.ascontiguousarray(_halves(ab_root, sorted(
        p.stem for p in (ab_root / "val").glob("*.png"))[0])[0]))
    label.save(tmp_path / "label_map.png")
    guard = ("import sys\n"
             "class _Block:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] in ('torch', 'pix2pix_tr'):\n"
             "            raise ImportError(f'{name} may not be used by the snippet')\n"
             "sys.meta_path.insert(0, _Block())\n")
    proc = subprocess.run([sys.executable, "-c", guard + snippet], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = np.asarray(Image.open(tmp_path / "photo.png"), dtype=int)
    want = np.asarray(Translator.from_run(runs / "checkpoints" / NAME).translate(label), dtype=int)
    diff = np.abs(got - want)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_export_refusals_are_one_sentence(runs, tmp_path, capsys, monkeypatch):
    base = runs
    args = ["--name", NAME, "--checkpoints_dir", str(base / "checkpoints"), "--format", "exported-program"]

    def refused(extra, needle):
        assert main(args + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("pix2pix-tr-export: error: ") and needle in err[0], err

    refused(["--output", str(base / "checkpoints" / NAME / "g.pt2")], "is inside the run folder")
    refused(["--output", str(tmp_path)], "is a folder: pass a file name")
    refused(["--output", str(tmp_path / "g.bin")], f"pass --output {tmp_path / 'g.pt2'}")
    refused(["--output", str(tmp_path / "g.pt2"), "--epoch", "9"], "9_net_G.pth not found")
    refused(["--output", str(tmp_path / "g.pt2"), "--ngf", "16"], "pass --ngf 8")
    refused(["--output", str(tmp_path / "g.pt2"), "--preprocess", "scale_width"],
            "pass --preprocess resize_and_crop --crop_size N")
    assert main(args + ["--output", str(tmp_path / "g.pt2"), "--preprocess", "resize_and_crop", "--crop_size",
                        "64"]) == 0  # the advice works
    make_run(tmp_path / "ck", "bad")
    state = torch.load(tmp_path / "ck" / "bad" / "latest_net_G.pth", weights_only=True)
    key = next(k for k in state if k.endswith("running_var"))
    state[key] = torch.full_like(state[key], float("nan"))
    atomic_torch_save(state, tmp_path / "ck" / "bad" / "latest_net_G.pth")
    assert main(["--name", "bad", "--checkpoints_dir", str(tmp_path / "ck"), "--format", "torchscript", "--output",
                 str(tmp_path / "bad.pt")]) == 2
    assert "holds NaN or inf values" in capsys.readouterr().err and not (tmp_path / "bad.pt").exists()

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxscript" else real_find_spec(name, *a))
    assert main(["--name", NAME, "--checkpoints_dir", str(base / "checkpoints"), "--format", "onnx", "--output",
                 str(tmp_path / "g.onnx")]) == 2
    assert "needs the package(s) onnxscript: pip install 'pix2pix-tr[export]'" in capsys.readouterr().err


def test_the_module_and_the_installed_command_are_the_same_program(runs, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pix2pix_tr.inference.export", "--name", NAME, "--checkpoints_dir",
                           str(runs / "checkpoints"), "--format", "torchscript", "--output", str(tmp_path / "g.pt"),
                           "--eval"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "checked against PyTorch: max abs difference 0" in proc.stdout
    assert 'pix2pix-tr-export = "pix2pix_tr.inference.export:main"' in (REPO / "pyproject.toml").read_text()
