"""End to end on the tiny synthetic city: train a tiny scorer, score fake and real photos, compare runs."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation import compare_runs
from evaluation.common import (EvaluationError, MissingFramesError, ScorerCheckpointError, run_cli, sha256_file)
from evaluation.fcn_score import fcn_score
from evaluation.fcn_score import main as fcn_main
from evaluation.labels import ids_to_train_ids
from evaluation.scorer import load_scorer
from evaluation.train_scorer import gt_report_dir, train_scorer, train_state_path

SIZE = 32  # the scorer's (and the fake photos') square size


@pytest.fixture(scope="module")
def city(synthetic_city):
    """The shared tiny city of tests/conftest.py (8 train / 4 val frames, 128x64). Read-only."""
    return synthetic_city


@pytest.fixture(scope="module")
def scorer_run(city, tmp_path_factory):
    out = tmp_path_factory.mktemp("scorer") / "scorer.pth"
    result = train_scorer(city, out, arch="fcn8s_small", arch_kwargs={"base": 4}, epochs=2, image_size=SIZE,
                          batch_size=4, device="cpu", progress=False)
    return out, result


def _val_frames(city):
    return sorted(p.name[: -len("_gtFine_labelIds.png")] for p in (city / "gtFine" / "val").glob("*/*_labelIds.png"))


def _fake_results(city, root, frames=None, size=SIZE):
    """What test.py would write, with the real photos (resized) standing in for the generator's output."""
    images = root / "images"
    images.mkdir(parents=True)
    for frame in frames if frames is not None else _val_frames(city):
        photo = city / "leftImg8bit" / "val" / frame.split("_")[0] / f"{frame}_leftImg8bit.png"
        Image.open(photo).convert("RGB").resize((size, size), Image.BICUBIC).save(images / f"{frame}_fake_B.png")
    return root


def test_train_scorer_writes_a_checked_scorer_and_the_gt_row(scorer_run):
    out, result = scorer_run
    assert result["epochs_done"] == 2 and len(result["history"]) == 2 and result["train_frames"] == 8
    assert all(np.isfinite(h["loss"]) for h in result["history"])
    scorer = load_scorer(out)
    assert scorer.arch == "fcn8s_small" and scorer.arch_kwargs["base"] == 4 and scorer.image_size == SIZE
    assert scorer.train["finished"] is True and scorer.sha256 == sha256_file(out)
    assert train_state_path(out).is_file()
    gt = result["gt"]
    assert gt["real"] and gt["protocol"] == "256" and gt["eval_size"] == SIZE and gt["num_frames"] == 4
    for name in ("evaluation_results.json", "evaluation_results.txt", "index.html"):
        assert (gt_report_dir(out) / name).is_file()


def test_fcn_score_pix2pix_protocol_writes_every_output(city, scorer_run, tmp_path):
    out, _ = scorer_run
    res_dir = _fake_results(city, tmp_path / "results" / "myrun" / "val_latest")
    report = tmp_path / "eval"
    results = fcn_score(res_dir, city, out, report, protocol="pix2pix", device="cpu", progress=False, batch_size=3)
    assert results["label"] == "myrun" and results["num_frames"] == 4 and results["protocol"] == "pix2pix"
    assert results["scorer"]["sha256"] == sha256_file(out) and results["scorer"]["path"] == str(out)
    # compared at the label maps' full resolution: every non-ignored GT pixel counted once
    gt_pixels = sum((ids_to_train_ids(np.asarray(Image.open(p))) != 255).sum()
                    for p in (city / "gtFine" / "val").glob("*/*_labelIds.png"))
    assert np.sum(results["confusion_matrix"]) == gt_pixels
    for key in ("per_pixel_acc", "per_class_acc", "class_iou"):
        assert 0.0 <= results["scores"][key] <= 1.0
        assert 0.0 <= results["majority_baseline"][key] <= 1.0
    # the fakes are the real photos: SSIM 1 and the capped PSNR
    assert results["ssim_mean"] == pytest.approx(1.0) and results["psnr_mean"] == 100.0
    on_disk = json.loads((report / "evaluation_results.json").read_text())
    assert on_disk["scores"] == results["scores"] and len(on_disk["frames"]) == 4
    text = (report / "evaluation_results.txt").read_text().splitlines()
    assert re.fullmatch(r"Mean pixel accuracy: \d\.\d{6}", text[0])
    assert text[3] == "************ Per class numbers below ************"
    assert re.fullmatch(r"road           : acc = (\d\.\d{6}|nan), iou = (\d\.\d{6}|nan)", text[4])
    assert any(line.startswith("protocol: pix2pix") for line in text)
    html = (report / "index.html").read_text()
    assert "Per-pixel acc." in html and "majority class" in html and "sky" in html
    srcs = re.findall(r'src="([^"]+)"', html)
    assert len(srcs) == 12 and not any(s.startswith(("/", "http")) for s in srcs)
    assert all((report / s).is_file() for s in srcs)
    assert "http://" not in html and "https://" not in html


def test_fake_real_photos_score_exactly_like_the_real_row(city, scorer_run, tmp_path):
    out, result = scorer_run
    res_dir = _fake_results(city, tmp_path / "run")
    fake = fcn_score(res_dir, city, out, tmp_path / "fake", protocol="256", device="cpu", progress=False)
    assert fake["eval_size"] == SIZE  # the scorer's training size by default
    real = result["gt"]  # train_scorer's GT row: real photos at SIZE, protocol 256
    assert fake["confusion_matrix"] == real["confusion_matrix"]
    assert np.sum(fake["confusion_matrix"]) == sum(
        (ids_to_train_ids(np.asarray(Image.open(p).resize((SIZE, SIZE), Image.NEAREST))) != 255).sum()
        for p in (city / "gtFine" / "val").glob("*/*_labelIds.png"))
    assert real["psnr_mean"] is None and fake["psnr_mean"] is not None


def test_missing_frames_are_listed_on_either_side(city, scorer_run, tmp_path):
    out, _ = scorer_run
    frames = _val_frames(city)
    res_dir = _fake_results(city, tmp_path / "short", frames[1:])
    with pytest.raises(MissingFramesError, match=re.escape(frames[0])) as info:
        fcn_score(res_dir, city, out, tmp_path / "e1", device="cpu", progress=False)
    assert info.value.missing_fake == [frames[0]] and "--allow_subset" in str(info.value)
    ok = fcn_score(res_dir, city, out, tmp_path / "e2", device="cpu", progress=False, allow_subset=True)
    assert ok["num_frames"] == 3 and ok["num_gt_frames"] == 4
    extra = _fake_results(city, tmp_path / "extra", frames)
    shutil.copy(extra / "images" / f"{frames[0]}_fake_B.png", extra / "images" / "nowhere_000001_000019_fake_B.png")
    with pytest.raises(MissingFramesError, match="have no ground truth.*nowhere_000001_000019") as info:
        fcn_score(extra, city, out, tmp_path / "e3", device="cpu", progress=False)
    assert info.value.missing_gt == ["nowhere_000001_000019"]


def test_scorer_checkpoint_mismatches_are_clear_errors(scorer_run, tmp_path):
    out, _ = scorer_run
    ckpt = torch.load(out, weights_only=True)
    with pytest.raises(ScorerCheckpointError, match=r"nothing\.pth does not exist; train one"):
        load_scorer(tmp_path / "nothing.pth")
    bare = tmp_path / "net_G.pth"
    torch.save(ckpt["state_dict"], bare)
    with pytest.raises(ScorerCheckpointError, match=r"net_G\.pth is not an FCN-score scorer checkpoint \(it is a bare"):
        load_scorer(bare)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ScorerCheckpointError, match=r"junk\.pth is not a checkpoint we can load safely: it is damaged"):
        load_scorer(junk)
    cases = {
        "arch": ({"arch": "segformer"}, r"architecture 'segformer', which this version does not know"),
        "classes": ({"class_names": ["a"] * 19}, r"but the FCN-score needs the 19 Cityscapes train classes"),
        "weights": ({"arch_kwargs": {"base": 8}}, r"holds weights that do not fit architecture 'fcn8s_small'"),
        "missing": ({"state_dict": {}}, r"holds weights that do not fit .*missing \d+ tensors"),
        "version": ({"format_version": 99}, r"format version 99"),
    }
    for name, (change, message) in cases.items():
        path = tmp_path / f"{name}.pth"
        torch.save({**ckpt, **change}, path)
        with pytest.raises(ScorerCheckpointError, match=rf"scorer checkpoint .*{name}\.pth .*{message}"):
            load_scorer(path)


def test_resume_continues_and_refuses_mismatches(city, tmp_path):
    out = tmp_path / "s.pth"
    kw = dict(arch="fcn8s_small", arch_kwargs={"base": 4}, image_size=SIZE, batch_size=4, device="cpu",
              progress=False, evaluate=False, max_frames=4)
    first = train_scorer(city, out, epochs=1, **kw)
    assert first["epochs_done"] == 1 and load_scorer(out).train["finished"] is True
    with pytest.raises(EvaluationError, match="already exists; pass --resume"):
        train_scorer(city, out, epochs=2, **kw)
    second = train_scorer(city, out, epochs=2, resume=True, **kw)
    assert [h["epoch"] for h in second["history"]] == [1, 2] and len(second["history"]) == 2
    assert load_scorer(out).train["epochs_done"] == 2
    with pytest.raises(ScorerCheckpointError, match=r"was trained with image_size 32 \(now 48\)"):
        train_scorer(city, out, epochs=3, resume=True, **{**kw, "image_size": 48})
    with pytest.raises(ScorerCheckpointError, match=r"--resume needs .*other\.train_state\.pth, which does not exist"):
        train_scorer(city, tmp_path / "other.pth", epochs=1, resume=True, **kw)
    # a damaged state is explained in our words, and the advice works as written
    state = train_state_path(out)
    state.write_bytes(state.read_bytes()[:500])
    with pytest.raises(ScorerCheckpointError, match=r"is not a checkpoint we can load safely: it is damaged, truncated "
                                                    r"or not a torch checkpoint file; delete it and the scorer file"):
        train_scorer(city, out, epochs=3, resume=True, **kw)
    state.unlink()
    out.unlink()
    assert train_scorer(city, out, epochs=1, **kw)["epochs_done"] == 1


def test_compare_runs_table_and_warnings(city, scorer_run, tmp_path, capsys):
    out, result = scorer_run
    res_dir = _fake_results(city, tmp_path / "results" / "adam" / "val_latest")
    fcn_score(res_dir, city, out, tmp_path / "adam", protocol="256", eval_size=SIZE, device="cpu", progress=False)
    fcn_score(res_dir, city, out, tmp_path / "adam_full", protocol="pix2pix", device="cpu", progress=False)
    gt_dir = gt_report_dir(out)
    table_file = tmp_path / "table.md"
    assert run_cli(compare_runs.main, [str(gt_dir), str(tmp_path / "adam"), "--labels", "GT", "Adam",
                                       "--output", str(table_file)]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert lines[0] == "| Method | Per-pixel acc. | Per-class acc. | Class IOU | PSNR (dB) | SSIM |"
    gt_row = result["gt"]["scores"]
    assert lines[2].startswith(f"| GT | {gt_row['per_pixel_acc']:.3f} | {gt_row['per_class_acc']:.3f} | ")
    assert lines[3].startswith("| Adam | ") and lines[4].startswith("| (majority class: ")
    assert "Warning" not in printed and table_file.read_text() == printed
    table, warnings = compare_runs.compare_table([tmp_path / "adam", tmp_path / "adam_full"])
    assert "| adam |" in table and any("protocol" in w for w in warnings)
    assert run_cli(compare_runs.main, [str(gt_dir), "--labels", "A", "B"]) == 2
    assert "--labels has 2 names for 1 folders" in capsys.readouterr().err
    assert run_cli(compare_runs.main, [str(tmp_path)]) == 2
    assert "holds no evaluation_results.json" in capsys.readouterr().err


def test_cli_errors_are_one_line_and_exit_2(city, scorer_run, tmp_path, capsys):
    out, _ = scorer_run
    base = ["--cityscapes_dir", str(city), "--scorer", str(out), "--output_dir", str(tmp_path / "o")]
    assert run_cli(fcn_main, ["--result_dir", str(tmp_path / "none"), *base]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --result_dir") and "does not exist" in err and err.count("\n") == 1
    assert run_cli(fcn_main, base) == 2
    assert "--result_dir is required" in capsys.readouterr().err
    assert run_cli(fcn_main, ["--real", *base, "--device", "cuda:7"] if not torch.cuda.is_available()
                   else ["--real", *base, "--device", "nonsense"]) == 2
    assert "--device" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert run_cli(fcn_main, ["--result_dir", str(tmp_path / "empty"), *base]) == 2
    assert "holds no *_fake_B.png" in capsys.readouterr().err
    # the real entry point: exit status 2, one sentence, no traceback
    proc = subprocess.run([sys.executable, "-m", "evaluation.train_scorer", "--cityscapes_dir", str(tmp_path / "x"),
                           "--output", str(tmp_path / "s.pth")], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: --cityscapes_dir") and "make_synthetic_cityscapes" in proc.stderr


def test_real_row_from_the_cli_with_pix2pix_compat_headline(city, scorer_run, tmp_path, capsys):
    out, _ = scorer_run
    report = tmp_path / "gt"
    assert run_cli(fcn_main, ["--real", "--cityscapes_dir", str(city), "--scorer", str(out), "--output_dir",
                              str(report), "--protocol", "256", "--eval_size", str(SIZE), "--pix2pix_compat",
                              "--no_progress", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("GT: per-pixel acc ")
    results = json.loads((report / "evaluation_results.json").read_text())
    assert results["convention"] == "pix2pix" and results["scores"] == results["scores_pix2pix"]
    assert set(results) >= {"scores_cityscapes", "scores_gt_classes"}
    assert results["real"] and results["real_size"] == SIZE and results["psnr_mean"] is None


@pytest.mark.parametrize("kwargs, message", [
    ({"output": "scorer.pt"}, r"--output .*scorer\.pt should end in \.pth"),
    ({"epochs": 0}, r"--epochs 0 must be at least 1"),
    ({"batch_size": 0}, r"--batch_size 0 must be at least 1"),
    ({"lr": -1.0}, r"--lr -1\.0 must be positive"),
    ({"image_size": "big"}, r"--image_size 'big' must be a positive integer"),
    ({"image_size": 8}, r"--image_size 8 is too small"),
    ({"arch": "unet"}, r"--arch 'unet' is not one of fcn8s_small"),
    ({"amp": "fp8"}, r"--amp 'fp8' is not one of none, bf16"),
    ({"max_frames": 0}, r"--max_frames 0 must be at least 1"),
])
def test_train_scorer_rejects_bad_arguments(city, tmp_path, kwargs, message):
    output = tmp_path / kwargs.pop("output", "scorer.pth")
    with pytest.raises(EvaluationError, match=message):
        train_scorer(city, output, device="cpu", progress=False, **kwargs)


def test_train_scorer_cli_trains_and_prints_the_gt_row(city, tmp_path, capsys):
    from evaluation.train_scorer import main as train_main

    assert run_cli(train_main, ["--cityscapes_dir", str(city), "--output", str(tmp_path / "s.pth"), "--base", "4",
                                "--epochs", "1", "--max_frames", "4", "--image_size", "32", "--batch_size", "4",
                                "--device", "cpu", "--no_progress", "--num_workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"scorer written to {tmp_path / 's.pth'} (1 epochs on 4 frames" in printed
    assert "GT row (real val photos at 32x32, 4 frames): per-pixel acc " in printed
    assert (tmp_path / "s_gt" / "evaluation_results.json").is_file()


def test_train_scorer_cli_rejects_base_for_big_archs(city, tmp_path, capsys):
    from evaluation.train_scorer import main as train_main

    assert run_cli(train_main, ["--cityscapes_dir", str(city), "--output", str(tmp_path / "s.pth"), "--arch",
                                "fcn_resnet50", "--base", "8"]) == 2
    assert "--base only applies to --arch fcn8s_small" in capsys.readouterr().err


def test_bad_ground_truth_and_flags_are_named(city, scorer_run, tmp_path):
    out, _ = scorer_run
    with pytest.raises(EvaluationError, match=r"--protocol 'full' is not one of pix2pix, 256"):
        fcn_score(None, city, out, tmp_path / "o", real=True, protocol="full")
    with pytest.raises(EvaluationError, match=r"--eval_size 4 is too small"):
        fcn_score(None, city, out, tmp_path / "o", real=True, protocol="256", eval_size=4)
    (tmp_path / "not_a_city").mkdir()
    with pytest.raises(EvaluationError, match=r"--cityscapes_dir .* has no gtFine/val/ folder"):
        fcn_score(None, tmp_path / "not_a_city", out, tmp_path / "o", real=True)
    # a city whose label maps are colour images: the error names the file and says which file to use
    bad = tmp_path / "badcity"
    shutil.copytree(city / "gtFine" / "val", bad / "gtFine" / "val")
    shutil.copytree(city / "leftImg8bit" / "val", bad / "leftImg8bit" / "val")
    for ids in (bad / "gtFine" / "val").glob("*/*_labelIds.png"):
        shutil.copy(ids.with_name(ids.name.replace("labelIds", "color")), ids)
    with pytest.raises(EvaluationError, match=r"_gtFine_labelIds\.png is not a label-id image .*not the \*_color\.png"):
        fcn_score(None, bad, out, tmp_path / "o", real=True, device="cpu", progress=False)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "evaluation_results.json").write_text("{not json")
    with pytest.raises(EvaluationError, match=r"evaluation_results\.json is not an FCN-score results file"):
        compare_runs.compare_table([tmp_path / "broken"])


def test_sanity_check_scores_real_and_degraded_photos(city, scorer_run, tmp_path):
    from evaluation.sanity_check import VARIANTS, sanity_check

    out, result = scorer_run
    checked = sanity_check(city, out, tmp_path / "sanity", protocol="256", device="cpu", progress=False)
    assert list(checked["scores"]) == list(VARIANTS) and checked["warnings"] == []
    # the "real" variant is exactly the GT row train_scorer computed
    assert checked["scores"]["real"] == result["gt"]["scores"]
    rows = (tmp_path / "sanity" / "table.md").read_text().splitlines()
    assert [r.split(" | ")[0] for r in rows[2:6]] == ["| real", "| blur", "| lowres", "| noise"]
    assert (tmp_path / "sanity" / "noise" / "index.html").is_file()


def test_images_of_an_earlier_test_run_are_not_scored(city, scorer_run, tmp_path):
    """test.py's results.json lists the frames of its latest run; stale fakes in images/ are ignored."""
    out, _ = scorer_run
    frames = _val_frames(city)
    res_dir = _fake_results(city, tmp_path / "run", frames)
    (res_dir / "results.json").write_text(json.dumps({"stems": frames[:2]}))
    result = fcn_score(res_dir, city, out, tmp_path / "e", device="cpu", progress=False, allow_subset=True)
    assert result["num_frames"] == 2 and [f["frame"] for f in result["frames"]] == frames[:2]
    (res_dir / "results.json").write_text("{not json")
    with pytest.raises(EvaluationError, match="is not a results.json written by test.py"):
        fcn_score(res_dir, city, out, tmp_path / "e2", device="cpu", progress=False)
    with pytest.raises(EvaluationError, match="--num_workers -1 must be 0"):
        fcn_score(_fake_results(city, tmp_path / "w"), city, out, tmp_path / "e3", device="cpu", num_workers=-1)


def test_train_scorer_is_reproducible_for_a_seed(city, tmp_path):
    """Same seed, same scorer: the weights' initialisation is seeded too, not only the data order."""
    runs = [train_scorer(city, tmp_path / f"s{i}.pth", arch="fcn8s_small", arch_kwargs={"base": 4}, epochs=1,
                         image_size=SIZE, batch_size=4, device="cpu", progress=False, evaluate=False, seed=5)
            for i in range(2)]
    assert sha256_file(tmp_path / "s0.pth") != "" and runs[0]["history"][0]["loss"] == runs[1]["history"][0]["loss"]
    a, b = load_scorer(tmp_path / "s0.pth"), load_scorer(tmp_path / "s1.pth")
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(x, y), name
