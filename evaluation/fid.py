"""FID and KID of synthesized photos against real ones, with pytorch-fid's Inception and a local weights file.

``python -m evaluation.fid REAL_DIR FAKE_DIR --weights pt_inception-2015-12-05-6726825d.pth --json OUT.json``
(installed as ``pix2pix-tr-fid``) prints the Fréchet Inception Distance and the Kernel Inception Distance and
writes ``{"fid", "kid_mean", "kid_std", "n_real", "n_fake", "weights_sha256", ...}``.

The network is pytorch-fid's ``InceptionV3`` (the FID Inception that TensorFlow's original FID code used, ported
by pytorch-fid; block 3: the 2048 pool features), built from the weights file the user has: pytorch-fid would
download ``pt_inception-2015-12-05-6726825d.pth`` itself; here its one call that fetches the file is pointed at
the local file while the network is built (:func:`load_fid_inception`), so nothing downloads. The file is
published by pytorch-fid at :data:`FID_WEIGHTS_URL`; the ``6726825d`` in its name is the start of its sha256,
which is checked: another file of the same layout (a test file, a re-save) is used with a warning and recorded as
``"weights_published": false``, since its FIDs are not comparable with published ones.

* **Images.** Every image is read as RGB, scaled to ``[0, 1]`` (torchvision's ``to_tensor``) and resized by the
  network to 299x299 (bilinear, ``align_corners=False``, no antialiasing), exactly as pytorch-fid does, so images
  of any size may be mixed. ``--real_size N`` / ``--fake_size N`` first resize (Pillow bicubic) to NxN: GAN
  Compression's Cityscapes protocol computes the real statistics from the val photos of its prepared A|B
  dataset, i.e. the 2048x1024 photos resized (bicubic) to 256x256, and the fake ones from the generator's
  256x256 output; ``--real_size 256`` reproduces that from the original photos.
* **FID** = ``|mu_r - mu_f|^2 + tr(S_r + S_f - 2 sqrtm(S_r S_f))`` with the feature means and (unbiased) covariances
  in float64 (the trace of the square root from symmetric eigenvalues, :func:`frechet_distance`); equal to
  pytorch-fid's ``calculate_fid_given_paths`` on the same folders and weights. ``--dims`` 64/192/768 take
  pytorch-fid's earlier feature blocks (spatially averaged), as its ``--dims`` does; 2048 is the FID.
* **KID** as torch-fidelity and clean-fid define it: the unbiased estimator of the squared MMD with the
  polynomial kernel ``k(x, y) = (x.y / d + 1)^3`` (d = 2048), over ``--kid_subsets`` (100) random subsets of
  ``m = min(--kid_subset_size (1000), n_real, n_fake)`` features of each side, drawn without replacement by
  ``numpy.random.RandomState(--seed)`` (2020, torch-fidelity's default; fake subset first, then real, per
  subset): ``mean`` and ``std`` (population) of the per-subset values. With m equal to both set sizes (500
  Cityscapes val frames) every subset is the whole set and ``kid_std`` is 0; pass a smaller
  ``--kid_subset_size`` for a spread.

A folder is read like pytorch-fid reads one: the image files directly in it (``.png .jpg .jpeg .bmp .pgm .ppm .tif
.tiff .webp``), sorted; ``--real_glob``/``--fake_glob`` narrow that (``'*_fake_B.png'`` for a ``test.py`` images
folder, which holds real and fake photos side by side and is refused without a glob).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import fnmatch
import json
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from evaluation.common import EvaluationError, check_output_apart, resolve_device, run_cli, sha256_file

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_NAME}"
#: The start of the published file's sha256 (torch.hub names a file by it; pytorch-fid's file keeps that name).
FID_WEIGHTS_SHA256_PREFIX = "6726825d"
IMAGE_EXTENSIONS = {"bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp"}
DIMS = 2048
KID_SUBSETS, KID_SUBSET_SIZE, KID_SEED = 100, 1000, 2020


# ---------------------------------------------------------------------------------------------- the network
def _pytorch_fid():
    try:
        import pytorch_fid
        import pytorch_fid.inception as inception
    except ImportError:
        raise EvaluationError("FID needs the pytorch-fid package (its FID Inception network); install it with pip "
                              "install pytorch-fid (or pip install 'pix2pix-tr[fid]')") from None
    return pytorch_fid, inception


def _where() -> str:
    return f"pytorch-fid publishes it at {FID_WEIGHTS_URL} (its sha256 starts with {FID_WEIGHTS_SHA256_PREFIX})"


@contextlib.contextmanager
def _local_weights(inception_module, state_dict: dict) -> Iterator[None]:
    """While building pytorch-fid's ``InceptionV3``, its one download call returns ``state_dict`` instead."""
    original = inception_module.load_state_dict_from_url

    def local(url, *args, **kwargs):
        if url != inception_module.FID_WEIGHTS_URL:
            raise EvaluationError(f"pytorch-fid asked for {url}, not its FID weights; this pytorch-fid version "
                                  f"builds its network differently from the ones this evaluator knows")
        return state_dict

    inception_module.load_state_dict_from_url = local
    try:
        yield
    finally:
        inception_module.load_state_dict_from_url = original


def read_fid_weights(path: str | Path) -> tuple[dict, str]:
    """The state dict in ``path`` (``torch.load(weights_only=True)``) and the file's sha256."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"--weights {path} does not exist; FID needs {FID_WEIGHTS_NAME}: {_where()} "
                              f"(download it yourself; nothing here does)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors come in many types
        raise EvaluationError(f"--weights {path} is not a readable PyTorch file ({type(exc).__name__}); FID needs "
                              f"{FID_WEIGHTS_NAME}: {_where()}") from None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EvaluationError(f"--weights {path} is not a state dict of tensors; FID needs {FID_WEIGHTS_NAME}: "
                              f"{_where()}")
    return state, sha256_file(path)


def load_fid_inception(path: str | Path, device: str | torch.device = "cpu",
                       dims: int = DIMS) -> tuple[torch.nn.Module, str, bool]:
    """pytorch-fid's ``InceptionV3`` with the weights in ``path``, in eval mode, giving ``dims`` features (2048: the
    pool features of the FID; 64, 192, 768: pytorch-fid's earlier blocks).

    Returns ``(model, sha256 of the file, whether it is the published file)``; a file that does not fit the
    network is one sentence naming the tensor and saying where the real file is published.
    """
    _, inception = _pytorch_fid()
    blocks = inception.InceptionV3.BLOCK_INDEX_BY_DIM
    if dims not in blocks:
        raise EvaluationError(f"--dims {dims} is not one of pytorch-fid's {sorted(blocks)}")
    state, digest = read_fid_weights(path)
    try:
        with _local_weights(inception, state):
            model = inception.InceptionV3([blocks[dims]])
    except RuntimeError as exc:  # load_state_dict: missing / unexpected keys, shape mismatches
        detail = " ".join(str(exc).split())[:240]
        raise EvaluationError(f"--weights {path} does not fit pytorch-fid's FID Inception ({detail}); FID needs "
                              f"{FID_WEIGHTS_NAME}: {_where()}") from None
    published = digest.startswith(FID_WEIGHTS_SHA256_PREFIX)
    if not published:
        warnings.warn(f"--weights {path} has the FID Inception's layout but not the published weights (sha256 "
                      f"{digest[:16]}..., the published file's starts with {FID_WEIGHTS_SHA256_PREFIX}); its FID and "
                      f"KID are not comparable with published ones", stacklevel=2)
    model.dims = dims
    return model.eval().to(device), digest, published


# ---------------------------------------------------------------------------------------------- features
ImageSource = Path | str | Image.Image


def _load(item: ImageSource, size: int | tuple[int, int] | None) -> Image.Image:
    if isinstance(item, Image.Image):
        image = item.convert("RGB")
    else:
        try:
            with Image.open(item) as img:
                image = img.convert("RGB")
        except (OSError, ValueError) as exc:
            raise EvaluationError(f"cannot read image {item}: {exc}") from None
    if size is not None:
        wh = (size, size) if isinstance(size, int) else tuple(size)
        if image.size != wh:
            image = image.resize(wh, Image.BICUBIC)
    return image


def _batches(items: Sequence[ImageSource], size, batch_size: int) -> Iterator[torch.Tensor]:
    """``[0, 1]`` float batches of consecutive images of one size (pytorch-fid's ``to_tensor``)."""
    from torchvision.transforms.functional import to_tensor

    pending: list[torch.Tensor] = []
    for item in items:
        t = to_tensor(_load(item, size))
        if pending and (t.shape != pending[0].shape or len(pending) == batch_size):
            yield torch.stack(pending)
            pending = []
        pending.append(t)
    if pending:
        yield torch.stack(pending)


@torch.inference_mode()
def inception_features(model: torch.nn.Module, images: Sequence[ImageSource], *, size=None, batch_size: int = 50,
                       device: str | torch.device | None = None, progress: bool = False) -> np.ndarray:
    """``(len(images), dims)`` float64 features of image files (or PIL images), as pytorch-fid computes them.

    ``size`` (an int or (width, height)) resizes every image with Pillow's bicubic filter first."""
    from evaluation.protocols import full_fp32

    device = torch.device(device) if device is not None else next(model.parameters()).device
    out = np.empty((len(images), getattr(model, "dims", DIMS)), dtype=np.float64)
    done = 0
    batches = _batches(images, size, batch_size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="FID features", unit="batch", leave=False)
    with full_fp32(device.type == "cuda"):
        for batch in batches:
            pred = model(batch.to(device))[0]
            if pred.shape[2] != 1 or pred.shape[3] != 1:
                pred = torch.nn.functional.adaptive_avg_pool2d(pred, (1, 1))
            out[done:done + len(batch)] = pred.reshape(len(batch), -1).double().cpu().numpy()
            done += len(batch)
    return out


# ---------------------------------------------------------------------------------------------- the distances
def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """The FID of two feature sets (see the module docstring); needs at least two features on each side.

    ``tr(sqrtm(S_a S_b))`` is the sum of the square roots of the eigenvalues of ``sqrt(S_a) S_b sqrt(S_a)`` (a
    symmetric positive semi-definite matrix with the same eigenvalues as ``S_a S_b``): two symmetric eigen
    decompositions instead of pytorch-fid's ``scipy.linalg.sqrtm`` of a non-symmetric product, the same value
    (the tests compare them), in seconds rather than minutes at 2048 dimensions, and without imaginary rounding
    residue when the covariances are singular (fewer images than dimensions)."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise EvaluationError(f"FID needs at least 2 images on each side, got {len(a)} real and {len(b)} synthesized")
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    s1, s2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(eig, 0, None)).sum())


def polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of two equal-size feature sets with the kernel ``(x.y / d + 1)^3``."""
    m, d = x.shape
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


def kernel_inception_distance(features_fake: np.ndarray, features_real: np.ndarray, *, subsets: int = KID_SUBSETS,
                              subset_size: int = KID_SUBSET_SIZE, seed: int = KID_SEED) -> dict:
    """KID (see the module docstring): ``{"kid_mean", "kid_std", "kid_subsets", "kid_subset_size", "kid_seed"}``."""
    fake, real = np.asarray(features_fake, np.float64), np.asarray(features_real, np.float64)
    m = min(subset_size, len(fake), len(real))
    if m < 2:
        raise EvaluationError(f"KID needs at least 2 images on each side, got {len(real)} real and {len(fake)} "
                              f"synthesized")
    if subsets < 1:
        raise EvaluationError(f"--kid_subsets {subsets} must be at least 1")
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        f = fake[rng.choice(len(fake), m, replace=False)]
        r = real[rng.choice(len(real), m, replace=False)]
        values[i] = polynomial_mmd2(f, r)
    return {"kid_mean": float(values.mean()), "kid_std": float(values.std()), "kid_subsets": subsets,
            "kid_subset_size": m, "kid_seed": seed}


# ---------------------------------------------------------------------------------------------- folders
def list_images(folder: str | Path, pattern: str = "*", *, flag: str = "REAL_DIR") -> list[Path]:
    """The image files directly in ``folder`` whose names match ``pattern``, sorted (pytorch-fid's listing)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"{flag} {folder} is not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS
                   and fnmatch.fnmatch(p.name, pattern))
    if pattern == "*":
        kinds = {s for s in ("_fake_B", "_real_B", "_real_A") if any(p.stem.endswith(s) for p in files)}
        if len(kinds) > 1:
            glob_flag = "--fake_glob" if flag == "FAKE_DIR" else "--real_glob"
            raise EvaluationError(f"{flag} {folder} holds test.py's real and synthesized photos side by side "
                                  f"({', '.join(sorted(kinds))}); pass {glob_flag} '*_fake_B.png' (or "
                                  f"'*_real_B.png') to pick one kind")
    if not files:
        hint = (f"; test.py writes its photos into {folder / 'images'}" if (folder / "images").is_dir() else "")
        raise EvaluationError(f"{flag} {folder} holds no image files matching {pattern!r}{hint}")
    return files


def fid_kid(real: Sequence[ImageSource], fake: Sequence[ImageSource], weights: str | Path, *,
            device: str | torch.device | None = "auto", batch_size: int = 50, real_size=None, fake_size=None,
            kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE, seed: int = KID_SEED,
            dims: int = DIMS, progress: bool = False, model: tuple | None = None) -> dict:
    """FID and KID of ``fake`` against ``real`` (image files or PIL images); returns the JSON-ready dict.

    ``model`` may be what :func:`load_fid_inception` returned, to reuse a loaded network."""
    if batch_size < 1:
        raise EvaluationError(f"--batch_size {batch_size} must be at least 1")
    dev = resolve_device(device) if isinstance(device, (str, type(None))) else torch.device(device)
    net, digest, published = model if model is not None else load_fid_inception(weights, dev, dims)
    net.to(dev)
    feats_real = inception_features(net, real, size=real_size, batch_size=batch_size, device=dev, progress=progress)
    feats_fake = inception_features(net, fake, size=fake_size, batch_size=batch_size, device=dev, progress=progress)
    import pytorch_fid

    result = {"fid": frechet_distance(feats_real, feats_fake)}
    result.update(kernel_inception_distance(feats_fake, feats_real, subsets=kid_subsets, subset_size=kid_subset_size,
                                            seed=seed))
    result.update({"n_real": len(real), "n_fake": len(fake), "weights": str(weights), "weights_sha256": digest,
                   "weights_published": published, "dims": getattr(net, "dims", DIMS),
                   "real_resize": _size_text(real_size), "fake_resize": _size_text(fake_size),
                   "network": "pytorch-fid InceptionV3 (FID Inception, pool3), input resized to 299x299 bilinear",
                   "pytorch_fid_version": getattr(pytorch_fid, "__version__", "unknown"), "device": str(dev)})
    return result


def _size_text(size) -> str | None:
    if size is None:
        return None
    w, h = (size, size) if isinstance(size, int) else size
    return f"{w}x{h} bicubic"


# ---------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evaluation.fid", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("real_dir", help="folder of real photos")
    p.add_argument("fake_dir", help="folder of synthesized photos (e.g. results/NAME/val_latest/images with "
                                    "--fake_glob '*_fake_B.png')")
    p.add_argument("--weights", required=True, help=f"pytorch-fid's {FID_WEIGHTS_NAME} ({FID_WEIGHTS_URL})")
    p.add_argument("--json", default=None, help="write the results here (JSON)")
    p.add_argument("--real_glob", default="*", help="file names to take from REAL_DIR (default: every image)")
    p.add_argument("--fake_glob", default="*", help="file names to take from FAKE_DIR (default: every image)")
    p.add_argument("--real_size", type=int, default=None,
                   help="resize real photos to NxN (bicubic) first; 256 = GAN Compression's Cityscapes protocol")
    p.add_argument("--fake_size", type=int, default=None, help="resize synthesized photos to NxN (bicubic) first")
    p.add_argument("--kid_subsets", type=int, default=KID_SUBSETS)
    p.add_argument("--kid_subset_size", type=int, default=KID_SUBSET_SIZE)
    p.add_argument("--seed", type=int, default=KID_SEED, help="seed of the KID subsets (torch-fidelity's 2020)")
    p.add_argument("--dims", type=int, default=DIMS,
                   help="feature size: 2048 (the FID's pool features, default) or pytorch-fid's 64, 192, 768")
    p.add_argument("--batch_size", type=int, default=50)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    p.add_argument("--no_progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for flag, value in (("--real_size", args.real_size), ("--fake_size", args.fake_size)):
        if value is not None and value < 16:
            raise EvaluationError(f"{flag} {value} is too small; use 16 or more (256 for GAN Compression's protocol)")
    real = list_images(args.real_dir, args.real_glob, flag="REAL_DIR")
    fake = list_images(args.fake_dir, args.fake_glob, flag="FAKE_DIR")
    if args.json:  # never written into an image folder or onto the weights, checked before any work
        check_output_apart(args.json, flag="--json", input_dirs={"REAL_DIR": args.real_dir, "FAKE_DIR": args.fake_dir},
                           input_files={"--weights": args.weights}, folder=False)
    result = fid_kid(real, fake, args.weights, device=args.device, batch_size=args.batch_size,
                     real_size=args.real_size, fake_size=args.fake_size, kid_subsets=args.kid_subsets,
                     kid_subset_size=args.kid_subset_size, seed=args.seed, dims=args.dims,
                     progress=not args.no_progress)
    result.update({"real_dir": str(args.real_dir), "fake_dir": str(args.fake_dir), "real_glob": args.real_glob,
                   "fake_glob": args.fake_glob,
                   "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
    print(f"FID {result['fid']:.4f}  KID {result['kid_mean']:.6f} +- {result['kid_std']:.6f} "
          f"({result['n_real']} real, {result['n_fake']} synthesized; KID over {result['kid_subsets']} subsets of "
          f"{result['kid_subset_size']})")
    if args.json:
        from pix2pix_tr.io import atomic_write_text

        out = Path(args.json)
        if out.parent and not out.parent.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}")
    return 0


def command() -> int:
    """The installed command ``pix2pix-tr-fid`` (= ``python -m evaluation.fid``)."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
