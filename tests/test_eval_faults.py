"""Hostile inputs to the evaluator (issue 21 #6-#10 and the rough ones): untrustworthy results folders, outputs
onto inputs, non-finite scorers, impossible numbers, reruns into an existing output folder. Each case asserts the
exit status and the stable part of the one-sentence message (the flag or file named, the advice)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from evaluation import compare_runs
from evaluation.common import EvaluationError, ScorerCheckpointError, run_cli
from evaluation.fcn_score import fcn_score
from evaluation.fcn_score import main as fcn_main
from evaluation.sanity_check import main as sanity_main
from evaluation.sanity_check import sanity_check
from evaluation.scorer import load_scorer
from evaluation.train_scorer import gt_report_dir, train_scorer, train_state_path
from evaluation.train_scorer import main as train_main

SIZE = 32


@pytest.fixture(scope="module")
def scorer(synthetic_city, tmp_path_factory):
    out = tmp_path_factory.mktemp("fault_scorer") / "scorer.pth"
    train_scorer(synthetic_city, out, arch="fcn8s_small", arch_kwargs={"base": 4}, epochs=1, image_size=SIZE,
                 batch_size=4, device="cpu", progress=False, evaluate=False)
    return out


def _frames(city):
    return sorted(p.name[: -len("_gtFine_labelIds.png")] for p in (city / "gtFine" / "val").glob("*/*_labelIds.png"))


def results_folder(city, run_dir, *, run_id="run-1", status="complete", meta=True, full_frame=True, frames=None):
    """A results folder as test.py writes it under its contract: results.json with status, run_id and
    test_preprocess, and every PNG carrying the run id (``meta=False``: an older test.py's results.json)."""
    images = run_dir / "images"
    images.mkdir(parents=True)
    info = PngInfo()
    info.add_text("pix2pix_tr_run", run_id)
    frames = _frames(city) if frames is None else frames
    for frame in frames:
        photo = city / "leftImg8bit" / "val" / frame.split("_")[0] / f"{frame}_leftImg8bit.png"
        img = Image.open(photo).convert("RGB").resize((SIZE, SIZE), Image.BICUBIC)
        img.save(images / f"{frame}_fake_B.png", pnginfo=info)
    body = {"name": run_dir.parent.name, "epoch": "latest", "stems": frames}
    if meta:
        body.update(status=status, run_id=run_id,
                    test_preprocess={"preprocess": "resize_and_crop", "load_size": SIZE if full_frame else 48,
                                     "crop_size": SIZE, "crop": "none" if full_frame else "center",
                                     "full_frame": full_frame})
    (run_dir / "results.json").write_text(json.dumps(body))
    (run_dir / "index.html").write_text("test.py's gallery")
    return run_dir


def _cli(main, argv, capsys):
    rc = run_cli(main, [str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err.strip().splitlines()


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*")}


# ---------------------------------------------------------------------------------------------- #6/#7 results folders
def test_incomplete_results_folder_is_refused(synthetic_city, scorer, tmp_path, capsys):
    run = results_folder(synthetic_city, tmp_path / "results" / "run" / "val_latest", status="incomplete")
    rc, _, err = _cli(fcn_main, ["--result_dir", run, "--cityscapes_dir", synthetic_city, "--scorer", scorer,
                                 "--output_dir", tmp_path / "eval", "--device", "cpu", "--no_progress"], capsys)
    assert rc == 2 and len(err) == 1 and f"{run} is incomplete" in err[0] and "rerun test.py" in err[0]
    # the same when its images/ folder is passed directly
    rc, _, err = _cli(fcn_main, ["--result_dir", run / "images", "--cityscapes_dir", synthetic_city, "--scorer",
                                 scorer, "--output_dir", tmp_path / "eval", "--device", "cpu", "--no_progress"], capsys)
    assert rc == 2 and len(err) == 1 and f"{run} is incomplete" in err[0]
    assert not (tmp_path / "eval").exists()


def test_mixed_results_folder_is_refused(synthetic_city, scorer, tmp_path, capsys):
    """An interrupted rerun of test.py over an older run's folder: some images are the new run's, some not."""
    run = results_folder(synthetic_city, tmp_path / "results" / "run" / "val_latest", run_id="new")
    frames = _frames(synthetic_city)
    old = PngInfo()
    old.add_text("pix2pix_tr_run", "old")
    stale = run / "images" / f"{frames[2]}_fake_B.png"
    Image.open(stale).save(stale, pnginfo=old)
    base = ["--result_dir", run, "--cityscapes_dir", synthetic_city, "--scorer", scorer, "--device", "cpu",
            "--no_progress"]
    rc, _, err = _cli(fcn_main, [*base, "--output_dir", tmp_path / "e1"], capsys)
    assert rc == 2 and len(err) == 1
    assert f"{run} mixes images of different test.py runs ({stale.name} carries run id 'old'" in err[0]
    assert "rerun test.py" in err[0]
    Image.open(stale).save(stale)  # no run id at all, while results.json has one
    rc, _, err = _cli(fcn_main, [*base, "--output_dir", tmp_path / "e2"], capsys)
    assert rc == 2 and f"{stale.name} carries no run id" in err[0]
    assert not (tmp_path / "e1").exists() and not (tmp_path / "e2").exists()
    # a trusted folder of the same content scores
    good = results_folder(synthetic_city, tmp_path / "results" / "good" / "val_latest", run_id="new")
    assert fcn_score(good, synthetic_city, scorer, tmp_path / "e3", device="cpu", progress=False)["num_frames"] == 4


def test_results_json_of_an_older_test_py_is_accepted_with_one_note(synthetic_city, scorer, tmp_path, capsys):
    run = results_folder(synthetic_city, tmp_path / "results" / "run" / "val_latest", meta=False)
    for out in ("e1", "e2"):
        rc, printed, err = _cli(fcn_main, ["--result_dir", run, "--cityscapes_dir", synthetic_city, "--scorer", scorer,
                                           "--output_dir", tmp_path / out, "--device", "cpu", "--no_progress"], capsys)
        assert rc == 0 and printed.startswith("run: per-pixel acc ")
        notes = [line for line in err if line.startswith("note:")]
        # printed once per folder and process, not per image or per call
        assert len(notes) == (1 if out == "e1" else 0)
        if notes:
            assert str(run / "results.json") in notes[0] and "older test.py" in notes[0] and "rerun test.py" in notes[0]


def test_cropped_results_are_refused_with_advice(synthetic_city, scorer, tmp_path, capsys):
    """test.py --load_size 48 --crop_size 32 shows a centre crop; the labels are whole frames (#7)."""
    run = results_folder(synthetic_city, tmp_path / "results" / "run" / "val_latest", full_frame=False)
    rc, _, err = _cli(fcn_main, ["--result_dir", run, "--cityscapes_dir", synthetic_city, "--scorer", scorer,
                                 "--output_dir", tmp_path / "eval", "--device", "cpu", "--no_progress"], capsys)
    assert rc == 2 and len(err) == 1
    assert f"--result_dir {run} holds crops of the frames" in err[0] and "--load_size 48 --crop_size 32" in err[0]
    assert "rerun test.py with --load_size equal to --crop_size (--load_size 32), or without --load_size" in err[0]


def test_a_results_json_with_an_unknown_status_or_no_run_id_is_refused(synthetic_city, scorer, tmp_path):
    run = results_folder(synthetic_city, tmp_path / "results" / "run" / "val_latest")
    meta = json.loads((run / "results.json").read_text())
    for change, message in (({"status": "done"}, r"has status 'done', which test\.py never writes"),
                            ({"run_id": None}, r"says status complete but holds no run_id")):
        (run / "results.json").write_text(json.dumps({**meta, **change}))
        with pytest.raises(EvaluationError, match=message + r".*rerun test\.py"):
            fcn_score(run, synthetic_city, scorer, tmp_path / "e", device="cpu", progress=False)


# ---------------------------------------------------------------------------------------------- #8/#10 outputs
def test_fcn_score_never_writes_onto_its_inputs(synthetic_city, scorer, tmp_path, capsys):
    run = results_folder(synthetic_city, tmp_path / "results" / "run" / "val_latest")
    other = results_folder(synthetic_city, tmp_path / "results" / "other" / "val_latest")
    before = _snapshot(tmp_path)
    cases = {
        "equal to --result_dir": (run, r"is --result_dir"),
        "inside --result_dir": (run / "images" / "eval", r"is inside --result_dir"),
        "containing --result_dir": (tmp_path / "results", r"contains --result_dir"),
        "inside --cityscapes_dir": (synthetic_city / "eval", r"is inside --cityscapes_dir"),
        "containing the scorer": (scorer.parent, r"contains --scorer"),
        "another test.py folder": (other, r"holds test\.py's results"),
    }
    for what, (output, message) in cases.items():
        rc, _, err = _cli(fcn_main, ["--result_dir", run, "--cityscapes_dir", synthetic_city, "--scorer", scorer,
                                     "--output_dir", output, "--device", "cpu", "--no_progress"], capsys)
        assert rc == 2 and len(err) == 1 and err[0].startswith("error: --output_dir "), what
        assert re.search(message, err[0]), (what, err[0])
    assert _snapshot(tmp_path) == before  # nothing written, test.py's index.html untouched
    assert (run / "index.html").read_text() == "test.py's gallery"


def test_an_output_dir_that_is_a_file_is_refused_before_scoring(synthetic_city, scorer, tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    rc, _, err = _cli(fcn_main, ["--real", "--cityscapes_dir", synthetic_city, "--scorer", scorer,
                                 "--output_dir", tmp_path / "taken" / "eval", "--device", "cpu"], capsys)
    assert rc == 2 and len(err) == 1 and "is a file" in err[0]


def test_compare_runs_never_writes_onto_its_inputs(synthetic_city, scorer, tmp_path, capsys):
    run = results_folder(synthetic_city, tmp_path / "results" / "adam" / "val_latest")
    fcn_score(run, synthetic_city, scorer, tmp_path / "eval" / "adam", device="cpu", progress=False)
    fcn_score(None, synthetic_city, scorer, tmp_path / "eval" / "gt", real=True, device="cpu", progress=False)
    inputs = [tmp_path / "eval" / "gt", tmp_path / "eval" / "adam"]
    before = _snapshot(tmp_path / "eval")
    for output, message in ((inputs[1] / "evaluation_results.json", r"is inside the input folder"),
                            (inputs[0] / "table.md", r"is inside the input folder"),
                            (run / "table.md", r"holds test\.py's results")):
        rc, _, err = _cli(compare_runs.main, [*inputs, "--output", output], capsys)
        assert rc == 2 and len(err) == 1 and err[0].startswith(f"error: --output {output}"), output
        assert re.search(message, err[0]), err[0]
    # the JSON given as a file: writing onto it is refused too
    rc, _, err = _cli(compare_runs.main, [inputs[0] / "evaluation_results.json", inputs[1],
                                          "--output", inputs[0] / "evaluation_results.json"], capsys)
    assert rc == 2 and "evaluation_results.json" in err[0]
    assert _snapshot(tmp_path / "eval") == before
    rc, printed, _ = _cli(compare_runs.main, [*inputs, "--output", tmp_path / "table.md"], capsys)
    assert rc == 0 and (tmp_path / "table.md").read_text() == printed


def test_train_scorer_and_sanity_check_never_write_into_the_data(synthetic_city, scorer, tmp_path, capsys):
    before = _snapshot(synthetic_city)
    rc, _, err = _cli(train_main, ["--cityscapes_dir", synthetic_city, "--output", synthetic_city / "s.pth",
                                   "--epochs", "1", "--device", "cpu"], capsys)
    assert rc == 2 and len(err) == 1 and "--output" in err[0] and "is inside --cityscapes_dir" in err[0]
    rc, _, err = _cli(sanity_main, ["--cityscapes_dir", synthetic_city, "--scorer", scorer,
                                    "--output_dir", synthetic_city / "sanity", "--device", "cpu"], capsys)
    assert rc == 2 and len(err) == 1 and "--output_dir" in err[0] and "is inside --cityscapes_dir" in err[0]
    assert _snapshot(synthetic_city) == before


# ---------------------------------------------------------------------------------------------- #9 non-finite
def test_a_diverging_scorer_training_stops_with_exit_1_and_the_advice_works(synthetic_city, tmp_path, capsys):
    """train_scorer --optimizer sgd --lr 1e30 printed "scorer written" with NaN weights and exit 0."""
    base = ["--cityscapes_dir", synthetic_city, "--base", "4", "--image_size", SIZE, "--batch_size", "4",
            "--max_frames", "8", "--device", "cpu", "--no_progress", "--num_workers", "0", "--optimizer", "sgd"]
    out = tmp_path / "s.pth"
    rc, printed, err = _cli(train_main, [*base, "--output", out, "--epochs", "3", "--lr", "1e30"], capsys)
    assert rc == 1 and len(err) == 1 and "scorer written" not in printed
    assert err[0].startswith("error: train_scorer diverged: ") and "nothing non-finite was saved" in err[0]
    if out.exists():  # whatever was saved is finite and loads
        load_scorer(out)
    assert not gt_report_dir(out).exists()
    advice = re.search(r"run the same command (?:again )?with (?:a lower learning rate, e\.g\. )?--lr (\S+)( and "
                       r"another --output)?", err[0])
    assert advice, err[0]
    new_out = tmp_path / "s2.pth" if advice.group(2) else out
    rc, printed, err = _cli(train_main, [*base, "--output", new_out, "--epochs", "3", "--lr", advice.group(1)], capsys)
    assert rc == 0 and "scorer written" in printed
    assert load_scorer(new_out).train["finished"] is True


def _tamper(scorer_path, tmp_path, name, change):
    ckpt = torch.load(scorer_path, weights_only=True)
    change(ckpt)
    path = tmp_path / f"{name}.pth"
    torch.save(ckpt, path)
    return path


def test_non_finite_or_impossible_scorers_are_refused_naming_the_file(synthetic_city, scorer, tmp_path, capsys):
    def nan_weight(ckpt):
        first = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
        ckpt["state_dict"][first] = torch.full_like(ckpt["state_dict"][first], float("nan"))

    cases = {
        "nan_weights": (nan_weight, r"holds \d+ non-finite \(NaN/inf\) values, e\.g\. in '.+'; its training diverged"),
        "std0": (lambda c: c["normalization"].update(std=[0.5, 0.0, 0.5]), r"has an impossible input normalization"),
        "nanmean": (lambda c: c["normalization"].update(mean=[float("nan"), 0.5, 0.5]),
                    r"has an impossible input normalization"),
        "size0": (lambda c: c.update(image_size=0), r"records image_size 0"),
    }
    for name, (change, message) in cases.items():
        path = _tamper(scorer, tmp_path, name, change)
        with pytest.raises(ScorerCheckpointError, match=rf"scorer checkpoint {re.escape(str(path))} {message}"):
            load_scorer(path)
        rc, _, err = _cli(fcn_main, ["--real", "--cityscapes_dir", synthetic_city, "--scorer", path,
                                     "--output_dir", tmp_path / f"e_{name}", "--device", "cpu"], capsys)
        assert rc == 2 and len(err) == 1 and str(path) in err[0], name
        assert not (tmp_path / f"e_{name}").exists()


def test_non_finite_scores_are_refused_when_scoring(synthetic_city, scorer, tmp_path):
    """A Scorer built in Python (past load_scorer's checks) with std 0 gives inf inputs and NaN logits."""
    loaded = load_scorer(scorer)
    loaded.std = (0.0, 0.0, 0.0)
    with pytest.raises(EvaluationError, match=r"the scorer .* gave \d+ non-finite \(NaN/inf\) class scores.*std "
                                              r"\[0\.0, 0\.0, 0\.0\]"):
        fcn_score(None, synthetic_city, loaded, tmp_path / "e", real=True, device="cpu", progress=False)
    assert not (tmp_path / "e").exists()


# ---------------------------------------------------------------------------------------------- impossible numbers
@pytest.mark.parametrize("command, argv, flag", [
    ("fcn", ["--real_size", "0"], "--real_size"),
    ("fcn", ["--real_size", "-5"], "--real_size"),
    ("fcn", ["--eval_size", "0", "--protocol", "256"], "--eval_size"),
    ("fcn", ["--num_samples", "-1"], "--num_samples"),
    ("fcn", ["--batch_size", "0"], "--batch_size"),
    ("fcn", ["--num_workers", "-2"], "--num_workers"),
    ("train", ["--weight_decay", "-1"], "--weight_decay"),
    ("train", ["--weight_decay", "nan"], "--weight_decay"),
    ("train", ["--lr", "inf"], "--lr"),
    ("train", ["--lr", "nan"], "--lr"),
    ("train", ["--save_every", "-1"], "--save_every"),
    ("train", ["--num_workers", "-1"], "--num_workers"),
    ("train", ["--seed", str(2 ** 62)], "--seed"),
    ("train", ["--base", "0"], "base"),
    ("train", ["--image_size", "0"], "--image_size"),
    ("train", ["--max_frames", "0"], "--max_frames"),
    ("sanity", ["--batch_size", "0"], "--batch_size"),
])
def test_impossible_numbers_are_exit_2_and_one_sentence(synthetic_city, scorer, tmp_path, capsys, command, argv,
                                                         flag):
    out = tmp_path / "out"
    if command == "fcn":
        main, base = fcn_main, ["--real", "--cityscapes_dir", synthetic_city, "--scorer", scorer, "--output_dir", out]
    elif command == "train":
        main, base = train_main, ["--cityscapes_dir", synthetic_city, "--output", out / "s.pth", "--epochs", "1"]
    else:
        main, base = sanity_main, ["--cityscapes_dir", synthetic_city, "--scorer", scorer, "--output_dir", out]
    rc, _, err = _cli(main, [*base, "--device", "cpu", "--no_progress", *argv], capsys)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and flag in err[0], err
    assert not out.exists()  # refused before anything is written


# ---------------------------------------------------------------------------------------------- reruns
def test_fcn_score_rerun_replaces_its_report_cleanly(synthetic_city, scorer, tmp_path):
    run = results_folder(synthetic_city, tmp_path / "results" / "run" / "val_latest")
    out = tmp_path / "eval"
    fcn_score(run, synthetic_city, scorer, out, device="cpu", progress=False, num_samples=4)
    assert len(list((out / "samples").iterdir())) == 12
    (out / ".index.html.abcd1234.tmp").write_text("orphan of a killed write")
    (out / "samples" / ".x_photo.png.abcd1234.tmp").write_text("orphan")
    (out / "notes.txt").write_text("the user's own file")
    fcn_score(run, synthetic_city, scorer, out, device="cpu", progress=False, num_samples=1)
    html = (out / "index.html").read_text()
    shown = set(re.findall(r'src="samples/([^"]+)"', html))
    assert shown == {p.name for p in (out / "samples").iterdir()} and len(shown) == 3
    assert not list(out.glob(".*.tmp")) and (out / "notes.txt").read_text() == "the user's own file"


def test_sanity_check_rerun_on_another_city_leaves_no_stale_photos(synthetic_city, scorer, tmp_path):
    small = tmp_path / "small_city"
    for sub in ("gtFine/val", "leftImg8bit/val"):
        shutil.copytree(synthetic_city / sub, small / sub)
    keep = _frames(synthetic_city)[:2]
    for path in list(small.rglob("*.png")):
        if not path.name.startswith(tuple(keep)):
            path.unlink()
    out = tmp_path / "sanity"
    sanity_check(synthetic_city, scorer, out, protocol="256", device="cpu", progress=False)
    checked = sanity_check(small, scorer, out, protocol="256", device="cpu", progress=False)
    assert checked["warnings"] == []
    for variant in ("real", "noise"):
        photos = sorted(p.name for p in (out / "photos" / variant / "images").iterdir())
        assert photos == [f"{f}_fake_B.png" for f in keep]
        assert json.loads((out / variant / "evaluation_results.json").read_text())["num_frames"] == 2


def test_train_scorer_reruns_continue_or_refuse_and_drop_a_stale_gt_report(synthetic_city, tmp_path, capsys):
    kw = dict(arch="fcn8s_small", arch_kwargs={"base": 4}, image_size=SIZE, batch_size=4, device="cpu",
              progress=False, max_frames=4)
    out = tmp_path / "s.pth"
    first = train_scorer(synthetic_city, out, epochs=1, **kw)
    assert (gt_report_dir(out) / "evaluation_results.json").is_file() and first["gt"] is not None
    # a fresh run refuses while the old scorer's GT report is there, even with the scorer itself gone
    out.unlink()
    train_state_path(out).unlink()
    with pytest.raises(EvaluationError, match=r"the folder .*s_gt \(the GT report of an earlier scorer of that name\) "
                                              r"already exists; remove it, or choose another --output"):
        train_scorer(synthetic_city, out, epochs=1, **kw)
    shutil.rmtree(gt_report_dir(out))
    train_scorer(synthetic_city, out, epochs=1, **kw)
    # resuming to train more epochs without the val score: the report of the earlier scorer is not left behind
    train_scorer(synthetic_city, out, epochs=2, resume=True, evaluate=False, **kw)
    assert not gt_report_dir(out).exists() and load_scorer(out).train["epochs_done"] == 2
