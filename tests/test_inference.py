"""test.py / pix2pix_tr.inference: images equal the model's output, pages resolve, options come from training,
bad checkpoints and flags give one-sentence messages."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix_tr.inference import CheckpointMismatchError, InferenceError, main, run_test
from pix2pix_tr.io import atomic_torch_save
from pix2pix_tr.models import define_G
from pix2pix_tr.options import parse_test
from conftest import assert_links_resolve, make_run, parse_page
from conftest import make_generator as _make_generator

REPO = Path(__file__).resolve().parents[1]
NAME = "tiny_tradam"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("inference")
    net = make_run(base / "checkpoints")
    return base, net


def _args(base: Path, ab_root: Path, *extra: str, name: str = NAME) -> list[str]:
    return ["--dataroot", str(ab_root), "--name", name, "--checkpoints_dir", str(base / "checkpoints"),
            "--results_dir", str(base / "results"), *extra]


def _halves(ab_root: Path, stem: str, phase="val"):
    """The A|B file split by hand: for BtoA the input is the right half (label), the target the left (photo)."""
    ab = np.asarray(Image.open(ab_root / phase / f"{stem}.png").convert("RGB"))
    w = ab.shape[1] // 2
    return ab[:, w:], ab[:, :w]


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.copy()).permute(2, 0, 1).float()[None] / 127.5 - 1.0


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    return ((t[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_eval_outputs_match_the_model_and_inputs(setup, ab_root):
    base, net = setup
    res = run_test(parse_test(_args(base, ab_root, "--eval", "--batch_size", "3")), progress=False)
    run_dir = Path(res["run_dir"])
    assert run_dir == base / "results" / NAME / "val_latest"
    stems = sorted(p.stem for p in (ab_root / "val").glob("*.png"))
    assert res["stems"] == stems and res["n_images"] == len(stems) == 4
    net.eval()
    for stem in stems:
        label, photo = _halves(ab_root, stem)
        np.testing.assert_array_equal(_png(run_dir / "images" / f"{stem}_real_A.png"), label)
        np.testing.assert_array_equal(_png(run_dir / "images" / f"{stem}_real_B.png"), photo)
        with torch.no_grad():
            expected = _to_uint8(net(_to_tensor(label)))
        got = _png(run_dir / "images" / f"{stem}_fake_B.png")
        diff = np.abs(got.astype(int) - expected.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, stem  # batched vs single: float rounding only
        assert expected.std() > 0  # a real image, not a constant
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["stems"] == stems and saved["epoch"] == "latest" and saved["eval"] is True


def test_train_mode_uses_batch_statistics(setup, ab_root):
    """Without --eval BatchNorm normalises with the test image's own statistics (pix2pix's default)."""
    base, net = setup
    args = _args(base, ab_root, "--no_dropout", "--num_test", "2", "--epoch", "5", "--results_dir",
                 str(base / "results_train"))
    res = run_test(parse_test(args), progress=False)
    assert res["eval"] is False and res["generator"]["use_dropout"] is False
    plain = define_G("unet_64", 3, 3, ngf=8, norm="batch", use_dropout=False)
    plain.load_state_dict(net.state_dict())
    plain.train()
    for stem in res["stems"]:
        label, _ = _halves(ab_root, stem)
        with torch.no_grad():
            expected_train = _to_uint8(plain(_to_tensor(label)))
            expected_eval = _to_uint8(plain.eval()(_to_tensor(label)))
            plain.train()
        got = _png(Path(res["run_dir"]) / "images" / f"{stem}_fake_B.png")
        assert np.abs(got.astype(int) - expected_train.astype(int)).max() <= 1
        assert np.abs(got.astype(int) - expected_eval.astype(int)).max() > 10  # the modes really differ
    assert Path(res["run_dir"]).name == "val_5"


def test_train_mode_with_dropout_is_reproducible(setup, ab_root, tmp_path):
    base, _ = setup
    outs = []
    for i in range(2):
        res = run_test(parse_test(_args(base, ab_root, "--num_test", "1", "--results_dir", str(tmp_path / str(i)))),
                       progress=False)
        outs.append(_png(Path(res["run_dir"]) / "images" / f"{res['stems'][0]}_fake_B.png"))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_pages_links_rows_and_header(setup, ab_root, tmp_path):
    base, _ = setup
    res = run_test(parse_test(_args(base, ab_root, "--eval", "--results_dir", str(tmp_path))), per_page=3,
                   progress=False)
    run_dir = Path(res["run_dir"])
    assert res["pages"] == ["index.html", "index_2.html"]
    rows = []
    for page in res["pages"]:
        links = assert_links_resolve(run_dir / page)
        imgs = [l for tag, l in parse_page(run_dir / page).links if tag == "img"]
        assert len(imgs) % 3 == 0
        rows.append([imgs[i:i + 3] for i in range(0, len(imgs), 3)])
        assert not any(l.startswith(("http:", "https:", "//")) for l in links)
    assert [len(r) for r in rows] == [3, 1]
    for row, stem in zip(rows[0] + rows[1], res["stems"]):
        assert row == [f"images/{stem}_real_A.png", f"images/{stem}_fake_B.png", f"images/{stem}_real_B.png"]
    first = (run_dir / "index.html").read_text()
    assert "index_2.html" in first and "index.html" in (run_dir / "index_2.html").read_text()
    for needle in (NAME, "latest", "tradam", "lambda 0.1", "S 10", "lr 0.0002", "eval (--eval", "unet_64, ngf 8"):
        assert needle in first, needle
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", first)  # the date

    # a later run with fewer images removes the pages it no longer needs
    res2 = run_test(parse_test(_args(base, ab_root, "--eval", "--num_test", "2", "--results_dir", str(tmp_path))),
                    per_page=3, progress=False)
    assert res2["pages"] == ["index.html"] and not (run_dir / "index_2.html").exists()
    assert len([1 for tag, _ in parse_page(run_dir / "index.html").links if tag == "img"]) == 6


def test_options_are_restored_from_training(tmp_path, ab_root):
    """A resnet generator with instance norm and ngf 4: test.py needs none of those flags."""
    make_run(tmp_path / "checkpoints", "resnet_run", ngf=4, norm="instance", netG="resnet_6blocks",
             extra=("--optimizer", "adam", "--no_dropout"))
    res = run_test(parse_test(_args(tmp_path, ab_root, "--num_test", "1", name="resnet_run")), progress=False)
    assert res["generator"] == {"netG": "resnet_6blocks", "input_nc": 3, "output_nc": 3, "ngf": 4,
                                "norm": "instance", "use_dropout": False}
    assert res["options"]["direction"] == "BtoA" and res["options"]["load_size"] == 64
    assert res["options"]["no_flip"] is True
    assert res["train_options"]["optimizer"] == "adam"
    assert res["header"]["optimizer"].startswith("adam (lr 0.0002")


@pytest.mark.parametrize("saved, flag", [
    (dict(ngf=16), "--ngf 16"),
    (dict(norm="instance"), "--norm instance"),
    (dict(netG="unet_128"), "--netG unet_128"),
])
def test_mismatching_checkpoint_names_the_option(tmp_path, ab_root, saved, flag):
    make_run(tmp_path / "checkpoints", "run")  # train_opt.json: unet_64, ngf 8, batch norm
    other = _make_generator(**{"ngf": 8, "norm": "batch", "netG": "unet_64", **saved})
    atomic_torch_save(other.state_dict(), tmp_path / "checkpoints" / "run" / "latest_net_G.pth")
    with pytest.raises(CheckpointMismatchError) as err:
        run_test(parse_test(_args(tmp_path, ab_root, name="run")), progress=False)
    msg = str(err.value)
    assert "latest_net_G.pth" in msg
    assert f"pass {flag} to test.py" in msg, msg
    # the suggested flag works (unet_128 also needs 128-pixel inputs, which test.py says)
    args = _args(tmp_path, ab_root, "--num_test", "1", *flag.split(), name="run")
    if "unet_128" in flag:
        with pytest.raises(InferenceError, match="--netG unet_128 .*--crop_size 128"):
            run_test(parse_test(args), progress=False)
        args += ["--crop_size", "128"]
    assert run_test(parse_test(args), progress=False)["n_images"] == 1


def test_cli_errors_are_one_sentence(tmp_path, ab_root, capsys):
    make_run(tmp_path / "checkpoints", "run")
    ck = tmp_path / "checkpoints" / "run"
    cases = [
        (["--epoch", "7"], r"7_net_G\.pth.*--epoch"),
        (["--phase", "test"], r"--phase test"),
        (["--device", "cuda:0"] if not torch.cuda.is_available() else ["--device", "nonsense"],
         r"--device"),
    ]
    for extra, pattern in cases:
        assert main(_args(tmp_path, ab_root, *extra, name="run")) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("test.py: error: "), err
        assert re.search(pattern, err[0]), err[0]

    assert main(_args(tmp_path, tmp_path / "no_data", name="run")) == 2
    assert "no_data does not exist" in capsys.readouterr().err  # the data package's message, passed through

    assert main(_args(tmp_path, ab_root, name="nobody")) == 2
    assert "no experiment folder" in capsys.readouterr().err

    (ck / "train_opt.json").rename(ck / "moved.json")
    assert main(_args(tmp_path, ab_root, name="run")) == 2
    assert "train_opt.json" in (err := capsys.readouterr().err) and "--direction" in err
    (ck / "moved.json").rename(ck / "train_opt.json")

    # two inputs with the same file name in different subfolders would overwrite each other's outputs
    dup = tmp_path / "dup"
    for sub in ("a", "b"):
        (dup / "val" / sub).mkdir(parents=True)
        shutil.copy(sorted((ab_root / "val").glob("*.png"))[0], dup / "val" / sub / "same.png")
    assert main(_args(tmp_path, dup, name="run")) == 2
    assert "'same'" in capsys.readouterr().err

    saved = (ck / "train_opt.json").read_text()
    (ck / "train_opt.json").write_text(saved.replace('"unet_64"', '"unet_999"'))
    assert main(_args(tmp_path, ab_root, name="run")) == 2
    assert "unet_999" in capsys.readouterr().err
    (ck / "train_opt.json").write_text(saved)

    torch.save({"netG": {"w": torch.zeros(1)}, "epoch": 3}, ck / "latest_net_G.pth")
    assert main(_args(tmp_path, ab_root, name="run")) == 2
    assert "is not a generator state_dict" in capsys.readouterr().err

    (ck / "latest_net_G.pth").write_bytes(b"garbage")
    assert main(_args(tmp_path, ab_root, name="run")) == 2
    err = capsys.readouterr().err
    assert "latest_net_G.pth" in err and "Traceback" not in err


def test_test_py_entry_point(setup, ab_root, tmp_path):
    base, _ = setup
    args = _args(base, ab_root, "--eval", "--num_test", "2", "--results_dir", str(tmp_path))
    proc = subprocess.run([sys.executable, str(REPO / "test.py"), *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 2 image triplets" in proc.stdout
    assert (tmp_path / NAME / "val_latest" / "index.html").is_file()


def test_state_dict_prefixes_and_syncbatch(tmp_path):
    from pix2pix_tr.inference import generator_options, load_state_dict

    net = define_G("unet_64", 3, 3, ngf=4)
    torch.save({f"module._orig_mod.{k}": v for k, v in net.state_dict().items()}, tmp_path / "ddp.pth")
    state = load_state_dict(tmp_path / "ddp.pth")  # DDP / torch.compile prefixes are stripped
    assert list(state) == list(net.state_dict())
    gen = generator_options({"netG": "unet_64", "ngf": 4, "norm": "syncbatch", "no_dropout": True})
    assert gen["norm"] == "batch" and gen["use_dropout"] is False  # same parameters as BatchNorm, one process


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_truncated_image_is_one_sentence_not_a_traceback(tmp_path, ab_root, capsys, workers):
    make_run(tmp_path / "checkpoints", "run")
    data = tmp_path / "data"
    shutil.copytree(ab_root / "val", data / "val")
    victim = sorted((data / "val").glob("*.png"))[1]
    victim.write_bytes(victim.read_bytes()[:200])  # the header survives, decoding fails
    assert main(_args(tmp_path, data, "--num_threads", workers, name="run")) == 2
    err = capsys.readouterr().err
    messages = [line.split("test.py: error: ", 1)[1] for line in err.splitlines() if "test.py: error: " in line]
    assert len(messages) == 1 and "Traceback" not in err, err  # (the progress bar shares stderr)
    assert victim.name in messages[0] and "corrupt" in messages[0]


# ---------------------------------------------------------------------------------------------------- results folder
# The contract evaluation.fcn_score reads (issue 21 #6, #7): status, run_id, test_preprocess, the PNG run chunk.
def _run_dir(results: Path) -> Path:
    return results / NAME / "val_latest"


def test_results_json_is_incomplete_before_any_image_and_complete_at_the_end(setup, ab_root, tmp_path, monkeypatch):
    import pix2pix_tr.inference.run as run_module

    base, _ = setup
    seen = []
    real_save = run_module.atomic_save_image

    def save(img, path, **kwargs):
        if not seen:  # the first image: results.json must already say "incomplete"
            seen.append(json.loads((Path(path).parents[1] / "results.json").read_text()))
        return real_save(img, path, **kwargs)

    monkeypatch.setattr(run_module, "atomic_save_image", save)
    res = run_test(parse_test(_args(base, ab_root, "--eval", "--results_dir", str(tmp_path))), progress=False)
    assert seen[0]["status"] == "incomplete" and seen[0]["run_id"] == res["run_id"] and seen[0]["stems"] == []
    final = json.loads((_run_dir(tmp_path) / "results.json").read_text())
    assert final["status"] == "complete" and final["run_id"] == res["run_id"] and len(final["stems"]) == 4
    assert re.fullmatch(r"[0-9a-f]{32}", final["run_id"])
    again = run_test(parse_test(_args(base, ab_root, "--eval", "--results_dir", str(tmp_path / "b"))), progress=False)
    assert again["run_id"] != res["run_id"]  # one id per invocation


def test_every_png_carries_the_run_id_and_its_pixels_are_unchanged(setup, ab_root, tmp_path):
    from PIL.PngImagePlugin import PngInfo

    base, _ = setup
    res = run_test(parse_test(_args(base, ab_root, "--eval", "--results_dir", str(tmp_path))), progress=False)
    pngs = sorted((_run_dir(tmp_path) / "images").glob("*.png"))
    assert len(pngs) == 12
    for p in pngs:
        assert Image.open(p).text["pix2pix_tr_run"] == res["run_id"], p.name
    # the chunk is metadata only: the same array saved with and without it decodes to the same pixels
    pixels = _png(pngs[0])
    info = PngInfo()
    info.add_text("pix2pix_tr_run", "x" * 32)
    Image.fromarray(pixels).save(tmp_path / "with.png", pnginfo=info)
    Image.fromarray(pixels).save(tmp_path / "without.png")
    np.testing.assert_array_equal(_png(tmp_path / "with.png"), _png(tmp_path / "without.png"))
    np.testing.assert_array_equal(_png(tmp_path / "with.png"), pixels)


def test_test_time_preprocessing_is_a_recorded_centre_crop(setup, ab_root, tmp_path):
    """Issue 21 #7: --load_size 96 with crop 64 used to random-crop each val image."""
    base, _ = setup
    res = run_test(parse_test(_args(base, ab_root, "--eval", "--results_dir", str(tmp_path / "a"))), progress=False)
    assert res["test_preprocess"] == {"preprocess": "resize_and_crop", "load_size": 64, "crop_size": 64,
                                      "crop": "none", "full_frame": True}
    runs = []
    for i in range(2):
        res = run_test(parse_test(_args(base, ab_root, "--eval", "--load_size", "96", "--results_dir",
                                        str(tmp_path / f"c{i}"))), progress=False)
        runs.append(res)
    assert runs[0]["test_preprocess"] == {"preprocess": "resize_and_crop", "load_size": 96, "crop_size": 64,
                                          "crop": "center", "full_frame": False}
    assert "centre 64x64 (not the full frame)" in runs[0]["header"]["data"]
    for stem in runs[0]["stems"]:
        label, _ = _halves(ab_root, stem)
        expected = np.asarray(Image.fromarray(np.ascontiguousarray(label)).resize((96, 96), Image.BICUBIC))[16:80, 16:80]
        for i in range(2):
            np.testing.assert_array_equal(_png(_run_dir(tmp_path / f"c{i}") / "images" / f"{stem}_real_A.png"),
                                          expected)


def test_a_rerun_replaces_the_earlier_outputs(setup, ab_root, tmp_path):
    base, _ = setup
    first = run_test(parse_test(_args(base, ab_root, "--eval", "--results_dir", str(tmp_path))), per_page=2,
                     progress=False)
    images = _run_dir(tmp_path) / "images"
    (images / "my_notes.txt").write_text("mine")
    (images / ".orphan.png.abcd1234.tmp").write_bytes(b"half")  # left by a killed writer
    second = run_test(parse_test(_args(base, ab_root, "--eval", "--num_test", "2", "--results_dir", str(tmp_path))),
                      per_page=2, progress=False)
    names = sorted(p.name for p in images.iterdir())
    assert names == sorted([f"{s}_{v}.png" for s in second["stems"] for v in ("real_A", "fake_B", "real_B")]
                           + ["my_notes.txt"])
    assert all(Image.open(p).text["pix2pix_tr_run"] == second["run_id"] for p in images.glob("*.png"))
    assert second["run_id"] != first["run_id"] and sorted(p.name for p in _run_dir(tmp_path).glob("index*.html")) \
        == ["index.html"]


def test_one_test_py_per_results_folder(setup, ab_root, tmp_path, capsys):
    import fcntl
    import os

    base, _ = setup
    run_dir = _run_dir(tmp_path)
    run_dir.mkdir(parents=True)
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"pid 1: test.py --name other\n")
        assert main(_args(base, ab_root, "--results_dir", str(tmp_path))) == 2
        err = capsys.readouterr().err
        assert f"{run_dir} is being written by another test.py (pid 1: test.py --name other); wait for it" in err
    finally:
        os.close(fd)
    assert main(_args(base, ab_root, "--num_test", "1", "--results_dir", str(tmp_path))) == 0


@pytest.mark.parametrize("sig, workers", [("SIGTERM", "0"), ("SIGINT", "2")])
def test_a_signal_stops_test_py_cleanly(setup, ab_root, tmp_path, sig, workers):
    """SIGTERM (to the process) or Ctrl-C (SIGINT to the whole process group, loader workers included): the images
    in flight are finished, no temporary file is left, results.json stays "incomplete", exit status 130."""
    import os
    import signal
    import time

    base, _ = setup
    data = tmp_path / "data" / "val"
    data.mkdir(parents=True)
    sources = sorted((ab_root / "val").glob("*.png"))
    for i in range(40):
        shutil.copy(sources[i % len(sources)], data / f"frame{i:03d}.png")
    results = tmp_path / "results"
    args = _args(base, tmp_path / "data", "--load_size", "256", "--crop_size", "256", "--num_threads", workers,
                 "--results_dir", str(results))  # 256 px: slow enough to be caught mid-run
    proc = subprocess.Popen([sys.executable, str(REPO / "test.py"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, start_new_session=True)
    images = _run_dir(results) / "images"
    deadline = time.monotonic() + 120
    while not list(images.glob("*_fake_B.png")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()
    if sig == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    else:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"test.py: stopped by {sig} after" in err and "Traceback" not in err, err
    run_dir = _run_dir(results)
    assert not list(run_dir.rglob(".*.tmp")), list(run_dir.rglob(".*.tmp"))
    res = json.loads((run_dir / "results.json").read_text())
    assert res["status"] == "incomplete" and res["interrupted"] == sig
    assert 0 < res["n_images"] < 40 and len(res["stems"]) == res["n_images"]
    written = sorted(p.name[: -len("_fake_B.png")] for p in images.glob("*_fake_B.png"))
    assert written == sorted(res["stems"])
    for p in images.glob("*.png"):
        assert Image.open(p).text["pix2pix_tr_run"] == res["run_id"]
        Image.open(p).load()  # complete files
