"""The newcomer's pipeline (demo.py) end to end at its smallest size: every artifact it promises exists and holds
what it should."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import assert_links_resolve

ROOT = Path(__file__).resolve().parents[1]


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
    assert len(assert_links_resolve(ck / "web" / "index.html")) >= 3

    # 4: the gallery of synthesized val photos
    gallery = Path(summary["gallery"])
    images = gallery.parent / "images"
    for stem in stems:
        for kind in ("real_A", "fake_B", "real_B"):
            assert Image.open(images / f"{stem}_{kind}.png").size == (64, 64)
    assert len(assert_links_resolve(gallery)) >= 9

    # 5-7: scorer, FCN-scores of the real and the synthesized photos, the table
    assert (out / "scorer" / "scorer.pth").is_file()
    for folder, frames in (("real", 3), ("demo_tradam", 3)):
        result = json.loads((out / "fcn" / folder / "evaluation_results.json").read_text())
        assert result["num_frames"] == frames
        for key in ("per_pixel_acc", "per_class_acc", "class_iou"):
            assert 0.0 <= result["scores"][key] <= 1.0
        assert_links_resolve(out / "fcn" / folder / "index.html")
    table = (out / "fcn_score_table.md").read_text()
    assert "GT" in table and "TRAdam" in table and "majority" in table
    for row in ("GT (real photos)", "demo_tradam (synthesized)", "majority class everywhere"):
        assert set(summary["scores"][row]) == {"per_pixel_acc", "per_class_acc", "class_iou"}
    assert "demo finished" in proc.stdout and "open in a browser" in proc.stdout

    # a second run finds every step done and only rebuilds the table
    again = subprocess.run([sys.executable, "demo.py", "--preset", "tiny", "--out", str(out), "--device", "cpu"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("(skipping ") == 7
    assert [s["command"].split()[2] for s in json.loads((out / "demo_summary.json").read_text())["steps"]] == \
        ["evaluation.compare_runs"]

    # issue 21 #15: another --seed into the same folder is refused before anything runs, naming the flag; the
    # summary still describes the seed-0 run
    before = (out / "demo_summary.json").read_bytes()
    other = subprocess.run([sys.executable, "demo.py", "--preset", "tiny", "--out", str(out), "--device", "cpu",
                            "--seed", "7"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert other.returncode == 2 and "--seed 0 -> 7" in other.stderr and "--force" in other.stderr
    assert "Traceback" not in other.stderr and (out / "demo_summary.json").read_bytes() == before

    # a training step that did not finish (its record says "started", a training state on disk) continues
    # instead of restarting, and the steps that read its output run again
    record_file = out / ".steps" / "train_demo_tradam.json"
    record = json.loads(record_file.read_text())
    record_file.write_text(json.dumps(dict(record, status="started")))
    resumed = subprocess.run([sys.executable, "demo.py", "--preset", "tiny", "--out", str(out), "--device", "cpu"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    commands = [s["command"] for s in json.loads((out / "demo_summary.json").read_text())["steps"]]
    assert len(commands) == 4 and "train.py" in commands[0] and commands[0].endswith("--continue_train")
    assert "test.py" in commands[1] and "--result_dir" in commands[2] and "compare_runs" in commands[3]
    assert json.loads(record_file.read_text())["status"] == "done"


def test_demo_rejects_an_unknown_preset():
    proc = subprocess.run([sys.executable, "demo.py", "--preset", "huge"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--preset" in proc.stderr and "invalid choice" in proc.stderr


def test_a_failing_step_stops_with_a_message_and_keeps_the_log(tmp_path):
    from pix2pix_tr.steps import Step, StepFailed, execute, plan

    log = []
    step = Step("boom", "boom", [sys.executable, "-c", "raise SystemExit(3)"], [tmp_path / "x"])
    with pytest.raises(StepFailed) as stop:
        execute(plan([step], tmp_path), tmp_path, log=log, program="demo.py")
    assert "failed with exit status 3" in str(stop.value) and "finished steps are kept" in str(stop.value)
    assert stop.value.returncode == 3
    assert log[0]["returncode"] == 3 and log[0]["command"].startswith("python -c")
    assert json.loads((tmp_path / ".steps" / "boom.json").read_text())["status"] == "started"


# ------------------------------------------------------------------ reruns of a pipeline (issue 21, #14 and #15)

def _writer(path: Path, text: str, source: Path | None = None) -> list[str]:
    """A command that writes ``text`` (and the content of ``source``) to ``path``."""
    code = (f"import pathlib; p = pathlib.Path({str(path)!r}); p.parent.mkdir(parents=True, exist_ok=True); "
            f"s = pathlib.Path({str(source)!r}).read_text() if {source is not None} else ''; "
            f"p.write_text(s + {text!r})")
    return [sys.executable, "-c", code, "--value", text]


def _pipeline(work: Path, a_text="a1", b_text="b1"):
    from pix2pix_tr.steps import Step

    return [Step("a", "step a", _writer(work / "a" / "out.txt", a_text), [work / "a"]),
            Step("b", "step b", _writer(work / "b" / "out.txt", b_text, work / "a" / "out.txt"), [work / "b"], ["a"])]


def _run(work: Path, force=False, **texts) -> list[str]:
    from pix2pix_tr.steps import execute, plan

    return [entry["step"] for entry in execute(plan(_pipeline(work, **texts), work, force=force), work)]


def test_a_pipeline_rerun_continues_exactly_redoes_cleanly_or_refuses(tmp_path):
    from pix2pix_tr.steps import StepRefused, plan

    work = tmp_path / "work"
    assert _run(work) == ["step a", "step b"]
    assert (work / "b" / "out.txt").read_text() == "a1b1"
    assert _run(work) == []  # the same commands, finished: nothing runs
    (work / "b" / "stale.txt").write_text("left by the old b")
    with pytest.raises(StepRefused) as refused:  # new settings for b: refused before anything runs
        plan(_pipeline(work, b_text="b2"), work)
    assert "step b was run with other settings (--value b1 -> b2)" in str(refused.value)
    assert "--force" in str(refused.value)
    assert _run(work, force=True, b_text="b2") == ["step b"]  # only the changed step, its old outputs removed
    assert (work / "b" / "out.txt").read_text() == "a1b2" and not (work / "b" / "stale.txt").exists()
    # a changed first step, forced: the step that reads it runs again although its own command is the same
    assert _run(work, force=True, a_text="a2", b_text="b2") == ["step a", "step b"]
    assert (work / "b" / "out.txt").read_text() == "a2b2"


def test_outputs_no_record_explains_are_refused_and_an_interrupted_step_continues(tmp_path):
    from pix2pix_tr.steps import Step, StepRefused, plan

    work = tmp_path / "work"
    (work / "a").mkdir(parents=True)
    (work / "a" / "out.txt").write_text("made by someone else")
    with pytest.raises(StepRefused, match=r"step a: .*a holds output that no recorded run of this command made"):
        plan(_pipeline(work), work)
    assert _run(work, force=True) == ["step a", "step b"]
    record = work / ".steps" / "a.json"
    record.write_text(json.dumps(dict(json.loads(record.read_text()), status="started")))
    (work / "a" / "state").write_text("where it stopped")
    step = Step("a", "step a", _writer(work / "a" / "out.txt", "a1"), [work / "a"],
                resume=(work / "a" / "state", "--continue"))
    (decision,) = plan([step], work)
    assert decision.action == "resume"
    (decision,) = plan([Step("a", "step a", step.command, [work / "a"])], work)  # no way to continue: start over
    assert decision.action == "run"
    with pytest.raises(ValueError, match="outside the work folder"):
        plan([Step("x", "x", step.command, [tmp_path / "elsewhere"])], work)


def _gan_args(argv):
    sys.path.insert(0, str(ROOT))
    from experiments import gan_compare

    parser = gan_compare.build_parser()
    args = parser.parse_args(argv)
    gan_compare.check_args(parser, args)
    return gan_compare, args


def _pretend_finished(gan_compare, args, status="done"):
    """Records and products as if every step of ``args`` had run (no training: only the bookkeeping)."""
    from pix2pix_tr.steps import _identity, _write_record

    out = Path(args.out).resolve()
    ids = {}
    for step in gan_compare.plan(args):
        if step.always:
            continue
        ids[step.key] = f"id-{step.key}"
        _write_record(out, step.key, dict(command=_identity(step, out), status=status, id=ids[step.key],
                                          inputs={k: ids[k] for k in step.after}))
        step.outputs[0].mkdir(parents=True, exist_ok=True)


def test_gan_compare_rerun_with_new_settings_is_refused_and_partial_work_is_continued(tmp_path, capsys):
    base = ["--synthetic", "4", "2", "--size", "64", "--n_epochs", "3", "--n_epochs_decay", "0", "--arms", "adam",
            "tradam", "--out", str(tmp_path / "gc"), "--device", "cpu"]
    gan_compare, args = _gan_args(base)
    _pretend_finished(gan_compare, args)
    # #15: other settings into the same folder: refused, nothing runs, the flags that differ are named
    new = [a if a not in ("3",) else "6" for a in base] + ["--tr_lambda", "0.5"]
    assert gan_compare.main(new) == 2
    err = capsys.readouterr().err
    assert "--n_epochs 3 -> 6" in err and "--tr_lambda 0.1 -> 0.5" in err and "--force" in err
    assert not (tmp_path / "gc" / "results.json").exists()
    # with --force the train steps (and what reads them) are redone; the city, the pairs and the scorer are kept
    assert gan_compare.main(new + ["--force", "--dry_run"]) == 0
    printed = capsys.readouterr().out
    assert "(skipping synthetic city" in printed and "(skipping prepare A|B" in printed
    assert "(skipping train scorer_seed0" in printed and "[train adam seed 0] $" in printed
    assert "[FCN-score adam seed 0 (scorer_seed0)] $" in printed and "(skipping FCN-score GT" in printed
    # #14: a training and a scorer interrupted (records "started", their resume states on disk) continue
    out = Path(args.out).resolve()
    for key, state in (("train_adam_seed0", out / "checkpoints" / "adam_seed0" / "training_state.pth"),
                       ("scorer_scorer_seed0", out / "scorer" / "scorer_seed0.train_state.pth")):
        record = out / ".steps" / f"{key}.json"
        record.write_text(json.dumps(dict(json.loads(record.read_text()), status="started")))
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_bytes(b"state")
    assert gan_compare.main(base + ["--dry_run"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"\[train adam seed 0\] \$ .*--continue_train +# interrupted earlier: continuing it", printed)
    assert re.search(r"\[train scorer_seed0\] \$ .*--resume +# interrupted earlier: continuing it", printed)
    assert "(skipping train tradam seed 0" in printed and "[test adam seed 0] $" in printed
