"""The benchmark script end to end on the CPU, at the smallest size: it runs, and its JSON holds
what the issues ask for (per batch: tinynet_ms, torch_ms, throughput_ratio; the machine; each
framework alone in its own process with its page faults)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_bench_alexnet_writes_ratios_and_the_isolated_runs(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_alexnet.py"), "--batch-sizes", "1",
                          "--warmup", "0", "--repeats", "1", "--no-memory", "--no-layers", "--isolated", "1",
                          "--baseline", "im2col", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "time ratio" in run.stdout and "alone in their own processes" in run.stdout
    record = json.loads(out.read_text())
    assert record["machine"]["threads"]["OMP_WAIT_POLICY"]  # the rule both frameworks ran under
    (result,) = record["results"]
    assert result["batch"] == 1 and result["precision"] == "fp32"
    assert result["throughput_ratio"] == pytest.approx(result["torch_ms"] / result["tinynet_ms"])
    assert result["im2col_time_ratio"] == pytest.approx(result["tinynet_im2col_ms"] / result["torch_ms"])
    assert record["machine"]["conv_algorithm"]["conv3"] == "winograd"       # the default net's, not the baseline's
    assert "every convolution im2col" in run.stdout
    iso = result["isolated"]
    assert len(iso["tinynet_runs"]) == len(iso["torch_runs"]) == 1
    assert iso["time_ratio"] == pytest.approx(iso["tinynet_ms"] / iso["torch_ms"])
    assert iso["tinynet_page_faults_per_step"] >= 0 and iso["torch_page_faults_per_step"] >= 0


def test_the_flop_count_leaves_out_conv1s_input_gradient():
    """The step's GEMMs: forward, dW and dX of every layer but conv1's dX (the image needs no
    gradient): 2 * (3 * MACs - conv1's MACs), conv1 being 96 filters of 3x11x11 over 55x55."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_alexnet
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from tinynet.models import alexnet
    from tinynet.summary import summary

    macs = sum(r["macs"] for r in summary(alexnet(1000), (3, 224, 224)))
    conv1_macs = 96 * 3 * 11 * 11 * 55 * 55
    assert bench_alexnet.train_gflop_per_image() * 1e9 == pytest.approx(6 * macs - 2 * conv1_macs, rel=1e-12)


@pytest.mark.slow   # about 2 minutes: an emulated AlexNet epoch and CPU runs of both frameworks
def test_gpu_check_dry_run_runs_every_step_and_returns_at_most_8_files(tmp_path):
    """benchmarks/gpu_check.sh --dry-run: the GPU session's script end to end on the CPU, so the
    first GPU minute is not spent on a typo."""
    pytest.importorskip("torch")
    data = Path("/usr/share/datasets/fashion-mnist")
    if not (data / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("needs Fashion-MNIST in /usr/share/datasets/fashion-mnist")
    out = tmp_path / "out"
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"],
                         env={**os.environ, "OUT": str(out), "DATA": str(data)},
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["1_env_smoke.log", "2_gpu_tests.log", "3_bench.json", "3_bench.log", "4_train.jsonl",
                     "4_train.log", "5_recipe.log", "rest.tar.gz"]
    for log in ("1_env_smoke.log", "2_gpu_tests.log", "3_bench.log", "4_train.log", "5_recipe.log"):
        assert f"== {log}: exit 0" in run.stdout
    assert "smoke: ok" in (out / "1_env_smoke.log").read_text()
    epoch = json.loads((out / "4_train.jsonl").read_text().splitlines()[-1])
    assert epoch["epoch"] == 1


def test_bench_alexnet_tinynet_side_runs_on_cuda_through_the_standin(capsys):
    """The benchmark's cuda branches for tinynet (cuBLAS rate, GPU facts, a step timed with CUDA
    events, TF32 on and off, the pool's reserved bytes) on the CPU, so a GPU minute is not spent
    on a typo. PyTorch's cuda side needs a real GPU."""
    import cupy_standin
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_alexnet
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    with cupy_standin.installed() as cupy:
        assert bench_alexnet.sgemm_gflops("cuda", n=64, repeats=1) > 0
        assert "stand-in" in bench_alexnet.machine_facts("cuda")["gpu_name"]
        runner = bench_alexnet.Runner("tinynet", "cuda", batch=1)
        assert runner.timed_step() > 0
        bench_alexnet.set_tf32(True)
        from tinynet.backends import cupy_gpu
        assert cupy_gpu.tf32_enabled()
        bench_alexnet.set_tf32(False)
        assert not cupy_gpu.tf32_enabled()
        assert cupy.get_default_memory_pool().total_bytes() > 4 * 60_965_224   # at least the weights


def test_bench_conv_algorithms_times_the_three_and_says_what_auto_picks(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "conv.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_conv_algorithms.py"), "--batch", "1",
                          "--repeats", "1", "--only", "alexnet.conv4,small.conv3", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "auto picked the faster tinynet algorithm for" in run.stdout
    record = json.loads(out.read_text())
    rows = {r["layer"]: r for r in record["rows"]}
    assert set(rows) == {"alexnet.conv4", "small.conv3"}
    assert rows["alexnet.conv4"]["auto"] == "winograd" and rows["small.conv3"]["auto"] == "im2col"
    for r in rows.values():
        for how in ("im2col", "winograd", "torch"):
            assert r[f"{how}_forward_ms"] > 0 and r[f"{how}_backward_ms"] > 0
        assert r["winograd_over_im2col"] == pytest.approx(r["winograd_ms"] / r["im2col_ms"])


def test_bench_conv_pieces_times_every_im2col_piece_against_the_gemm_floor(tmp_path):
    out = tmp_path / "pieces.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_conv_pieces.py"), "--batch", "2",
                          "--repeats", "1", "--torch", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "their GEMMs at the sgemm rate" in run.stdout and "against PyTorch's convolution" in run.stdout
    record = json.loads(out.read_text())
    rows = record["rows"]
    assert [r["layer"] for r in rows] == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert rows[0]["first_layer"] and "col2im_ms" not in rows[0]      # training never needs the images' gradient
    assert all("col2im_ms" in r and "gemm_input_grad_ms" in r for r in rows[1:])
    # conv2 of alexnet-small: 48 filters of 12 x 5 x 5 on 13 x 13 maps, two groups; three GEMMs of
    # 2 * 48 * 300 * (2 * 169) FLOPs each
    assert rows[1]["weight"] == [48, 12, 5, 5] and rows[1]["input"] == [2, 24, 13, 13]
    assert rows[1]["gemm_gflop"] == pytest.approx(3 * 2 * 48 * 300 * 2 * 169 / 1e9)
    for r in rows:
        assert r["gemm_floor_ms"] == pytest.approx(r["gemm_gflop"] / record["machine"]["sgemm_gflops"] * 1e3)
        assert r["total_over_floor"] == pytest.approx(r["total_ms"] / r["gemm_floor_ms"])
        assert r["gemm_weight_grad_ms"] > 0 and r["gemm_weight_grad_other_order_ms"] > 0
        # the GEMMs as BLAS runs them: forward, weight gradient and (not for conv1) input gradient
        gemms = r["gemm_forward_ms"] + r["gemm_weight_grad_ms"] + r.get("gemm_input_grad_ms", 0)
        assert r["gemms_ms"] == pytest.approx(gemms) and r["gemms_over_floor"] == pytest.approx(gemms / r["gemm_floor_ms"])
        assert r["forward_ms"] == pytest.approx(r["im2col_ms"] + r["gemm_forward_ms"] + r["cols_to_nchw_ms"])
        assert r["forward_ms"] + r["backward_ms"] == pytest.approx(r["total_ms"])
        assert r["torch_forward_ms"] > 0 and r["torch_backward_ms"] > 0
    assert record["im2col_layers_gemms_ms"] == pytest.approx(sum(r["gemms_ms"] for r in rows))


def test_bench_threads_times_the_step_and_the_kernels_on_one_and_two_threads(tmp_path):
    import numba
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    out = tmp_path / "threads.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_threads.py"), "--batch", "2",
                          "--rounds", "2", "--steps", "1", "--out", str(out)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    record = json.loads(out.read_text())
    assert [r["layer"] for r in record["layers"]][:3] == ["conv1", "relu1", "lrn1"]
    assert record["layers"][-1]["layer"] == "loss"
    assert record["step_speedup"] == pytest.approx(record["step_ms"]["1"] / record["step_ms"]["2"])
    assert {r["kernel"] for r in record["kernels"]} >= {"conv2 im2col", "conv2 col2im", "pool1 forward"}
    assert all(r["ms_1"] > 0 and r["ms_2"] > 0 for r in record["kernels"])
