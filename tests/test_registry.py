"""tinynet.models.registry: one entry per net, and every tool reads it. A toy net registered here
is a --model of the training job (which trains it), a model of `python -m tinynet.summary` and a
--model of examples/predict.py, with nothing else changed."""
import argparse

import numpy as np
import pytest

import tinynet as tn
from tinynet import summary as tn_summary
from tinynet import train
from tinynet.models import registry

from test_data import write_fake_fashion_mnist
from test_pictures import load_script
from test_train import load_example

TOY_SIDE = 8


def _toy(num_classes, *, in_channels, image_size, device, dtype, dropout, **_):
    """conv 4 @ 3x3 pad 1, ReLU, max-pool 2, dropout, fc: the least a net can be and still be one."""
    return tn.nn.Sequential(
        conv1=tn.nn.Conv2d(in_channels, 4, 3, padding=1, device=device, dtype=dtype), relu1=tn.nn.ReLU(),
        pool1=tn.nn.MaxPool2d(2, 2), flatten=tn.nn.Flatten(), drop=tn.nn.Dropout(dropout),
        fc=tn.nn.Linear(4 * (image_size // 2) ** 2, num_classes, device=device, dtype=dtype))


@pytest.fixture
def toy():
    entry = registry.register(registry.ModelEntry(
        "toy", _toy, image_size=TOY_SIDE, in_channels=1, classes=10, channels_from_data=True,
        recipe=dict(registry.PAPER_RECIPE, epochs=1, batch_size=16, lr=0.05, lr_schedule="constant", dropout=0.125),
        help="a toy net of the registry's test"))
    yield entry
    registry.unregister("toy")
    assert "toy" not in registry.names()


def _model_choices(parser):
    return next(a.choices for a in parser._actions if "--model" in a.option_strings)


def test_a_registered_net_is_a_model_of_every_tool(toy, tmp_path, capsys):
    # the training job: a --model choice, with the toy's recipe as its defaults, and it trains
    parser = train.add_arguments(argparse.ArgumentParser())
    assert "toy" in _model_choices(parser)
    config = train.RunConfig.from_flags(vars(parser.parse_args(["--model", "toy"])))
    assert (config.epochs, config.batch_size, config.lr, config.dropout, config.image_size) == (1, 16, 0.05, 0.125, 8)
    write_fake_fashion_mnist(tmp_path / "data", n=32, prefix="train")
    write_fake_fashion_mnist(tmp_path / "data", n=16, prefix="t10k")
    code = load_example().main(["--model", "toy", "--data", str(tmp_path / "data"), "--no-progress",
                                "--checkpoint", str(tmp_path / "ckpt"), "--json-log", str(tmp_path / "log.jsonl")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "model toy (dropout 0.125)" in out and "seen at 8x8x1 (resized from 28x28x1" in out
    # the summary: a model to name, shown at the registry's input and classes
    assert tn_summary.main(["toy"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("toy (dropout 0.125), input (1, 8, 8), per image")
    assert "(8 - 3 + 2*1) // 1 + 1 = 8" in out
    # predict.py: a --model choice that reads the toy's weights
    predict = load_script("predict")
    assert "toy" in _model_choices(predict.build_parser())
    model, name, shape = predict.model_from_state_dict(train.load_checkpoint(tmp_path / "ckpt" / "checkpoint.npz")
                                                       ["model"], "toy")
    assert name == "toy" and shape == (1, 8, 8) and model.fc.out_features == 10


def test_the_registry_refuses_a_taken_name_an_unknown_one_and_an_incomplete_recipe():
    with pytest.raises(ValueError, match="a model named 'alexnet' is registered already"):
        registry.register(registry.get("alexnet"))
    with pytest.raises(ValueError, match="unknown model 'alexnet3', expected one of alexnet-small, alexnet"):
        registry.get("alexnet3")
    with pytest.raises(ValueError, match="model 'bare': its recipe lacks .*epochs"):
        registry.ModelEntry("bare", _toy, image_size=8, in_channels=1, classes=10, recipe=dict(lr=0.1))


def test_build_takes_the_entrys_defaults_the_training_jobs_own():
    """The tools show the net the job trains: alexnet-small at width 24 with dropout 0.25 (311,050
    parameters), not the builder's own defaults (width 32)."""
    net = registry.build("alexnet-small")
    assert net.num_parameters() == 311_050 == train.job.build_model(train.RunConfig(), 10, "cpu").num_parameters()
    assert net.drop6.p == 0.25 and net.conv1.out_channels == 24
    with pytest.raises(ValueError, match="alexnet: image_size 200: the paper nets need pool5 maps of 6x6"):
        registry.build("alexnet", image_size=200)


def test_summary_shows_the_jobs_net_its_width_and_a_checkpoints_net(tmp_path, capsys):
    assert tn_summary.main(["alexnet-small"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("alexnet-small (width 24, dropout 0.25), input (1, 28, 28)") and "311,050" in out
    assert tn_summary.main(["alexnet-small", "--width", "8"]) == 0
    assert capsys.readouterr().out.startswith("alexnet-small (width 8, dropout 0.25)")
    with pytest.raises(SystemExit):
        tn_summary.main(["alexnet", "--width", "8"])
    assert "--width is for a net with a width; alexnet has fixed channel counts" in capsys.readouterr().err
    # a checkpoint: the net its run built (width 4, 16 px, 4 classes here)
    tn.manual_seed(0)
    net = tn.models.alexnet_small(num_classes=4, in_channels=1, image_size=16, width=4, dropout=0.0)
    opt = tn.optim.SGD(net.parameters(), lr=0.1)
    settings = train.RunConfig(width=4, image_size=16, dropout=0.0).settings()
    train.save_checkpoint(tmp_path / "checkpoint.npz", net, opt, {"epoch": 1, "step": 0, "settings": settings})
    assert tn_summary.main(["--checkpoint", str(tmp_path / "checkpoint.npz")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("alexnet-small (width 4, dropout 0), input (1, 16, 16)")
    assert f"{net.num_parameters():,}" in out
