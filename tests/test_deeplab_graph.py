"""DeepLab's frozen graph run in PyTorch (evaluation.tf_graph, evaluation.deeplab) against TensorFlow's answers.

The fixtures (tests/fixtures/deeplab/) were made by tests/fixtures/make_deeplab_fixtures.py with TensorFlow: graphs of
the form DeepLab's export_model.py writes, random weights at small widths, and what TensorFlow computed from the
frozen files on deterministic frames of several sizes. Set PIX2PIX_TR_TENSORFLOW_PYTHON to a Python that has
TensorFlow (e.g. /work/venv-tf/bin/python) to have the live test remake them with new frames and compare again.
"""

import importlib.util
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.common import ScorerCheckpointError
from evaluation.deeplab import (DeepLabGraph, deeplab_from_bytes, is_deeplab_file, load_deeplab,
                                read_graph_bytes)
from evaluation.tf_graph import (SUPPORTED_OPS, Graph, GraphError, compile_graph, const_node, graph_messages,
                                 looks_like_graph_def, make_node, nearest_table, parse_graph_def, same_padding)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "deeplab"
SCRIPT = Path(__file__).resolve().parent / "fixtures" / "make_deeplab_fixtures.py"


def _script():
    spec = importlib.util.spec_from_file_location("make_deeplab_fixtures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # tensorflow is imported inside its functions only
    return module


MK = _script()


def _labels_agree(ours: np.ndarray, theirs: np.ndarray, where: str) -> None:
    assert ours.shape == theirs.shape, where
    agree = float(np.mean(ours == theirs))
    # all pixels, or all but float ties (never fewer than 99.9%)
    assert agree >= 0.999, f"{where}: {agree:.5f} of the pixels agree with TensorFlow"


def _check_against(directory: Path, kind: str) -> None:
    record = np.load(directory / f"deeplab_{kind}.npz")
    model = load_deeplab(directory / f"deeplab_{kind}.tar.gz")
    seed0 = int(record["frame_seed"])
    for i, (h, w) in enumerate(record["sizes"]):
        frame = MK.synthetic_frame(int(h), int(w), seed=i + seed0)
        assert MK.frame_digest(frame) == str(record[f"digest_{h}x{w}"]), "the frame differs from the fixture's"
        labels = model(torch.from_numpy(frame)[None])
        assert labels.dtype == torch.int64 and labels.shape == (1, h, w)
        _labels_agree(labels[0].numpy(), record[f"labels_{h}x{w}"], f"{kind} {h}x{w}")


@pytest.fixture(scope="module")
def static_model():
    return load_deeplab(FIXTURES / "deeplab_static.tar.gz")


@pytest.fixture(scope="module")
def static_bytes():
    return read_graph_bytes(FIXTURES / "deeplab_static.tar.gz")[0]


# ---------------------------------------------------------------------------------------------- TensorFlow's answers
def test_static_export_gives_tensorflows_labels_at_every_size():
    _check_against(FIXTURES, "static")


def test_dynamic_export_gives_tensorflows_labels_at_every_size():
    _check_against(FIXTURES, "dynamic")


@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_logits_before_the_final_resizes_match_tensorflow(kind):
    record = np.load(FIXTURES / f"deeplab_{kind}.npz")
    data, _ = read_graph_bytes(FIXTURES / f"deeplab_{kind}.tar.gz")
    program = compile_graph(parse_graph_def(data), ["ImageTensor"], [str(record["logits_node"])])
    index = [tuple(s) for s in record["sizes"].tolist()].index((33, 47))
    frame = MK.synthetic_frame(33, 47, seed=index)
    logits = program({"ImageTensor": torch.from_numpy(frame)[None, None]})[0][0, 0].numpy()  # frame 0, batch 0
    theirs = record["logits_33x47"]
    assert logits.shape == theirs.shape
    scale = float(np.abs(theirs).max())
    assert scale > 1.0
    np.testing.assert_allclose(logits, theirs, rtol=0, atol=2e-5 * scale)


def test_ops_graph_matches_tensorflow_output_by_output():
    record = np.load(FIXTURES / "ops.npz")
    names = [str(n) for n in record["names"]]
    program = compile_graph(parse_graph_def((FIXTURES / "ops.pb").read_bytes()), ["x"], names)
    for h, w in MK.OPS_SIZES:
        x = record[f"x_{h}x{w}"]
        outputs = program({"x": torch.from_numpy(x)[None]})
        for name, ours in zip(names, outputs):
            theirs = record[f"{name}_{h}x{w}"]
            ours = ours[0].numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
            assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, (name, ours.shape, theirs.shape)
            np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6, err_msg=f"{name} at {h}x{w}")


def test_the_fixtures_exercise_every_supported_op():
    seen = set()
    for name in ("deeplab_static.tar.gz", "deeplab_dynamic.tar.gz"):
        seen |= set(Graph(parse_graph_def(read_graph_bytes(FIXTURES / name)[0])).ops())
    seen |= set(Graph(parse_graph_def((FIXTURES / "ops.pb").read_bytes())).ops())
    assert SUPPORTED_OPS <= seen, sorted(SUPPORTED_OPS - seen)


def test_frames_in_one_call_equal_frames_one_by_one(static_model):
    record = np.load(FIXTURES / "deeplab_static.npz")
    frames = [MK.synthetic_frame(64, 128, seed=s) for s in (1, 7, 8)]
    static_model.frames_per_run = 3  # the three frames through the graph in one run
    try:
        together = static_model(torch.from_numpy(np.stack(frames)))
    finally:
        static_model.frames_per_run = None
    assert together.shape == (3, 64, 128)
    _labels_agree(together[0].numpy(), record["labels_64x128"], "frame 0 of 3")
    for i, frame in enumerate(frames):
        alone = static_model(torch.from_numpy(frame)[None])[0]
        assert torch.equal(alone, together[i])


def test_padding_is_read_from_the_graph(static_model):
    assert static_model.crop_size == (129, 161)
    assert static_model.padded_size(33, 47) == (129, 161)
    dynamic = load_deeplab(FIXTURES / "deeplab_dynamic.tar.gz")
    assert dynamic.crop_size == (33, 33)
    assert dynamic.padded_size(64, 20) == (64, 33)  # pads to at least the crop, never shrinks


def test_a_frame_larger_than_the_crop_is_refused_like_tensorflow_does(static_model):
    record = np.load(FIXTURES / "deeplab_static.npz")
    assert str(record["too_large_error"])  # TensorFlow failed on it too
    h, w = record["too_large"].tolist()
    with pytest.raises(ScorerCheckpointError, match=r"cannot label a 130x161 frame .* crop size 129x161"):
        static_model(torch.from_numpy(MK.synthetic_frame(h, w, seed=99))[None])


@pytest.mark.cuda
def test_the_graph_runs_on_cuda_with_tensorflows_labels():
    record = np.load(FIXTURES / "deeplab_static.npz")
    model = load_deeplab(FIXTURES / "deeplab_static.tar.gz", device="cuda")
    frame = torch.from_numpy(MK.synthetic_frame(64, 128, seed=1))[None].cuda()
    from evaluation.protocols import full_fp32

    with full_fp32():
        labels = model(frame)
    assert labels.device.type == "cuda"
    _labels_agree(labels[0].cpu().numpy(), record["labels_64x128"], "cuda 64x128")


@pytest.mark.slow
def test_live_tensorflow_on_new_frames(tmp_path):
    """TensorFlow itself, when there is one: in this process, or the Python named by PIX2PIX_TR_TENSORFLOW_PYTHON."""
    python = os.environ.get("PIX2PIX_TR_TENSORFLOW_PYTHON")
    if importlib.util.find_spec("tensorflow") is not None:
        python = sys.executable
    if not python:
        pytest.skip("TensorFlow is not importable and PIX2PIX_TR_TENSORFLOW_PYTHON is not set")
    done = subprocess.run([python, str(SCRIPT), "--out", str(tmp_path), "--frame-seed", "20"], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    for kind in ("static", "dynamic"):
        _check_against(tmp_path, kind)


# ---------------------------------------------------------------------------------------------- files that do not fit
def _one_sentence(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_an_unsupported_op_is_refused_by_name_and_node(static_bytes, tmp_path):
    graph = parse_graph_def(static_bytes)
    relu = next(node for node in graph.node if node.op == "Relu")
    relu.op = "Softplus"
    path = tmp_path / "frozen_inference_graph.pb"
    path.write_bytes(graph.SerializeToString())
    with pytest.raises(ScorerCheckpointError) as info:
        load_deeplab(path)
    text = _one_sentence(info.value)
    assert "'Softplus'" in text and repr(relu.name) in text and str(path) in text


def test_a_truncated_file_is_one_sentence(static_bytes, tmp_path):
    path = tmp_path / "frozen_inference_graph.pb"
    path.write_bytes(static_bytes[: len(static_bytes) // 2])
    with pytest.raises(ScorerCheckpointError) as info:
        load_deeplab(path)
    text = _one_sentence(info.value)
    assert str(path) in text and ("truncated" in text or "not a readable" in text)


@pytest.mark.parametrize("cut", [0.25, 0.9])
def test_a_truncated_tarball_is_one_sentence(cut, tmp_path):
    data = (FIXTURES / "deeplab_static.tar.gz").read_bytes()
    path = tmp_path / "deeplab.tar.gz"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ScorerCheckpointError) as info:
        load_deeplab(path)
    assert str(path) in _one_sentence(info.value)


def test_a_graph_without_the_deeplab_nodes_is_named(tmp_path):
    path = tmp_path / "other.pb"
    path.write_bytes((FIXTURES / "ops.pb").read_bytes())
    with pytest.raises(ScorerCheckpointError, match="without the nodes ImageTensor and SemanticPredictions") as info:
        load_deeplab(path)
    _one_sentence(info.value)
    graph = graph_messages()["GraphDef"]()
    graph.node.append(make_node("ImageTensor", "Placeholder", dtype=("type", 4)))
    path.write_bytes(graph.SerializeToString())
    with pytest.raises(ScorerCheckpointError, match="without the node SemanticPredictions"):
        load_deeplab(path)


def test_a_graph_reading_a_missing_node_is_named(tmp_path):
    graph = graph_messages()["GraphDef"]()
    graph.node.append(make_node("ImageTensor", "Placeholder", dtype=("type", 4)))
    graph.node.append(make_node("SemanticPredictions", "Identity", ["gone:0"]))
    path = tmp_path / "g.pb"
    path.write_bytes(graph.SerializeToString())
    with pytest.raises(ScorerCheckpointError, match="reading 'gone', which the graph does not hold"):
        load_deeplab(path)


def test_the_pb_inside_the_tarball_is_found_by_content(static_bytes, tmp_path):
    # the same graph as a plain .pb, and in an archive under names that say nothing
    pb = tmp_path / "frozen_inference_graph.pb"
    pb.write_bytes(static_bytes)
    archive = tmp_path / "download"
    with tarfile.open(archive, "w") as tar:  # uncompressed tar this time
        for name, data in (("a/notes.txt", b"\x0a\x05hello not a graph"), ("a/blob", static_bytes)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    frame = torch.from_numpy(MK.synthetic_frame(33, 47, seed=2))[None]
    from_pb, from_tar = load_deeplab(pb), load_deeplab(archive)
    assert from_tar.source.endswith(":a/blob")
    assert torch.equal(from_pb(frame), from_tar(frame))
    assert is_deeplab_file(pb) and is_deeplab_file(archive) and is_deeplab_file(FIXTURES / "deeplab_static.tar.gz")
    legacy = tmp_path / "legacy.pth"  # PyTorch's legacy tar checkpoint layout is not taken for an archive of ours
    with tarfile.open(legacy, "w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("sys_info")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    assert not is_deeplab_file(legacy)


def test_an_archive_without_a_graph_is_one_sentence(tmp_path):
    path = tmp_path / "x.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("train_fine/model.ckpt.index")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"\x00abc"))
    with pytest.raises(ScorerCheckpointError, match=r"without a frozen DeepLab graph .*model\.ckpt\.index") as info:
        load_deeplab(path)
    _one_sentence(info.value)


def test_a_missing_file_says_where_the_tarball_is_published(tmp_path):
    with pytest.raises(ScorerCheckpointError, match="download.tensorflow.org/models/deeplab_cityscapes_xception71"):
        load_deeplab(tmp_path / "nothing.pb")


def test_graph_defs_are_told_from_caffe_and_torch_files(static_bytes):
    assert looks_like_graph_def(static_bytes[:64])
    assert looks_like_graph_def(static_bytes[:9])  # a head that ends inside the first name
    caffe_head = b"\x0a\x0cFCN8s-caffe!\x12\x04conv"  # NetParameter: name, then layers
    assert not looks_like_graph_def(caffe_head)
    assert not looks_like_graph_def(b"PK\x03\x04")
    buffer = io.BytesIO()
    torch.save({"a": torch.zeros(2)}, buffer)
    assert not looks_like_graph_def(buffer.getvalue()[:64])


def test_training_mode_batch_norm_is_refused(static_bytes):
    graph = parse_graph_def(static_bytes)
    bn = next(node for node in graph.node if node.op == "FusedBatchNorm")
    bn.attr["is_training"].b = True
    with pytest.raises(ScorerCheckpointError, match="is_training=true"):
        deeplab_from_bytes(graph.SerializeToString(), "g.pb")


def test_nchw_graphs_are_refused_by_node(static_bytes):
    graph = parse_graph_def(static_bytes)
    conv = next(node for node in graph.node if node.op == "Conv2D")
    conv.attr["data_format"].s = b"NCHW"
    with pytest.raises(ScorerCheckpointError, match=f"data_format NCHW in node '{conv.name}'"):
        deeplab_from_bytes(graph.SerializeToString(), "g.pb")


# ---------------------------------------------------------------------------------------------- arithmetic
def test_same_padding_puts_the_odd_pixel_after():
    assert same_padding(8, 3, 2) == (0, 1)   # out 4: (4-1)*2+3-8 = 1 -> 0 before, 1 after
    assert same_padding(7, 3, 2) == (1, 1)
    assert same_padding(5, 3, 1, dilation=6) == (6, 6)
    assert same_padding(4, 1, 1) == (0, 0)


def test_nearest_tables_follow_tensorflow_rounding():
    # align_corners: round half away from zero of i * (in-1)/(out-1); 3 -> 5: scale 0.5, i=1 -> 0.5 -> 1
    assert nearest_table(3, 5, True, False).tolist() == [0, 1, 1, 2, 2]
    assert nearest_table(3, 5, False, False).tolist() == [0, 0, 1, 1, 2]  # floor(i * 3/5)
    assert nearest_table(3, 5, False, True).tolist() == [0, 0, 1, 2, 2]   # floor((i + .5) * 3/5)


def test_const_and_make_node_round_trip_through_the_reader():
    graph = graph_messages()["GraphDef"]()
    value = np.arange(6, dtype=np.int32).reshape(2, 3)
    graph.node.append(const_node("c", value))
    graph.node.append(make_node("x", "Placeholder", dtype=("type", 1)))
    graph.node.append(make_node("y", "Mul", ["x", "c:0"], T=("type", 3)))
    parsed = parse_graph_def(graph.SerializeToString())
    program = compile_graph(parsed, ["x"], ["c", "y"])
    x = torch.full((2, 2, 3), 2, dtype=torch.int32)
    c, y = program({"x": x})
    assert np.array_equal(c, value) and torch.equal(y, x * torch.from_numpy(value))
    with pytest.raises(GraphError, match="has no node named 'z'"):
        compile_graph(parsed, ["x"], ["z"])


def test_the_deeplab_module_moves_and_reports_its_device(static_model):
    assert isinstance(static_model, DeepLabGraph)
    assert static_model.device.type == "cpu"
    assert "SpaceToBatchND" in static_model.ops and "FusedBatchNorm" in static_model.ops
    with pytest.raises(ValueError, match="uint8 frames"):
        static_model(torch.zeros(1, 8, 8, 3))


# ---------------------------------------------------------------------------------------------- as an FCN-score scorer
def _val_frames(city):
    return sorted(p.name[: -len("_gtFine_labelIds.png")] for p in (city / "gtFine" / "val").rglob("*_labelIds.png"))


def _fake_results(city, root, size=(64, 64)):
    from PIL import Image

    images = root / "images"
    images.mkdir(parents=True)
    for frame in _val_frames(city):
        photo = city / "leftImg8bit" / "val" / frame.split("_")[0] / f"{frame}_leftImg8bit.png"
        Image.open(photo).convert("RGB").resize(size, Image.BICUBIC).save(images / f"{frame}_fake_B.png")
    return root


def _expected_confusion(model, city, photos):
    """Labels of each photo by the graph directly, against the ground truth resized (nearest) to the photo."""
    from PIL import Image

    from evaluation.labels import ids_to_train_ids
    from evaluation.metrics import confusion_matrix

    conf = np.zeros((19, 19), dtype=np.int64)
    for frame, photo in photos.items():
        label = city / "gtFine" / "val" / frame.split("_")[0] / f"{frame}_gtFine_labelIds.png"
        gt = ids_to_train_ids(np.asarray(Image.open(label).resize(photo.size, Image.NEAREST)))
        pred = model(torch.from_numpy(np.array(photo))[None])[0]
        conf += confusion_matrix(torch.from_numpy(gt), pred, 19)
    return conf


def test_load_scorer_reads_the_tarball_and_the_pb_as_the_dpc_scorer(static_bytes, tmp_path):
    from evaluation import protocols as P
    from evaluation.scorer import load_scorer

    pb = tmp_path / "frozen_inference_graph.pb"
    pb.write_bytes(static_bytes)
    for path in (FIXTURES / "deeplab_static.tar.gz", pb):
        scorer = load_scorer(path)
        assert scorer.kind == "deeplab_dpc" and P.default_protocol(scorer) == "dpc"
        assert scorer.input_convention == "uint8_rgb" and scorer.image_size == 256
        assert scorer.describe()["arch_kwargs"]["crop_size"] == [129, 161]
        frame = torch.from_numpy(MK.synthetic_frame(33, 47, seed=2))[None]
        record = np.load(FIXTURES / "deeplab_static.npz")
        assert np.array_equal(scorer.predict(frame)[0].numpy(), record["labels_33x47"])
    for other in ("pix2pix", "256", "drn"):
        with pytest.raises(Exception, match=f"--protocol {other} does not fit .*use --protocol dpc"):
            P.check_protocol(scorer, other, False)


def test_dpc_protocol_end_to_end_and_the_gt_row(synthetic_city, tmp_path):
    """fcn_score --protocol dpc counts what the graph says at the photo's size; --real feeds the real photos
    resized (bicubic) to 256x256, "the resized 256x256 version of original images" of the paper."""
    from PIL import Image

    from evaluation.fcn_score import fcn_score

    city = synthetic_city
    scorer_file = FIXTURES / "deeplab_dynamic.tar.gz"  # pads to at least 33x33, so 256x256 frames fit
    model = load_deeplab(scorer_file)
    results = _fake_results(city, tmp_path / "results" / "adam" / "val_latest")
    out = fcn_score(results, city, scorer_file, tmp_path / "adam", device="cpu", progress=False)
    assert out["protocol"] == "dpc" and out["synthesized_size"] == [64, 64] and out["num_frames"] == 4
    photos = {f: Image.open(results / "images" / f"{f}_fake_B.png").convert("RGB") for f in _val_frames(city)}
    assert np.array_equal(np.array(out["confusion_matrix"]), _expected_confusion(model, city, photos))
    assert "crop size 33x33" in out["protocol_detail"]
    gt = fcn_score(None, city, scorer_file, tmp_path / "gt", real=True, device="cpu", progress=False)
    assert gt["label"] == "GT" and gt["synthesized_size"] == [256, 256] and gt["real_size"] == 256
    reals = {f: Image.open(city / "leftImg8bit" / "val" / f.split("_")[0] / f"{f}_leftImg8bit.png").convert("RGB")
             .resize((256, 256), Image.BICUBIC) for f in _val_frames(city)}
    assert np.array_equal(np.array(gt["confusion_matrix"]), _expected_confusion(model, city, reals))
    text = (tmp_path / "gt" / "evaluation_results.txt").read_text()
    assert "protocol: dpc" in text and "deeplab_dpc" in text


def test_frames_larger_than_the_crop_are_one_sentence_from_fcn_score(synthetic_city, tmp_path, capsys):
    from evaluation.common import run_cli
    from evaluation.fcn_score import main

    results = _fake_results(synthetic_city, tmp_path / "r", size=(256, 256))
    code = run_cli(main, ["--result_dir", str(results), "--cityscapes_dir", str(synthetic_city), "--scorer",
                          str(FIXTURES / "deeplab_static.tar.gz"), "--output_dir", str(tmp_path / "o"),
                          "--device", "cpu", "--no_progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "cannot label a 256x256 frame" in err and "crop size 129x161" in err


# ---------------------------------------------------------------------------------------------- compare_runs
def _write_results(folder, kind, sha, protocol, label, scores=None, **extra):
    import json

    folder.mkdir(parents=True, exist_ok=True)
    body = {"label": label, "scores": scores or {"per_pixel_acc": 0.5, "per_class_acc": 0.25, "class_iou": 0.125},
            "protocol": protocol, "convention": "cityscapes", "num_frames": 500, "synthesized_size": [256, 256],
            "scorer": {"kind": kind, "sha256": sha * 32, "arch": kind}, **extra}
    (folder / "evaluation_results.json").write_text(json.dumps(body))


def test_compare_runs_prints_every_scorer_of_every_run_with_the_published_numbers(tmp_path, capsys):
    import json

    from evaluation import compare_runs
    from evaluation.common import run_cli

    for run, label, acc in (("gt", "GT", 0.8), ("adam", "adam", 0.6)):
        root = tmp_path / run
        _write_results(root / "fcn8s", "caffe_fcn8s", "aa", "pix2pix", label,
                       {"per_pixel_acc": acc, "per_class_acc": 0.3, "class_iou": 0.2})
        _write_results(root / "dpc", "deeplab_dpc", "bb", "dpc", label,
                       {"per_pixel_acc": acc + 0.05, "per_class_acc": 0.35, "class_iou": 0.25})
        _write_results(root / "drn", "drn_d_105", "cc", "drn", label, miou=30.0 + acc)
    (tmp_path / "adam" / "fid.json").write_text(json.dumps({"fid": 55.5, "kid_mean": 0.0421, "kid_std": 0.0,
                                                            "weights_sha256": "6726825d" + "0" * 56}))
    table, warnings = compare_runs.runs_table([tmp_path / "gt", tmp_path / "adam"], ["GT", "Adam"])
    lines = table.splitlines()
    header = lines[0]
    for title in ("FCN-8s aaaaaaaa, pix2pix: per-pixel acc.", "DPC-Xception71 bbbbbbbb, dpc: class IOU",
                  "DRN-D-105 cccccccc, drn: mIoU", "FID: Inception 6726825d, folders: FID"):
        assert title in header
    assert lines[2].startswith("| GT | ") and lines[3].startswith("| Adam | ")
    assert "| 55.50 | 0.0421 |" in lines[3] and lines[2].endswith("|  |  |")  # the GT run has no FID
    published = [line for line in lines if "(published)" in line]
    assert any(line.startswith("| TRAdam paper, Table 2: TRAdam (published) |") and "0.660" in line
               for line in published)
    assert any("GAN Compression: original pix2pix (published)" in line and "42.06" in line for line in published)
    assert any("Table 3 (DPC)" in w for w in warnings)
    _write_results(tmp_path / "adam" / "dpc", "deeplab_dpc", "bb", "dpc", "adam", num_frames=100)
    assert any("DPC-Xception71 bbbbbbbb, dpc: rows differ in number of frames" in w
               for w in compare_runs.runs_table([tmp_path / "gt", tmp_path / "adam"])[1])
    assert run_cli(compare_runs.main, ["--runs", str(tmp_path / "gt"), str(tmp_path / "adam")]) == 0
    assert "| adam |" in capsys.readouterr().out
    assert run_cli(compare_runs.main, ["--runs", str(tmp_path / "gt" / "fcn8s" / "nothing")]) == 2


def test_compare_table_names_the_scorer_and_adds_the_published_rows(tmp_path):
    from evaluation import compare_runs

    _write_results(tmp_path / "a", "caffe_fcn8s", "ab", "pix2pix", "A")
    _write_results(tmp_path / "b", "caffe_fcn8s", "ab", "pix2pix", "B")
    table, warnings = compare_runs.compare_table([tmp_path / "a", tmp_path / "b"])
    assert "| TRAdam paper, Table 2: GT (published) | 0.700 | 0.260 | 0.190 |" in table
    assert "Scorer (kind, sha256 prefix, protocol): FCN-8s abababab, pix2pix." in table and warnings == []
