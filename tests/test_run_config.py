"""tinynet.train.RunConfig: one description of a run. The command line, its help, the checks and
the settings a checkpoint stores all follow from its fields; --resume restores a run's settings;
--profile profiles and stops; the kernels compile before the first epoch's clock starts."""
import argparse
import dataclasses
import json
import re

import numpy as np
import pytest

from tinynet import train
from tinynet.models import registry
from tinynet.train import RunConfig

from test_data import write_fake_fashion_mnist
from test_train import load_example, make_trainer

# What a checkpoint stores (and a resume compares): every setting that changes what the run computes.
STORED = ["batch_size", "dataset", "dropout", "dtype", "image_size", "init", "limit_test", "limit_train", "lr",
          "lr_schedule", "lr_step", "model", "momentum", "patience", "seed", "ten_crop", "weight_decay", "width"]


@pytest.fixture
def tiny_data(tmp_path):
    write_fake_fashion_mnist(tmp_path / "data", n=32, prefix="train")
    write_fake_fashion_mnist(tmp_path / "data", n=16, prefix="t10k")
    return tmp_path / "data"


def run_job(tmp_path, data, *flags):
    folder = ["--data", str(data), "--no-progress", "--checkpoint", str(tmp_path / "ckpt"),
              "--json-log", str(tmp_path / "log.jsonl")]
    return load_example().main(folder + list(flags))


def help_of(name):
    parser = train.add_arguments(argparse.ArgumentParser())
    return next(a.help for a in parser._actions if a.dest == name)


def test_every_field_is_a_flag_and_a_flag_not_given_is_absent():
    parser = train.add_arguments(argparse.ArgumentParser())
    flags = {a.dest for a in parser._actions if a.dest != "help"}
    assert flags == {f.name for f in dataclasses.fields(RunConfig)}
    given = vars(parser.parse_args(["--batch-size", "8", "--ten-crop"]))
    assert given == {"batch_size": 8, "ten_crop": True}
    assert RunConfig.from_flags(given) == RunConfig(batch_size=8, ten_crop=True)


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(RunConfig) if f.metadata["per_model"]])
def test_the_help_states_each_models_own_default(name):
    """Before, --epochs said '30 (paper nets)' and --batch-size '128' where torchvision's are 90 and 256."""
    text = help_of(name)
    for entry in registry.entries():
        value = RunConfig(model=entry.name, dataset="fashion-mnist") if name != "width" or entry.has_width else None
        if value is None:
            continue
        shown = getattr(value, name)
        if name == "image_size" and entry.size_from_data:
            shown = "the data set's side"
        shown = f"{shown:g}" if isinstance(shown, float) else str(shown)
        groups = re.findall(rf"{re.escape(shown)} \(([^)]*)\)", text)
        assert any(entry.name in g.split(", ") for g in groups), (name, entry.name, shown, text)


def test_the_settings_a_checkpoint_stores_are_the_ones_that_define_the_run():
    assert list(RunConfig().settings()) == STORED
    assert RunConfig(model="d2l").settings()["init"] == "xavier"


def test_a_value_no_run_can_have_is_refused_when_the_config_is_made():
    with pytest.raises(train.SetupError, match=r"--lr-step 0: expected an integer >= 1"):
        RunConfig(lr_step=0)
    with pytest.raises(train.SetupError, match=r"--image-size 200: the paper nets need pool5 maps of 6x6"):
        RunConfig(model="alexnet", image_size=200)
    with pytest.raises(train.SetupError, match=r"--lr-schedule weekly: expected one of step, plateau, constant"):
        RunConfig(lr_schedule="weekly")
    with pytest.raises(train.SetupError, match=r"--model alexnet3: expected one of alexnet-small"):
        RunConfig(model="alexnet3")
    with pytest.raises(train.SetupError, match=r"--epochs '3': expected an integer"):
        RunConfig(epochs="3")
    with pytest.raises(train.SetupError, match=r"--ten-crop 1: expected a bool"):
        RunConfig(ten_crop=1)
    assert RunConfig(lr=1).lr == 1  # an int is a number


def test_recipe_line_says_the_schedule():
    assert RunConfig().recipe_line() == ("recipe: 9 epochs, batch 32, SGD lr 0.02 momentum 0.9 weight decay 0.0005, "
                                         "schedule step /10 every 7 epochs, seed 0")
    assert RunConfig(model="alexnet", ten_crop=True).recipe_line().endswith("schedule plateau (patience 1), seed 0, "
                                                                            "ten-crop test")


def test_resume_restores_the_runs_settings_and_epochs(tmp_path, tiny_data, capsys):
    """Before, a resume without every flag typed again was refused as another run's checkpoint."""
    assert run_job(tmp_path, tiny_data, "--width", "4", "--batch-size", "16", "--lr", "0.05", "--epochs", "1") == 0
    capsys.readouterr()
    assert run_job(tmp_path, tiny_data, "--resume") == 0    # the checkpoint's 1 epoch, not the default 9
    out = capsys.readouterr().out
    assert "model alexnet-small (width 4, dropout 0.25)" in out and "recipe: 1 epochs, batch 16, SGD lr 0.05" in out
    assert "is a finished run (1 epochs done, this run asks for 1)" in out
    assert run_job(tmp_path, tiny_data, "--resume", "--epochs", "2") == 0
    assert "resumed from" in capsys.readouterr().out
    assert RunConfig.from_flags({"resume": True, "checkpoint": str(tmp_path / "ckpt")}).width == 4
    with_d2l = RunConfig.from_flags({"resume": True, "checkpoint": str(tmp_path / "ckpt"), "model": "d2l"})
    assert with_d2l.batch_size == 128  # another net asked for: nothing restored, the run names the difference
    assert [json.loads(line)["epoch"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [1, 2]


def test_profile_prints_the_table_and_stops(tmp_path, tiny_data, capsys):
    assert run_job(tmp_path, tiny_data, "--width", "4", "--batch-size", "16", "--profile") == 0
    out = capsys.readouterr().out
    assert "one training step, layer by layer (batch 16, medians of 10 steps)" in out
    assert "epoch " not in out and "done in" not in out
    assert not (tmp_path / "ckpt" / train.CHECKPOINT_NAME).exists()


def test_the_kernels_compile_before_the_first_epochs_clock_starts(tmp_path, tiny_data, capsys, monkeypatch):
    calls = []
    warm_up, step = train.Trainer.warm_up, train.Trainer._step
    monkeypatch.setattr(train.Trainer, "warm_up", lambda self: calls.append("warm up") or warm_up(self))
    monkeypatch.setattr(train.Trainer, "_step", lambda self, *a: calls.append("step") or step(self, *a))
    monkeypatch.setattr(train.job, "_numba_cache_is_empty", lambda: True)
    assert run_job(tmp_path, tiny_data, "--width", "4", "--batch-size", "16", "--epochs", "1") == 0
    assert calls == ["warm up", "step", "step"]
    out = capsys.readouterr().out
    assert out.count("compiling the kernels: once, on the first run") == 1


def test_a_warm_up_changes_nothing_the_run_computes(tmp_path):
    plain = make_trainer(tmp_path / "plain", epochs=1)
    plain.fit()
    warmed = make_trainer(tmp_path / "warmed", epochs=1)
    warmed.warm_up()
    warmed.fit()
    for (name, a), (_, b) in zip(plain.model.named_parameters(), warmed.model.named_parameters()):
        assert np.array_equal(a.numpy(), b.numpy()), name
    assert plain.history[0]["train_loss"] == warmed.history[0]["train_loss"]
