"""FID and KID (evaluation.fid): pytorch-fid's network from a local weights file, compared with pytorch-fid's own
calculate_fid_given_paths on the same folders and weights, and KID with an independent computation.

The weights file here has pytorch-fid's FID Inception layout (its state dict) with random weights; pytorch-fid
reads the same file from a torch hub cache folder (TORCH_HOME), where it looks before it would download."""

import json
import shutil
import socket
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("pytorch_fid")

from evaluation import fid as F  # noqa: E402
from evaluation.common import EvaluationError, run_cli  # noqa: E402


@pytest.fixture(scope="session")
def fid_weights(tmp_path_factory):
    """A file in the layout of pytorch-fid's pt_inception-2015-12-05-6726825d.pth, random weights (seed 0)."""
    from pytorch_fid import inception as I

    torch.manual_seed(0)
    net = I._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = I.FIDInceptionA(192, 32), I.FIDInceptionA(256, 64), \
        I.FIDInceptionA(288, 64)
    net.Mixed_6b, net.Mixed_6c = I.FIDInceptionC(768, 128), I.FIDInceptionC(768, 160)
    net.Mixed_6d, net.Mixed_6e = I.FIDInceptionC(768, 160), I.FIDInceptionC(768, 192)
    net.Mixed_7b, net.Mixed_7c = I.FIDInceptionE_1(1280), I.FIDInceptionE_2(2048)
    with torch.no_grad():  # running statistics away from (0, 1), so every layer's arithmetic matters
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("fid_weights") / F.FID_WEIGHTS_NAME
    torch.save(net.state_dict(), path)
    return path


def _images(folder, n, seed, shift=0.0, size=(48, 40), name="{i:03d}.png"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        w, h = size
        base = rng.uniform(40, 200, size=3)
        grad = np.linspace(0, 60 + 40 * shift, w)[None, :, None]
        noise = rng.normal(0, 25 + 30 * shift, size=(h, w, 3))
        img = np.clip(base + grad + noise, 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / name.format(i=i))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid_images")
    return _images(root / "real", 24, seed=1), _images(root / "fake", 22, seed=2, shift=1.0)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("something tried to use the network")
    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _pytorch_fid_reference(monkeypatch, tmp_path, weights, real, fake, dims):
    """pytorch-fid's own FID, reading ``weights`` from a torch hub cache folder."""
    from pytorch_fid.fid_score import calculate_fid_given_paths

    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    shutil.copy(weights, hub / F.FID_WEIGHTS_NAME)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's deprecation of sqrtm(disp=...)
        return float(calculate_fid_given_paths([str(real), str(fake)], 50, "cpu", dims, num_workers=0))


def test_fid_equals_pytorch_fids_on_the_same_folders_and_weights(fid_weights, folders, monkeypatch, tmp_path,
                                                                  no_network):
    real, fake = folders
    with pytest.warns(UserWarning, match="not the published weights"):
        ours = F.fid_kid(F.list_images(real), F.list_images(fake), fid_weights, device="cpu", dims=64)
    theirs = _pytorch_fid_reference(monkeypatch, tmp_path, fid_weights, real, fake, 64)
    assert theirs > 1e-3
    assert abs(ours["fid"] - theirs) <= 1e-3 * theirs, (ours["fid"], theirs)
    assert ours["n_real"] == 24 and ours["n_fake"] == 22 and ours["dims"] == 64
    assert ours["weights_sha256"] == F.sha256_file(fid_weights) and ours["weights_published"] is False


@pytest.mark.slow
def test_fid_at_2048_dims_equals_pytorch_fids(fid_weights, tmp_path, monkeypatch, no_network):
    real, fake = _images(tmp_path / "r", 12, seed=3), _images(tmp_path / "f", 12, seed=4, shift=1.0)
    with pytest.warns(UserWarning):
        ours = F.fid_kid(F.list_images(real), F.list_images(fake), fid_weights, device="cpu")
    theirs = _pytorch_fid_reference(monkeypatch, tmp_path, fid_weights, real, fake, 2048)
    assert abs(ours["fid"] - theirs) <= 1e-3 * abs(theirs), (ours["fid"], theirs)


def test_the_download_call_is_restored_and_never_reaches_the_network(fid_weights, no_network):
    from pytorch_fid import inception

    before = inception.load_state_dict_from_url
    with pytest.warns(UserWarning):
        model, digest, published = F.load_fid_inception(fid_weights, dims=64)
    assert inception.load_state_dict_from_url is before
    state = torch.load(fid_weights, weights_only=True)
    assert torch.equal(model.blocks[0][0].conv.weight, state["Conv2d_1a_3x3.conv.weight"])
    assert not published and len(digest) == 64


def test_frechet_distance_matches_the_sqrtm_formula():
    from scipy import linalg

    rng = np.random.default_rng(0)
    for n, d in ((40, 16), (10, 16)):  # full rank, and fewer samples than dimensions
        a, b = rng.normal(size=(n, d)), rng.normal(size=(n, d)) * 1.3 + 0.4
        s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        root = linalg.sqrtm(s1 @ s2)
        expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1 + s2) - 2 * np.trace(root).real
        assert F.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert F.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def _kid_by_loops(fake, real, subsets, size, seed):
    """KID written out pair by pair (no matrices), drawing the subsets in the documented order."""
    rng = np.random.RandomState(seed)
    d = fake.shape[1]

    def k(x, y):
        return (sum(float(p) * float(q) for p, q in zip(x, y)) / d + 1.0) ** 3

    values = []
    for _ in range(subsets):
        x = fake[rng.choice(len(fake), size, replace=False)]
        y = real[rng.choice(len(real), size, replace=False)]
        same = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(size) for j in range(size) if i != j)
        cross = sum(k(x[i], y[j]) for i in range(size) for j in range(size))
        values.append(same / (size * (size - 1)) - 2 * cross / (size * size))
    return float(np.mean(values)), float(np.std(values))


def test_kid_equals_a_pair_by_pair_computation():
    rng = np.random.default_rng(3)
    fake, real = rng.normal(size=(25, 6)) + 0.3, rng.normal(size=(30, 6))
    got = F.kernel_inception_distance(fake, real, subsets=7, subset_size=9, seed=11)
    mean, std = _kid_by_loops(fake, real, 7, 9, 11)
    assert got["kid_mean"] == pytest.approx(mean, rel=1e-10) and got["kid_std"] == pytest.approx(std, rel=1e-9)
    assert got["kid_subset_size"] == 9 and got["kid_subsets"] == 7 and got["kid_std"] > 0


def test_kid_subsets_shrink_to_the_smaller_set_and_then_do_not_vary():
    rng = np.random.default_rng(4)
    fake, real = rng.normal(size=(12, 5)), rng.normal(size=(15, 5)) + 1.0
    got = F.kernel_inception_distance(fake, real, subsets=5)
    assert got["kid_subset_size"] == 12  # min(1000, 12, 15)
    same = F.kernel_inception_distance(fake, real[:12], subsets=3)
    assert same["kid_std"] == pytest.approx(0.0, abs=1e-12)  # every subset is the whole of both sets
    assert got["kid_mean"] > 0.05  # the sets differ
    with pytest.raises(EvaluationError, match="at least 2 images"):
        F.kernel_inception_distance(fake[:1], real)


def test_cli_writes_the_json(fid_weights, tmp_path, capsys, no_network):
    real, fake = _images(tmp_path / "real", 6, seed=8), _images(tmp_path / "fake", 5, seed=9, shift=1.0)
    out = tmp_path / "out" / "fid.json"
    with pytest.warns(UserWarning):
        code = run_cli(F.main, [str(real), str(fake), "--weights", str(fid_weights), "--json", str(out), "--dims",
                                "64", "--kid_subsets", "10", "--kid_subset_size", "4", "--no_progress",
                                "--device", "cpu"])
    assert code == 0
    result = json.loads(out.read_text())
    for key in ("fid", "kid_mean", "kid_std", "n_real", "n_fake", "weights_sha256"):
        assert key in result
    assert result["n_real"] == 6 and result["n_fake"] == 5 and result["kid_subset_size"] == 4
    assert result["kid_std"] > 0 and result["weights_published"] is False
    assert f"FID {result['fid']:.4f}" in capsys.readouterr().out


def test_the_json_never_goes_into_an_image_folder(fid_weights, tmp_path, capsys):
    real, fake = _images(tmp_path / "real", 3, seed=11), _images(tmp_path / "fake", 3, seed=12)
    code = run_cli(F.main, [str(real), str(fake), "--weights", str(fid_weights), "--json", str(fake / "fid.json")])
    assert code == 2 and "--json" in capsys.readouterr().err and not (fake / "fid.json").exists()


def test_missing_or_wrong_weights_say_where_the_file_is_published(tmp_path, capsys, folders):
    real, fake = folders
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, wrong)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"<html>not found</html>")
    for weights in (tmp_path / "missing.pth", wrong, junk):
        code = run_cli(F.main, [str(real), str(fake), "--weights", str(weights), "--device", "cpu"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.count("\n") == 0, err
        assert F.FID_WEIGHTS_URL in err and F.FID_WEIGHTS_SHA256_PREFIX in err and str(weights) in err


def test_a_test_py_images_folder_needs_a_glob(fid_weights, tmp_path, capsys):
    images = tmp_path / "val_latest" / "images"
    _images(images, 3, seed=5, name="f{i}_fake_B.png")
    _images(images, 3, seed=6, name="f{i}_real_B.png")
    real = _images(tmp_path / "real", 3, seed=7)
    assert run_cli(F.main, [str(real), str(images), "--weights", str(fid_weights)]) == 2
    assert "--fake_glob '*_fake_B.png'" in capsys.readouterr().err
    assert run_cli(F.main, [str(real), str(images.parent), "--weights", str(fid_weights)]) == 2
    assert "test.py writes its photos into" in capsys.readouterr().err
    assert [p.name for p in F.list_images(images, "*_fake_B.png", flag="FAKE_DIR")] == [
        "f0_fake_B.png", "f1_fake_B.png", "f2_fake_B.png"]


def test_resizing_first_is_applied_and_recorded(fid_weights, tmp_path):
    files = F.list_images(_images(tmp_path / "real", 3, seed=10))
    with pytest.warns(UserWarning):
        model = F.load_fid_inception(fid_weights, dims=64)
    plain = F.inception_features(model[0], files)
    resized = F.inception_features(model[0], files, size=24)
    by_hand = F.inception_features(model[0], [Image.open(p).convert("RGB").resize((24, 24), Image.BICUBIC)
                                              for p in files])
    assert plain.shape == (3, 64) and np.allclose(resized, by_hand) and not np.allclose(plain, resized)
    result = F.fid_kid(files, files, fid_weights, device="cpu", real_size=24, model=model, kid_subsets=2)
    assert result["real_resize"] == "24x24 bicubic" and result["fake_resize"] is None


def test_without_pytorch_fid_the_message_says_how_to_install(monkeypatch, fid_weights):
    monkeypatch.setitem(sys.modules, "pytorch_fid", None)
    with pytest.raises(EvaluationError, match="pip install pytorch-fid"):
        F.load_fid_inception(fid_weights)


# ---------------------------------------------------------------------------------------------- in fcn_score
def _small_scorer(path):
    from evaluation.scorer import build_scorer, scorer_checkpoint

    torch.manual_seed(0)
    model = build_scorer("fcn8s_small", base=4)
    torch.save(scorer_checkpoint(model.eval(), arch="fcn8s_small", arch_kwargs={"base": 4}, image_size=64), path)
    return path


def _synthesized(city, tmp_path):
    images = tmp_path / "results" / "run" / "val_latest" / "images"
    images.mkdir(parents=True)
    frames = sorted(p.name[: -len("_gtFine_labelIds.png")] for p in (city / "gtFine" / "val").rglob("*_labelIds.png"))
    reals = [city / "leftImg8bit" / "val" / f.split("_")[0] / f"{f}_leftImg8bit.png" for f in frames]
    for frame, real in zip(frames, reals):  # a shrunk, rotated copy of the real photo as the "synthesized" one
        img = Image.open(real).convert("RGB").resize((48, 48), Image.BICUBIC).rotate(7)
        img.save(images / f"{frame}_fake_B.png")
    return images, frames, reals


def test_fcn_score_measures_fid_on_the_scored_frames_real_photos_resized(synthetic_city, tmp_path, monkeypatch):
    """The wiring (which files, which sizes, what lands in the JSON), with evaluation.fid.fid_kid stubbed out."""
    from evaluation.fcn_score import fcn_score

    images, frames, reals = _synthesized(synthetic_city, tmp_path)
    weights = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(1)}, weights)
    calls = []

    def fake_fid_kid(real, fake, w, **kw):
        calls.append((list(real), list(fake), w, kw))
        return {"fid": 12.5, "kid_mean": 0.01, "kid_std": 0.002, "n_real": len(real), "n_fake": len(fake),
                "weights_sha256": "f" * 64}
    monkeypatch.setattr(F, "fid_kid", fake_fid_kid)
    scorer = _small_scorer(tmp_path / "scorer.pth")
    for protocol, size in (("gan_compression", (48, 48)), ("native", None)):
        out = fcn_score(images.parent, synthetic_city, scorer, tmp_path / protocol, protocol="256", device="cpu",
                        progress=False, fid_weights=weights, fid_protocol=protocol)
        real, fake, w, kw = calls[-1]
        assert real == reals and fake == [images / f"{f}_fake_B.png" for f in frames] and w == weights
        assert kw["real_size"] == size
        assert (out["fid"], out["kid_mean"], out["kid_std"]) == (12.5, 0.01, 0.002)
        assert out["fid_details"]["fid_protocol"] == protocol and out["fid_details"]["n_real"] == 4


@pytest.mark.slow
def test_fcn_score_adds_fid_and_kid_of_the_scored_frames(fid_weights, synthetic_city, tmp_path):
    from evaluation import compare_runs
    from evaluation.fcn_score import fcn_score

    city = synthetic_city
    scorer = _small_scorer(tmp_path / "scorer.pth")
    images, frames, reals = _synthesized(city, tmp_path)
    with pytest.warns(UserWarning, match="not the published weights"):
        out = fcn_score(images.parent, city, scorer, tmp_path / "eval", protocol="256", device="cpu",
                        progress=False, fid_weights=fid_weights)
    fakes = [images / f"{f}_fake_B.png" for f in frames]
    with pytest.warns(UserWarning):
        direct = F.fid_kid(reals, fakes, fid_weights, device="cpu", real_size=(48, 48))
    assert out["fid"] == pytest.approx(direct["fid"], rel=1e-9) and out["kid_mean"] == pytest.approx(direct["kid_mean"])
    details = out["fid_details"]
    assert details["fid_protocol"] == "gan_compression" and details["real_resize"] == "48x48 bicubic"
    assert details["n_real"] == details["n_fake"] == 4
    assert "FID " in (tmp_path / "eval" / "evaluation_results.txt").read_text()
    table, _ = compare_runs.compare_table([tmp_path / "eval"], ["run"])
    assert "| FID | KID |" in table.splitlines()[0] and f"{out['fid']:.2f}" in table
    assert "FID/KID: Inception " in table


def test_fid_flags_that_cannot_work_are_refused_before_scoring(synthetic_city, tmp_path, capsys):
    """The GT row has no FID, and a missing weights file is refused before any frame is scored."""
    from evaluation.fcn_score import main

    images, _, _ = _synthesized(synthetic_city, tmp_path)
    scorer = _small_scorer(tmp_path / "scorer.pth")
    base = ["--cityscapes_dir", str(synthetic_city), "--scorer", str(scorer), "--output_dir", str(tmp_path / "x"),
            "--device", "cpu", "--no_progress"]
    assert run_cli(main, base + ["--real", "--fid_weights", str(tmp_path / "w.pth")]) == 2
    assert "drop --fid_weights" in capsys.readouterr().err
    assert run_cli(main, base + ["--result_dir", str(images.parent), "--fid_weights", str(tmp_path / "no.pth")]) == 2
    assert F.FID_WEIGHTS_URL in capsys.readouterr().err and not (tmp_path / "x").exists()
