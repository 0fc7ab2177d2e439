"""Command-line options of train.py and test.py, with the original pix2pix's names and defaults.

One argparse definition per entry point: :func:`train_parser` / :func:`test_parser` build it,
:func:`parse_train` / :func:`parse_test` parse a list of arguments and check the combinations argparse
cannot (crop size vs. generator, crop vs. load size, ...). Bad values end in ``parser.error``: one sentence
naming the flag, exit status 2, no traceback.

Differences from pix2pix's flags: ``--gpu_ids`` is replaced by ``--device`` (``auto`` picks CUDA when
present; several GPUs go through ``torchrun``); ``--epoch_count`` is not needed to resume (``--continue_train``
restores the epoch and iteration from the checkpoint); visdom flags are gone (the web page, the loss CSV and
the loss plot replace them). New: ``--optimizer --tr_lambda --tr_period --tr_mode --no_tr_inner_decay``,
``--amp --channels_last --compile --seed --lambda_gp --num_threads``.

After training, ``checkpoints/NAME/train_opt.json`` holds every training option; :func:`load_train_options`
reads it and :func:`merge_test_options` fills a test run's unset network/data options from it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .cli import (device_problem, int_or_inf, json_clean, non_negative_float, non_negative_int, positive_float,
                  positive_int)
from .data.aligned import DIRECTIONS, PREPROCESS_MODES
from .models.losses import GAN_MODES
from .models.networks import DISCRIMINATORS, GENERATORS, INIT_TYPES, NORMS, required_multiple
from .optim import TR_MODES

OPTIMIZERS = ("tradam", "adam", "trsgd", "sgd")
LR_POLICIES = ("linear", "step", "cosine", "plateau")
AMP_MODES = ("none", "bf16", "fp16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _add_common(p: argparse.ArgumentParser, *, test: bool) -> None:
    """Flags shared by train.py and test.py. For test.py the network/data flags default to None, meaning
    "as in training" (read from train_opt.json)."""
    g = p.add_argument_group("experiment")
    g.add_argument("--dataroot", required=True,
                   help="folder of A|B pairs with train/ and val/ subfolders (datasets/prepare_cityscapes_dataset.py "
                        "writes one); 'cityscapes' looks in ./cityscapes and ./datasets/cityscapes")
    g.add_argument("--name", default="experiment_name", help="experiment name: outputs go to CHECKPOINTS_DIR/NAME")
    g.add_argument("--checkpoints_dir", default="./checkpoints", help="where experiments are saved")
    g.add_argument("--device", default="auto",
                   help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N; under torchrun each rank takes "
                        "cuda:LOCAL_RANK")
    g.add_argument("--seed", type=int, default=0, help="seed of every RNG the run uses")
    g.add_argument("--num_threads", type=non_negative_int, default=4,
                   help="DataLoader worker processes (0 = load in the main process)")
    g.add_argument("--batch_size", type=positive_int, default=1, help="images per batch (per rank under torchrun)")

    n = p.add_argument_group("networks" + (" (default: as in training)" if test else ""))
    n.add_argument("--input_nc", type=positive_int, default=None if test else 3, help="channels of the input image")
    n.add_argument("--output_nc", type=positive_int, default=None if test else 3, help="channels of the output image")
    n.add_argument("--ngf", type=positive_int, default=None if test else 64, help="generator filters in the last conv")
    n.add_argument("--netG", choices=GENERATORS, default=None if test else "unet_256",
                   help="generator architecture (unet_256 needs crops that are multiples of 256, unet_128 of 128)")
    n.add_argument("--norm", choices=NORMS, default=None if test else "batch",
                   help="normalisation; syncbatch = batch norm synchronised across DDP ranks")
    n.add_argument("--no_dropout", action="store_true", default=None if test else False,
                   help="no dropout in the generator")
    if not test:
        n.add_argument("--ndf", type=positive_int, default=64, help="discriminator filters in the first conv")
        n.add_argument("--netD", choices=DISCRIMINATORS, default="basic",
                       help="basic = 70x70 PatchGAN, n_layers = PatchGAN with --n_layers_D layers, pixel = 1x1")
        n.add_argument("--n_layers_D", type=positive_int, default=3, help="layers of D when --netD n_layers")
        n.add_argument("--init_type", choices=INIT_TYPES, default="normal", help="weight initialisation")
        n.add_argument("--init_gain", type=positive_float, default=0.02, help="scale of the initialisation")

    a = p.add_argument_group("data" + (" (default: as in training)" if test else ""))
    a.add_argument("--direction", choices=DIRECTIONS, default=None if test else "AtoB",
                   help="AtoB maps the left half to the right; Cityscapes labels->photo (A=photo, B=label) is BtoA")
    a.add_argument("--preprocess", choices=PREPROCESS_MODES, default=None if test else "resize_and_crop",
                   help="scaling and cropping at load time")
    a.add_argument("--load_size", type=positive_int, default=None if test else 286, help="scale images to this size")
    a.add_argument("--crop_size", type=positive_int, default=None if test else 256, help="then crop to this size")
    a.add_argument("--max_dataset_size", type=int_or_inf, default=math.inf,
                   help="use at most this many images (default: all)")
    a.add_argument("--no_flip", action="store_true", default=None if test else False,
                   help="no random horizontal flip")


def train_parser() -> argparse.ArgumentParser:
    """The argparse parser of train.py (pix2pix's train options, plus the TR optimiser and speed flags)."""
    p = argparse.ArgumentParser(
        prog="train.py", description="Train pix2pix (U-Net G + PatchGAN D), each network with its own optimiser "
        "(TRAdam by default), on aligned A|B image pairs.", usage=USAGE,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_common(p, test=False)
    p.add_argument("--phase", default="train", help="subfolder of --dataroot to train on")

    o = p.add_argument_group("optimisation")
    o.add_argument("--n_epochs", type=non_negative_int, default=100, help="epochs at the initial learning rate")
    o.add_argument("--n_epochs_decay", type=non_negative_int, default=100,
                   help="epochs to decay the learning rate linearly to zero (lr_policy linear)")
    o.add_argument("--optimizer", choices=OPTIMIZERS, default="tradam",
                   help="tradam/trsgd = Trajectory Regularized Adam/SGD (the paper); adam/sgd = plain torch.optim. "
                        "All four run the same kernel family: torch's fused Adam/SGD kernels where the device has "
                        "them (CPU, CUDA), so adam vs tradam compares the algorithms, not the kernels")
    o.add_argument("--lr", type=positive_float, default=0.0002, help="initial learning rate")
    o.add_argument("--beta1", type=non_negative_float, default=0.5, help="Adam beta1 (SGD: momentum)")
    o.add_argument("--beta2", type=non_negative_float, default=0.999, help="Adam beta2")
    o.add_argument("--tr_lambda", type=non_negative_float, default=0.1, help="TR proximal strength lambda")
    o.add_argument("--tr_period", type=positive_int, default=10, help="TR anchor period S (steps)")
    o.add_argument("--tr_mode", choices=TR_MODES, default="paper",
                   help="paper: proximal coefficient lambda; reference: the authors' code (2*lambda*lr0/lr)")
    o.add_argument("--no_tr_inner_decay", action="store_true",
                   help="TR inner steps use lr instead of lr/(k+1)")
    o.add_argument("--tr_restart_each_epoch", action="store_true",
                   help="start a new TR cycle (k = 0, new anchor) at every epoch start, as the authors' code does")
    o.add_argument("--gan_mode", choices=GAN_MODES, default="vanilla", help="GAN objective")
    o.add_argument("--lambda_L1", type=non_negative_float, default=100.0, help="weight of the L1 loss of G")
    o.add_argument("--lambda_gp", type=non_negative_float, default=10.0,
                   help="gradient-penalty weight, used only with --gan_mode wgangp")
    o.add_argument("--lr_policy", choices=LR_POLICIES, default="linear",
                   help="linear: constant for n_epochs then linear to 0 over n_epochs_decay; step: x0.1 every "
                        "lr_decay_iters epochs; cosine: to 0 over n_epochs + n_epochs_decay; plateau: x0.2 when "
                        "the G loss stalls for 5 epochs")
    o.add_argument("--lr_decay_iters", type=positive_int, default=50, help="epochs per x0.1 step (lr_policy step)")

    s = p.add_argument_group("saving and display")
    s.add_argument("--continue_train", action="store_true",
                   help="resume from CHECKPOINTS_DIR/NAME/training_state.pth exactly where it stopped")
    s.add_argument("--override", action="extend", nargs="+", default=[], metavar="OPTION",
                   help="with --continue_train: options allowed to differ from the saved run's on purpose "
                        "(lr: new learning rate, e.g. after a divergence; dataroot: continue on other data); "
                        "recorded in train_opt and the loss log")
    s.add_argument("--save_epoch_freq", type=positive_int, default=5,
                   help="keep {epoch}_net_G/D.pth and add a gallery row every this many epochs")
    s.add_argument("--save_latest_freq", type=non_negative_int, default=5000,
                   help="also save the latest state every this many iterations (0 = only at epoch ends)")
    s.add_argument("--print_freq", type=positive_int, default=100,
                   help="iterations between loss-log rows; the losses and weights are checked for NaN/inf there "
                        "(and before every save), the iterations in between never wait for the device")
    s.add_argument("--display_freq", type=positive_int, default=400,
                   help="iterations between refreshes of the progress bar's losses (the last loss-log row's means)")
    s.add_argument("--tensorboard", action="store_true",
                   help="also log the losses, learning rates and gallery images to CHECKPOINTS_DIR/NAME/tb/ for "
                        "TensorBoard (needs: pip install 'pix2pix-tr[tensorboard]')")

    f = p.add_argument_group("speed")
    f.add_argument("--amp", choices=AMP_MODES, default="none",
                   help="mixed precision: bf16 autocast, or fp16 autocast with a GradScaler")
    f.add_argument("--channels_last", action="store_true", help="NHWC memory format for networks and inputs")
    f.add_argument("--compile", action="store_true", help="torch.compile both networks")
    f.add_argument("--compile_mode", choices=COMPILE_MODES, default="default",
                   help="torch.compile mode with --compile; reduce-overhead captures CUDA graphs of the networks' "
                        "steps (the batch-1 lever on a GPU)")
    f.add_argument("--compiled_optimizer", action="store_true",
                   help="TRAdam/TRSGD with compiled=True: one torch.compile'd single-pass kernel per network")
    f.add_argument("--cache_images", action="store_true",
                   help="decode every training file once into shared memory read by all loader workers "
                        "(after the deterministic resize: 2 x 286 x 286 x 3 bytes per pair at the defaults)")
    f.add_argument("--augment_on_device", action="store_true",
                   help="do the random crop, the flip and the uint8 -> float conversion on the training device "
                        "(the loader sends uint8 halves; identical batches); all pairs must have one size after "
                        "--preprocess")
    f.add_argument("--fused", action="store_true",
                   help="require torch's fused optimiser kernels (every --optimizer already picks them where the "
                        "device supports them; with this flag a device without them is an error)")
    f.add_argument("--no_pin_memory", action="store_true", help="do not pin host memory for the DataLoader")
    f.add_argument("--max_iters", type=non_negative_int, default=0,
                   help="stop after this many iterations in total, saving the state (0 = no limit); "
                        "for smoke tests and for splitting a run into chunks")
    _add_official(p, "train")
    return p


def test_parser() -> argparse.ArgumentParser:
    """The argparse parser of test.py. Network/data flags default to None = "as saved in train_opt.json"."""
    p = argparse.ArgumentParser(
        prog="test.py", description="Run a trained pix2pix generator over a folder of A|B pairs and write an "
        "HTML page of real_A / fake_B / real_B.", usage=USAGE,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_common(p, test=True)
    p.add_argument("--results_dir", default="./results", help="results go to RESULTS_DIR/NAME/PHASE_EPOCH/")
    p.add_argument("--epoch", default="latest", help="which checkpoint: latest or an epoch number")
    p.add_argument("--num_test", type=positive_int, default=None, help="how many images (default: all)")
    p.add_argument("--phase", default=None,
                   help="aligned mode: the subfolder of --dataroot to run on (default val); single mode: only names "
                        "the results folder (default single)")
    p.add_argument("--eval", action="store_true",
                   help="eval mode (batch-norm running statistics, no dropout); pix2pix's default is train mode")
    p.add_argument("--dataset_mode", default=None,
                   type=_choice(("aligned", "single"), {},
                                "only aligned A|B pairs and single images are read here, not {value}"),
                   help="aligned: A|B pairs in DATAROOT/PHASE (default); single: plain input images (e.g. label maps) "
                        "in --dataroot, a folder, a text file of paths, or one image")
    p.add_argument("--model", default=None,
                   type=_choice(("pix2pix", "test"), {},
                                "only pix2pix (and its generator alone, test) is implemented here, not {value}"),
                   help="the official spelling: test = a generator alone on single images (implies --dataset_mode "
                        "single); pix2pix = aligned pairs")
    p.add_argument("--label_format", choices=("auto", "color", "label_ids", "train_ids"), default="auto",
                   help="single mode: how single-channel inputs are read; auto recognises Cityscapes label ids and "
                        "train ids by their values and colours them as in training")
    p.add_argument("--amp", choices=AMP_MODES, default="none", help="run the generator under bf16/fp16 autocast")
    p.set_defaults(num_threads=0, seed=0)
    _add_official(p, "test")
    return p


def check_train_options(opt: argparse.Namespace, parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Check combinations argparse cannot; ``parser.error`` (exit 2) with one sentence on failure. What only
    training decides (``--override``, ``--tensorboard``'s package) is checked by
    :meth:`pix2pix_tr.training.TrainConfig.from_options`; train.py reports it the same way."""
    if opt.preprocess in ("resize_and_crop", "scale_width_and_crop") and opt.crop_size > opt.load_size:
        parser.error(f"--crop_size {opt.crop_size} is larger than --load_size {opt.load_size}: "
                     f"crops are cut from the resized image, so use --crop_size <= --load_size")
    multiple = required_multiple(opt.netG)
    size = opt.crop_size if opt.preprocess != "none" else None
    if size is not None and size % multiple:
        parser.error(f"--netG {opt.netG} needs square inputs whose side is a multiple of {multiple}, but "
                     f"--crop_size is {size}: use --crop_size {max(multiple, size // multiple * multiple)} "
                     f"or another --netG")
    if opt.n_epochs + opt.n_epochs_decay == 0:
        parser.error("--n_epochs and --n_epochs_decay are both 0: nothing to train")
    if opt.optimizer in ("trsgd", "sgd") and opt.beta1 >= 1:
        parser.error(f"--beta1 (the SGD momentum) must be < 1, got {opt.beta1}")
    if opt.optimizer in ("tradam", "adam") and (opt.beta1 >= 1 or opt.beta2 >= 1):
        parser.error(f"Adam's --beta1 and --beta2 must be < 1, got {opt.beta1} and {opt.beta2}")
    problem = device_problem(opt.device, check_available=False)  # whether CUDA is there is checked at run time
    if problem is not None:
        parser.error(problem)
    if opt.epoch_count is not None and opt.epoch_count > opt.n_epochs + opt.n_epochs_decay:
        parser.error(f"--epoch_count {opt.epoch_count} is past the last epoch (--n_epochs + --n_epochs_decay = "
                     f"{opt.n_epochs + opt.n_epochs_decay}): nothing to train")
    _apply_suffix(opt, parser)
    if opt.name in ("", ".", "..") or "/" in opt.name or "\\" in opt.name:
        parser.error(f"--name {opt.name!r} must be a plain folder name (no slashes)")
    opt.override = sorted(set(opt.override))
    return opt


def parse_train(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse train.py's arguments (``sys.argv[1:]`` when None) and check them."""
    parser = train_parser()
    return check_train_options(parser.parse_args(argv), parser)


def parse_test(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse test.py's arguments. Network/data options left unset are None: see :func:`merge_test_options`."""
    parser = test_parser()
    opt = parser.parse_args(argv)
    if opt.epoch != "latest" and not opt.epoch.isdigit():
        parser.error(f"--epoch must be 'latest' or an epoch number, got {opt.epoch!r}")
    if opt.use_wandb and importlib.util.find_spec("wandb") is None:
        parser.error("--use_wandb needs the wandb package, which is not installed: pip install 'pix2pix-tr[wandb]'")
    if opt.load_iter > 0:  # the official's iter_N_net_G.pth (train.py --save_by_iter), in place of --epoch
        opt.epoch = f"iter_{opt.load_iter}"
    _apply_suffix(opt, parser)  # (test.py checks that --name is a plain folder name, naming the flag)
    return opt


def train_defaults() -> dict[str, Any]:
    """Every train option's default (``--dataroot`` excluded)."""
    parser = train_parser()
    return {a.dest: a.default for a in parser._actions
            if a.dest not in ("help", "dataroot") and a.default is not argparse.SUPPRESS}


def _as_dict(opt: argparse.Namespace | Mapping[str, Any]) -> dict[str, Any]:
    return dict(opt) if isinstance(opt, Mapping) else vars(opt)


def non_default_options(opt: argparse.Namespace | Mapping[str, Any]) -> dict[str, Any]:
    """The options whose value differs from the default (plus --dataroot): the run's "effective config"."""
    defaults = train_defaults()
    return {k: v for k, v in _as_dict(opt).items() if k == "dataroot" or k not in defaults or defaults[k] != v}


def options_to_json_dict(opt: argparse.Namespace | Mapping[str, Any]) -> dict[str, Any]:
    """All options (a Namespace or a dict of them) as JSON-safe values (``inf`` becomes the string "inf")."""
    return json_clean(_as_dict(opt))


def format_options(opt: argparse.Namespace | Mapping[str, Any]) -> str:
    """pix2pix's human-readable table: one ``name: value [default: d]`` line per option."""
    defaults = train_defaults()
    lines = ["----------------- Options ---------------"]
    for k, v in sorted(_as_dict(opt).items()):
        note = f"\t[default: {defaults[k]}]" if k in defaults and defaults[k] != v else ""
        lines.append(f"{k:>25}: {v!s:<30}{note}")
    lines.append("----------------- End -------------------")
    return "\n".join(lines) + "\n"


def load_train_options(checkpoint_dir: str | Path) -> dict[str, Any]:
    """Read ``checkpoint_dir/train_opt.json`` (written by train.py) into a dict; ``inf`` restored.
    Raises FileNotFoundError with a sentence naming the file when it is missing."""
    path = Path(checkpoint_dir) / "train_opt.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: train a model with train.py --name {Path(checkpoint_dir).name} "
                                f"first, or point --checkpoints_dir/--name at its folder")
    data = json.loads(path.read_text(encoding="utf-8"))
    return {k: (math.inf if v == "inf" else v) for k, v in data.items()}


# network/data options test.py takes from training when the user left them unset (None)
INHERITED_TEST_OPTIONS = ("input_nc", "output_nc", "ngf", "netG", "norm", "no_dropout", "direction", "preprocess",
                          "load_size", "crop_size", "no_flip")


def merge_test_options(opt: argparse.Namespace, train_opt: dict[str, Any] | None = None) -> argparse.Namespace:
    """Fill the test options left None from the training options (``train_opt.json`` of the experiment when
    ``train_opt`` is None) and, failing that, from the training defaults. Returns a new Namespace that also
    carries ``init_type`` and ``init_gain``."""
    if train_opt is None:
        train_opt = load_train_options(Path(opt.checkpoints_dir) / opt.name)
    defaults = train_defaults()
    merged = argparse.Namespace(**vars(opt))
    for key in INHERITED_TEST_OPTIONS + ("init_type", "init_gain"):
        if getattr(merged, key, None) is None:
            setattr(merged, key, train_opt.get(key, defaults[key]))
    return merged


# ------------------------------------------------------------------------------------------------ official flags
#: The short usage line of an error (argparse's own lists every flag: 30 lines before the one that matters).
USAGE = "%(prog)s --dataroot DATAROOT [--name NAME] [options]  (%(prog)s --help lists them)"


@dataclass(frozen=True)
class OfficialFlag:
    """One flag of the official pix2pix's train.py / test.py and what it does here.

    ``scripts``: "train", "test" or "train, test" (where the official accepts it). ``status``: ``same`` (same name,
    same meaning), ``honoured`` (accepted with the official meaning, see ``here``) or ``refused`` (one sentence
    naming ``here``, our replacement). ``here`` is what the docs' table says."""

    flag: str
    scripts: str
    status: str
    here: str


_COUNTED = "counted in iterations (batches); the official counts images, the same at --batch_size 1"

#: Every flag of the official pytorch-CycleGAN-and-pix2pix train.py and test.py for pix2pix (options/base_options.py,
#: train_options.py, test_options.py, models/pix2pix_model.py and test_model.py), its older names and CycleGAN's
#: own flags. docs/migration.md's table is generated from it (:func:`official_flags_markdown`; a test compares).
OFFICIAL_FLAGS: tuple[OfficialFlag, ...] = (
    OfficialFlag("--dataroot", "train, test", "same", ""),
    OfficialFlag("--name", "train, test", "same", ""),
    OfficialFlag("--gpu_ids", "train, test", "refused", "`--device cuda:N` for GPU N, `--device cpu` for -1, "
                 "torchrun (one process per GPU) for several"),
    OfficialFlag("--checkpoints_dir", "train, test", "same", ""),
    OfficialFlag("--model", "train, test", "honoured", "`pix2pix`; `test` at test time (a generator alone over "
                 "single images, implies `--dataset_mode single`); other models are refused"),
    OfficialFlag("--input_nc", "train, test", "same", ""),
    OfficialFlag("--output_nc", "train, test", "same", ""),
    OfficialFlag("--ngf", "train, test", "same", ""),
    OfficialFlag("--ndf", "train, test", "same", "no effect at test time (D is not built), as in the official"),
    OfficialFlag("--netD", "train, test", "same", "no effect at test time, as in the official"),
    OfficialFlag("--netG", "train, test", "same", "default `unet_256`, the official pix2pix model's; also `unet_64`"),
    OfficialFlag("--n_layers_D", "train, test", "same", "no effect at test time, as in the official"),
    OfficialFlag("--norm", "train, test", "same", "default `batch`, the official pix2pix model's; also `syncbatch`"),
    OfficialFlag("--init_type", "train, test", "same", "no effect at test time, as in the official"),
    OfficialFlag("--init_gain", "train, test", "same", "no effect at test time, as in the official"),
    OfficialFlag("--no_dropout", "train, test", "same", ""),
    OfficialFlag("--dataset_mode", "train, test", "honoured", "`aligned`; `single` at test time; `unaligned` "
                 "and `colorization` are refused"),
    OfficialFlag("--direction", "train, test", "same", ""),
    OfficialFlag("--serial_batches", "train, test", "honoured", "the samples in file order, not shuffled (test.py "
                 "always reads them in order)"),
    OfficialFlag("--num_threads", "train, test", "same", "test.py: loader workers (the official forces 0)"),
    OfficialFlag("--batch_size", "train, test", "same", "test.py: batches of that size (the official forces 1)"),
    OfficialFlag("--load_size", "train, test", "same", ""),
    OfficialFlag("--crop_size", "train, test", "same", ""),
    OfficialFlag("--max_dataset_size", "train, test", "same", ""),
    OfficialFlag("--preprocess", "train, test", "same", ""),
    OfficialFlag("--no_flip", "train, test", "same", ""),
    OfficialFlag("--display_winsize", "train, test", "honoured", "the width of the images on the web pages"),
    OfficialFlag("--epoch", "train, test", "honoured", "test.py: which checkpoint; train.py: `latest` only "
                 "(`--continue_train` resumes the latest state; another epoch is refused with the way to start "
                 "from it)"),
    OfficialFlag("--load_iter", "train, test", "honoured", "test.py: loads `iter_N_net_G.pth` (written by "
                 "`--save_by_iter`), results in `{phase}_iter_N` (the official: `{phase}_{epoch}_iterN`); train.py: "
                 "0 only"),
    OfficialFlag("--verbose", "train, test", "honoured", "prints the networks and their parameter counts"),
    OfficialFlag("--suffix", "train, test", "honoured", "`--name` becomes `NAME_SUFFIX`, the suffix formatted "
                 "with the options (`{netG}_size{load_size}`)"),
    OfficialFlag("--use_wandb", "train, test", "honoured", "logs the losses, learning rates and gallery images "
                 "(test.py: the result images) to Weights & Biases; `pip install 'pix2pix-tr[wandb]'`"),
    OfficialFlag("--wandb_project_name", "train, test", "honoured", "the W&B project, default "
                 "`CycleGAN-and-pix2pix` as in the official"),
    OfficialFlag("--display_freq", "train", "honoured", "how often the progress bar shows the losses (no visdom); "
                 + _COUNTED),
    OfficialFlag("--display_ncols", "train", "refused", "visdom is not used: `--tensorboard` or `--use_wandb`"),
    OfficialFlag("--display_id", "train", "honoured", "0 or less (no visdom window) is what happens here; a "
                 "window id above 0 is refused naming `--tensorboard` or `--use_wandb`"),
    OfficialFlag("--display_server", "train", "refused", "visdom is not used: `--tensorboard` or `--use_wandb`"),
    OfficialFlag("--display_env", "train", "refused", "visdom is not used: `--tensorboard` or `--use_wandb`"),
    OfficialFlag("--display_port", "train", "refused", "visdom is not used: `--tensorboard` or `--use_wandb`"),
    OfficialFlag("--update_html_freq", "train", "honoured", "refreshes the current epoch's row of `web/index.html` "
                 "every N iterations (default: off, the row is written at the epoch's end); " + _COUNTED),
    OfficialFlag("--print_freq", "train", "same", _COUNTED),
    OfficialFlag("--no_html", "train", "honoured", "no `web/` gallery"),
    OfficialFlag("--save_latest_freq", "train", "same", _COUNTED),
    OfficialFlag("--save_epoch_freq", "train", "same", ""),
    OfficialFlag("--save_by_iter", "train", "honoured", "every `--save_latest_freq` save also writes "
                 "`iter_N_net_G.pth` / `iter_N_net_D.pth` (the latest networks are kept as well, for resuming)"),
    OfficialFlag("--continue_train", "train", "same", "resumes the full state (optimisers, schedule, position)"),
    OfficialFlag("--epoch_count", "train", "honoured", "a new run numbers its first epoch N and starts the "
                 "schedule there; with `--continue_train` it must be the saved run's next epoch (or left out)"),
    OfficialFlag("--phase", "train, test", "same", "test.py's default is `val` (the official's `test`)"),
    OfficialFlag("--n_epochs", "train", "same", ""),
    OfficialFlag("--n_epochs_decay", "train", "same", ""),
    OfficialFlag("--beta1", "train", "same", ""),
    OfficialFlag("--lr", "train", "same", ""),
    OfficialFlag("--gan_mode", "train", "same", "default `vanilla`, the official pix2pix model's"),
    OfficialFlag("--pool_size", "train", "honoured", "0 (the official pix2pix model's: no image pool); other "
                 "sizes are refused"),
    OfficialFlag("--lr_policy", "train", "same", "`linear`, `step`, `plateau`, `cosine` (stepping: docs/training.md)"),
    OfficialFlag("--lr_decay_iters", "train", "same", ""),
    OfficialFlag("--lambda_L1", "train", "same", ""),
    OfficialFlag("--results_dir", "test", "same", ""),
    OfficialFlag("--aspect_ratio", "test", "honoured", "the saved images are resized to that width/height ratio"),
    OfficialFlag("--eval", "test", "same", ""),
    OfficialFlag("--num_test", "test", "same", "default: all images (the official's 50)"),
    OfficialFlag("--model_suffix", "test", "honoured", "empty only: a pix2pix run has one generator, "
                 "`latest_net_G.pth`"),
    # older official names
    OfficialFlag("--niter", "train", "refused", "`--n_epochs`"),
    OfficialFlag("--niter_decay", "train", "refused", "`--n_epochs_decay`"),
    OfficialFlag("--which_direction", "train, test", "refused", "`--direction`"),
    OfficialFlag("--which_model_netG", "train, test", "refused", "`--netG`"),
    OfficialFlag("--which_model_netD", "train, test", "refused", "`--netD`"),
    OfficialFlag("--loadSize", "train, test", "refused", "`--load_size`"),
    OfficialFlag("--fineSize", "train, test", "refused", "`--crop_size`"),
    OfficialFlag("--resize_or_crop", "train, test", "refused", "`--preprocess`"),
    OfficialFlag("--no_lsgan", "train", "refused", "`--gan_mode vanilla` (the default here)"),
    OfficialFlag("--which_epoch", "train, test", "refused", "`--epoch`"),
    OfficialFlag("--how_many", "test", "refused", "`--num_test`"),
    OfficialFlag("--ntest", "test", "refused", "`--num_test`"),
    # CycleGAN's own
    OfficialFlag("--lambda_A", "train", "refused", "CycleGAN only: only pix2pix is implemented here"),
    OfficialFlag("--lambda_B", "train", "refused", "CycleGAN only: only pix2pix is implemented here"),
    OfficialFlag("--lambda_identity", "train", "refused", "CycleGAN only: only pix2pix is implemented here"),
)

#: what ``--suffix`` formatting sees for the official flags that keep no value here
_OFFICIAL_VALUES = {"model": "pix2pix", "dataset_mode": "aligned", "pool_size": 0, "epoch": "latest", "load_iter": 0,
                    "display_id": 0, "model_suffix": ""}


def official_refusal(flag: str, value: str | None) -> str:
    """The one sentence refusing official ``flag`` (given ``value``), naming what to use here."""
    if flag == "--gpu_ids":
        ids = [part.strip() for part in (value or "").split(",") if part.strip()]
        if len(ids) > 1:
            return (f"--gpu_ids {value}: several GPUs run as one process each here: torchrun --nproc_per_node "
                    f"{len(ids)} train.py ... (docs/training.md), with CUDA_VISIBLE_DEVICES={value} to pick them")
        if ids and ids[0].lstrip("-").isdigit() and int(ids[0]) < 0:
            return f"--gpu_ids {value} is the official pix2pix's CPU setting: use --device cpu here"
        return (f"--gpu_ids {value}: use --device cuda:{ids[0] if ids else 0} here (--device auto picks CUDA when "
                f"present)")
    entry = next(e for e in OFFICIAL_FLAGS if e.flag == flag)
    if flag.startswith("--display_"):
        return f"{flag} configures visdom, which is not used here: use --tensorboard (or --use_wandb) for live " \
               f"curves and images; web/index.html and loss_curve.png are written anyway"
    if entry.here.startswith("CycleGAN only"):
        return f"{flag} is a CycleGAN option: only pix2pix (--model pix2pix) is implemented here"
    name = entry.here.split("`")[1]  # the flag named first, e.g. `--gan_mode vanilla`
    return f"{flag} is the official pix2pix's older name of {name.split()[0]}: use {name}"


class _Refused(argparse.Action):
    """An official flag that has no counterpart here: parsing it ends with the sentence naming the replacement."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs="?", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(official_refusal(self.option_strings[0], values))


def _choice(accepted: Sequence[str], why: Mapping[str, str], other: str):
    """An argparse type accepting the ``accepted`` values; ``why[value]`` (or ``other``) refuses the rest."""
    def check(text: str) -> str:
        if text in accepted:
            return text
        raise argparse.ArgumentTypeError(why.get(text, other.format(value=text)))
    return check


def _at_most(limit: int, refusal: str):
    """An argparse type accepting whole numbers up to ``limit``; ``refusal`` (formatted with the value) the rest."""
    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value > limit:
            raise argparse.ArgumentTypeError(refusal.format(value=value))
        return value
    return check


#: how to start from weights train.py does not resume by itself (``--epoch N`` / ``--load_iter N`` of train.py)
_START_FROM = ("{{value}}: train.py --continue_train resumes the latest training state; to start a new run from "
               "{files}, copy them into a new run folder as latest_net_G.pth and latest_net_D.pth and add "
               "--continue_train there")


def _add_official(p: argparse.ArgumentParser, script: str) -> None:
    """The official pix2pix's flags that are not ours already: honoured ones (with the official meaning) and
    refused ones (:class:`_Refused`). ``script``: "train" or "test"."""
    train = script == "train"
    o = p.add_argument_group("official pix2pix flags (docs/migration.md)")
    if train:
        o.add_argument("--model", default=argparse.SUPPRESS, help="pix2pix (the only model here)", type=_choice(
            ("pix2pix",), {"test": "test is the official's test-time model (a generator alone over single images): "
                                   "use it with test.py; train.py trains --model pix2pix"},
            "only pix2pix (paired A|B training) is implemented here, not {value}"))
        o.add_argument("--dataset_mode", default=argparse.SUPPRESS, help="aligned (A|B pairs: what training reads)",
                       type=_choice(("aligned",), {"single": "single is test.py's (a generator over plain images); "
                                                             "training needs A|B pairs: --dataset_mode aligned"},
                                    "only aligned A|B pairs (and single images at test time) are read here, not "
                                    "{value}"))
        o.add_argument("--epoch", default=argparse.SUPPRESS, help="latest (the state --continue_train resumes)",
                       type=_choice(("latest",), {}, _START_FROM.format(files="{value}_net_G.pth and "
                                                                              "{value}_net_D.pth")))
        o.add_argument("--load_iter", default=argparse.SUPPRESS, help="0 (test.py reads --save_by_iter's files)",
                       type=_at_most(0, _START_FROM.format(files="iter_{value}_net_G.pth and "
                                                                 "iter_{value}_net_D.pth")))
        o.add_argument("--epoch_count", type=positive_int, default=None,
                       help="number the first epoch of a new run N (its schedule starts there, as the official's); "
                            "with --continue_train: the saved run's next epoch, or left out")
        o.add_argument("--serial_batches", action="store_true", help="take the samples in file order, not shuffled")
        o.add_argument("--save_by_iter", action="store_true",
                       help="every --save_latest_freq save also writes iter_N_net_G.pth / iter_N_net_D.pth")
        o.add_argument("--no_html", action="store_true", help="write no web/ gallery")
        o.add_argument("--update_html_freq", type=positive_int, default=None,
                       help="refresh the current epoch's gallery row every N iterations (default: at the epoch's end)")
        o.add_argument("--display_id", default=argparse.SUPPRESS, help="0 or less: no visdom window (none here)",
                       type=_at_most(0, "{value} opens a visdom window, and visdom is not used here: use "
                                        "--tensorboard (or --use_wandb); web/index.html and loss_curve.png are "
                                        "written anyway"))
        o.add_argument("--pool_size", default=argparse.SUPPRESS, help="0 (pix2pix uses no image pool)",
                       type=_at_most(0, "{value}: pix2pix keeps no pool of generated images (the official pix2pix "
                                        "model sets --pool_size 0 too); drop the flag"))
    else:
        o.add_argument("--load_iter", type=non_negative_int, default=0,
                       help="load iter_N_net_G.pth (train.py --save_by_iter) instead of --epoch's; results go to "
                            "PHASE_iter_N")
        o.add_argument("--aspect_ratio", type=positive_float, default=1.0,
                       help="resize the saved images to this width/height ratio (above 1 wider, below 1 taller)")
        o.add_argument("--model_suffix", default="", help="empty (a pix2pix run has one generator)",
                       type=_choice(("",), {}, "{value!r} picks one of CycleGAN's generators "
                                               "(latest_net_G{value}.pth); a pix2pix run has one, latest_net_G.pth: "
                                               "drop the flag"))
        o.add_argument("--serial_batches", action="store_true", help="no effect: test.py reads the images in order")
        for flag, kind in (("--ndf", positive_int), ("--netD", str), ("--n_layers_D", positive_int),
                           ("--init_type", str), ("--init_gain", positive_float)):
            o.add_argument(flag, type=kind, default=argparse.SUPPRESS,
                           help="no effect at test time (as in the official: D is not built, G is loaded)")
    o.add_argument("--display_winsize", type=positive_int, default=256, help="width of the images on the web pages")
    o.add_argument("--verbose", action="store_true", help="print the networks and their parameter counts")
    o.add_argument("--suffix", default="",
                   help="append _SUFFIX to --name, formatted with the options, e.g. {netG}_size{load_size}")
    o.add_argument("--use_wandb", action="store_true",
                   help="also log to Weights & Biases (needs: pip install 'pix2pix-tr[wandb]'; WANDB_MODE=offline "
                        "logs locally)")
    o.add_argument("--wandb_project_name", default="CycleGAN-and-pix2pix", help="the W&B project")
    known = {a for action in p._actions for a in action.option_strings}
    for entry in OFFICIAL_FLAGS:
        if entry.status == "refused" and script in entry.scripts and entry.flag not in known:
            p.add_argument(entry.flag, action=_Refused)


def _apply_suffix(opt: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """``--suffix``: ``--name`` becomes ``NAME_SUFFIX``, the suffix formatted with the options (as the official)."""
    if not opt.suffix:
        return
    try:
        suffix = opt.suffix.format(**{**_OFFICIAL_VALUES, **vars(opt)})
    except (KeyError, IndexError, ValueError) as exc:
        parser.error(f"--suffix {opt.suffix!r} cannot be formatted with the options ({type(exc).__name__}: {exc}): "
                     f"name options in braces, e.g. {{netG}}_size{{load_size}}")
    opt.name = f"{opt.name}_{suffix}"


def official_flags_markdown() -> str:
    """docs/migration.md's table of the official flags, generated from :data:`OFFICIAL_FLAGS`."""
    lines = ["| official flag | in | here |", "|---|---|---|"]
    for entry in OFFICIAL_FLAGS:
        status = {"same": "same", "honoured": "honoured", "refused": "refused, use"}[entry.status]
        here = f"{status}: {entry.here}" if entry.here else status
        lines.append(f"| `{entry.flag}` | {entry.scripts} | {here} |")
    return "\n".join(lines) + "\n"
