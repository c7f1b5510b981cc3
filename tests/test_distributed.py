"""tinynet.distributed: data parallel over MPI and the two towers as two processes.

The `mpi` tests start `mpirun -n 2` in a subprocess (tests/mpi_jobs.py holds the jobs) with a
timeout, and compare what the ranks wrote with a one-process run. They run in the default test
run where mpirun and mpi4py exist and skip, saying so, elsewhere (tests/conftest.py).
"""
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from test_data import write_fake_fashion_mnist
import tinynet as tn
from tinynet import distributed, train
from tinynet.distributed import launch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOBS = os.path.join(ROOT, "tests", "mpi_jobs.py")
EXAMPLE = os.path.join(ROOT, "examples", "train_alexnet.py")
MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe"]
# The command line on 64 fake Fashion-MNIST images, float64 without dropout: runs on 1 or 2 ranks
# compute the same thing, so their checkpoints agree to rounding.
TINY_RUN = ["--width", "4", "--batch-size", "16", "--dtype", "float64", "--dropout", "0", "--no-progress"]


def mpirun(n, args, timeout=120):
    """Run `python args...` on n ranks; the CompletedProcess (a hang fails the test at `timeout`)."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = MPIRUN + ["-n", str(n), "-x", "PYTHONPATH", sys.executable] + list(args)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def one_process(args, timeout=120):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable] + list(args), env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


@pytest.fixture
def tiny_data(tmp_path):
    write_fake_fashion_mnist(tmp_path / "data", n=64, prefix="train")
    write_fake_fashion_mnist(tmp_path / "data", n=16, prefix="t10k")
    return tmp_path / "data"


def run_example(ranks, tmp_path, data, name, *extra):
    """train_alexnet.py on `ranks` ranks (0: one plain process) writing under tmp_path/name."""
    args = [EXAMPLE, "--data", str(data), *TINY_RUN, "--checkpoint", str(tmp_path / name),
            "--json-log", str(tmp_path / f"{name}.jsonl"), *extra]
    if ranks:
        result = mpirun(ranks, args + ["--distributed", "data"])
    else:
        result = one_process(args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def assert_same_checkpoints(path_a, path_b, atol=1e-9):
    a, b = train.load_checkpoint(path_a), train.load_checkpoint(path_b)
    assert list(a["model"]) == list(b["model"])
    for name in a["model"]:
        np.testing.assert_allclose(a["model"][name], b["model"][name], rtol=0, atol=atol, err_msg=name)
    for i, (va, vb) in enumerate(zip(a["optimizer"]["velocity"], b["optimizer"]["velocity"], strict=True)):
        np.testing.assert_allclose(va, vb, rtol=0, atol=atol, err_msg=f"velocity {i}")
    assert a["meta"]["history"][-1]["epoch"] == b["meta"]["history"][-1]["epoch"]


def run_job(n, job, out, timeout=120):
    result = mpirun(n, [JOBS, job, str(out)], timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def ranks_and_one(npz):
    """{name: (value on the ranks, value in one process)} from a job's npz."""
    names = [k[len("one/"):] for k in npz.files if k.startswith("one/")]
    assert names and sorted(names) == sorted(k[len("ranks/"):] for k in npz.files if k.startswith("ranks/"))
    return {k: (npz[f"ranks/{k}"], npz[f"one/{k}"]) for k in names}


# ================================================================= without a launcher

def test_launcher_is_found_from_its_environment():
    assert launch.launcher_size({"OMPI_COMM_WORLD_SIZE": "4"}) == 4
    assert launch.launcher_size({"PMI_SIZE": "2"}) == 2
    assert launch.launcher_size({"HOME": "/root"}) is None


def test_distributed_without_a_launcher_says_how_to_launch():
    with pytest.raises(distributed.DistributedError, match=r"--distributed needs an MPI launcher .* mpirun -n 2"):
        launch.require_launcher("--distributed", environ={})


def test_missing_mpi4py_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)   # makes `from mpi4py import MPI` raise ImportError
    with pytest.raises(distributed.DistributedError,
                       match=r'needs mpi4py.*apt-get install -y openmpi-bin libopenmpi-dev && pip install -e "\.\[mpi\]"'):
        launch.import_mpi()


def test_a_batch_that_does_not_divide_is_one_line_before_mpi_starts(monkeypatch):
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    with pytest.raises(distributed.DistributedError,
                       match=r"^--batch-size 33 does not divide by the 2 data-parallel rank\(s\); .*\(try 32\)$"):
        distributed.start("data", batch_size=33)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")   # towers: 2 replicas of the two towers
    with pytest.raises(distributed.DistributedError, match=r"--batch-size 5 does not divide by the 2 data-parallel"):
        distributed.start("towers", batch_size=5, model="alexnet2012")


def test_towers_need_an_even_number_of_ranks_and_the_two_tower_net(monkeypatch):
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "3")
    with pytest.raises(distributed.DistributedError, match="needs an even number of ranks .* got 3"):
        distributed.start("towers", model="alexnet2012")
    with pytest.raises(distributed.DistributedError, match="use --model alexnet2012, not alexnet-small"):
        distributed.start("towers", model="alexnet-small")


def test_distributed_without_mpirun_is_one_line_and_status_2():
    result = one_process([EXAMPLE, "--distributed", "data", "--no-progress"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "train_alexnet.py: --distributed data needs an MPI launcher (none of OMPI_COMM_WORLD_SIZE, PMI_SIZE, "
        "MV2_COMM_WORLD_SIZE is set); start the job with: " + launch.LAUNCH_HINT]


def test_towers_need_a_group_of_two():
    class Three:
        size, rank = 3, 0
    with pytest.raises(ValueError, match="need a group of 2 ranks, got 3"):
        distributed.TowerProcessAlexNet2012(None, Three())


# ================================================================= on two ranks

@pytest.mark.mpi
def test_gradients_are_averaged_in_buckets_and_metrics_summed(tmp_path):
    run_job(2, "collectives", tmp_path)
    r = np.load(tmp_path / "collectives.npz")
    assert r["size"] == 2 and r["buckets"].tolist() == [2, 1]
    # rank k's gradient of parameter i is (k + 1)(i + 1); parameter 1 has none on rank 1 (zero)
    np.testing.assert_array_equal(r["grad0"], np.full(3, (1 + 2) / 2))
    np.testing.assert_array_equal(r["grad1"], np.full((2, 2), (2 + 0) / 2))
    np.testing.assert_array_equal(r["grad2"], np.full(5, (3 + 6) / 2))
    np.testing.assert_array_equal(r["sums"], [0 + 1, 2])


@pytest.mark.mpi
def test_data_parallel_equals_one_process(tmp_path):
    """Two ranks with global batch 8 (4 images each) take the same SGD steps as one process with
    batch 8: float64, no dropout, weights equal to 1e-9 after 3 steps (rank 1 starts from
    scrambled weights, so this also proves the broadcast)."""
    run_job(2, "data", tmp_path)
    r = np.load(tmp_path / "data.npz")
    assert r["buckets"] > 1
    for name, (ranks, one) in ranks_and_one(r).items():
        np.testing.assert_allclose(ranks, one, rtol=0, atol=1e-9, err_msg=name)


@pytest.mark.mpi
@pytest.mark.parametrize("job", ["towers", "towers-dropout"])
def test_towers_on_two_ranks_equal_the_one_process_net(tmp_path, job):
    """Figure 2 as two processes: after 3 SGD steps (float64) the union of the two ranks' weights
    equals the one-process two-tower net's, and both ranks saw its losses. With dropout 0.5 too:
    tower r on cpu:r draws its masks from the same generator in both setups."""
    run_job(2, job, tmp_path)
    r = np.load(tmp_path / "towers.npz")
    np.testing.assert_allclose(r["losses"], r["reference_losses"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(r["losses1"], r["losses"])
    for name, (ranks, one) in ranks_and_one(r).items():
        np.testing.assert_allclose(ranks, one, rtol=0, atol=1e-9, err_msg=name)
    # rank 0 holds the one-process checkpoint format: names and velocities in the one-process order
    assert r["names"].tolist() == r["reference_names"].tolist()
    velocities = sorted(k for k in r.files if k.startswith("velocity"))
    assert len(velocities) == len(r["names"])
    for k in velocities:
        np.testing.assert_allclose(r[k], r["reference_" + k], rtol=0, atol=1e-9, err_msg=k)
    assert r["reloaded"].tolist() == [True, True]   # and loads back, weights and velocities, on each rank
    # the bytes the ranks send are the one-process crossings less the input image's copy
    assert sum(r["sent"]) == r["reference_crossing"] - r["input_bytes"]


@pytest.mark.mpi
@pytest.mark.slow  # 4 processes on the 2-core machine: about 13 s
def test_towers_and_data_parallel_compose_on_four_ranks(tmp_path):
    """4 ranks = 2 replicas x 2 towers, global batch 8 (4 per replica): the one-process net's steps."""
    run_job(4, "towers-data", tmp_path)
    r = np.load(tmp_path / "towers-data.npz")
    assert r["groups"].tolist() == [2, 2]
    for name, (ranks, one) in ranks_and_one(r).items():
        np.testing.assert_allclose(ranks, one, rtol=0, atol=1e-9, err_msg=name)


@pytest.mark.mpi
@pytest.mark.parametrize("how", ["exception", "kill"])
def test_a_failing_rank_ends_the_job(tmp_path, how):
    """Rank 1 raises (or is killed) while rank 0 waits in a collective: the job ends within seconds."""
    start = time.monotonic()
    result = mpirun(2, [JOBS, f"fail-{how}", str(tmp_path)], timeout=60)
    elapsed = time.monotonic() - start
    assert result.returncode != 0
    assert not (tmp_path / "rank0-passed-the-collective").exists()
    assert elapsed < 30, f"the job took {elapsed:.0f} s to end"
    if how == "exception":
        assert "rank 1 of 2 failed (RuntimeError); aborting every rank of the job" in result.stderr


@pytest.mark.mpi
@pytest.mark.slow  # four mpirun jobs: about 30 s
def test_bench_distributed_runs_at_a_tiny_size(tmp_path):
    """The benchmark's jobs run; each rank of a 2-rank data job (with or without overlap) hands
    every gradient to the all-reduce once a step (4 bytes x parameters), the 1-rank job nothing;
    a hybrid rank hands only the conv gradients and its parts of the crossings, fewer bytes."""
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_distributed.py"), "--models",
                          "alexnet-small", "--width", "4", "--batch-size", "8", "--steps", "1", "--warmup", "0",
                          "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    one, data, overlap, hybrid = json.loads(out.read_text())["results"]
    assert (one["ranks"], one["threads_per_rank"], data["ranks"], data["threads_per_rank"]) == (1, 2, 2, 1)
    assert [r["scheme"] for r in (one, data, overlap, hybrid)] == ["data", "data", "overlap", "hybrid"]
    assert one["allreduce_bytes_per_rank"] == 0
    assert data["allreduce_bytes_per_rank"] == overlap["allreduce_bytes_per_rank"] == 4 * data["parameters"] > 0
    assert 0 < hybrid["allreduce_bytes_per_rank"] < data["allreduce_bytes_per_rank"]
    assert hybrid["crossing_bytes_per_rank"] > 0 == data["crossing_bytes_per_rank"]
    assert data["images_per_s"] == pytest.approx(8 / (data["step_ms"] / 1000))
    assert all("predicted_step_ms" in r for r in (data, overlap, hybrid))


# ================================================================= the command line on two ranks

@pytest.mark.mpi
def test_command_line_on_two_ranks_equals_one_process_and_rank_0_alone_writes(tmp_path, tiny_data):
    """--distributed data, 2 epochs of 4 global batches of 16: the checkpoint (weights and
    velocities) equals the one-process run's to 1e-9; one JSON line per epoch (a second writer would
    append its own), every epoch printed once."""
    run_example(0, tmp_path, tiny_data, "one", "--epochs", "2")
    two = run_example(2, tmp_path, tiny_data, "two", "--epochs", "2")
    assert_same_checkpoints(tmp_path / "one" / train.CHECKPOINT_NAME, tmp_path / "two" / train.CHECKPOINT_NAME)
    assert [json.loads(line)["epoch"] for line in (tmp_path / "two.jsonl").read_text().splitlines()] == [1, 2]
    assert two.stdout.count("epoch   1/2") == 1 and two.stdout.count("epoch   2/2") == 1
    for line in ("distributed: data parallel on 2 ranks", "parameters, float64", "done in"):
        assert two.stdout.count(line) == 1, two.stdout   # rank 1 says nothing
    assert json.loads((tmp_path / "two.jsonl").read_text().splitlines()[0])["train_loss"] == pytest.approx(
        json.loads((tmp_path / "one.jsonl").read_text().splitlines()[0])["train_loss"], abs=1e-12)


def test_dropout_on_a_share_of_the_batch_draws_the_whole_batch_mask_and_keeps_its_rows():
    """Rows 7..12 of a batch of 13 under tn.random.batch_rows get exactly the mask rows 7..12 of
    the whole batch drawn in one process from the same seed (so N ranks draw one process's masks)."""
    x = np.random.default_rng(0).standard_normal((13, 50))
    tn.manual_seed(3)
    whole = tn.functional.dropout(tn.tensor(x, dtype=np.float64), 0.5).numpy()
    tn.manual_seed(3)
    with tn.random.batch_rows(7, 13):
        part = tn.functional.dropout(tn.tensor(x[7:], dtype=np.float64), 0.5).numpy()
    np.testing.assert_array_equal(part, whole[7:])
    with tn.random.batch_rows(10, 13), pytest.raises(ValueError, match="a batch of 6 rows from row 10 does not fit"):
        tn.functional.dropout(tn.tensor(x[7:], dtype=np.float64), 0.5)


@pytest.mark.mpi
def test_with_dropout_two_ranks_still_equal_one_process(tmp_path, tiny_data):
    """--dropout 0.25: each rank draws the global batch's masks and keeps its rows, so the two
    ranks take the one-process steps to 1e-9 (before, sample i of each shard shared one mask)."""
    run_example(0, tmp_path, tiny_data, "one", "--epochs", "1", "--dropout", "0.25")
    run_example(2, tmp_path, tiny_data, "two", "--epochs", "1", "--dropout", "0.25")
    assert_same_checkpoints(tmp_path / "one" / train.CHECKPOINT_NAME, tmp_path / "two" / train.CHECKPOINT_NAME)


@pytest.mark.mpi
def test_a_short_last_batch_split_unevenly_still_averages_over_the_global_batch(tmp_path, tiny_data):
    """61 images in global batches of 16: the last one, 13 images, splits 7 + 6 over two ranks.
    Each rank weighs its mean loss by its share (7/13 and 6/13 of the global mean, times the 2 the
    all-reduce divides by), so the ranks still take the one-process step."""
    run_example(0, tmp_path, tiny_data, "one", "--epochs", "1", "--limit-train", "61")
    run_example(2, tmp_path, tiny_data, "two", "--epochs", "1", "--limit-train", "61")
    assert_same_checkpoints(tmp_path / "one" / train.CHECKPOINT_NAME, tmp_path / "two" / train.CHECKPOINT_NAME)


@pytest.mark.mpi
@pytest.mark.slow  # 4 launches, about 25 s
def test_resume_on_two_ranks_from_a_one_process_checkpoint(tmp_path, tiny_data):
    """1 epoch in one process, then --resume for the second on 2 ranks: the 2-epoch one-process run."""
    run_example(0, tmp_path, tiny_data, "straight", "--epochs", "2")
    run_example(0, tmp_path, tiny_data, "resumed", "--epochs", "1")
    resumed = run_example(2, tmp_path, tiny_data, "resumed", "--epochs", "2", "--resume")
    assert "written by 1 data-parallel process(es), this run has 2" in resumed.stdout
    assert_same_checkpoints(tmp_path / "straight" / train.CHECKPOINT_NAME, tmp_path / "resumed" / train.CHECKPOINT_NAME)


@pytest.mark.mpi
def test_a_batch_that_does_not_divide_is_one_line_from_rank_0(tmp_path, tiny_data):
    result = mpirun(2, [EXAMPLE, "--data", str(tiny_data), "--batch-size", "15", "--distributed", "data",
                        "--checkpoint", str(tmp_path / "ckpt"), "--no-progress"])
    assert result.returncode == 2
    ours = [line for line in result.stderr.splitlines() if line.startswith("train_alexnet.py:")]
    assert ours == ["train_alexnet.py: --batch-size 15 does not divide by the 2 data-parallel rank(s); the global "
                    "batch is split evenly (try 14)"]
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.mpi
@pytest.mark.slow  # the paper's two-tower net at 224 px, float64: about 90 s and a 0.9 GB checkpoint
def test_command_line_towers_on_two_ranks_equal_one_process_and_load_in_one(tmp_path, tiny_data):
    """--model alexnet2012 --distributed towers, one epoch of 2 steps: rank 0's checkpoint has the
    one-process format and equals the one-process run's; --eval-only reads it in one process."""
    args = [EXAMPLE, "--data", str(tiny_data), "--model", "alexnet2012", "--limit-train", "4", "--limit-test", "2",
            "--batch-size", "2", "--epochs", "1", "--dropout", "0", "--dtype", "float64", "--no-progress"]
    one = one_process(args + ["--checkpoint", str(tmp_path / "one"), "--json-log", str(tmp_path / "one.jsonl")], 600)
    assert one.returncode == 0, one.stdout + one.stderr
    two = mpirun(2, args + ["--distributed", "towers", "--checkpoint", str(tmp_path / "two"),
                            "--json-log", str(tmp_path / "two.jsonl")], 600)
    assert two.returncode == 0, two.stdout + two.stderr
    assert_same_checkpoints(tmp_path / "one" / train.CHECKPOINT_NAME, tmp_path / "two" / train.CHECKPOINT_NAME)
    loaded = one_process(args + ["--checkpoint", str(tmp_path / "two"), "--eval-only"], 600)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    test_acc = json.loads((tmp_path / "two.jsonl").read_text())["test_acc"]
    assert f"acc {test_acc:.4f}" in loaded.stdout


@pytest.mark.mpi
def test_distributed_on_cuda_without_a_gpu_is_one_line_naming_what_is_missing(tiny_data):
    """As one process: the missing driver first (installing CuPy would not help), else CuPy."""
    from tinynet.device import nvidia_driver_problem
    problem = nvidia_driver_problem()
    if problem is None and importlib.util.find_spec("cupy") is not None:
        pytest.skip("this machine has an NVIDIA driver and CuPy")
    result = mpirun(2, [EXAMPLE, "--data", str(tiny_data), "--device", "cuda", "--distributed", "data", "--no-progress"])
    assert result.returncode == 2
    ours = [line for line in result.stderr.splitlines() if line.startswith("train_alexnet.py:")]
    assert ours == [f"train_alexnet.py: cannot use device 'cuda': {problem or 'No module named ' + repr('cupy')}"]


@pytest.mark.gpu
@pytest.mark.mpi
def test_two_ranks_on_one_gpu_through_host_staging_equal_one_process(tmp_path, tiny_data):
    """The check for a machine with one GPU (benchmarks/gpu_check.sh runs pytest -m gpu): two
    ranks share cuda:0, so gradients are reduced through host memory (MPICommunicator, not NCCL);
    float64 without dropout, the checkpoint equals a one-process run on the GPU."""
    from tinynet import backends
    if not backends.available("cuda"):
        pytest.skip("needs CuPy and an NVIDIA GPU")
    run_example(0, tmp_path, tiny_data, "one", "--epochs", "1", "--device", "cuda")
    two = run_example(2, tmp_path, tiny_data, "two", "--epochs", "1", "--device", "cuda")
    assert "(MPICommunicator" in two.stdout or "(NcclCommunicator" in two.stdout
    assert_same_checkpoints(tmp_path / "one" / train.CHECKPOINT_NAME, tmp_path / "two" / train.CHECKPOINT_NAME)


# ================================================================= overlap and hybrid

@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 4])
def test_overlapped_data_parallel_equals_one_process_with_dropout(tmp_path, ranks):
    """The all-reduce overlapped with the backward (buckets in backward order, each started by the
    hook on its last gradient, Iallreduce, waited before the step): 3 SGD steps with dropout 0.5
    in float64 equal one process's to 1e-9 on 2 and 4 ranks, and when each backward returned
    every bucket was already in flight (started inside the walk, not after it)."""
    run_job(ranks, "data-overlap", tmp_path)
    r = np.load(tmp_path / "data-overlap.npz")
    assert r["buckets"] > 2
    assert r["in_flight"].tolist() == [r["buckets"]] * 3
    for name, (on_ranks, one) in ranks_and_one(r).items():
        np.testing.assert_allclose(on_ranks, one, rtol=0, atol=1e-9, err_msg=name)


def test_every_communicator_answers_the_protocol_with_its_signatures():
    """tinynet.train.Communicator is what the loop calls: SingleProcess, MPICommunicator and
    NcclCommunicator have each of its methods with its parameters."""
    import inspect
    from tinynet.train import Communicator, SingleProcess
    assert isinstance(SingleProcess(), Communicator)
    methods = [n for n in ("broadcast_parameters", "allreduce_gradients", "allreduce_sum")]
    for cls in (SingleProcess, distributed.MPICommunicator, distributed.NcclCommunicator):
        for name in methods:
            assert inspect.signature(getattr(cls, name)) == inspect.signature(getattr(Communicator, name)), (cls, name)


SEEDS_SLOW = pytest.mark.slow  # the seeds' nets at 63-65 px: about 10-20 s a job on the loaded 2-core machine


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 4])
@pytest.mark.parametrize("net", ["alexnet-small", pytest.param("torchvision", marks=SEEDS_SLOW),
                                 pytest.param("d2l", marks=SEEDS_SLOW)])
def test_hybrid_equals_one_process_and_its_checkpoint_is_the_one_process_format(tmp_path, ranks, net):
    """Conv layers data-parallel, each FC layer's output units split over the ranks: 3 SGD steps
    (global batch 6: rows 3+3, or 2+2+1+1 on 4 ranks, where the 10 classes split 3+3+2+2) with
    dropout 0.5 in float64 equal one process's to 1e-9, weights and velocities; rank 0's gathered
    state has the one-process names and order, and loads back into fresh ranks exactly."""
    run_job(ranks, f"hybrid-{net}", tmp_path)
    r = np.load(tmp_path / f"hybrid-{net}.npz")
    assert r["sharded"] == 6   # fc6, fc7, fc8: weight and bias
    assert r["names"].tolist() == r["reference_names"].tolist()
    for name, (on_ranks, one) in ranks_and_one(r).items():
        np.testing.assert_allclose(on_ranks, one, rtol=0, atol=1e-9, err_msg=name)
    for k in (k for k in r.files if k.startswith("velocity")):
        np.testing.assert_allclose(r[k], r["reference_" + k], rtol=0, atol=1e-9, err_msg=k)
    assert r["reloaded"].tolist() == [True] * ranks


@pytest.mark.mpi
def test_command_line_hybrid_equals_one_process_and_its_checkpoint_evaluates_in_one(tmp_path, tiny_data):
    """--distributed hybrid on 2 ranks, one epoch with dropout 0.25: rank 0's checkpoint (the FC
    slices gathered) equals the one-process run's to 1e-9, and --eval-only reads it in one process."""
    run_example(0, tmp_path, tiny_data, "one", "--epochs", "1", "--dropout", "0.25")
    args = [EXAMPLE, "--data", str(tiny_data), *TINY_RUN, "--epochs", "1", "--dropout", "0.25",
            "--checkpoint", str(tmp_path / "two"), "--json-log", str(tmp_path / "two.jsonl")]
    two = mpirun(2, args + ["--distributed", "hybrid"])
    assert two.returncode == 0, two.stdout + two.stderr
    assert two.stdout.count("distributed: hybrid on 2 ranks") == 1
    assert_same_checkpoints(tmp_path / "one" / train.CHECKPOINT_NAME, tmp_path / "two" / train.CHECKPOINT_NAME)
    loaded = one_process(args + ["--eval-only"])
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    test_acc = json.loads((tmp_path / "two.jsonl").read_text())["test_acc"]
    assert f"acc {test_acc:.4f}" in loaded.stdout


@pytest.mark.mpi
@pytest.mark.slow  # 3 launches, about 20 s
def test_one_process_resumes_a_hybrid_run(tmp_path, tiny_data):
    """Epoch 1 on 2 hybrid ranks, epoch 2 resumed in one process: the 2-epoch one-process run."""
    run_example(0, tmp_path, tiny_data, "straight", "--epochs", "2")
    args = [EXAMPLE, "--data", str(tiny_data), *TINY_RUN, "--checkpoint", str(tmp_path / "resumed"),
            "--json-log", str(tmp_path / "resumed.jsonl")]
    first = mpirun(2, args + ["--epochs", "1", "--distributed", "hybrid"])
    assert first.returncode == 0, first.stdout + first.stderr
    second = one_process(args + ["--epochs", "2", "--resume"])
    assert second.returncode == 0, second.stdout + second.stderr
    assert_same_checkpoints(tmp_path / "straight" / train.CHECKPOINT_NAME, tmp_path / "resumed" / train.CHECKPOINT_NAME)


def test_hybrid_refuses_the_two_tower_net_and_nets_it_cannot_split(monkeypatch):
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    with pytest.raises(distributed.DistributedError, match="already split by tower.*use --model alexnet"):
        distributed.start("hybrid", model="alexnet2012")
    from tinynet.distributed import hybrid
    with pytest.raises(TypeError, match="expected an nn.Sequential net, got AlexNet2012"):
        hybrid.split_at_flatten(tn.models.alexnet2012(10, channels=(4, 8, 8, 8, 8, 16), image_size=67))
    bad = tn.nn.Sequential(tn.nn.Flatten(), tn.nn.Linear(4, 3), tn.nn.LocalResponseNorm(3))
    with pytest.raises(TypeError, match="layer '2' \\(LocalResponseNorm\\) after the Flatten; expected Linear"):
        hybrid.split_at_flatten(bad)
    assert hybrid.split_sizes(10, 4) == [3, 3, 2, 2]


def test_the_cost_tables_in_the_docs_are_the_models_output():
    """docs/distributed.md holds exactly what python -m tinynet.distributed.cost prints (one home)."""
    from tinynet.distributed import cost
    page = (Path(ROOT) / "docs" / "distributed.md").read_text()
    begin, end = "<!-- generated by python -m tinynet.distributed.cost: begin -->\n", "<!-- generated by"
    tables = page.split(begin)[1].split(end)[0]
    assert tables.strip() == cost.markdown_tables().strip()


def test_hybrid_cuts_the_paper_nets_fc_layers_into_each_ranks_units():
    """The paper net fits the pattern: rank 1 of 4 keeps every conv weight and rows 1024..2047 of
    fc6 and fc7, 250..499 of fc8 (with their biases), and comm.shard hears of exactly those six."""
    class Group:
        rank, size = 1, 4

        def shard(self, params):
            self.sharded = params
    tn.manual_seed(0)
    full = tn.models.alexnet(1000).state_dict()
    tn.manual_seed(0)
    group = Group()
    net = distributed.HybridNet(tn.models.alexnet(1000), group)
    state = net.state_dict()
    assert list(state) == list(full)
    for name, value in state.items():
        lo, hi = {"fc6": (1024, 2048), "fc7": (1024, 2048), "fc8": (250, 500)}.get(name.split(".")[0], (None, None))
        np.testing.assert_array_equal(value, full[name][lo:hi], err_msg=name)
    assert [p.shape for p in group.sharded] == [(1024, 9216), (1024,), (1024, 4096), (1024,), (250, 4096), (250,)]
    net.load_state_dict(full)   # the one-process state: each rank takes its own rows
    np.testing.assert_array_equal(net.fc8.weight.data, full["fc8.weight"][250:500])
