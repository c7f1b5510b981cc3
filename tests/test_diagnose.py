"""train_alexnet.py --diagnose: per-layer statistics in the JSON log, and each warning provoked by
the failure it names (a too large learning rate, a too small one, zero weights)."""
import json
import math
import re

import pytest

import tinynet as tn
from tinynet import train
from tinynet.data import DataLoader
from tinynet.train.diagnose import Diagnosis

from test_train import _write_idx, load_example, synthetic


def run(tmp_path, lr=0.05, epochs=1, zero=False, every=1):
    """A tiny AlexNet-small (width 4, 16 px, 4 classes) on 64 synthetic images with --diagnose every
    `every` steps: (trainer, printed lines, JSON log records); a diverged run stops quietly."""
    tn.manual_seed(0)
    model = tn.models.alexnet_small(num_classes=4, in_channels=1, image_size=16, width=4)
    if zero:
        for p in model.parameters():
            p.data[...] = 0
    messages = []
    trainer = train.Trainer(model, tn.optim.SGD(model.parameters(), lr=lr, momentum=0.9),
                            DataLoader(synthetic(64), batch_size=16, shuffle=True, seed=7, workers=0),
                            DataLoader(synthetic(32, seed=1), batch_size=16, workers=0), "cpu", epochs,
                            json_log=tmp_path / "log.jsonl", progress=False, say=messages.append,
                            diagnose=Diagnosis(model, every, say=messages.append))
    try:
        trainer.fit()
    except train.TrainingDiverged:
        pass
    log = tmp_path / "log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return trainer, [m for m in messages if m.startswith("diagnose:")], records


def test_records_every_layer_every_n_steps_into_the_json_log(tmp_path):
    _, warnings, records = run(tmp_path, every=2)
    assert len(records) == 1 and [r["step"] for r in records[0]["diagnose"]] == [1, 3]
    layers = records[0]["diagnose"][0]["layers"]
    assert {"conv1", "relu1", "lrn1", "pool1", "fc8"} <= set(layers)
    assert {"mean", "std", "grad_norm", "update_ratio"} <= set(layers["conv1"])
    assert 0 <= layers["relu3"]["dead"] <= 1 and "dead" not in layers["conv3"]
    assert 1e-5 < layers["conv2"]["update_ratio"] < 1e-1
    assert not [w for w in warnings if "ratio" in w or "grew" in w or "ln(" in w], warnings


def test_zero_weights_warn_of_the_uniform_loss_and_of_dead_units(tmp_path):
    _, warnings, records = run(tmp_path, zero=True)
    assert records[0]["train_loss"] == pytest.approx(math.log(4), rel=0.01)   # only fc8's bias learns
    assert any("within 1% of ln(4)" in w for w in warnings), warnings
    assert any("relu1: 100% of its units are zero for the whole batch" in w for w in warnings), warnings
    assert records[0]["warnings"] == warnings


def test_a_tiny_learning_rate_warns_of_a_small_update_ratio(tmp_path):
    _, warnings, _ = run(tmp_path, lr=1e-9)
    assert any("update / weight norm ratio" in w and "below 1e-5" in w for w in warnings), warnings
    assert not any("above 1e-1" in w for w in warnings)


def test_a_huge_learning_rate_warns_of_growing_gradients_and_large_updates(tmp_path):
    _, warnings, _ = run(tmp_path, lr=2.0)      # 40x the tiny net's lr: finite numbers, not yet NaN
    growth = [float(re.search(r"grew (\S+)x", w).group(1)) for w in warnings if "gradient norm grew" in w]
    assert growth and 10 < growth[0] < math.inf, warnings
    ratios = [float(re.search(r"ratio is (\S+),", w).group(1)) for w in warnings if "above 1e-1" in w]
    assert ratios and all(0.1 < r < math.inf for r in ratios), warnings


def test_without_diagnose_nothing_is_watched(tmp_path):
    tn.manual_seed(0)
    model = tn.models.alexnet_small(num_classes=4, in_channels=1, image_size=16, width=4)
    trainer = train.Trainer(model, tn.optim.SGD(model.parameters(), lr=0.05),
                            DataLoader(synthetic(16), batch_size=16, workers=0),
                            DataLoader(synthetic(16), batch_size=16, workers=0), "cpu", 1,
                            json_log=tmp_path / "log.jsonl", progress=False, say=lambda *a: None)
    trainer.fit()
    assert trainer.diagnose is None and not any("forward" in vars(m) for m in model.modules())
    assert "diagnose" not in json.loads((tmp_path / "log.jsonl").read_text())


def test_train_alexnet_diagnose_logs_and_its_last_line_names_the_explain_command(tmp_path, capsys):
    images, labels = synthetic(32, side=28)
    for prefix in ("train", "t10k"):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)
    log = tmp_path / "log.jsonl"
    code = load_example().main(["--data", str(tmp_path), "--width", "4", "--epochs", "1", "--batch-size", "16",
                                "--no-progress", "--checkpoint", str(tmp_path / "ckpt"), "--json-log", str(log),
                                "--diagnose", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    record = json.loads(log.read_text())
    assert [r["step"] for r in record["diagnose"]] == [1, 2]
    assert out.strip().splitlines()[-1] == (f"see it work: python -m tinynet.explain --model alexnet-small --checkpoint "
                                            f"{tmp_path / 'ckpt' / train.CHECKPOINT_NAME} --log {log}")


def test_diagnose_needs_a_positive_step_count(capsys):
    with pytest.raises(SystemExit):
        load_example().parse_args(["--diagnose", "0"])
    assert "--diagnose 0" in capsys.readouterr().err
