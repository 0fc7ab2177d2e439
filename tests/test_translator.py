"""``from pix2pix_tr import Translator``: one call gives test.py's images, for every input type, batch and mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix_tr import Translator
from pix2pix_tr.cityscapes_labels import color_to_id, ids_to_train_ids
from pix2pix_tr.inference import CheckpointMismatchError, InferenceError, run_test
from pix2pix_tr.io import atomic_torch_save
from pix2pix_tr.options import parse_test
from pix2pix_tr.safe_load import NonFiniteStateError
from test_inference import NAME, _halves, _make_generator, make_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("translator")
    net = make_run(base / "checkpoints")  # unet_64, ngf 8, batch norm, dropout, BtoA, crop 64 (load 72 in training)
    return base, net


def _test_py(base, ab_root, *extra, results="results"):
    opt = parse_test(["--dataroot", str(ab_root), "--name", NAME, "--checkpoints_dir", str(base / "checkpoints"),
                      "--results_dir", str(base / results), *extra])
    res = run_test(opt, progress=False)
    images = Path(res["run_dir"]) / "images"
    return {s: np.asarray(Image.open(images / f"{s}_fake_B.png")) for s in res["stems"]}


def _labels(ab_root):
    stems = sorted(p.stem for p in (ab_root / "val").glob("*.png"))
    return stems, [Image.fromarray(np.ascontiguousarray(_halves(ab_root, s)[0])) for s in stems]


@pytest.mark.parametrize("extra, kwargs", [
    (["--eval"], dict(eval=True)),
    (["--eval", "--batch_size", "3"], dict(eval=True, batch_size=3)),
    (["--no_dropout"], dict(eval=False, no_dropout=True)),  # train mode: the image's own BatchNorm statistics
])
def test_translate_equals_test_py_bit_for_bit(run, ab_root, extra, kwargs):
    base, _ = run
    expected = _test_py(base, ab_root, *extra, results="res_" + "_".join(extra))
    stems, labels = _labels(ab_root)
    batch_size = kwargs.pop("batch_size", 1)
    translator = Translator.from_run(base / "checkpoints" / NAME, **kwargs)
    got = translator.translate(labels, batch_size=batch_size)  # a list in, a list out
    assert isinstance(got, list) and all(isinstance(g, Image.Image) and g.mode == "RGB" for g in got)
    for stem, image in zip(stems, got):
        np.testing.assert_array_equal(np.asarray(image), expected[stem])
    assert np.asarray(got[0]).std() > 0


def test_input_types_give_their_own_type_back(run, ab_root):
    base, net = run
    translator = Translator.from_run(base / "checkpoints" / NAME)
    stems, labels = _labels(ab_root)
    reference = np.asarray(translator.translate(labels[0]))
    as_array = translator.translate(np.asarray(labels[0]))
    assert isinstance(as_array, np.ndarray) and as_array.dtype == np.uint8 and as_array.shape == (64, 64, 3)
    np.testing.assert_array_equal(as_array, reference)
    path = base / "label.png"
    labels[0].save(path)
    np.testing.assert_array_equal(np.asarray(translator.translate(str(path))), reference)

    x = torch.from_numpy(np.asarray(labels[0]).copy()).permute(2, 0, 1).float() / 127.5 - 1  # prepared already
    out = translator.translate(x)
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32 and -1 <= out.min() and out.max() <= 1
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(out, net(x[None])[0], rtol=0, atol=0)
    batch = torch.stack([x, x.flip(-1)])
    assert translator.translate(batch, batch_size=2).shape == (2, 3, 64, 64)

    # a single-channel label map (ids or train ids) is coloured as in training: the same image as the colour map
    ids = color_to_id(np.asarray(labels[0]))
    np.testing.assert_array_equal(np.asarray(translator.translate(Image.fromarray(ids, "L"))), reference)
    np.testing.assert_array_equal(np.asarray(translator.translate(ids_to_train_ids(ids))), reference)


def test_preprocessing_follows_the_run(tmp_path, ab_root):
    """A 128x128 input is resized to the run's crop size; load_size > crop_size gives the centre crop."""
    make_run(tmp_path, "r")
    translator = Translator.from_run(tmp_path / "r")
    _, labels = _labels(ab_root)
    big = labels[0].resize((128, 128), Image.NEAREST)
    assert translator.translate(big).size == (64, 64)
    cropped = Translator.from_run(tmp_path / "r", load_size=96)
    prepared = cropped.preprocess(labels[0])
    resized = np.asarray(labels[0].resize((96, 96), Image.BICUBIC))[16:80, 16:80]
    expected = torch.from_numpy(resized.copy()).permute(2, 0, 1).float().div(127.5).sub(1)
    torch.testing.assert_close(prepared, expected, rtol=0, atol=0)
    assert "centre 64x64" in repr(cropped) and "not the full frame" in repr(cropped)


def test_train_mode_dropout_stream_is_its_own_and_reproducible(run, ab_root):
    base, _ = run
    _, labels = _labels(ab_root)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    translator = Translator.from_run(base / "checkpoints" / NAME, eval=False, seed=5)
    a = translator.translate(labels[:2])
    assert torch.equal(torch.get_rng_state(), before)  # the caller's global generator is left as it was
    translator.reseed(5)
    for x, y in zip(a, translator.translate(labels[:2])):  # reseed restarts the stream
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    b = Translator.from_run(base / "checkpoints" / NAME, eval=False, seed=5).translate(labels[:2])
    c = Translator.from_run(base / "checkpoints" / NAME, eval=False, seed=6).translate(labels[:2])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert any(np.abs(np.asarray(x, int) - np.asarray(y, int)).max() > 0 for x, y in zip(a, c))  # dropout is on


def test_refusals_are_one_sentence(tmp_path, ab_root):
    net = make_run(tmp_path, "r")
    state = net.state_dict()
    key = next(k for k in state if k.endswith("weight"))
    state[key] = torch.full_like(state[key], float("nan"))
    atomic_torch_save(state, tmp_path / "r" / "5_net_G.pth")
    with pytest.raises(NonFiniteStateError, match=r"5_net_G\.pth holds NaN or inf values in 1 tensor"):
        Translator.from_run(tmp_path / "r", epoch=5)
    with pytest.raises(NonFiniteStateError, match="the network given holds NaN"):
        bad = _make_generator()
        with torch.no_grad():
            next(bad.parameters()).fill_(float("inf"))
        Translator(bad)

    atomic_torch_save(_make_generator(ngf=16).state_dict(), tmp_path / "r" / "latest_net_G.pth")
    with pytest.raises(CheckpointMismatchError, match=r"latest_net_G\.pth does not fit: the checkpoint was trained "
                                                      r"with different generator options \(ngf 8 -> 16\)"):
        Translator.from_run(tmp_path / "r")
    assert Translator.from_run(tmp_path / "r", ngf=16).translate(_labels(ab_root)[1][0]).size == (64, 64)

    (tmp_path / "w").mkdir()
    atomic_torch_save(_make_generator().state_dict(), tmp_path / "w" / "latest_net_G.pth")
    with pytest.raises(InferenceError, match="pass at least --direction AtoB or BtoA"):
        Translator.from_run(tmp_path / "w")
    weights_only = Translator.from_run(tmp_path / "w", direction="BtoA", netG="unet_64", ngf=8, crop_size=64)
    with pytest.raises(InferenceError, match="unknown option"):
        Translator.from_run(tmp_path / "w", direction="BtoA", ngff=8)
    with pytest.raises(InferenceError, match=r"a tensor input must be float in \[-1, 1\]"):
        weights_only.translate(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(InferenceError, match=r"must be \(N, 3, H, W\)"):
        weights_only.translate(torch.zeros(1, 1, 64, 64))
    with pytest.raises(InferenceError, match="multiples of 64"):
        weights_only.translate(torch.zeros(1, 3, 48, 64))
    with pytest.raises(InferenceError, match="amp='fp16' needs a CUDA device"):
        Translator.from_run(tmp_path / "w", direction="BtoA", netG="unet_64", ngf=8, amp="fp16")


def test_bf16_autocast_on_cpu_stays_close(run, ab_root):
    base, _ = run
    _, labels = _labels(ab_root)
    full = Translator.from_run(base / "checkpoints" / NAME).preprocess(labels[0])[None]
    ref = Translator.from_run(base / "checkpoints" / NAME).translate(full)
    low = Translator.from_run(base / "checkpoints" / NAME, amp="bf16").translate(full)
    assert low.dtype == torch.float32
    assert 0 < (low - ref).abs().max() < 0.1  # bf16 really ran, and stayed close


@pytest.mark.cuda
@pytest.mark.parametrize("amp", [None, "bf16", "fp16"])
def test_cuda_translation_matches_cpu(run, ab_root, amp):
    base, _ = run
    _, labels = _labels(ab_root)
    cpu = Translator.from_run(base / "checkpoints" / NAME).translate(labels[0])
    gpu = Translator.from_run(base / "checkpoints" / NAME, device="cuda", amp=amp).translate(labels[0])
    diff = np.abs(np.asarray(cpu, int) - np.asarray(gpu, int))
    assert diff.max() <= (2 if amp is None else 12) and diff.mean() < 1.5


def test_import_is_light_and_the_readme_lines_run(run, ab_root, tmp_path):
    """``import pix2pix_tr`` does not load torch; the five README lines work as written."""
    base, _ = run
    _, labels = _labels(ab_root)
    labels[0].save(tmp_path / "label_map.png")
    code = ("import sys, pix2pix_tr; assert 'torch' not in sys.modules\n"
            "from pix2pix_tr import Translator\n"
            "from PIL import Image\n"
            f"translator = Translator.from_run({str(base / 'checkpoints' / NAME)!r}, epoch='latest', device='cpu', "
            f"eval=True)\n"
            "photo = translator.translate(Image.open('label_map.png'))\n"
            "photo.save('photo.png')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "photo.png").size == (64, 64)
    assert json.loads((base / "checkpoints" / NAME / "train_opt.json").read_text())["direction"] == "BtoA"
