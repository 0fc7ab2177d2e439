"""test.py's generator run on fake CUDA tensors: :class:`pix2pix_tr.Translator` on a CUDA device (tier ``fake_cuda``).

``Translator.from_run(run, device="cuda")`` reads the checkpoint on the host (file, NaN check, state-dict match:
real values, before the fake device is entered) and moves the generator to the device; then ``translate`` runs
its preprocessing (host), its batching, the network call on the device and the conversion back, at the paper's
256x256, under the watch of ``tests/fake_cuda.py``. The conversion back to images (PIL or numpy) reads each batch
to the host once, by design (test.py writes PNGs): the tests stop there and check that this is the only
device-to-host copy. Tensors given on the device stay there.

What cannot run here: train mode with the translator's own dropout stream (``eval=False`` with a ``seed``) draws
from the CUDA device's default generator, which exists only with a GPU; and autocast (``amp=``) switches itself
off without a CUDA device. The cuda tier runs test.py on a GPU (tests/test_cuda.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_run
from fake_cuda import CUDA, is_fake_cuda
from PIL import Image

import pix2pix_tr.inference.translator as translator_module
from pix2pix_tr import Translator

pytestmark = pytest.mark.fake_cuda

SIZE = 256


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder of a unet_256 generator trained at 256x256 (ngf 16: the width does not matter here)."""
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    make_run(checkpoints, "city", netG="unet_256", ngf=16, extra=("--crop_size", "256", "--load_size", "286"))
    return checkpoints / "city"


@pytest.fixture
def load_on_host(fake_gpu, monkeypatch):
    """from_run's checkpoint reading and network building run on the host with real values (see the docstring)."""
    for name in ("load_state_dict", "build_generator"):
        monkeypatch.setattr(translator_module, name, fake_gpu.on_host(getattr(translator_module, name)))


def label_maps(n, seed=0):
    """Colour label maps as a user passes them: PIL images and uint8 arrays, of another size than the network's."""
    rng = np.random.default_rng(seed)
    arrays = [rng.integers(0, 256, (300, 600, 3), dtype=np.uint8) for _ in range(n)]
    return [Image.fromarray(a) if i % 2 == 0 else a for i, a in enumerate(arrays)]


@pytest.mark.parametrize("eval_mode,seed", [(True, 0), (False, None)], ids=["eval", "train-mode-global-rng"])
def test_from_run_on_the_device_translates_device_batches_without_a_synchronisation(fake_gpu, load_on_host, run_dir,
                                                                                     eval_mode, seed):
    with fake_gpu:
        translator = Translator.from_run(run_dir, device="cuda", eval=eval_mode, seed=seed, batch_size=2)
        assert translator.device.type == "cuda"
        assert all(is_fake_cuda(t) for t in translator.net.state_dict().values())
        fake_gpu.watch.blocking_uploads.clear()  # (moving the weights there is a one-time, blocking copy)
        batch = torch.rand(5, 3, SIZE, SIZE, device=CUDA) * 2 - 1
        out = translator.translate(batch)  # batches of 2, 2, 1 on the device, concatenated there
        assert is_fake_cuda(out) and out.shape == (5, 3, SIZE, SIZE) and out.dtype == torch.float32
        one = translator.translate(batch[0])
        assert is_fake_cuda(one) and one.shape == (3, SIZE, SIZE)
        listed = translator.translate([batch[0], batch[1], batch[2]])  # a list of device tensors: kept there
        assert all(is_fake_cuda(t) and t.shape == (3, SIZE, SIZE) for t in listed)
        host = translator.forward(torch.rand(2, 3, SIZE, SIZE))  # a loader's batch, from the host
        assert is_fake_cuda(host)
    fake_gpu.assert_no_sync()
    assert fake_gpu.watch.blocking_uploads == []  # the host batch went up with non_blocking=True


def test_images_are_prepared_on_the_host_and_read_back_once_per_batch(fake_gpu, load_on_host, run_dir, monkeypatch):
    converted = []

    def conversion_boundary(item, out):  # the PNG/array conversion reads the values on the host, by design
        if isinstance(item, torch.Tensor):
            return out.to(item.device)
        assert out.device.type == "cpu" and out.shape == (3, SIZE, SIZE)
        converted.append(type(item))
        return out

    monkeypatch.setattr(Translator, "_like", staticmethod(conversion_boundary))
    inputs = label_maps(5)
    with fake_gpu:
        translator = Translator.from_run(run_dir, device="cuda", batch_size=2)
        prepared = translator.preprocess(inputs[0])  # resize 600x300 -> 256x256 and scale, on the host
        assert prepared.device.type == "cpu" and prepared.shape == (3, SIZE, SIZE)
        device_input = torch.rand(3, SIZE, SIZE, device=CUDA) * 2 - 1
        outputs = translator.translate(inputs[:3] + [device_input] + inputs[3:])
    assert converted == [Image.Image, np.ndarray, Image.Image, np.ndarray, Image.Image]
    assert is_fake_cuda(outputs[3])
    # batches: [PIL, array], [PIL], [device tensor], [array, PIL]: a batch of host inputs is read back once, the
    # device tensor is not (a batch never mixes devices)
    copies = [e for e in fake_gpu.watch.events if e.startswith("copy from cuda:0 to the CPU")]
    assert len(copies) == 3 and copies == fake_gpu.watch.events, fake_gpu.watch.events


def test_train_mode_with_its_own_dropout_stream_needs_the_devices_generator(fake_gpu, load_on_host, run_dir):
    with fake_gpu:
        translator = Translator.from_run(run_dir, device="cuda", eval=False, seed=0)
        if torch.cuda.is_available():
            pytest.skip("a GPU is here: the cuda tier runs train mode on it")
        with pytest.raises((IndexError, RuntimeError)):  # torch.cuda.default_generators is empty without a GPU
            translator.translate(torch.rand(1, 3, SIZE, SIZE, device=CUDA))
    pytest.skip("eval=False with a seed draws its dropout masks from the CUDA device's default generator "
                "(torch.cuda.default_generators), which exists only with a GPU; eval=True and eval=False with "
                "seed=None (test.py's default) run above; autocast (amp=) switches itself off without CUDA")
