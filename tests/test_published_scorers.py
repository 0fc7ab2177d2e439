"""The published scorers without the real files: the pix2pix FCN-8s .caffemodel and DRN-D-105 state dict are
written here in their published formats with random weights (tiny widths), loaded through load_scorer, and
compared with reference forwards written separately from deploy.prototxt and from fyu/drn's definition."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from evaluation import compare_runs
from evaluation import protocols as P
from evaluation.common import EvaluationError, ScorerCheckpointError, run_cli
from evaluation.fcn_score import fcn_score
from evaluation.fcn_score import main as fcn_main
from evaluation.labels import ids_to_train_ids
from evaluation.scorer import load_scorer

# ---------------------------------------------------------------------------------------------- a raw protobuf writer
# Written from the field numbers of BVLC caffe.proto, independently of evaluation.caffe_fcn8s's descriptors.


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _ld(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _int(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(value)


def _str(field: int, text: str) -> bytes:
    return _ld(field, text.encode())


def _blob(arr: np.ndarray, legacy: bool) -> bytes:
    data = _ld(5, np.ascontiguousarray(arr, dtype="<f4").tobytes())  # repeated float data = 5 [packed]
    if legacy:  # num = 1, channels = 2, height = 3, width = 4
        dims = (1,) * (4 - arr.ndim) + arr.shape
        return b"".join(_int(i + 1, d) for i, d in enumerate(dims)) + data
    return _ld(7, _ld(1, b"".join(_varint(d) for d in arr.shape))) + data  # BlobShape shape = 7 {dim = 1 packed}


CONVS = [("conv1_1", 3, 100), ("conv1_2", 3, 1), ("conv2_1", 3, 1), ("conv2_2", 3, 1), ("conv3_1", 3, 1),
         ("conv3_2", 3, 1), ("conv3_3", 3, 1), ("conv4_1", 3, 1), ("conv4_2", 3, 1), ("conv4_3", 3, 1),
         ("conv5_1", 3, 1), ("conv5_2", 3, 1), ("conv5_3", 3, 1)]


def fcn8s_blobs(widths=(4, 4, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8), fc=12, n=20, seed=0) -> dict:
    """Random FCN-8s weights of deploy.prototxt's layers at small widths: {name: [weight, (bias)]}."""
    g = np.random.default_rng(seed)

    def conv(cout, cin, k):
        return [g.normal(0, math.sqrt(2 / (cin * k * k)), (cout, cin, k, k)).astype(np.float32),
                g.normal(0, 0.1, cout).astype(np.float32)]
    blobs, cin = {}, 3
    for (name, k, _), cout in zip(CONVS, widths):
        blobs[name] = conv(cout, cin, k)
        cin = cout
    blobs["fc6_cs"] = conv(fc, widths[-1], 7)
    blobs["fc7_cs"] = conv(fc, fc, 1)
    blobs["score_fr"] = conv(n, fc, 1)
    blobs["score_pool4"] = conv(n, widths[9], 1)
    blobs["score_pool3"] = conv(n, widths[6], 1)
    for name, k in (("upscore2", 4), ("upscore_pool4", 4), ("upscore8", 16)):
        blobs[name] = [g.normal(0, 0.3, (n, n, k, k)).astype(np.float32)]
    return blobs


def write_caffemodel(path, blobs: dict, legacy: bool = False, rename: dict | None = None) -> None:
    """A binary NetParameter: ``layer`` (100) entries, or with ``legacy`` V1 ``layers`` (2) with enum types and
    4-D legacy blobs. Layers without weights and a convolution_param (an unknown field here) ride along."""
    rename = rename or {}
    out = [_str(1, "FCN8s-cityscapes")]
    prev = "data"
    for name, arrays in blobs.items():
        kind = "Deconvolution" if name.startswith("upscore") else "Convolution"
        name = rename.get(name, name)
        if legacy:  # V1LayerParameter: bottom 2, top 3, name 4, type 5 (CONVOLUTION 4, DECONVOLUTION 39), blobs 6
            body = (_str(2, prev) + _str(3, name) + _str(4, name) + _int(5, 39 if kind == "Deconvolution" else 4)
                    + b"".join(_ld(6, _blob(a, True)) for a in arrays) + _ld(10, _int(1, arrays[0].shape[0])))
            out.append(_ld(2, body))
            out.append(_ld(2, _str(2, name) + _str(3, name) + _str(4, "relu_" + name) + _int(5, 18)))
        else:  # LayerParameter: name 1, type 2, bottom 3, top 4, blobs 7, convolution_param 106
            body = (_str(1, name) + _str(2, kind) + _str(3, prev) + _str(4, name)
                    + b"".join(_ld(7, _blob(a, False)) for a in arrays) + _ld(106, _int(1, arrays[0].shape[0])))
            out.append(_ld(100, body))
            out.append(_ld(100, _str(1, "relu_" + name) + _str(2, "ReLU") + _str(3, name) + _str(4, name)))
        prev = name
    path.write_bytes(b"".join(out))


# ---------------------------------------------------------------------------------------------- reference forwards
def _caffe_pool(x):
    """Caffe's 2x2 stride-2 max pooling rounds the output size up: pad the odd edge with -inf, then pool."""
    h, w = x.shape[-2:]
    x = F.pad(x, (0, w % 2, 0, h % 2), value=-math.inf)
    return F.max_pool2d(x, 2, 2)


def _deconv(x, w, stride):
    """A Caffe deconvolution as zero insertion + full padding + convolution with the flipped, transposed kernel."""
    n, c, h, wd = x.shape
    k = w.shape[-1]
    up = x.new_zeros(n, c, (h - 1) * stride + 1, (wd - 1) * stride + 1)
    up[:, :, ::stride, ::stride] = x
    up = F.pad(up, (k - 1, k - 1, k - 1, k - 1))
    return F.conv2d(up, w.flip(-1, -2).transpose(0, 1))


def reference_fcn8s(blobs: dict, x: torch.Tensor) -> torch.Tensor:
    t = {name: [torch.from_numpy(a) for a in arrays] for name, arrays in blobs.items()}
    h, pools = x, {}
    for name, _, pad in CONVS:
        h = torch.relu(F.conv2d(h, t[name][0], t[name][1], padding=pad))
        if name in ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"):
            h = _caffe_pool(h)
            pools[name[:5]] = h
    h = torch.relu(F.conv2d(pools["conv5"], *t["fc6_cs"]))
    h = torch.relu(F.conv2d(h, *t["fc7_cs"]))
    up2 = _deconv(F.conv2d(h, *t["score_fr"]), t["upscore2"][0], 2)
    s4 = F.conv2d(pools["conv4"], *t["score_pool4"])
    fuse4 = up2 + s4[:, :, 5:5 + up2.shape[2], 5:5 + up2.shape[3]]
    up4 = _deconv(fuse4, t["upscore_pool4"][0], 2)
    s3 = F.conv2d(pools["conv3"], *t["score_pool3"])
    fuse3 = up4 + s3[:, :, 9:9 + up4.shape[2], 9:9 + up4.shape[3]]
    up8 = _deconv(fuse3, t["upscore8"][0], 8)
    return up8[:, :, 31:31 + x.shape[2], 31:31 + x.shape[3]]


DRN_BLOCKS = (1, 1, 3, 4, 23, 3, 1, 1)


def drn_state_dict(channels=(4, 4, 4, 4, 4, 6, 8, 8), classes=19, seed=0, batches_tracked=False) -> dict:
    """Random tensors under the names fyu/drn's DRNSeg('drn_d_105', classes) saves (no module. prefix)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def conv(key, cout, cin, k):
        sd[key] = torch.randn(cout, cin, k, k, generator=g) * math.sqrt(2 / (cin * k * k))

    def bn(key, c):
        scale = 0.2 if key.endswith("bn3") else 1.0  # keeps 35 residual blocks of random weights in range
        sd[f"{key}.weight"] = scale * (1 + 0.1 * torch.randn(c, generator=g))
        sd[f"{key}.bias"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{key}.running_mean"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{key}.running_var"] = 0.5 + torch.rand(c, generator=g)
        if batches_tracked:
            sd[f"{key}.num_batches_tracked"] = torch.tensor(7)
    c = channels
    conv("base.0.0.weight", c[0], 3, 7), bn("base.0.1", c[0])
    conv("base.1.0.weight", c[0], c[0], 3), bn("base.1.1", c[0])
    conv("base.2.0.weight", c[1], c[0], 3), bn("base.2.1", c[1])
    cin = c[1]
    for stage, planes, stride in zip((3, 4, 5, 6), c[2:6], (2, 2, 1, 1)):
        for b in range(DRN_BLOCKS[stage - 1]):
            p = f"base.{stage}.{b}"
            conv(f"{p}.conv1.weight", planes, cin, 1), bn(f"{p}.bn1", planes)
            conv(f"{p}.conv2.weight", planes, planes, 3), bn(f"{p}.bn2", planes)
            conv(f"{p}.conv3.weight", planes * 4, planes, 1), bn(f"{p}.bn3", planes * 4)
            if b == 0 and (stride != 1 or cin != planes * 4):  # fyu/drn's rule for a projection shortcut
                conv(f"{p}.downsample.0.weight", planes * 4, cin, 1), bn(f"{p}.downsample.1", planes * 4)
            cin = planes * 4
    conv("base.7.0.weight", c[6], cin, 3), bn("base.7.1", c[6])
    conv("base.8.0.weight", c[7], c[6], 3), bn("base.8.1", c[7])
    conv("seg.weight", classes, c[7], 1)
    sd["seg.bias"] = 0.1 * torch.randn(classes, generator=g)
    # DRNSeg's fill_up_weights: a bilinear kernel per channel (the file stores it like any weight)
    f = math.ceil(16 / 2)
    cc = (2 * f - 1 - f % 2) / (2.0 * f)
    ker = torch.tensor([[(1 - abs(i / f - cc)) * (1 - abs(j / f - cc)) for j in range(16)] for i in range(16)])
    sd["up.weight"] = ker.expand(classes, 1, 16, 16).clone()
    return sd


def reference_drn(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """fyu/drn's drn_d_105 + DRNSeg forward, functionally from the tensors (eval-mode batch norm)."""
    def bn(h, key):
        return F.batch_norm(h, sd[f"{key}.running_mean"], sd[f"{key}.running_var"], sd[f"{key}.weight"],
                            sd[f"{key}.bias"], training=False, eps=1e-5)

    def cbr(h, idx, stride=1, dilation=1):
        w = sd[f"base.{idx}.0.weight"]
        pad = dilation * (w.shape[-1] // 2)
        return torch.relu(bn(F.conv2d(h, w, stride=stride, padding=pad, dilation=dilation), f"base.{idx}.1"))
    h = cbr(x, 0)
    h = cbr(h, 1)
    h = cbr(h, 2, stride=2)
    for stage, stride, dilation in ((3, 2, 1), (4, 2, 1), (5, 1, 2), (6, 1, 4)):
        for b in range(DRN_BLOCKS[stage - 1]):
            p = f"base.{stage}.{b}"
            s = stride if b == 0 else 1
            o = torch.relu(bn(F.conv2d(h, sd[f"{p}.conv1.weight"]), f"{p}.bn1"))
            o = torch.relu(bn(F.conv2d(o, sd[f"{p}.conv2.weight"], stride=s, padding=dilation, dilation=dilation),
                              f"{p}.bn2"))
            o = bn(F.conv2d(o, sd[f"{p}.conv3.weight"]), f"{p}.bn3")
            short = bn(F.conv2d(h, sd[f"{p}.downsample.0.weight"], stride=s), f"{p}.downsample.1") \
                if f"{p}.downsample.0.weight" in sd else h
            h = torch.relu(o + short)
    h = cbr(h, 7, dilation=2)
    h = cbr(h, 8)
    seg = F.conv2d(h, sd["seg.weight"], sd["seg.bias"])
    up = F.conv_transpose2d(seg, sd["up.weight"], stride=8, padding=4, groups=seg.shape[1])
    return up - torch.logsumexp(up, dim=1, keepdim=True)


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def city(synthetic_city):
    return synthetic_city


@pytest.fixture(scope="module")
def caffemodel(tmp_path_factory):
    blobs = fcn8s_blobs()
    path = tmp_path_factory.mktemp("fcn") / "fcn-8s-cityscapes.caffemodel"
    write_caffemodel(path, blobs)
    return path, blobs


@pytest.fixture(scope="module")
def drn_file(tmp_path_factory):
    sd = drn_state_dict()
    path = tmp_path_factory.mktemp("drn") / "drn-d-105_ms_cityscapes.pth"
    torch.save({f"module.{k}": v for k, v in sd.items()}, path)  # as nn.DataParallel saves it
    return path, sd


def _val_frames(city):
    return sorted(p.name[: -len("_gtFine_labelIds.png")] for p in (city / "gtFine" / "val").glob("*/*_labelIds.png"))


def _fake_results(city, root, size=(32, 32), sizes=None):
    images = root / "images"
    images.mkdir(parents=True)
    for i, frame in enumerate(_val_frames(city)):
        photo = city / "leftImg8bit" / "val" / frame.split("_")[0] / f"{frame}_leftImg8bit.png"
        wh = sizes[i] if sizes else size
        Image.open(photo).convert("RGB").resize(wh, Image.BICUBIC).save(images / f"{frame}_fake_B.png")
    return root


def _gt(city, frame):
    path = city / "gtFine" / "val" / frame.split("_")[0] / f"{frame}_gtFine_labelIds.png"
    return ids_to_train_ids(np.asarray(Image.open(path)))


# ---------------------------------------------------------------------------------------------- the FCN-8s
def test_caffemodel_loads_and_matches_the_prototxt_reference(caffemodel):
    path, blobs = caffemodel
    scorer = load_scorer(path)
    assert scorer.kind == "caffe_fcn8s" and scorer.outputs == 20 and len(scorer.class_names) == 19
    assert scorer.input_convention == "bgr255" and scorer.mean == (72.78044, 83.21195, 73.45286)
    for h, w in ((37, 45), (64, 128)):
        x = torch.randn(2, 3, h, w) * 40
        with torch.no_grad():
            got, want = scorer.model(x), reference_fcn8s(blobs, x)
        assert got.shape == (2, 20, h, w)
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_legacy_v1_layers_format_gives_the_same_network(caffemodel, tmp_path):
    path, blobs = caffemodel
    legacy = tmp_path / "legacy.caffemodel"
    write_caffemodel(legacy, blobs, legacy=True)
    x = torch.randn(1, 3, 40, 50) * 40
    with torch.no_grad():
        a, b = load_scorer(path).model(x), load_scorer(legacy).model(x)
    assert torch.equal(a, b)


def test_caffe_messages_write_a_file_the_loader_reads(tmp_path):
    from evaluation.caffe_fcn8s import caffe_messages, load_caffe_fcn8s

    m = caffe_messages()
    blobs = fcn8s_blobs(seed=1)
    net = m["NetParameter"](name="x")
    for name, arrays in blobs.items():
        layer = net.layer.add(name=name, type="Deconvolution" if name.startswith("up") else "Convolution")
        for a in arrays:
            blob = layer.blobs.add()
            blob.shape.dim.extend(a.shape)
            blob.data.extend(a.reshape(-1).tolist())
    path = tmp_path / "m.caffemodel"
    path.write_bytes(net.SerializeToString())
    x = torch.randn(1, 3, 33, 21) * 40
    with torch.no_grad():
        assert torch.allclose(load_caffe_fcn8s(path)(x), reference_fcn8s(blobs, x), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("case, message", [
    ("truncated", r"Caffe model .*bad\.caffemodel is not a readable Caffe binary protobuf"),
    ("wrong_layer", r"lacks the FCN-8s layer 'score_pool3'"),
    ("wrong_shape", r"in layer 'fc7_cs' where the FCN-8s deploy.prototxt needs \(12, 12, 1, 1\)"),
    ("missing_bias", r"has 1 blobs in layer 'conv3_2'"),
    ("damaged_blob", r"blob 0 of layer 'conv1_1' holds"),
    ("few_channels", r"has 12 score channels; the FCN-score needs at least 19"),
    ("html_page", r"is not a readable Caffe binary protobuf"),
])
def test_bad_caffemodels_are_one_sentence_naming_the_layer(tmp_path, case, message):
    blobs = fcn8s_blobs()
    bad = tmp_path / "bad.caffemodel"
    if case == "truncated":
        write_caffemodel(bad, blobs)
        bad.write_bytes(bad.read_bytes()[:-3000])
    elif case == "wrong_layer":
        write_caffemodel(bad, blobs, rename={"score_pool3": "score_pool3_x"})
    elif case == "wrong_shape":
        blobs["fc7_cs"][0] = blobs["fc7_cs"][0][:, :11]
        write_caffemodel(bad, blobs)
    elif case == "missing_bias":
        blobs["conv3_2"] = blobs["conv3_2"][:1]
        write_caffemodel(bad, blobs)
    elif case == "damaged_blob":
        write_caffemodel(bad, {"conv1_1": blobs["conv1_1"]})
        raw = bad.read_bytes()  # declare a longer first dim than the data holds
        bad.write_bytes(raw.replace(_ld(1, b"".join(_varint(d) for d in (4, 3, 3, 3))),
                                    _ld(1, b"".join(_varint(d) for d in (5, 3, 3, 3))), 1))
    elif case == "few_channels":
        write_caffemodel(bad, fcn8s_blobs(n=12))
    elif case == "html_page":  # what a download from a dead link leaves behind
        bad.write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>")
    with pytest.raises(ScorerCheckpointError, match=message) as info:
        load_scorer(bad)
    assert "\n" not in str(info.value)


def test_published_scorers_run_without_tf32_and_restore_the_flags(caffemodel):
    scorer = load_scorer(caffemodel[0])
    seen = []
    forward = scorer.model.forward
    scorer.model.forward = lambda x: seen.append((torch.backends.cudnn.allow_tf32,
                                                  torch.backends.cuda.matmul.allow_tf32)) or forward(x)
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        pred = P.predict(scorer, "pix2pix", torch.zeros(1, 3, 20, 24), (24, 20))
        assert seen == [(False, False)] and pred.shape == (1, 20, 24)
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_official_fast_hist_bins_the_20th_channel_like_the_original():
    # a prediction of 19 on class a lands in (a + 1, 0); on class 18 the frame is dropped
    hist = P.official_fast_hist(np.array([3, 3, 255, 0]), np.array([19, 3, 19, 0]), 19)
    assert hist[4, 0] == 1 and hist[3, 3] == 1 and hist[0, 0] == 1 and hist.sum() == 3
    assert P.official_fast_hist(np.array([18, 2]), np.array([19, 2]), 19) is None


def _independent_fcn_scores(city, blobs, results_root):
    """The official evaluator's loop, re-done here: imresize to the label size, BGR - mean, FCN-8s, argmax."""
    mean = np.array((72.78044, 83.21195, 73.45286), dtype=np.float32)
    n = 19
    hist_official = np.zeros((n, n))
    conf = np.zeros((n, n + 1))
    dropped = 0
    for frame in _val_frames(city):
        gt = _gt(city, frame)
        im = Image.open(results_root / "images" / f"{frame}_fake_B.png").convert("RGB")
        im = np.array(im.resize((gt.shape[1], gt.shape[0]), Image.BILINEAR), dtype=np.float32)
        x = torch.from_numpy((im[:, :, ::-1] - mean).transpose(2, 0, 1).copy())[None]
        with torch.no_grad():
            pred = reference_fcn8s(blobs, x)[0].argmax(0).numpy()
        a, b = gt.reshape(-1).astype(int), pred.reshape(-1)
        k = a < n
        bc = np.bincount(n * a[k] + b[k], minlength=n * n)
        if len(bc) == n * n:
            hist_official += bc.reshape(n, n)
        else:
            dropped += 1
        np.add.at(conf, (a[k], b[k]), 1)
    return hist_official, conf, dropped


def test_pix2pix_protocol_with_the_fcn8s_end_to_end(city, caffemodel, tmp_path):
    path, blobs = caffemodel
    res = _fake_results(city, tmp_path / "res")
    default = fcn_score(res, city, path, tmp_path / "d", device="cpu", progress=False)
    compat = fcn_score(res, city, path, tmp_path / "c", device="cpu", progress=False, pix2pix_compat=True)
    hist, conf, dropped = _independent_fcn_scores(city, blobs, res)
    assert default["protocol"] == "pix2pix" and default["synthesized_size"] == [32, 32]
    assert default["scorer"]["kind"] == "caffe_fcn8s"
    # the official arithmetic, digit for digit
    acc = np.diag(hist).sum() / (hist.sum() + 1e-12)
    cl_acc = np.nanmean(np.diag(hist) / (hist.sum(1) + 1e-12))
    iou = np.nanmean(np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist) + 1e-12))
    assert compat["scores"] == pytest.approx({"per_pixel_acc": acc, "per_class_acc": cl_acc, "class_iou": iou},
                                             rel=1e-9)
    assert len(compat["extra_channel"]["official_dropped_frames"]) == dropped
    # ours: a 20th-channel pixel is an error of its true class
    tp, rows = np.diag(conf[:, :19]), conf.sum(1)
    present = rows > 0
    assert conf[:, 19].sum() > 0, "random weights should let the 20th channel win somewhere"
    assert default["extra_channel"]["pixels"] == conf[:, 19].sum()
    assert default["scores"]["per_pixel_acc"] == pytest.approx(tp.sum() / conf.sum(), rel=1e-9)
    assert default["scores"]["per_class_acc"] == pytest.approx(np.mean(tp[present] / rows[present]), rel=1e-9)
    assert default["scores_pix2pix"] == compat["scores"]
    assert json.loads((tmp_path / "d" / "evaluation_results.json").read_text())["synthesized_size"] == [32, 32]
    gt_row = fcn_score(None, city, path, tmp_path / "gt", real=True, device="cpu", progress=False)
    assert gt_row["real_size"] == 256 and gt_row["synthesized_size"] == [256, 256]  # pix2pix's GT recipe


def test_bad_caffemodel_from_the_cli_is_one_line(city, tmp_path, capsys):
    bad = tmp_path / "fcn-8s-cityscapes.caffemodel"
    write_caffemodel(bad, fcn8s_blobs(), rename={"upscore8": "upscore_8"})
    code = run_cli(fcn_main, ["--real", "--cityscapes_dir", str(city), "--scorer", str(bad), "--output_dir",
                              str(tmp_path / "o"), "--device", "cpu", "--no_progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"error: Caffe model {bad} lacks the FCN-8s layer 'upscore8'")


def test_a_prototxt_passed_as_scorer_is_named(tmp_path):
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text('layer {\n  name: "data"\n  type: "Input"\n}\n')
    with pytest.raises(ScorerCheckpointError, match=r"deploy.prototxt is a Caffe network description, not weights; "
                                                    r"pass the weights file fcn-8s-cityscapes.caffemodel"):
        load_scorer(deploy)


def test_fcn8s_refuses_other_protocols(city, caffemodel, tmp_path):
    path, _ = caffemodel
    with pytest.raises(EvaluationError, match=r"--protocol drn does not fit --scorer .* \(the pix2pix FCN-8s\); "
                                              r"use --protocol pix2pix"):
        fcn_score(None, city, path, tmp_path / "o", real=True, protocol="drn", device="cpu", progress=False)


# ---------------------------------------------------------------------------------------------- DRN-D-105
def test_drn_state_dict_loads_and_matches_the_reference(drn_file):
    path, sd = drn_file
    scorer = load_scorer(path)
    assert scorer.kind == "drn_d_105" and scorer.outputs == 19 and scorer.input_convention == "rgb01"
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        got, want = scorer.model(x), reference_drn(sd, x)
    assert got.shape == (2, 19, 48, 64)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


@pytest.mark.slow
def test_full_width_drn_d_105_has_the_published_tensors(tmp_path):
    from evaluation.drn import DRN_D_105_CHANNELS

    sd = drn_state_dict(DRN_D_105_CHANNELS, batches_tracked=True)
    path = tmp_path / "full.pth"
    torch.save(sd, path)
    scorer = load_scorer(path)
    params = sum(p.numel() for p in scorer.model.parameters())
    assert tuple(scorer.arch_kwargs["channels"]) == DRN_D_105_CHANNELS and params == sum(
        v.numel() for k, v in sd.items() if not k.split(".")[-1] in ("running_mean", "running_var",
                                                                       "num_batches_tracked"))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        want = reference_drn(sd, x)
        torch.testing.assert_close(scorer.model(x), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


@pytest.mark.parametrize("edit, message", [
    (lambda sd: sd.pop("base.5.7.bn2.running_var"), r"lacks the tensor 'base.5.7.bn2.running_var'"),
    (lambda sd: sd.__setitem__("base.6.1.conv2.weight", torch.zeros(6, 6, 1, 1)),
     r"has 'base.6.1.conv2.weight' of shape \(6, 6, 1, 1\) where .* needs \(6, 6, 3, 3\)"),
    (lambda sd: sd.__setitem__("base.9.0.weight", torch.zeros(1)), r"holds the tensor 'base.9.0.weight'"),
    (lambda sd: sd.__setitem__("seg.weight", torch.zeros(21, 8, 1, 1)), r"predicts 21 classes"),
])
def test_bad_drn_files_name_the_tensor(tmp_path, edit, message):
    sd = drn_state_dict()
    edit(sd)
    path = tmp_path / "drn.pth"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(ScorerCheckpointError, match=message):
        load_scorer(path)


def test_drn_resize_matches_pillow_per_channel():
    """GAN Compression resizes each float channel with Pillow's BILINEAR; predict() must give the same."""
    g = torch.Generator().manual_seed(0)
    for src, dst in (((32, 32), (128, 64)), ((96, 96), (40, 20))):
        logp = torch.randn(1, 19, src[1], src[0], generator=g).log_softmax(1)
        ours = F.interpolate(logp, size=(dst[1], dst[0]), mode="bilinear", align_corners=False, antialias=True)[0]
        pil = np.stack([np.asarray(Image.fromarray(c.numpy(), mode="F").resize(dst, Image.BILINEAR))
                        for c in logp[0]])
        assert np.abs(ours.numpy() - pil).max() < 1e-4
        assert (ours.argmax(0).numpy() == pil.argmax(0)).mean() > 0.999


def test_drn_protocol_end_to_end(city, drn_file, tmp_path):
    path, sd = drn_file
    res = _fake_results(city, tmp_path / "res")
    result = fcn_score(res, city, path, tmp_path / "o", device="cpu", progress=False)
    assert result["protocol"] == "drn" and result["synthesized_size"] == [32, 32]
    mean = np.array([0.29010095242892997, 0.32808144844279574, 0.28696394422942517], np.float32)
    std = np.array([0.1829540508368939, 0.18656561047509476, 0.18447508988480435], np.float32)
    hist = np.zeros((19, 19))
    for frame in _val_frames(city):
        gt = _gt(city, frame)
        im = np.asarray(Image.open(res / "images" / f"{frame}_fake_B.png").convert("RGB"), np.float32) / 255
        x = torch.from_numpy(((im - mean) / std).transpose(2, 0, 1).copy())[None]
        with torch.no_grad():
            logp = reference_drn(sd, x)[0]
        final = np.stack([np.asarray(Image.fromarray(c.numpy(), mode="F").resize((gt.shape[1], gt.shape[0]),
                                                                                  Image.BILINEAR)) for c in logp])
        pred, a = final.argmax(0).reshape(-1), gt.reshape(-1).astype(int)
        k = a < 19
        hist += np.bincount(19 * a[k] + pred[k], minlength=361).reshape(19, 19)
    with np.errstate(invalid="ignore"):
        miou = np.nanmean(np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))) * 100
    assert result["miou"] == pytest.approx(miou, abs=0.05)
    table, _ = compare_runs.compare_table([tmp_path / "o"], ["drn"])
    assert "| mIoU (DRN) |" in table.splitlines()[0] and f"| {result['miou']:.2f} |" in table
    with pytest.raises(EvaluationError, match=r"--pix2pix_compat .* drop --pix2pix_compat"):
        fcn_score(res, city, path, tmp_path / "o2", device="cpu", progress=False, pix2pix_compat=True)
    with pytest.raises(EvaluationError, match=r"--protocol pix2pix does not fit .*use --protocol drn"):
        fcn_score(res, city, path, tmp_path / "o3", device="cpu", progress=False, protocol="pix2pix")


# ---------------------------------------------------------------------------------------------- size checks
def test_synthesized_sizes_are_checked_and_recorded(city, caffemodel, tmp_path, capsys):
    path, _ = caffemodel
    mixed = _fake_results(city, tmp_path / "mixed", sizes=[(32, 32), (32, 32), (64, 64), (32, 32)])
    with pytest.raises(EvaluationError, match=r"mixes photo sizes \(32x32 .*; 64x64 "):
        fcn_score(mixed, city, path, tmp_path / "o", device="cpu", progress=False)
    odd = _fake_results(city, tmp_path / "odd", size=(33, 17))
    with pytest.raises(EvaluationError, match=r"photos are 33x17, which is neither square .* pass --allow_any_size"):
        fcn_score(odd, city, path, tmp_path / "o", device="cpu", progress=False)
    tiny = _fake_results(city, tmp_path / "tiny", size=(16, 16))
    assert run_cli(fcn_main, ["--result_dir", str(tiny), "--cityscapes_dir", str(city), "--scorer", str(path),
                              "--output_dir", str(tmp_path / "o"), "--device", "cpu", "--no_progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "photos are 16x16, smaller than 32 pixels" in err and len(err.splitlines()) == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fcn_score(odd, city, path, tmp_path / "any", device="cpu", progress=False, allow_any_size=True)
    assert any("--allow_any_size" in str(w.message) for w in caught)
    assert result["synthesized_size"] == [33, 17] and result["allow_any_size"] is True
    wide = _fake_results(city, tmp_path / "wide", size=(64, 32))  # the label maps' aspect: accepted
    assert fcn_score(wide, city, path, tmp_path / "w", device="cpu", progress=False)["synthesized_size"] == [64, 32]
    _, notes = compare_runs.compare_table([tmp_path / "any", tmp_path / "w"], ["odd", "wide"])
    assert any("rows differ in synthesized size (odd: [33, 17], wide: [64, 32])" in n for n in notes)
