"""tn.load_torch reads what torch.save wrote, without importing torch, and runs nothing in the file.

PyTorch writes the files here (it is a test dependency, not a tinynet one); a check in a fresh
interpreter proves load_torch itself never imports torch.
"""
import collections
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import tinynet as tn
from tinynet.torch_io import UnsafeCheckpointError

torch = pytest.importorskip("torch")
REPO = Path(__file__).resolve().parents[1]


def saved(tmp_path, state, name="w.pth"):
    path = tmp_path / name
    torch.save(state, path)
    return path


def rewrite(path, out, change):
    """Copy the zip archive `path` to `out`, passing each record through change(name, bytes) -> bytes."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, change(name, src.read(name)))
    return out


def test_every_storage_dtype_and_view_loads_with_torchs_values(tmp_path):
    """dtypes torch writes; non-contiguous views (transposed, strided, offset) of shared storages; 0-d."""
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6) / 7
    state = collections.OrderedDict(
        double=base, transposed=base.t(), column=base[:, 3], strided=base[1:, ::2],
        float=base.float(), half=base.half(), bfloat16=base.bfloat16(),
        long=torch.arange(5) - 2, int=torch.arange(3, dtype=torch.int32), short=torch.arange(3, dtype=torch.int16),
        char=torch.tensor([-3, 4], dtype=torch.int8), byte=torch.tensor([250, 1], dtype=torch.uint8),
        bool=torch.tensor([True, False]), scalar=torch.tensor(2.5), empty=torch.zeros(0, 3),
        # dtypes without a storage class: an untyped (byte) storage and _rebuild_tensor_v3
        uint16=torch.tensor([1, 65535], dtype=torch.int32).to(torch.uint16),
        uint32=torch.tensor([7, 2**31 + 5], dtype=torch.int64).to(torch.uint32),
        uint64=torch.tensor([3, 9, 2**62, 1], dtype=torch.int64).to(torch.uint64)[1::2])
    loaded = tn.load_torch(saved(tmp_path, state))
    assert list(loaded) == list(state)
    for name, t in state.items():
        expected = t.float().numpy() if t.dtype == torch.bfloat16 else t.contiguous().numpy()
        got = loaded[name]
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        np.testing.assert_array_equal(got, expected, err_msg=name)
        assert got.flags.c_contiguous and got.flags.owndata, name


def test_a_state_dict_of_parameters_and_a_module_load(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    loaded = tn.load_torch(saved(tmp_path, net.state_dict()))
    assert sorted(loaded) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    np.testing.assert_array_equal(loaded["0.weight"], net[0].weight.detach().numpy())
    params = tn.load_torch(saved(tmp_path, dict(net.named_parameters()), "p.pth"))  # nn.Parameter records
    np.testing.assert_array_equal(params["2.weight"], net[2].weight.detach().numpy())


def test_big_endian_storages_follow_the_byteorder_record(tmp_path):
    """A file written on a big-endian machine: byteorder says 'big' and every storage is byte-swapped."""
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3) - 2.5, "n": torch.arange(3) * 1000}
    little = saved(tmp_path, state)
    dtypes = {"0": np.float32, "1": np.int64}

    def swap(name, data):
        if name.endswith("/byteorder"):
            return b"big"
        if "/data/" in name:
            return np.frombuffer(data, dtypes[name.rsplit("/", 1)[1]]).byteswap().tobytes()
        return data
    big = tn.load_torch(rewrite(little, tmp_path / "big.pth", swap))
    np.testing.assert_array_equal(big["w"], state["w"].numpy())
    np.testing.assert_array_equal(big["n"], state["n"].numpy())
    assert big["w"].dtype.isnative


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("where", ["top", "inside"])
def test_a_pickle_that_calls_os_system_is_refused_and_nothing_runs(tmp_path, where):
    marker = tmp_path / "pwned"
    evil = _RunsACommand(marker)
    state = evil if where == "top" else collections.OrderedDict(w=[1.0], extra=evil)
    assert b"system" in pickle.dumps(state, protocol=2)
    legit = saved(tmp_path, {"w": torch.zeros(2)})
    path = rewrite(legit, tmp_path / "evil.pth",
                   lambda name, data: pickle.dumps(state, protocol=2) if name.endswith("data.pkl") else data)
    with pytest.raises(UnsafeCheckpointError, match=r"global (posix|os|nt)\.system.*refused"):
        tn.load_torch(path)
    assert not marker.exists()


def test_a_pickle_cannot_change_the_allowed_stand_ins(tmp_path):
    """BUILD (set attributes) on an allowed name would let one file change how the next loads."""
    payload = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n" + b"N}X\x08\x00\x00\x00__call__K\x01s\x86b.")
    legit = saved(tmp_path, {"w": torch.zeros(2)})
    path = rewrite(legit, tmp_path / "build.pth", lambda name, data: payload if name.endswith("data.pkl") else data)
    with pytest.raises(UnsafeCheckpointError, match="tried to set '__call__'"):
        tn.load_torch(path)
    np.testing.assert_array_equal(tn.load_torch(legit)["w"], np.zeros(2, np.float32))


def test_a_view_beyond_its_storage_is_refused(tmp_path):
    """A hostile size/stride would make as_strided read memory outside the storage."""
    legit = saved(tmp_path, {"w": torch.arange(4.0)})
    pkl = zipfile.ZipFile(legit).read("w/data.pkl")
    # the tensor's stride (1,) becomes (100,): one byte of the pickle, BININT1 1 -> BININT1 100 ('d')
    assert pkl.count(b"K\x01\x85") == 1
    bad = pkl.replace(b"K\x01\x85", b"Kd\x85")
    path = rewrite(legit, tmp_path / "bad.pth", lambda name, data: bad if name.endswith("data.pkl") else data)
    with pytest.raises(ValueError, match=r"reaches element 300 of storage w/data/0, which holds 4"):
        tn.load_torch(path)


def test_truncated_and_legacy_files_get_clear_errors(tmp_path):
    path = saved(tmp_path, {"w": torch.arange(1000.0)})
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 30):
        (tmp_path / "cut.pth").write_bytes(data[:cut])
        with pytest.raises(ValueError, match=r"load_torch: .*cut.pth (is not a PyTorch zip checkpoint \(truncated|"
                                             r"is damaged or truncated)"):
            tn.load_torch(tmp_path / "cut.pth")
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match="legacy .* format"):
        tn.load_torch(legacy)


def test_load_torch_never_imports_torch(tmp_path):
    path = saved(tmp_path, {"w": torch.ones(3)})
    code = ("import sys, tinynet as tn; w = tn.load_torch(sys.argv[1])['w']; "
            "assert w.tolist() == [1.0, 1.0, 1.0]; assert 'torch' not in sys.modules, 'torch was imported'")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, env=env)
