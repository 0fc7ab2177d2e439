"""python -m pix2pix_tr.report.compare: runs side by side, same stems in a row, links survive a move."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from pix2pix_tr.report.compare import CompareError, compare_runs, main
from conftest import assert_links_resolve, parse_page

STEMS = [f"frankfurt_000000_{k:06d}" for k in range(5)]


def make_result(run_dir: Path, name: str, stems, value: int, *, with_json=True, optimizer="adam (lr 0.0002)",
                contract=True, run_id=None, full_frame=True):
    """A folder as test.py writes it; fake_B of stem k is filled with (value, k, 0). ``contract``: results.json
    states status, run_id and test_preprocess and every PNG carries the run id (test.py's contract); without it,
    the layout of an older test.py."""
    from PIL.PngImagePlugin import PngInfo

    run_id = run_id or f"run-{name}-{value}"
    info = PngInfo()
    info.add_text("pix2pix_tr_run", run_id)
    images = run_dir / "images"
    images.mkdir(parents=True)
    for stem in stems:
        k = STEMS.index(stem)
        for vis, colour in (("real_A", (1, k, 1)), ("fake_B", (value, k, 0)), ("real_B", (2, k, 2))):
            Image.fromarray(np.full((4, 4, 3), colour, np.uint8)).save(images / f"{stem}_{vis}.png",
                                                                      pnginfo=info if contract else None)
    if with_json:
        meta = {"name": name, "epoch": "latest", "stems": list(stems),
                "header": {"run": name, "epoch": "latest", "optimizer": optimizer}}
        if contract:
            meta.update(status="complete", run_id=run_id,
                        test_preprocess={"preprocess": "resize_and_crop", "load_size": 4 if full_frame else 6,
                                         "crop_size": 4, "crop": "none" if full_frame else "center",
                                         "full_frame": full_frame})
        (run_dir / "results.json").write_text(json.dumps(meta))
        (run_dir / "index.html").write_text("<html></html>")
    return run_dir


def _rows(page: Path):
    imgs = [l for tag, l in parse_page(page).links if tag == "img"]
    return imgs


def test_compare_lines_up_the_same_stems(tmp_path):
    results = tmp_path / "results"
    a = make_result(results / "adam" / "val_latest", "adam", STEMS, 10)
    b = make_result(results / "tradam" / "val_latest", "tradam", STEMS[1:], 20,
                    optimizer="tradam (lr 0.0002, lambda 0.1, S 10)")
    c = make_result(results / "old" / "val_5", "old", STEMS[::-1], 30, with_json=False)
    out = results / "compare"
    res = compare_runs([a, b, c], out, per_page=3)
    assert res["stems"] == STEMS[1:] and res["dropped"] == [STEMS[0]]
    assert res["labels"] == ["adam", "tradam", "old"]
    assert res["pages"] == ["index.html", "index_2.html"]
    text = (out / "index.html").read_text()
    assert "4 input(s) present in all 3 runs; 1 dropped" in text
    assert "tradam (lr 0.0002, lambda 0.1, S 10)" in text and "adam (lr 0.0002)" in text

    rows_seen = []
    for page in res["pages"]:
        assert_links_resolve(out / page)
        imgs = _rows(out / page)
        assert len(imgs) % 5 == 0  # input, 3 runs, ground truth
        for i in range(0, len(imgs), 5):
            row = imgs[i:i + 5]
            stem = Path(unquote(row[0])).name[: -len("_real_A.png")]
            rows_seen.append(stem)
            k = STEMS.index(stem)
            colours = [tuple(np.asarray(Image.open(out / unquote(src)))[0, 0]) for src in row]
            assert colours == [(1, k, 1), (10, k, 0), (20, k, 0), (30, k, 0), (2, k, 2)]
    assert rows_seen == STEMS[1:]
    assert json.loads((out / "compare.json").read_text())["stems"] == STEMS[1:]

    # relative links survive moving the folder that holds the runs and the page
    moved = tmp_path / "elsewhere" / "results_moved"
    shutil.move(str(results), str(moved))
    for page in res["pages"]:
        assert_links_resolve(moved / "compare" / page)


def test_compare_copy_is_self_contained(tmp_path):
    a = make_result(tmp_path / "r" / "a" / "val_latest", "same", STEMS[:2], 10)
    b = make_result(tmp_path / "r" / "b" / "val_latest", "same", STEMS[:2], 20)
    for run in (a, b):  # a run page to link to, and a header naming a path of this machine
        (run / "index.html").write_text("<html></html>")
        meta = json.loads((run / "results.json").read_text())
        meta["header"]["checkpoint"] = str(run.parent / "latest_net_G.pth")
        (run / "results.json").write_text(json.dumps(meta))
    out = tmp_path / "cmp"
    res = compare_runs([a, b], out, copy=True, labels=["Adam", "TRAdam"])
    assert res["labels"] == ["Adam", "TRAdam"] and not res["dropped"]
    moved = tmp_path / "moved_cmp"
    shutil.move(str(out), str(moved))
    shutil.rmtree(tmp_path / "r")
    imgs = _rows(moved / "index.html")
    assert len(imgs) == 2 * 4
    for src in imgs:
        assert (moved / unquote(src)).is_file() and not src.startswith("..")
    # nothing on the page or in compare.json points outside it or names this machine's folders
    page = (moved / "index.html").read_text()
    hrefs = re.findall(r'href="([^"]+)"', page)
    assert hrefs and all((moved / unquote(h)).is_file() for h in hrefs)
    assert str(tmp_path) not in page and str(tmp_path) not in (moved / "compare.json").read_text()


def test_duplicate_names_get_distinct_labels(tmp_path):
    a = make_result(tmp_path / "x" / "val_latest", "run", STEMS[:1], 1)
    b = make_result(tmp_path / "y" / "val_latest", "run", STEMS[:1], 2)
    assert compare_runs([a, b], tmp_path / "o")["labels"] == ["run latest #1", "run latest #2"]


def test_compare_cli_errors(tmp_path, capsys):
    a = make_result(tmp_path / "a" / "val_latest", "a", STEMS[:2], 1)
    b = make_result(tmp_path / "b" / "val_latest", "b", STEMS[2:4], 2)
    cases = [
        ([str(a)], "compare needs at least two result folders"),
        ([str(a), str(tmp_path / "nope")], "nope is not a folder: pass result folders written by test.py"),
        ([str(a), str(b)], "have no input in common"),
        ([str(a), str(a), "--labels", "x"], "--labels got 1 label(s) for 2 run folder(s)"),
        ([str(a), str(tmp_path)], "has neither results.json nor images/*_fake_B.png"),
    ]
    for argv, message in cases:
        assert main([*argv, "--output", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("compare: error: ") and message in err[0], err
    (a / "results.json").write_text("{")
    with pytest.raises(CompareError, match="is not a test.py results.json"):
        compare_runs([a, a], tmp_path / "out")


def test_compare_cli_success(tmp_path, capsys):
    a = make_result(tmp_path / "a" / "val_latest", "a", STEMS, 1)
    b = make_result(tmp_path / "b" / "val_latest", "b", STEMS[:3], 2)
    assert main([str(a), str(b), "--output", str(tmp_path / "out")]) == 0
    assert "compared 3 input(s)" in (out := capsys.readouterr().out) and "2 dropped" in out


def _set_meta(run_dir: Path, **changes):
    path = run_dir / "results.json"
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def test_incomplete_and_mixed_run_folders_are_refused(tmp_path, capsys):
    """fcn_score's rule here too (issue 21 #6): a folder test.py left incomplete, or whose images carry another
    run's id or none, is refused naming the folder and saying to rerun test.py."""
    a = make_result(tmp_path / "a" / "val_latest", "a", STEMS, 1)
    b = make_result(tmp_path / "b" / "val_latest", "b", STEMS, 2)
    _set_meta(b, status="incomplete")
    assert main([str(a), str(b), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{b} is incomplete" in err[0] and "rerun test.py" in err[0]
    assert not (tmp_path / "out").exists()
    # an interrupted rerun of another run over b: one image carries the other run's id, one carries none
    _set_meta(b, status="complete", run_id="new-run")
    with pytest.raises(CompareError, match=rf"{re.escape(str(b))} mixes images of different test\.py runs "
                                           r"\(\S+_fake_B\.png carries run id 'run-b-2', results\.json says "
                                           r"'new-run'\); rerun test\.py"):
        compare_runs([a, b], tmp_path / "out")
    _set_meta(b, run_id="run-b-2")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(b / "images" / f"{STEMS[3]}_fake_B.png")
    with pytest.raises(CompareError, match=r"_fake_B\.png carries no run id"):
        compare_runs([a, b], tmp_path / "out")
    _set_meta(b, stems=STEMS[:3])  # the unmarked image is not listed, so it is not shown: accepted
    assert compare_runs([a, b], tmp_path / "out")["stems"] == STEMS[:3]


def test_older_results_folders_are_accepted_with_one_note(tmp_path, capsys):
    a = make_result(tmp_path / "a" / "val_latest", "a", STEMS, 1, contract=False)
    b = make_result(tmp_path / "b" / "val_latest", "b", STEMS, 2)
    assert main([str(a), str(b), "--output", str(tmp_path / "out")]) == 0
    assert main([str(a), str(b), "--output", str(tmp_path / "out")]) == 0
    notes = [l for l in capsys.readouterr().err.splitlines() if l.startswith("note:")]
    assert len(notes) == 1 and str(a / "results.json") in notes[0] and "cannot be checked" in notes[0]


def test_runs_with_different_test_preprocessing_are_refused(tmp_path):
    a = make_result(tmp_path / "a" / "val_latest", "a", STEMS, 1)
    b = make_result(tmp_path / "b" / "val_latest", "b", STEMS, 2, full_frame=False)
    with pytest.raises(CompareError, match=r"different test-time preprocessing \(preprocess resize_and_crop, "
                                           r"load_size 4, crop_size 4, crop none vs .*load_size 6.*crop center\)"):
        compare_runs([a, b], tmp_path / "out")
    c = make_result(tmp_path / "c" / "val_latest", "c", STEMS, 3, full_frame=False)
    assert compare_runs([b, c], tmp_path / "out")["stems"] == STEMS  # two crops alike line up


def test_compare_never_writes_into_another_tools_output_folder(tmp_path):
    a = make_result(tmp_path / "a" / "val_latest", "a", STEMS, 1)
    b = make_result(tmp_path / "b" / "val_latest", "b", STEMS, 2)
    report = tmp_path / "eval" / "adam"
    report.mkdir(parents=True)
    (report / "evaluation_results.json").write_text("{}")
    (report / "index.html").write_text("fcn_score's page")
    with pytest.raises(CompareError, match=r"holds an fcn_score report \(evaluation_results\.json\)"):
        compare_runs([a, b], report)
    assert (report / "index.html").read_text() == "fcn_score's page"
