"""train.py's speed levers on the CPU: --cache_images gives the same run; --compiled_optimizer the same run within
float rounding; a bad --compile_mode is named."""

import warnings

import pytest
import torch

from pix2pix_tr.options import parse_train
from pix2pix_tr.training import train


def tiny(ab_root, ckpt, name, *extra):
    return parse_train(["--dataroot", str(ab_root), "--checkpoints_dir", str(ckpt), "--name", name, "--ngf", "8",
                        "--ndf", "8", "--netG", "unet_64", "--load_size", "72", "--crop_size", "64", "--batch_size",
                        "2", "--n_epochs", "1", "--n_epochs_decay", "0", "--device", "cpu", "--seed", "4", *extra])


def test_cache_images_with_workers_trains_exactly_like_reading_the_files(ab_root, tmp_path):
    ref = train(tiny(ab_root, tmp_path, "ref", "--num_threads", "0"))
    cached = train(tiny(ab_root, tmp_path, "cached", "--num_threads", "2", "--cache_images"))
    assert cached.total_iters == ref.total_iters == 4
    for a, b in ((ref.G, cached.G), (ref.D, cached.D)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.slow
def test_compiled_optimizer_reaches_the_optimizers_and_trains_like_the_default_one(ab_root, tmp_path, monkeypatch):
    from pix2pix_tr.optim import _compiled

    monkeypatch.setattr(_compiled, "_COMPILED", {})
    ref = train(tiny(ab_root, tmp_path, "ref", "--num_threads", "0", "--n_epochs", "3"))
    assert _compiled._COMPILED == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to eager
        comp = train(tiny(ab_root, tmp_path, "comp", "--num_threads", "0", "--n_epochs", "3", "--compiled_optimizer"))
    assert comp.total_iters == 12 and "_adam_shared" in _compiled._COMPILED  # > one TR cycle: both variants ran
    # the kernels themselves are checked against the float64 oracle (test_optim_oracle); here the GAN run differs
    # only by float rounding, which 12 Adam steps on a GAN amplify to a few 1e-4 (measured: at most 4.1e-4)
    for a, b in ((ref.G, comp.G), (ref.D, comp.D)):
        for (n, p), q in zip(a.named_parameters(), b.parameters()):
            torch.testing.assert_close(q, p, rtol=0, atol=2e-3, msg=n)


def test_bad_compile_mode_is_named(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_train(["--dataroot", "x", "--compile_mode", "fastest"])
    assert exc.value.code == 2 and "--compile_mode" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- sync-free
SYNC_FREE_CONFIGS = {
    "tradam": (),
    "trsgd": ("--optimizer", "trsgd"),
    "adam": ("--optimizer", "adam"),
    "bf16": ("--amp", "bf16"),
    "fp16": ("--amp", "fp16"),
    "cache_images+augment_on_device": ("--cache_images", "--augment_on_device"),
}


@pytest.mark.parametrize("config", list(SYNC_FREE_CONFIGS))
@pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)`")  # fp16: the scaler skips step 1
def test_no_host_read_between_log_rows(ab_root, tmp_path, monkeypatch, config):
    """6 iterations (batch 1), a log row every 3: iterations 2, 4 and 5 must not read a tensor's value on the host
    (on a GPU each read waits for the device), the progress bar refreshing at every one (--display_freq 1). The
    one exception is the fp16 GradScaler's own: ``GradScaler.step`` reads whether the gradients overflowed
    before it calls an optimiser that cannot skip the step on the device (TRAdam here), once per network."""
    from host_reads import HostReads, host_step_counters

    import pix2pix_tr.training.loop as loop_module

    built = []
    real_build = loop_module.build_optimizers
    monkeypatch.setattr(loop_module, "build_optimizers", lambda *a, **k: built.append(real_build(*a, **k)) or built[-1])
    with HostReads() as reads:
        result = train(tiny(ab_root, tmp_path, config, "--num_threads", "0", "--batch_size", "1", "--max_dataset_size",
                            "6", "--print_freq", "3", "--display_freq", "1", *SYNC_FREE_CONFIGS[config]),
                       after_iteration=reads.next_iteration)
    assert result.total_iters == 6
    host = host_step_counters(*built[0][:2])  # torch's non-fused optimisers read their host step counters
    for iteration in (2, 4, 5):
        found = reads.at(iteration, host)
        if config == "fp16":
            scaler = [r for r in found if r.startswith("item at torch/amp/grad_scaler.py")]
            assert len(scaler) == 2, found
            found = [r for r in found if r not in scaler]
        assert found == [], f"iteration {iteration} read tensors on the host:\n" + "\n".join(found)
    assert any(r.startswith("tolist at") for r in reads.at(3, host))  # the log row's check: one transfer
