"""The newcomer's pipeline (demo.py) end to end at its smallest size: every artifact it promises exists and holds
what it should."""

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("src", "href") and value and not value.startswith("#"):
                self.links.append(value)


def _assert_links_resolve(page: Path) -> int:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    for link in parser.links:
        assert not re.match(r"^[a-z]+://", link), f"{page} fetches {link} from the network"
        assert (page.parent / unquote(link.split("#")[0])).exists(), f"{page}: broken link {link}"
    return len(parser.links)


@pytest.mark.slow
def test_demo_tiny_runs_every_step_and_writes_every_artifact(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "demo.py", "--preset", "tiny", "--out", str(out), "--device", "cpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    summary = json.loads((out / "demo_summary.json").read_text())
    commands = [step["command"] for step in summary["steps"]]
    for expected in ("make_synthetic_cityscapes.py", "prepare_cityscapes_dataset.py", "train.py", "test.py",
                     "evaluation.train_scorer", "evaluation.fcn_score --real", "evaluation.fcn_score --result_dir",
                     "evaluation.compare_runs"):
        assert any(expected in c for c in commands), f"demo did not run {expected}: {commands}"
    assert all(step["returncode"] == 0 for step in summary["steps"])

    # 1-2: the city in the Cityscapes layout and its A|B pairs with the frame names kept
    val_gt = sorted((out / "cityscapes" / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))
    assert len(val_gt) == 3
    stems = sorted(p.name.replace("_gtFine_labelIds.png", "") for p in val_gt)
    assert sorted(p.stem for p in (out / "pix2pix" / "val").glob("*.png")) == stems
    assert Image.open(out / "pix2pix" / "val" / f"{stems[0]}.png").size == (128, 64)

    # 3: training outputs, loadable as plain state_dicts
    ck = out / "checkpoints" / "demo_tradam"
    for name in ("latest_net_G.pth", "latest_net_D.pth", "training_state.pth", "train_opt.txt", "train_opt.json",
                 "loss_log.csv", "loss_curve.png", "web/index.html"):
        assert (ck / name).is_file(), f"missing {ck / name}"
    weights = torch.load(ck / "latest_net_G.pth", weights_only=True, map_location="cpu")
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
    opt = json.loads((ck / "train_opt.json").read_text())
    assert opt["optimizer"] == "tradam" and opt["direction"] == "BtoA" and opt["netG"] == "unet_64"
    assert _assert_links_resolve(ck / "web" / "index.html") >= 3

    # 4: the gallery of synthesized val photos
    gallery = Path(summary["gallery"])
    images = gallery.parent / "images"
    for stem in stems:
        for kind in ("real_A", "fake_B", "real_B"):
            assert Image.open(images / f"{stem}_{kind}.png").size == (64, 64)
    assert _assert_links_resolve(gallery) >= 9

    # 5-7: scorer, FCN-scores of the real and the synthesized photos, the table
    assert (out / "scorer" / "scorer.pth").is_file()
    for folder, frames in (("real", 3), ("demo_tradam", 3)):
        result = json.loads((out / "fcn" / folder / "evaluation_results.json").read_text())
        assert result["num_frames"] == frames
        for key in ("per_pixel_acc", "per_class_acc", "class_iou"):
            assert 0.0 <= result["scores"][key] <= 1.0
        _assert_links_resolve(out / "fcn" / folder / "index.html")
    table = (out / "fcn_score_table.md").read_text()
    assert "GT" in table and "TRAdam" in table and "majority" in table
    for row in ("GT (real photos)", "demo_tradam (synthesized)", "majority class everywhere"):
        assert set(summary["scores"][row]) == {"per_pixel_acc", "per_class_acc", "class_iou"}
    assert "demo finished" in proc.stdout and "open in a browser" in proc.stdout

    # a second run finds every step done and only rebuilds the table
    again = subprocess.run([sys.executable, "demo.py", "--preset", "tiny", "--out", str(out), "--device", "cpu"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("(skipping:") == 7
    assert [s["command"].split()[2] for s in json.loads((out / "demo_summary.json").read_text())["steps"]] == \
        ["evaluation.compare_runs"]

    # a training step that did not finish (no marker, a training state on disk) continues instead of restarting
    (out / ".done" / "train_demo_tradam").unlink()
    resumed = subprocess.run([sys.executable, "demo.py", "--preset", "tiny", "--out", str(out), "--device", "cpu"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    commands = [s["command"] for s in json.loads((out / "demo_summary.json").read_text())["steps"]]
    assert len(commands) == 2 and "train.py" in commands[0] and commands[0].endswith("--continue_train")
    assert (out / ".done" / "train_demo_tradam").exists()


def test_demo_rejects_an_unknown_preset():
    proc = subprocess.run([sys.executable, "demo.py", "--preset", "huge"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--preset" in proc.stderr and "invalid choice" in proc.stderr


def test_a_failing_step_stops_the_demo_with_a_message_and_keeps_the_log():
    from pix2pix_tr import demo

    log = []
    with pytest.raises(SystemExit) as stop:
        demo.run([sys.executable, "-c", "raise SystemExit(3)"], log)
    assert "failed with exit status 3" in str(stop.value) and "finished steps are kept" in str(stop.value)
    assert log[0]["returncode"] == 3 and log[0]["command"].startswith("python -c")
