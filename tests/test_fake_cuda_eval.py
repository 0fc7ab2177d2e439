"""The FCN-score's scorers and per-batch scoring on fake CUDA tensors (tier ``fake_cuda``; no GPU needed).

Every scorer we load runs on a fake GPU at its native size, with the watch of ``tests/fake_cuda.py`` recording any
host read, device-to-host copy or op mixing devices:

* the ``train_scorer`` architectures (``--arch``), built on the device at 256x256, and a trained checkpoint loaded
  by ``load_scorer`` and moved there;
* the pix2pix authors' FCN-8s: the published widths (VGG16, fc 4096, 20 outputs) at the official evaluator's
  1024x2048, and the network the ``.caffemodel`` reader builds from a file;
* DRN-D-105 at its published widths, and from a ``DRNSeg`` state-dict file;
* DeepLab's DPC graph interpreter (evaluation/tf_graph.py, evaluation/deeplab.py) on the small graphs of
  tests/fixtures/deeplab/: the static export at its 129x161 crop, the dynamic one (which pads up to any size) at
  the published export's 1025x2049 crop;
* pytorch-fid's FID Inception (``fcn_score --fid``, ``evaluation.fid``), up to the features' read to the host.

Then the per-batch scoring: ``protocols.predict`` under each protocol, and ``scoring.score`` end to end with
``device="cuda"`` (frames loaded on the host by its DataLoader, as in a real run). Two reads to the host are there
by design, and the tests stop at them and say so:

* ``protocols.check_finite_scores`` reads one bool per batch (are the class scores finite?) before the labels are
  used; the tests run its device half and check that it is the only read of ``predict``;
* ``metrics.confusion_matrix`` counts on the device (``torch.bincount``) and returns numpy: its result is read by
  design (and ``torch.bincount``'s output size depends on the values, which fake tensors do not have); the
  end-to-end test checks what reaches it (labels and ground truth on the device, same shape) and counts nothing.

Host work with real values (reading a checkpoint, checking its weights for NaN) runs on the CPU before the fake
device is entered, as ``load_scorer`` does it before its ``.to(device)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fake_cuda import CUDA, is_fake_cuda
from PIL import Image

from evaluation import protocols as P
from evaluation import scoring
from evaluation.caffe_fcn8s import CaffeFCN8s, caffe_messages
from evaluation.deeplab import load_deeplab
from evaluation.drn import DRN_D_105_CHANNELS, DRNSegD105
from evaluation.scorer import ARCHITECTURES, build_scorer, load_scorer, scorer_checkpoint
from evaluation.tf_graph import compile_graph, const_node, graph_messages, make_node
from evaluation.train_scorer import _normalize
from pix2pix_tr.io import atomic_torch_save

pytestmark = pytest.mark.fake_cuda

DEEPLAB = __import__("pathlib").Path(__file__).resolve().parent / "fixtures" / "deeplab"
CITYSCAPES = (1024, 2048)  # (height, width) of a Cityscapes frame and label map


def assert_on_device(net: torch.nn.Module) -> None:
    for name, t in list(net.named_parameters()) + list(net.named_buffers()):
        assert is_fake_cuda(t), f"{name} is on {t.device}"


@pytest.fixture
def finite_check_device_half(monkeypatch):
    """``check_finite_scores`` without its one read: the reduction runs on the device, the bool is not read (the
    boundary; see the module docstring). Returns the reductions it made."""
    made = []

    def device_half(scorer, out):
        finite = torch.isfinite(out).all()
        assert is_fake_cuda(finite) and finite.dim() == 0
        made.append(finite)

    monkeypatch.setattr(P, "check_finite_scores", device_half)
    return made


# ----------------------------------------------------------------------------- trained scorers (train_scorer --arch)
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_each_trainable_scorer_is_built_on_the_device_and_labels_full_size_photos(fake_gpu, arch):
    with fake_gpu, torch.device("cuda"):
        net = build_scorer(arch).eval()
        assert_on_device(net)
        with torch.inference_mode():
            logits = net(torch.randn(2, 3, 256, 256))
        assert is_fake_cuda(logits) and logits.shape == (2, 19, 256, 256)
    fake_gpu.assert_no_sync()


def test_a_trained_checkpoint_is_moved_to_the_device_and_scores_there(fake_gpu, finite_check_device_half, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "scorer.pth"
    atomic_torch_save(scorer_checkpoint(build_scorer("fcn8s_small"), arch="fcn8s_small", image_size=256), path)
    scorer = load_scorer(path)  # the host half: read, rebuilt, checked for NaN
    photos = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 256, 256, 3), dtype=np.uint8))
    with fake_gpu:
        scorer.model.to(CUDA)  # what load_scorer(path, "cuda") ends with
        assert scorer.device == CUDA
        assert_on_device(scorer.model)
        batch = _normalize(photos.to(CUDA, non_blocking=True), scorer.mean, scorer.std)  # train_scorer's input path
        for protocol, label_size in (("256", (256, 256)), ("pix2pix", (256, 256))):
            labels = P.predict(scorer, protocol, batch, label_size)
            assert is_fake_cuda(labels) and labels.shape == (3, 256, 256) and labels.dtype == torch.int64
        assert is_fake_cuda(scorer.predict(batch))
    fake_gpu.assert_no_sync()
    assert len(finite_check_device_half) == 2


def test_the_finite_check_is_the_one_host_read_of_a_prediction(fake_gpu, tmp_path):
    """``predict`` unpatched: it gets as far as the finite check's bool, which is its only read (by design)."""
    torch.manual_seed(0)
    path = tmp_path / "scorer.pth"
    atomic_torch_save(scorer_checkpoint(build_scorer("fcn8s_small"), arch="fcn8s_small", image_size=256), path)
    scorer = load_scorer(path)
    with fake_gpu:
        scorer.model.to(CUDA)
        with pytest.raises(Exception, match="_local_scalar_dense|data-dependent|DataDependent"):
            P.predict(scorer, "256", torch.randn(2, 3, 256, 256, device=CUDA), (256, 256))
    assert fake_gpu.watch.events == ["host read of a cuda:0 value (aten._local_scalar_dense.default)"]


# ----------------------------------------------------------------------------- the pix2pix authors' FCN-8s
def test_the_published_fcn8s_runs_on_the_device_at_the_official_evaluators_size(fake_gpu, finite_check_device_half):
    with fake_gpu, torch.device("cuda"):
        net = CaffeFCN8s((64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512), 4096, 20).eval()
        assert_on_device(net)
        with torch.inference_mode():
            scores = net(torch.randn(1, 3, *CITYSCAPES))  # conv1_1's pad 100 and the three crops at full size
        assert is_fake_cuda(scores) and scores.shape == (1, 20, *CITYSCAPES)
    fake_gpu.assert_no_sync()


def _write_caffemodel(net: CaffeFCN8s, path) -> None:
    messages = caffe_messages()
    model = messages["NetParameter"](name="fcn8s")
    for name, module in net.layers.items():
        layer = model.layer.add(name=name, type="Deconvolution" if name.startswith("up") else "Convolution")
        for tensor in [module.weight] + ([module.bias] if module.bias is not None else []):
            blob = layer.blobs.add()
            blob.shape.dim.extend(tensor.shape)
            blob.data.extend(tensor.detach().reshape(-1).tolist())
    path.write_bytes(model.SerializeToString())


def test_the_caffemodel_readers_network_scores_on_the_device(fake_gpu, finite_check_device_half, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "fcn-8s-cityscapes.caffemodel"
    _write_caffemodel(CaffeFCN8s((4, 4, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8), 12, 20), path)
    scorer = load_scorer(path)
    assert scorer.kind == "caffe_fcn8s" and scorer.input_convention == "bgr255"
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (512, 1024, 3), dtype=np.uint8))
    with fake_gpu:
        scorer.model.to(CUDA)
        assert_on_device(scorer.model)
        batch = torch.stack([P.scorer_input(photo, scorer.input_convention, scorer.mean, scorer.std)] * 2)
        labels = P.predict(scorer, "pix2pix", batch, (1024, 512))
        assert is_fake_cuda(labels) and labels.shape == (2, 512, 1024)
    fake_gpu.assert_no_sync()


# ----------------------------------------------------------------------------- DRN-D-105
def test_drn_d_105_at_its_published_widths_runs_the_drn_protocol_on_the_device(fake_gpu, finite_check_device_half):
    with fake_gpu, torch.device("cuda"):
        net = DRNSegD105(19, DRN_D_105_CHANNELS).eval()
        assert_on_device(net)
    from types import SimpleNamespace

    scorer = SimpleNamespace(model=net, device=CUDA, kind="drn_d_105", path="drn")
    with fake_gpu:
        # pix2pix's 256x256 photos, log-probabilities resized (antialiased bilinear) to the 2048x1024 label maps
        labels = P.predict(scorer, "drn", torch.randn(2, 3, 256, 256, device=CUDA), CITYSCAPES[::-1])
        assert is_fake_cuda(labels) and labels.shape == (2, *CITYSCAPES)
        full = P.predict(scorer, "drn", torch.randn(1, 3, *CITYSCAPES, device=CUDA), CITYSCAPES[::-1])
        assert full.shape == (1, *CITYSCAPES)
    fake_gpu.assert_no_sync()


def test_a_drn_file_is_moved_to_the_device_and_scores_there(fake_gpu, finite_check_device_half, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "drn-d-105_ms_cityscapes.pth"
    torch.save({f"module.{k}": v for k, v in DRNSegD105(19, (4, 4, 4, 4, 4, 6, 8, 8)).state_dict().items()}, path)
    scorer = load_scorer(path)
    assert scorer.kind == "drn_d_105"
    with fake_gpu:
        scorer.model.to(CUDA)
        assert_on_device(scorer.model)
        labels = P.predict(scorer, "drn", torch.randn(2, 3, 256, 256).to(CUDA, non_blocking=True), (256, 256))
        assert is_fake_cuda(labels) and labels.shape == (2, 256, 256)
    fake_gpu.assert_no_sync()


# ----------------------------------------------------------------------------- DeepLab's DPC graph
@pytest.mark.parametrize("kind,size", [("static", (129, 161)), ("dynamic", (1025, 2049)),
                                       ("dynamic", CITYSCAPES)])
def test_the_deeplab_graph_labels_frames_on_the_device(fake_gpu, kind, size):
    scorer = load_scorer(DEEPLAB / f"deeplab_{kind}.tar.gz")  # parsed and compiled on the host
    assert scorer.kind == "deeplab_dpc"
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, *size, 3), dtype=np.uint8))
    with fake_gpu:
        scorer.model.to(CUDA)
        assert scorer.device == CUDA and scorer.model.device == CUDA
        fake_gpu.watch.blocking_uploads.clear()  # (the weights went up once, blocking)
        for frames_per_run in (None, 2):  # the GPU default (4 frames a run) and two runs of one
            scorer.model.frames_per_run = frames_per_run
            labels = P.predict(scorer, "dpc", frames.to(CUDA, non_blocking=True), size[::-1])
            assert is_fake_cuda(labels) and labels.shape == (2, *size) and labels.dtype == torch.int64
    fake_gpu.assert_no_sync()
    assert fake_gpu.watch.blocking_uploads == []  # the interpreter's tables and constants go up non-blocking


def test_a_same_size_bilinear_resize_reads_nothing_on_the_device_and_keeps_tensorflows_values():
    """The interpreter's ResizeBilinear gives its input back when the size does not change; it used to check on
    the host that the input was finite (a read, and a synchronisation on a GPU, for every such node: DeepLab's
    decoder has them). Off the CPU it now computes TensorFlow's formula, x + (x - x) * 0, which is the input where
    it is finite and NaN where it is not: here on the CPU, the full resize of a non-finite input gives exactly that."""
    graph = graph_messages()["GraphDef"]()
    graph.node.extend([make_node("x", "Placeholder", dtype=("type", 1)), const_node("size", np.array([3, 5], np.int32)),
                       make_node("y", "ResizeBilinear", ["x", "size"], align_corners=True)])
    program = compile_graph(graph, ["x"], ["y"])
    x = torch.randn(1, 1, 3, 5, 2)
    x[0, 0, 1, 2, 0], x[0, 0, 2, 4, 1], x[0, 0, 0, 0, 1] = float("inf"), float("nan"), -float("inf")
    full = program({"x": x})[0]  # not finite: the CPU runs the whole formula
    assert torch.equal(full.isnan(), ~torch.isfinite(x))
    assert torch.equal(full.nan_to_num(), (x + (x - x) * 0).nan_to_num())
    from fake_cuda import FakeGPU

    gpu = FakeGPU()
    with gpu:
        y = program({"x": torch.randn(2, 1, 3, 5, 2, device=CUDA)})[0]
        assert is_fake_cuda(y) and y.shape == (2, 1, 3, 5, 2)
    gpu.assert_no_sync()


# ----------------------------------------------------------------------------- fcn_score's loop, end to end
def _results(city, root, size) -> None:
    images = root / "images"
    images.mkdir(parents=True)
    for label in sorted((city / "gtFine" / "val").glob("*/*_gtFine_labelIds.png")):
        frame = label.name[: -len("_gtFine_labelIds.png")]
        photo = city / "leftImg8bit" / "val" / frame.split("_")[0] / f"{frame}_leftImg8bit.png"
        Image.open(photo).convert("RGB").resize(size, Image.BICUBIC).save(images / f"{frame}_fake_B.png")


@pytest.mark.parametrize("protocol", ["256", "pix2pix"])
def test_fcn_score_scores_every_batch_on_the_device(synthetic_city, fake_gpu, finite_check_device_half, monkeypatch,
                                                    tmp_path, protocol):
    _results(synthetic_city, tmp_path / "results", (64, 64))
    torch.manual_seed(0)
    path = tmp_path / "scorer.pth"
    atomic_torch_save(scorer_checkpoint(build_scorer("fcn8s_small"), arch="fcn8s_small", image_size=64), path)
    scorer = load_scorer(path)
    counted = []

    def confusion_boundary(gt, pred, num_classes):  # where the counts are read to the host, by design
        assert is_fake_cuda(gt) and is_fake_cuda(pred) and gt.shape == pred.shape and pred.dtype == torch.int64
        counted.append(tuple(pred.shape))
        return np.zeros((num_classes, num_classes), np.int64)

    monkeypatch.setattr(scoring, "confusion_matrix", confusion_boundary)
    # the DataLoader's frames are made on the host with real values, as in a real run (and pinned, on a GPU)
    monkeypatch.setattr(torch.utils.data, "DataLoader", fake_gpu.host_loader())
    with fake_gpu:
        scored = scoring.score(tmp_path / "results", synthetic_city, scorer, protocol=protocol, device="cuda",
                               batch_size=3, num_samples=0, progress=False)
        assert scorer.device == CUDA
    fake_gpu.assert_no_sync()
    label_size = (64, 128) if protocol == "pix2pix" else (64, 64)  # (h, w): the label maps' own, or eval_size
    assert counted == [label_size] * 4 and len(finite_check_device_half) == 2  # 4 val frames, batches of 3 + 1
    assert [f["frame"] for f in scored.frames] == scored.frame_ids and scored.confusion.shape == (19, 19)


# ----------------------------------------------------------------------------- FID's Inception (fcn_score --fid)
def test_fid_features_run_on_the_device_up_to_their_read_to_the_host(fake_gpu):
    """``fid.inception_features`` on a CUDA device: pytorch-fid's FID Inception (built on the device from a state
    of its layout) on 256x256 photos, resized to 299 by the network. Each batch's features are read to the host
    (numpy, float64), by design: the test stops at the first such read and checks it is the only one."""
    inception = pytest.importorskip("pytorch_fid.inception")
    from evaluation import fid

    photos = [Image.fromarray(np.full((256, 256, 3), 40 * i, np.uint8)) for i in range(3)]
    with fake_gpu, torch.device("cuda"):
        net = inception._inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
        net.Mixed_5b, net.Mixed_5c = inception.FIDInceptionA(192, 32), inception.FIDInceptionA(256, 64)
        net.Mixed_5d, net.Mixed_6b = inception.FIDInceptionA(288, 64), inception.FIDInceptionC(768, 128)
        net.Mixed_6c, net.Mixed_6d = inception.FIDInceptionC(768, 160), inception.FIDInceptionC(768, 160)
        net.Mixed_6e, net.Mixed_7b = inception.FIDInceptionC(768, 192), inception.FIDInceptionE_1(1280)
        net.Mixed_7c = inception.FIDInceptionE_2(2048)
        with fid._local_weights(inception, net.state_dict()):  # what load_fid_inception builds, on the device
            model = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[fid.DIMS]]).eval()
        assert_on_device(model)
        with pytest.raises(RuntimeError, match=r"\.numpy\(\)"):  # the first batch's features: read here
            fid.inception_features(model, photos, batch_size=2, device=CUDA)
    assert fake_gpu.watch.events == ["copy from cuda:0 to the CPU (aten._to_copy.default)"]
