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
    together = static_model(torch.from_numpy(np.stack(frames)))
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
