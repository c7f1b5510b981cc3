"""The CPU emulation of the GPU path (tests/cupy_standin.py, tests/cuda_emulation/cuda_host.h) is
strict where a GPU is: every block and thread runs, __syncthreads() is a barrier, an access out of
bounds fails naming the kernel, and what real CuPy refuses (or a GPU would silently misread)
raises. These tests hold the emulation to that, so that the kernel tests it runs can fail."""
import subprocess

import numpy as np
import pytest

import cupy_standin

KERNELS = r"""
// Writes each thread's coordinates: every block and thread of the grid must run.
__global__ void coordinates(int* __restrict__ out)
{
    const int block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    const int thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    const int at = 4 * (block * blockDim.x * blockDim.y * blockDim.z + thread);
    out[at] = blockIdx.x + 100 * blockIdx.y + 10000 * blockIdx.z;
    out[at + 1] = threadIdx.x + 100 * threadIdx.y + 10000 * threadIdx.z;
    out[at + 2] = gridDim.x + 100 * gridDim.y + 10000 * gridDim.z;
    out[at + 3] = blockDim.x + 100 * blockDim.y + 10000 * blockDim.z;
}

// Each thread reads what its right neighbour wrote before the barrier: without a real barrier
// thread 0 would run to the end before thread 1 has written anything.
template <typename T>
__global__ void rotate(const T* __restrict__ x, T* __restrict__ y)
{
    __shared__ T tile[64];
    const int t = threadIdx.x;
    tile[t] = x[blockIdx.x * blockDim.x + t];
    __syncthreads();
    y[blockIdx.x * blockDim.x + t] = tile[(t + 1) % blockDim.x];
}

// No bounds guard: the last block's threads run past the end of x and y.
template <typename T>
__global__ void unguarded_copy(const T* __restrict__ x, T* __restrict__ y, int n)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    y[i] = x[i];
}

// Reads one past the end of a __shared__ array.
__global__ void shared_overrun(float* __restrict__ y)
{
    __shared__ float tile[32];
    tile[threadIdx.x] = 1.0f;
    __syncthreads();
    y[threadIdx.x] = tile[threadIdx.x + 1];
}

__global__ void scale(const double* __restrict__ x, double* __restrict__ y, int n, double a)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i];
}
"""
NAMES = ["coordinates", "rotate<float>", "rotate<double>", "unguarded_copy<float>", "shared_overrun", "scale"]


@pytest.fixture(scope="module")
def cupy():
    with cupy_standin.installed() as cupy:
        yield cupy


@pytest.fixture(scope="module")
def module(cupy):
    return cupy.RawModule(code=KERNELS, name_expressions=NAMES)


def test_every_block_and_thread_of_a_3d_grid_runs(cupy, module):
    grid, block = (3, 2, 2), (4, 2, 3)
    threads = np.prod(grid) * np.prod(block)
    out = cupy.full((threads * 4,), -1, dtype=np.int32)
    module.get_function("coordinates")(grid, block, (out,))
    got = out.get().reshape(-1, 4)
    expected = [(bx + 100 * by + 10000 * bz, tx + 100 * ty + 10000 * tz, 3 + 200 + 20000, 4 + 200 + 30000)
                for bz in range(2) for by in range(2) for bx in range(3)
                for tz in range(3) for ty in range(2) for tx in range(4)]
    np.testing.assert_array_equal(got, np.array(expected))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_syncthreads_is_a_barrier_all_threads_of_the_block_meet_at(cupy, module, dtype):
    x = np.arange(3 * 64, dtype=dtype)
    y = cupy.empty((3 * 64,), dtype=dtype)
    name = f"rotate<{'float' if dtype == np.float32 else 'double'}>"
    module.get_function(name)((3,), (64,), (cupy.asarray(x), y))
    np.testing.assert_array_equal(y.get(), np.roll(x.reshape(3, 64), -1, axis=1).ravel())


def test_an_access_past_the_end_fails_naming_the_kernel_and_the_parameter(cupy, module):
    x, y = cupy.ones((300,), dtype=np.float32), cupy.zeros((300,), dtype=np.float32)
    with pytest.raises(cupy_standin.LaunchError,
                       match=r"unguarded_copy<float>: parameter 0 read or written at element 300 of an array of 300"):
        module.get_function("unguarded_copy<float>")((2,), (256,), (x, y, np.int32(300)))
    assert (y.get() == 1).all()   # the threads in bounds ran; the bad accesses touched nothing


def test_an_access_past_a_shared_array_fails(cupy, module):
    with pytest.raises(cupy_standin.LaunchError, match=r"shared_overrun: __shared__ array .* element 32 of 32"):
        module.get_function("shared_overrun")((1,), (32,), (cupy.zeros((32,), dtype=np.float32),))


def test_kernel_arguments_are_checked_where_a_gpu_would_misread_them(cupy, module):
    kernel = module.get_function("scale")
    x, y = cupy.ones((10,), dtype=np.float64), cupy.empty((10,), dtype=np.float64)
    kernel((1,), (32,), (x, y, np.int32(10), np.float64(2.0)))
    np.testing.assert_array_equal(y.get(), np.full(10, 2.0))
    with pytest.raises(TypeError, match=r"argument 2 \(int\): got int64 \(int64\), expected int32"):
        kernel((1,), (32,), (x, y, np.int64(10), 2.0))
    with pytest.raises(TypeError, match=r"argument 2 \(int\): got int \(int64\), expected int32"):
        kernel((1,), (32,), (x, y, 10, 2.0))          # a Python int travels as 64 bits
    with pytest.raises(TypeError, match=r"argument 3 \(double\): got float32"):
        kernel((1,), (32,), (x, y, np.int32(10), np.float32(2.0)))
    with pytest.raises(TypeError, match=r"argument 0 \(const double\*\): got a float32 array"):
        kernel((1,), (32,), (x.astype(np.float32), y, np.int32(10), 2.0))
    with pytest.raises(TypeError, match=r"argument 0 \(const double\*\): Unsupported type <class 'numpy.ndarray'>"):
        kernel((1,), (32,), (np.ones(10), y, np.int32(10), 2.0))
    with pytest.raises(ValueError, match=r"argument 0 \(const double\*\): the array is not C-contiguous"):
        kernel((1,), (32,), (cupy.ones((20,), dtype=np.float64)[::2], y, np.int32(10), 2.0))
    with pytest.raises(TypeError, match=r"takes 4 arguments"):
        kernel((1,), (32,), (x, y, np.int32(10)))


@pytest.mark.parametrize("grid, block, message", [
    ((1, 65536), (32,), r"grid.y = 65536, expected 1 to 65535"),
    ((2**31,), (32,), r"grid.x = 2147483648, expected 1 to 2147483647"),
    ((0,), (32,), r"grid.x = 0"),
    ((1,), (1025,), r"block.x = 1025, expected 1 to 1024"),
    ((1,), (32, 32, 2), r"block \(32, 32, 2\) has 2048 threads, at most 1024"),
])
def test_a_launch_shape_over_the_limits_fails_as_on_a_gpu(cupy, module, grid, block, message):
    x, y = cupy.ones((10,), dtype=np.float64), cupy.empty((10,), dtype=np.float64)
    with pytest.raises(cupy.cuda.driver.CUDADriverError, match=message):
        module.get_function("scale")(grid, block, (x, y, np.int32(10), 2.0))


def test_numpy_arrays_do_not_mix_into_standin_operations(cupy):
    a = cupy.ones((3,))
    for mix in (lambda: np.ones(3) + a, lambda: a + np.ones(3), lambda: cupy.maximum(a, np.ones(3)),
                lambda: cupy.concatenate([a, np.ones(3)])):
        with pytest.raises(TypeError, match=r"Unsupported type <class 'numpy.ndarray'>"):
            mix()
    with pytest.raises(TypeError, match=r"Implicit conversion to a NumPy array is not allowed"):
        np.asarray(a)
    assert isinstance(a + np.float32(1), cupy.ndarray) and (cupy.asnumpy(a + 1) == 2).all()


def test_allocations_past_the_pool_limit_raise_out_of_memory(cupy):
    pool = cupy.get_default_memory_pool()
    limit = pool.get_limit()
    try:
        pool.set_limit(size=pool.used_bytes() + 1000)
        cupy.empty((100,), dtype=np.float64)               # 800 bytes fit
        with pytest.raises(cupy.cuda.memory.OutOfMemoryError, match="Out of memory allocating 8,000 bytes"):
            cupy.empty((1000,), dtype=np.float64)
    finally:
        pool.set_limit(size=limit)


def test_tf32_rounds_float32_matmul_inputs_to_10_mantissa_bits(cupy):
    from cupy._core import _routines_linalg as linalg
    a = cupy.full((4, 256), 1 + 2.0**-12, dtype=np.float32)
    b = cupy.ones((256, 4), dtype=np.float32)
    before = linalg.get_compute_type(np.float32)
    try:
        linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_DEFAULT)
        assert float((a @ b)[0, 0]) == 256 * (1 + 2.0**-12)
        linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32)
        assert float((a @ b)[0, 0]) == 256.0                # 1 + 2^-12 rounds to 1 in TF32
        assert float((a.astype(np.float64) @ b.astype(np.float64))[0, 0]) == 256 * (1 + 2.0**-12)
    finally:
        linalg.set_compute_type(np.float32, before)


def test_a_compiled_module_is_reused_from_the_cache(cupy, monkeypatch):
    source = "__global__ void noop(int* __restrict__ out) { out[0] = 1; }"
    path = cupy_standin.build(source, ["noop"])
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("g++ ran again for a cached module"))
    assert cupy_standin.build(source, ["noop"]) == path


def test_translate_rewrites_pointer_declarations_and_leaves_products_alone():
    source = ("template <typename T, typename I> __global__ void k(const T* __restrict__ x, long long* y, I n)\n"
              "{ const T* __restrict__ row = x + n * 2; T a = x[0] * row[1]; __shared__ T s[8]; }")
    got = cupy_standin.translate(source)
    assert "dev_ptr<const T> x" in got and "dev_ptr<long long> y" in got and "dev_ptr<const T> row = x + n * 2" in got
    assert "T a = x[0] * row[1]" in got
    assert "static T s__storage[8]; dev_ptr<T> s(s__storage);" in got


def test_leaving_the_standin_forgets_the_cuda_generators_it_made():
    """A later real-GPU run in the same process must not draw dropout masks from the stand-in."""
    from tinynet import random as tn_random
    with cupy_standin.installed():
        tn_random.generator("cuda:0")
        assert ("cuda", 0) in tn_random._devices
    assert ("cuda", 0) not in tn_random._devices


def test_a_raw_kernel_made_from_source_runs_as_cupys(cupy):
    """cupy.RawKernel(code, name), CuPy's one-kernel constructor, compiles and launches too."""
    kernel = cupy.RawKernel(KERNELS, "scale")
    x = cupy.arange(5, dtype=np.float64)
    y = cupy.zeros(5, dtype=np.float64)
    kernel((1,), (8,), (x, y, np.int32(5), np.float64(2.5)))
    np.testing.assert_array_equal(y.get(), 2.5 * np.arange(5))
