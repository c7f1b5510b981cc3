"""The GPU path end to end: gradient checks on cuda, and whole AlexNets on the GPU against the CPU.

Each test runs twice (conftest.CUDA_RUNTIMES): emulated, on the CPU (tests/cupy_standin.py), and
on a real GPU (marker gpu, skipped, with the reason, where CuPy or a GPU is missing)."""
import numpy as np
import pytest

import tinynet as tn
import tinynet.functional as F
from conftest import CUDA_RUNTIMES, cuda_runtime
from tinynet import gradcheck
from tinynet.models import alexnet, alexnet2012


@pytest.fixture(scope="module", autouse=True, params=CUDA_RUNTIMES)
def runtime(request):
    """`import cupy` and the cuda devices serve this runtime for all of the module's tests."""
    with cuda_runtime(request.param):
        yield request.param


def gpu_count():
    import cupy
    return cupy.cuda.runtime.getDeviceCount()


# the whole-network check, and the AlexNets below, take 10-30 s each on the emulation
@pytest.mark.parametrize("layer", [pytest.param(c, marks=pytest.mark.slow_when_emulated) if c == "network" else c
                                   for c in sorted(gradcheck.CASES)])
def test_gradient_check_passes_on_cuda_in_float64(layer):
    err, checked = gradcheck.run_case(layer, "cupy", "float64")
    assert checked > 0 and err <= 1e-6, f"{layer}: {err:.2e}"


def _logits_and_grads(net, x, labels, device):
    logits = net(tn.tensor(x, device=device))
    F.softmax_cross_entropy(logits, labels).backward()
    return logits.numpy(), {n: p.grad.get() if hasattr(p.grad, "get") else p.grad for n, p in net.named_parameters()}


def _assert_close(a, b, rtol):
    (za, ga), (zb, gb) = a, b
    assert np.abs(za - zb).max() <= rtol * np.abs(za).max()
    for name in ga:
        assert np.abs(ga[name] - gb[name]).max() <= rtol * np.abs(ga[name]).max(), name


@pytest.mark.slow_when_emulated
def test_alexnet_on_the_gpu_equals_the_cpu_within_float32_tolerance():
    tn.manual_seed(0)
    # The same algorithm on both sides: the GPU's "auto" is im2col, the CPU's Winograd for conv2-5.
    # Winograd rounds float32 differently enough (1e-6 of a layer's largest output, against im2col's
    # 4e-7) to flip near-tied max-pool windows, which moves conv1's and conv2's weight gradients by
    # up to 8e-3 of their largest (measured) while their biases, sums over the windows, agree to 2e-6.
    cpu = tn.nn.set_conv_algorithm(alexnet(10).eval(), "im2col")
    gpu = alexnet(10, device="cuda:0").eval()
    gpu.load_state_dict(cpu.state_dict())
    x = np.random.default_rng(0).standard_normal((4, 3, 224, 224)).astype(np.float32)
    labels = np.array([1, 2, 3, 4])
    _assert_close(_logits_and_grads(cpu, x, labels, "cpu"), _logits_and_grads(gpu, x, labels, "cuda:0"), 1e-3)


@pytest.mark.slow_when_emulated
def test_two_tower_net_on_the_gpu_equals_the_cpu():
    devices = ("cuda:0", "cuda:1") if gpu_count() > 1 else ("cuda:0", "cuda:0")
    tn.manual_seed(0)
    cpu = alexnet2012(10, devices=("cpu:0", "cpu:1"), dtype=np.float64).eval()
    gpu = alexnet2012(10, devices=devices, dtype=np.float64).eval()
    gpu.load_state_dict(cpu.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224))
    labels = np.array([5, 6])
    _assert_close(_logits_and_grads(cpu, x, labels, "cpu:0"), _logits_and_grads(gpu, x, labels, devices[0]), 1e-9)
