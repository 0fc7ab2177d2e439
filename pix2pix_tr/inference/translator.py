"""A trained generator in one call: ``Translator.from_run("checkpoints/NAME").translate(image)``.

    from pix2pix_tr import Translator

    translator = Translator.from_run("checkpoints/city_tradam", epoch="latest", device="cpu", eval=True)
    photo = translator.translate(Image.open("label_map.png"))            # PIL in, PIL out
    photos = translator.translate([img1, img2, img3], batch_size=8)      # a list in, a list out

What it does, as test.py does (test.py is a thin shell over this class):

* **Options from the run.** ``from_run`` reads ``train_opt.json`` (else the official ``train_opt.txt``) of the run
  folder: generator architecture, channels, ``--preprocess --load_size --crop_size``. Keyword arguments override
  them (``netG=..., ngf=..., norm=..., no_dropout=..., input_nc=..., output_nc=..., preprocess=..., load_size=...,
  crop_size=..., direction=...``), as test.py's flags do; a folder holding only weights needs them.
* **The checkpoint.** ``{epoch}_net_G.pth`` is loaded with ``weights_only=True``; one holding NaN/inf is refused,
  and one that does not fit the options is refused naming the options to change (the same one-sentence errors as
  test.py: :class:`~pix2pix_tr.inference.InferenceError` and its subclass ``CheckpointMismatchError``,
  :class:`~pix2pix_tr.safe_load.NonFiniteStateError`).
* **Preprocessing as in training, made deterministic.** A PIL image, a numpy ``(H, W, 3)`` / ``(H, W)`` uint8 array
  or a file path is read with :func:`pix2pix_tr.data.single.read_input_image` (a single-channel Cityscapes label
  map, label ids or train ids, is coloured with the palette the generator was trained on), resized as in
  training and centre-cropped (:func:`pix2pix_tr.data.single.test_transform`; ``load_size`` defaults to
  ``crop_size``, so ``resize_and_crop`` is a plain resize), and scaled to [-1, 1]. A ``torch.Tensor`` is taken as
  already prepared: float, ``(N, C, H, W)`` or ``(C, H, W)``, in [-1, 1]; it goes to the network as it is.
* **Outputs** have the input's type: PIL -> PIL (RGB), numpy -> ``(H, W, 3)`` uint8, tensor -> float tensor in
  [-1, 1] on the input's device, a path -> PIL; a list gives a list. The image is ``round((y + 1) * 127.5)`` of the
  network output ``y`` (what test.py writes), at the network's size (``crop_size`` by default).
* **Batching.** A list (or an ``(N, C, H, W)`` tensor) is run in batches of ``batch_size`` (the argument, else the
  one given to ``from_run``, default 1); consecutive inputs of one size (and, for tensors, one device) share a
  batch.
* **eval vs train mode.** ``eval=True`` (the default here): BatchNorm uses its running statistics and dropout is
  off, so an image's output does not depend on its batch. ``eval=False`` is the original pix2pix's test mode
  (test.py's default): BatchNorm normalises with the statistics of the batch itself and dropout stays on; use
  ``batch_size=1`` to reproduce pix2pix. Dropout masks then come from the translator's own random stream, seeded
  with ``seed`` (torch's global generator is left as it was, and two translators with one seed give the same
  images); ``seed=None`` draws from torch's global generator instead, as a plain module does (test.py does this,
  after ``torch.manual_seed(--seed)``, so its images are those of earlier releases).
* **Mixed precision.** ``amp="bf16"`` or ``"fp16"`` runs the network under ``torch.autocast`` (for CUDA; bf16 works
  on CPU too); outputs are float32.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from pix2pix_tr.data.aligned import to_tensor
from pix2pix_tr.data.errors import DatasetError
from pix2pix_tr.data.single import TestPreprocess, read_input_image, test_transform
from pix2pix_tr.inference.checkpoint import (InferenceError, build_generator, checkpoint_path, generator_options,
                                             load_state_dict, network_options)
from pix2pix_tr.report.images import tensor_to_image
from pix2pix_tr.safe_load import check_finite_state

__all__ = ["Translator", "run_options", "AMP_DTYPES"]

#: ``amp=`` values and the autocast dtype each stands for.
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

#: Options a caller may override (test.py's network and data flags).
OPTION_NAMES = ("netG", "ngf", "norm", "no_dropout", "input_nc", "output_nc", "direction", "preprocess",
                "load_size", "crop_size", "init_type", "init_gain")


def run_options(run_dir: str | os.PathLike, overrides: Mapping[str, Any] | None = None, *,
                train_opt: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any], str]:
    """``(options, train_options, source)`` of a run folder, as test.py resolves them: every option in
    ``overrides`` that is not None wins; the rest come from ``train_opt.json``, else ``train_opt.txt``, else
    pix2pix's defaults (a folder with neither file needs ``direction`` in ``overrides``). At test time
    ``load_size`` defaults to ``crop_size``. ``train_opt`` given: the training options to use instead of the
    folder's files."""
    from pix2pix_tr.options import INHERITED_TEST_OPTIONS, train_defaults

    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(overrides) - set(OPTION_NAMES))
    if unknown:
        raise InferenceError(f"unknown option(s) {', '.join(unknown)}: the options a run's settings can be "
                             f"overridden with are {', '.join(OPTION_NAMES)}")
    if train_opt is None:
        train_opt, source = network_options(Path(run_dir), SimpleNamespace(direction=overrides.get("direction")))
    else:
        source = "the train_opt given to run_test"
    defaults = train_defaults()
    options = {key: overrides.get(key, train_opt.get(key, defaults[key]))
               for key in INHERITED_TEST_OPTIONS + ("init_type", "init_gain")}
    if "load_size" not in overrides:
        options["load_size"] = options["crop_size"]  # resize_and_crop becomes a plain resize: nothing is cut off
    options["no_flip"] = True
    return options, dict(train_opt), source


def _check_buildable(gen: Mapping[str, Any], spec: TestPreprocess, source: str) -> None:
    from pix2pix_tr.models import GENERATORS, NORMS, required_multiple

    for key, allowed in (("netG", GENERATORS), ("norm", NORMS)):
        if gen[key] not in allowed:
            raise InferenceError(f"cannot build the generator: unknown {key} {gen[key]!r} (from {source}): pass "
                                 f"--{key} with one of {', '.join(allowed)}")
    multiple = required_multiple(gen["netG"])
    if spec.preprocess != "none" and spec.crop_size % multiple:
        raise InferenceError(f"--netG {gen['netG']} needs inputs whose side is a multiple of {multiple}, but "
                             f"--crop_size is {spec.crop_size}: pass --crop_size {multiple} (or a multiple of it)")


def _generator_of(device: torch.device) -> torch.Generator | None:
    """The default generator dropout draws from on ``device`` (None: a device type without one we can swap)."""
    if device.type == "cpu":
        return torch.default_generator
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    return None


class Translator:
    """A loaded generator with the preprocessing and test mode of its training run. See the module docstring."""

    def __init__(self, net: nn.Module, *, preprocess: TestPreprocess | None = None, input_nc: int = 3,
                 output_nc: int = 3, eval: bool = True, device: str | torch.device = "cpu",  # noqa: A002
                 amp: str | None = None, seed: int | None = 0, batch_size: int = 1, label_format: str = "auto",
                 direction: str | None = None, netG: str | None = None, source: str = "the network given",
                 check_finite: bool = True) -> None:
        from pix2pix_tr.cli import resolve_device

        self.device = resolve_device(str(device), InferenceError)
        if amp in (None, "none"):
            amp = None
        elif amp not in AMP_DTYPES:
            raise InferenceError(f"amp must be None, 'bf16' or 'fp16', got {amp!r}")
        if amp == "fp16" and self.device.type == "cpu":
            raise InferenceError("amp='fp16' needs a CUDA device (CPU autocast is bf16): pass amp='bf16' or "
                                 "device='cuda'")
        if int(batch_size) < 1:
            raise InferenceError(f"batch_size must be at least 1, got {batch_size}")
        if check_finite:  # a diverged network's images would be blank (from_run's loading has checked already)
            check_finite_state(net.state_dict(), source)
        self.net = net.to(self.device)
        self.eval_mode = bool(eval)
        self.net.eval() if self.eval_mode else self.net.train()
        self.preprocess_spec = preprocess or TestPreprocess()
        self.input_nc, self.output_nc = int(input_nc), int(output_nc)
        self.amp = amp
        self.seed = seed
        self.batch_size = int(batch_size)
        self.label_format = label_format
        self.direction = direction
        self.netG = netG
        self.source = source
        self._rng_state: torch.Tensor | None = None
        self._has_dropout = any(isinstance(m, nn.Dropout) for m in net.modules())

    # ---------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, epoch: str | int = "latest", device: str | torch.device = "cpu",
                 eval: bool = True, *, amp: str | None = None, seed: int | None = 0,  # noqa: A002
                 batch_size: int = 1, label_format: str = "auto", **options: Any) -> "Translator":
        """The generator of ``run_dir`` (``checkpoints/NAME``) at ``epoch`` ("latest" or a number), with the run's
        preprocessing. ``options`` override the run's settings (``netG ngf norm no_dropout input_nc output_nc
        direction preprocess load_size crop_size``)."""
        translator, _ = cls._load(run_dir, epoch, options, device=device, eval=eval, amp=amp, seed=seed,
                                  batch_size=batch_size, label_format=label_format)
        return translator

    @classmethod
    def _load(cls, run_dir, epoch, overrides: Mapping[str, Any], *, train_opt: Mapping[str, Any] | None = None,
              **kwargs: Any) -> tuple["Translator", dict]:
        """``from_run`` plus what test.py reports: ``{"options", "train_options", "source", "generator",
        "checkpoint"}``."""
        from pix2pix_tr.cli import device_problem

        run_dir = Path(run_dir)
        options, train_opt, source = run_options(run_dir, overrides, train_opt=train_opt)
        problem = device_problem(str(kwargs.get("device", "cpu")))
        if problem is not None:  # before the checkpoint is read
            raise InferenceError(problem)
        try:
            spec = TestPreprocess(options["preprocess"], int(options["load_size"]), int(options["crop_size"]))
        except DatasetError as exc:
            raise InferenceError(str(exc)) from None
        gen = generator_options(options)
        _check_buildable(gen, spec, source)
        path = checkpoint_path(run_dir, epoch)
        state = load_state_dict(path)
        with torch.random.fork_rng(devices=[]):  # the (overwritten) initialisation leaves the caller's RNG alone
            net = build_generator(gen, state, source=str(path), options_source=source)
        translator = cls(net, preprocess=spec, input_nc=gen["input_nc"], output_nc=gen["output_nc"],
                         direction=options["direction"], netG=gen["netG"], source=str(path), check_finite=False,
                         **kwargs)
        return translator, {"options": options, "train_options": train_opt, "source": source, "generator": gen,
                            "checkpoint": path}

    # ---------------------------------------------------------------------------------------------- the network
    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.amp])

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The generator on a prepared ``(N, C, H, W)`` batch in [-1, 1] (moved to the device), with the test
        mode, autocast and dropout stream of this translator; float32 on the device."""
        x = batch.to(self.device, non_blocking=True)
        # (the device's generator is looked up only when the translator's own dropout stream needs it)
        generator = None if self.eval_mode or not self._has_dropout or self.seed is None else \
            _generator_of(self.device)
        if generator is None:
            with self._autocast():
                return self.net(x).float()
        outer = generator.get_state()
        try:
            if self._rng_state is None:
                generator.manual_seed(int(self.seed))
            else:
                generator.set_state(self._rng_state)
            with self._autocast():
                out = self.net(x).float()
            self._rng_state = generator.get_state()
        finally:
            generator.set_state(outer)
        return out

    def reseed(self, seed: int | None) -> None:
        """Restart the dropout stream (train mode) from ``seed`` (None: torch's global generator)."""
        self.seed, self._rng_state = seed, None

    # ---------------------------------------------------------------------------------------------- images
    def preprocess(self, image: Any) -> torch.Tensor:
        """One input (PIL image, uint8 array, or path) -> the ``(input_nc, H, W)`` float tensor in [-1, 1] the
        network takes: label maps coloured, resized and centre-cropped as the run was trained."""
        img, _ = read_input_image(image, input_nc=self.input_nc, label_format=self.label_format)
        return to_tensor(test_transform(img, self.preprocess_spec), self.input_nc)

    @staticmethod
    def to_image(output: torch.Tensor) -> Image.Image:
        """A ``(C, H, W)`` network output in [-1, 1] -> an RGB PIL image (what test.py saves as ``fake_B``)."""
        return Image.fromarray(tensor_to_image(output), "RGB")

    def _check_tensor(self, t: torch.Tensor) -> torch.Tensor:
        from pix2pix_tr.models import required_multiple

        if not t.is_floating_point():
            raise InferenceError(f"a tensor input must be float in [-1, 1] (got {t.dtype}); pass raw images as PIL "
                                 f"images or uint8 numpy arrays, which are scaled for you")
        if t.ndim != 4 or t.shape[1] != self.input_nc:
            raise InferenceError(f"a tensor input must be (N, {self.input_nc}, H, W) or ({self.input_nc}, H, W) "
                                 f"for this generator, got shape {tuple(t.shape)}")
        multiple = required_multiple(self.netG) if self.netG else 1
        if t.shape[2] % multiple or t.shape[3] % multiple:
            raise InferenceError(f"--netG {self.netG} needs inputs whose sides are multiples of {multiple}, got "
                                 f"{t.shape[3]}x{t.shape[2]}: resize the input (a PIL image or array is resized "
                                 f"for you, as in training)")
        return t

    def translate(self, image_or_batch: Any, *, batch_size: int | None = None) -> Any:
        """Translate one input or a list of inputs (see the module docstring for the types); the output has the
        input's type (a list gives a list)."""
        size = int(batch_size or self.batch_size)
        if size < 1:
            raise InferenceError(f"batch_size must be at least 1, got {batch_size}")
        if isinstance(image_or_batch, torch.Tensor):
            t = image_or_batch
            one = t.ndim == 3
            t = self._check_tensor(t[None] if one else t)
            out = torch.cat([self.forward(t[i:i + size]) for i in range(0, t.shape[0], size)]).to(t.device)
            return out[0] if one else out
        if isinstance(image_or_batch, (list, tuple)):
            return self._translate_list(list(image_or_batch), size)
        return self._translate_list([image_or_batch], 1)[0]

    def _translate_list(self, items: Sequence[Any], size: int) -> list[Any]:
        prepared = []
        for item in items:
            if isinstance(item, torch.Tensor):
                prepared.append(self._check_tensor(item[None] if item.ndim == 3 else item)[0])
            else:
                prepared.append(self.preprocess(item))
        outputs: list[torch.Tensor] = []
        start = 0
        while start < len(prepared):  # consecutive inputs of one shape (and device) share a batch of at most ``size``
            stop = start + 1
            while (stop < len(prepared) and stop - start < size and prepared[stop].shape == prepared[start].shape
                   and prepared[stop].device == prepared[start].device):
                stop += 1
            out = self.forward(torch.stack(prepared[start:stop]))
            # one copy to the host per batch, for the images made there; a batch of device tensors stays put
            to_host = any(not isinstance(item, torch.Tensor) or item.device != out.device
                          for item in items[start:stop])
            outputs.extend((out.cpu() if to_host else out).unbind(0))
            start = stop
        return [self._like(item, out) for item, out in zip(items, outputs)]

    @staticmethod
    def _like(item: Any, out: torch.Tensor) -> Any:
        if isinstance(item, torch.Tensor):
            return out.to(item.device)
        if isinstance(item, np.ndarray):
            return tensor_to_image(out)
        return Translator.to_image(out)

    def __repr__(self) -> str:
        mode = "eval" if self.eval_mode else "train (batch statistics, dropout on)"
        return (f"Translator({self.source}, {self.netG or 'generator'}, {self.input_nc}->{self.output_nc} ch, "
                f"{mode}, {self.preprocess_spec.describe()}, device={self.device}"
                + (f", amp={self.amp}" if self.amp else "") + ")")
