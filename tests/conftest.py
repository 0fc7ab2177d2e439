"""Session-wide test data (a tiny synthetic city and its prepared A|B folder, made once per test session) and the
helpers several test modules share: tiny training runs, checkpoint folders as train.py leaves them, HTML page
checks, and the float64 optimizer oracle. Test modules import helpers from here, never from each other."""

from __future__ import annotations

import csv
import io
import json
import math
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import torch

from pix2pix_tr.data.cityscapes import prepare_cityscapes
from pix2pix_tr.data.synthetic_city import make_synthetic_cityscapes


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped where no CUDA device is visible (CI and the CPU machines)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False here)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


# ---------------------------------------------------------------------------------------------- the fake_cuda tier
# CUDA code paths on fake CUDA tensors (tests/fake_cuda.py says how; the tests are marked fake_cuda).
@pytest.fixture(scope="module")
def stood_in():
    """Device-checking stand-ins for the fused optimizer kernels torch has no fake kernel for, registered for the
    module; yields their names (see tests/fake_cuda.py)."""
    from fake_cuda import stand_ins_registered

    with stand_ins_registered() as missing:
        yield missing


@pytest.fixture
def fake(stood_in):
    """A fake tensor mode, entered for the whole test."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        yield mode


@pytest.fixture
def fake_mode(stood_in):
    """A fake tensor mode for the test to enter (``with fake_mode:``) after real work on the CPU."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    return FakeTensorMode()


@pytest.fixture
def fake_gpu(monkeypatch):
    """A :class:`fake_cuda.FakeGPU` to enter (``with fake_gpu:``) after the host work; ``fake_gpu.watch`` records
    what would synchronise. Our own device checks (``--device cuda`` needs a visible GPU) see one GPU; torch's
    ``torch.cuda.is_available()`` is left alone (fake mode reads it), and the caches that keep tensors per device
    (the --augment_on_device lookup table) start empty and are dropped afterwards, so no fake tensor outlives
    the test."""
    from fake_cuda import FakeGPU

    import pix2pix_tr.cli as cli
    from pix2pix_tr.data import device_augment

    real_problem = cli.device_problem

    def device_problem(name, *, check_available=True):
        problem = real_problem(name, check_available=False)
        if problem is None and check_available and str(name).startswith("cuda") and torch.device(name).index:
            return f"--device {name}: only 1 CUDA device(s) are visible; use cuda:0 or auto"
        return problem

    monkeypatch.setattr(cli, "device_problem", device_problem)
    monkeypatch.setattr(device_augment, "_TABLES", {})
    return FakeGPU()


# ---------------------------------------------------------------------------------------------- session data
@pytest.fixture(scope="session")
def synthetic_city(tmp_path_factory):
    """Path of a tiny city in the Cityscapes layout: train 8, val 4 frames, 128x64 photos, seed 0.

    ``leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png`` and ``gtFine/{split}/{city}/{stem}_gtFine_labelIds.png``
    / ``_gtFine_color.png``; treat it as read-only (it is shared by every test of the session).
    """
    root = tmp_path_factory.mktemp("synthetic_city")
    make_synthetic_cityscapes(root, n_train=8, n_val=4, seed=0, width=128, height=64)
    return root


@pytest.fixture(scope="session")
def ab_root(synthetic_city, tmp_path_factory):
    """Path of the prepared A|B folder of ``synthetic_city``: ``train/`` (8) and ``val/`` (4) PNGs of 128x64
    (photo 64x64 left, colour label 64x64 right), named ``{city}_{seq}_{frame}.png``. Read-only."""
    root = tmp_path_factory.mktemp("ab_root")
    prepare_cityscapes(synthetic_city / "gtFine", synthetic_city / "leftImg8bit", root, size=64)
    return root


# ---------------------------------------------------------------------------------------------------------------
# Helpers several test modules share: import them with ``from conftest import ...`` (never from another test module).

# ------------------------------------------------------------------------------------------------ training runs
def tiny_args(ab_root, ckpt, name, *extra):
    """train.py flags of the tiny run: ngf = ndf = 8, unet_64, 64-pixel crops, batch 2, 1 + 1 epochs, CPU."""
    return ["--dataroot", str(ab_root), "--checkpoints_dir", str(ckpt), "--name", name, "--ngf", "8", "--ndf", "8",
            "--netG", "unet_64", "--load_size", "72", "--crop_size", "64", "--batch_size", "2", "--num_threads", "0",
            "--n_epochs", "1", "--n_epochs_decay", "1", "--save_epoch_freq", "1", "--print_freq", "2",
            "--device", "cpu", "--seed", "3", *extra]


def train_run(ab_root, ckpt, name, *extra, **kwargs):
    """A tiny training run in-process (:func:`pix2pix_tr.training.train` on :func:`tiny_args`)."""
    from pix2pix_tr.options import parse_train
    from pix2pix_tr.training import train

    return train(parse_train(tiny_args(ab_root, ckpt, name, *extra)), **kwargs)


def state_equal(a, b):
    """Two state_dicts hold the same keys and bit-identical tensors."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def loss_columns(path):
    """The rows of a loss_log.csv without its wall-clock column."""
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k != "time"} for row in csv.DictReader(handle)]


# --------------------------------------------------------------------------------------------------- test.py runs
def make_generator(ngf=8, norm="batch", netG="unet_64", use_dropout=True, seed=1):
    """A generator with training-like BatchNorm statistics (so eval and train mode differ)."""
    from pix2pix_tr.models import define_G

    torch.manual_seed(seed)
    net = define_G(netG, 3, 3, ngf=ngf, norm=norm, use_dropout=use_dropout)
    with torch.no_grad():  # training-like running statistics, so eval and train mode differ
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return net


def make_run(checkpoints: Path, name: str = "tiny_tradam", *, ngf=8, norm="batch", netG="unet_64", extra=()) -> torch.nn.Module:
    """A checkpoint folder as train.py leaves it (only what test.py reads): train_opt.json + {epoch}_net_G.pth."""
    from pix2pix_tr.io import atomic_torch_save
    from pix2pix_tr.options import options_to_json_dict, parse_train

    run = checkpoints / name
    run.mkdir(parents=True, exist_ok=True)
    opt = parse_train(["--dataroot", "x", "--name", name, "--netG", netG, "--ngf", str(ngf), "--ndf", "8",
                       "--norm", norm, "--crop_size", "64", "--load_size", "72", "--direction", "BtoA", *extra])
    (run / "train_opt.json").write_text(json.dumps(options_to_json_dict(opt)))
    net = make_generator(ngf, norm, netG, use_dropout="--no_dropout" not in extra)
    atomic_torch_save(net.state_dict(), run / "latest_net_G.pth")
    atomic_torch_save(net.state_dict(), run / "5_net_G.pth")
    return net


# ----------------------------------------------------------------------------------------------------- HTML pages
class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.h2: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.links.append((tag, value))
        self._in_h2 = tag == "h2"

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2:
            self.h2.append(data.strip())


def parse_page(path: Path) -> _Links:
    """The src/href links (with their tags) and the h2 texts of an HTML page."""
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def assert_links_resolve(page: Path) -> list[str]:
    """Every src/href of ``page`` is relative and points to an existing file; returns the links."""
    links = parse_page(page).links
    for _, link in links:
        parts = urlsplit(link)
        assert not parts.scheme and not parts.netloc, f"{page}: absolute link {link}"
        assert not parts.path.startswith("/"), f"{page}: root-relative link {link}"
        if parts.path:
            assert (page.parent / unquote(parts.path)).is_file(), f"{page}: {link} does not resolve"
    return [link for _, link in links]


# ---------------------------------------------------------------------------------------------- optimizer oracle
# A direct float64 transcription of the paper's Algorithm 1 (tests/test_optim_oracle.py tells how it is used), and
# the harness that steps our optimizers on the same losses.
ORACLE_DT = torch.float64
ORACLE_SHAPES = [(3, 4), (4,), (2, 3, 2)]
ORACLE_STEPS = 15
ORACLE_PERIOD = 4
ORACLE_LR0 = 0.05


def oracle_lr_factor(epoch: int) -> float:
    return 0.9 ** epoch


def oracle_lr_at(n: int) -> float:
    return ORACLE_LR0 * oracle_lr_factor(n)


def oracle_init_weights():
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(s, generator=gen, dtype=ORACLE_DT) for s in ORACLE_SHAPES]


def oracle_grads_at(n: int, ws):
    """Gradient of a step-dependent nonlinear loss (a new 'mini-batch' each step)."""
    gen = torch.Generator().manual_seed(100 + n)
    ws = [w.detach().clone().requires_grad_(True) for w in ws]
    loss = 0.0
    for w in ws:
        target = torch.randn(w.shape, generator=gen, dtype=ORACLE_DT)
        loss = loss + (torch.tanh(w * 1.5) - target).pow(2).sum() + 0.3 * torch.sin(2 * w).sum()
    return list(torch.autograd.grad(loss, ws))


# ----------------------------------------------------------------------------- the oracle
def oracle(update, n_steps=ORACLE_STEPS, *, lam=0.1, period=ORACLE_PERIOD, mode="paper", inner_decay=True,
           wd=0.0, maximize=False):
    """Algorithm 1: anchor at k == 0, gradient g + c (w - anchor) (+ wd w), lr / (k + 1)."""
    w = oracle_init_weights()
    state = [dict() for _ in w]
    anchor = None
    for n in range(n_steps):
        k = n % period
        if k == 0:
            anchor = [t.clone() for t in w]
        g = oracle_grads_at(n, w)
        lr = oracle_lr_at(n)
        c = lam if mode == "paper" else 2 * lam * ORACLE_LR0 / lr
        lr_eff = lr / (k + 1) if inner_decay else lr
        for i in range(len(w)):
            d = (-g[i] if maximize else g[i]) + c * (w[i] - anchor[i]) + wd * w[i]
            w[i] = update(w[i], d, lr_eff, state[i])
    return w


def oracle_adam_update(betas=(0.9, 0.999), eps=1e-8, amsgrad=False, release=False):
    """torch's Adam; ``release=True``: the authors' TRAdam's placement of eps (TRAdam's reference mode)."""
    b1, b2 = betas

    def update(w, d, lr, st):
        st["t"] = st.get("t", 0) + 1
        st["m"] = b1 * st.get("m", torch.zeros_like(w)) + (1 - b1) * d
        st["v"] = b2 * st.get("v", torch.zeros_like(w)) + (1 - b2) * d * d
        v = st["v"]
        if amsgrad:
            st["vmax"] = torch.maximum(st.get("vmax", torch.zeros_like(w)), v)
            v = st["vmax"]
        bc1, bc2 = 1 - b1 ** st["t"], 1 - b2 ** st["t"]
        if release:
            return w - lr * math.sqrt(bc2) / bc1 * st["m"] / (v.sqrt() + eps)
        return w - lr * (st["m"] / bc1) / ((v / bc2).sqrt() + eps)

    return update


def oracle_sgd_update(momentum=0.0, dampening=0.0, nesterov=False):
    def update(w, d, lr, st):
        if momentum:
            if "buf" not in st:
                st["buf"] = d.clone()
            else:
                st["buf"] = momentum * st["buf"] + (1 - dampening) * d
            d = d + momentum * st["buf"] if nesterov else st["buf"]
        return w - lr * d

    return update


# ----------------------------------------------------------------------------- running ours
def run_against_oracle(make_opt, n_steps=ORACLE_STEPS, resume_at=None, check_lr=True, device="cpu",
                       make_resumed=None):
    """Step ``make_opt(params)`` on ``device`` with a LambdaLR schedule; at ``resume_at`` the state goes through
    torch.save/load into a fresh optimizer (``make_resumed``, default the same kind). Returns CPU weights."""
    params = [torch.nn.Parameter(w.clone().to(device)) for w in oracle_init_weights()]
    opt = make_opt(params)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, oracle_lr_factor)
    for n in range(n_steps):
        if n == resume_at:
            buf = io.BytesIO()
            torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
            buf.seek(0)
            saved = torch.load(buf, weights_only=False, map_location="cpu")
            params = [torch.nn.Parameter(p.detach().clone()) for p in params]
            opt = (make_resumed or make_opt)(params)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, oracle_lr_factor)
            opt.load_state_dict(saved["opt"])
            sched.load_state_dict(saved["sched"])
        for p, g in zip(params, oracle_grads_at(n, [p.detach().cpu() for p in params])):
            p.grad = g.to(device)
        opt.step()
        sched.step()
        if check_lr:  # the group's lr is the scheduler's (a tensor with capturable=True), never the inner one
            assert float(opt.param_groups[0]["lr"]) == pytest.approx(oracle_lr_at(n + 1), rel=1e-12)
    return [p.detach().cpu() for p in params]


def assert_close_to_oracle(got, want):
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-11)
