"""The teaching scripts in examples/: each writes a PNG of its stated size that shows something,
and predict.py reads both kinds of weight files. The scripts' main() runs in-process with tiny
settings (small nets, low dpi)."""
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import tinynet as tn
from tinynet import train

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DPI = 40


def load_script(name):
    """examples/<name>.py imported as a module (the scripts find tinynet themselves)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)


def assert_picture(path, script):
    """A PNG of FIGSIZE * dpi pixels, with real content: many colours and no single colour
    covering nearly everything."""
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size == (round(script.FIGSIZE[0] * DPI), round(script.FIGSIZE[1] * DPI))
        pixels = np.asarray(img.convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    assert len(colours) > 20, f"{path.name}: only {len(colours)} colours"
    assert counts.max() < 0.95 * len(pixels), f"{path.name}: almost blank"


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory):
    """A 10-class alexnet-small (width 8) saved both ways: module.save() and a training checkpoint."""
    folder = tmp_path_factory.mktemp("weights")
    tn.manual_seed(0)
    net = tn.models.alexnet_small(num_classes=10, width=8)
    net.save(folder / "small.npz")
    opt = tn.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    train.save_checkpoint(folder / "checkpoint.npz", net, opt, {"epoch": 1, "step": 0})
    return folder / "small.npz", folder / "checkpoint.npz", net


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A synthetic 'photograph': smooth colour gradients and a disc, as a JPEG."""
    path = tmp_path_factory.mktemp("photo") / "photo.jpg"
    yy, xx = np.mgrid[0:120, 0:160]
    rgb = np.stack([xx / 160, yy / 120, ((xx - 80) ** 2 + (yy - 60) ** 2 < 900) * 0.8], axis=-1)
    Image.fromarray((rgb * 255).astype(np.uint8)).save(path)
    return path


def test_show_filters_untrained_small_net(tmp_path):
    script = load_script("show_filters")
    out = script.main(["--untrained", "--model", "alexnet-small", "--out", str(tmp_path / "f.png"),
                       "--dpi", str(DPI)])
    assert_picture(Path(out), script)


def test_show_filters_of_a_two_tower_checkpoint(tmp_path):
    """96 RGB filters 11 x 11 stored the two-tower way: tower0/tower1 keys, 48 each."""
    rng = np.random.default_rng(0)
    path = tmp_path / "towers.npz"
    np.savez(path, **{f"tower{t}.conv1.weight": rng.standard_normal((48, 3, 11, 11)).astype(np.float32)
                      for t in (0, 1)})
    script = load_script("show_filters")
    towers = script.conv1_towers(dict(np.load(path)))
    assert [w.shape for w in towers] == [(48, 3, 11, 11)] * 2
    out = script.main(["--checkpoint", str(path), "--out", str(tmp_path / "f.png"), "--dpi", str(DPI)])
    assert_picture(Path(out), script)


def test_show_filters_splits_the_grouped_net_at_48():
    script = load_script("show_filters")
    w = np.arange(96, dtype=np.float32)[:, None, None, None] * np.ones((96, 3, 11, 11), dtype=np.float32)
    first, second = script.conv1_towers({"conv1.weight": w})
    assert first[:, 0, 0, 0].tolist() == list(range(48)) and second[0, 0, 0, 0] == 48


def test_show_feature_maps_of_a_photo_through_the_small_net(tmp_path, photo, small_weights):
    script = load_script("show_feature_maps")
    out = script.main(["--checkpoint", str(small_weights[1]), "--image", str(photo), "--maps", "2",
                       "--out", str(tmp_path / "maps.png"), "--dpi", str(DPI)])
    assert_picture(Path(out), script)


def test_show_feature_maps_of_a_sample_photograph(tmp_path):
    pytest.importorskip("skimage")
    script = load_script("show_feature_maps")
    out = script.main(["--model", "alexnet-small", "--width", "8", "--photo", "coffee", "--maps", "2",
                       "--out", str(tmp_path / "maps.png"), "--dpi", str(DPI)])
    assert_picture(Path(out), script)


def test_feature_maps_has_one_entry_per_spatial_layer():
    script = load_script("show_feature_maps")
    net = tn.models.alexnet_small(width=8).eval()
    maps = script.feature_maps(net, tn.tensor(np.ones((1, 1, 28, 28), dtype=np.float32)))
    assert [name for name, _ in maps] == ["conv1", "relu1", "lrn1", "pool1", "conv2", "relu2", "lrn2", "pool2",
                                          "conv3", "relu3", "conv4", "relu4", "conv5", "relu5", "pool5"]
    assert maps[0][1].shape == (8, 28, 28) and maps[-1][1].shape == (16, 2, 2)


def test_feature_maps_walk_into_torchvisions_nested_features():
    """Before, torchvision's net (features, avgpool, classifier) gave no map: its children are Sequentials."""
    script = load_script("show_feature_maps")
    net = tn.models.alexnet_torchvision(num_classes=10, widths=(4, 4, 4, 4, 4, 8)).eval()
    maps = script.feature_maps(net, tn.tensor(np.ones((1, 3, 63, 63), dtype=np.float32)))
    assert [name for name, _ in maps][:4] == ["features.0", "features.1", "features.2", "features.3"]
    assert maps[0][1].shape == (4, 15, 15) and maps[-1][1].shape == (4, 1, 1)   # pool5 of a 63 px image


@pytest.mark.parametrize("flags", [[], ["--padding", "1", "--stride", "2", "--out-channels", "4", "--groups", "2"]])
def test_show_im2col(tmp_path, flags):
    script = load_script("show_im2col")
    out = script.main(flags + ["--out", str(tmp_path / "im2col.png"), "--dpi", str(DPI)])
    assert_picture(Path(out), script)


def test_im2col_example_is_the_convolution():
    """The figure's numbers: a 1x2x4x4 input, 3x3 kernel -> columns (18, 4), Y = W @ cols (checked
    against conv2d inside), and column 0 holds the first window of both channels."""
    script = load_script("show_im2col")
    ex = script.im2col_example()
    assert ex["cols"].shape == (18, 4) and ex["y"].shape == (2, 4)
    assert ex["cols"][:9, 0].tolist() == [1, 2, 3, 5, 6, 7, 9, 10, 11]
    grouped = script.im2col_example(out_channels=4, groups=2)
    assert np.count_nonzero(grouped["w"][:2, 9:]) == 0  # group 0's filters do not see channel 1


def test_plot_curves(tmp_path):
    log = tmp_path / "run.jsonl"
    with open(log, "w") as f:
        for epoch in range(1, 5):
            f.write(json.dumps({"epoch": epoch, "train_loss": 2 / epoch, "train_acc": 1 - 0.5 / epoch,
                                "test_loss": 2.2 / epoch, "test_acc": 1 - 0.6 / epoch, "lr": 0.01}) + "\n")
    script = load_script("plot_curves")
    out = script.main([str(log), "--out", str(tmp_path / "curves.png"), "--dpi", str(DPI)])
    assert_picture(Path(out), script)


def test_plot_curves_names_a_bad_line(tmp_path):
    log = tmp_path / "bad.jsonl"
    log.write_text('{"epoch": 1, "train_loss": 1.0}\n')
    script = load_script("plot_curves")
    with pytest.raises(ValueError, match=r"bad.jsonl, line 1: missing train_acc, test_loss, test_acc"):
        script.read_log(log)


def test_predict_prints_fashion_mnist_top5_from_either_weight_file(small_weights, photo, capsys):
    script = load_script("predict")
    saved, checkpoint, net = small_weights
    from_save = script.main(["--checkpoint", str(saved), str(photo)])
    from_checkpoint = script.main(["--checkpoint", str(checkpoint), str(photo)])
    assert from_save == from_checkpoint
    assert len(from_save) == 5
    probs = [p for _, p in from_save]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-9
    from tinynet.data import FASHION_MNIST_CLASSES
    assert all(name in FASHION_MNIST_CLASSES for name, _ in from_save)
    out = capsys.readouterr().out
    assert "alexnet-small, 10 classes, trained on fashion-mnist" in out and "1 x 28 x 28" in out


def test_predict_reads_the_net_off_the_weights(small_weights):
    script = load_script("predict")
    state = script.read_state_dict(str(small_weights[1]))
    model, name, shape = script.model_from_state_dict(state)
    assert name == "alexnet-small" and shape == (1, 28, 28)
    assert model.conv1.out_channels == 8 and not model.training


# ================================================================= PyTorch weights (.pth)

THIN = (8, 16, 24, 16, 16, 32)


@pytest.fixture(scope="module")
def torch_weights(tmp_path_factory):
    """Random-weight .pth files that torch itself wrote: a thin torchvision-layout net with 1000
    classes, and a thin d2l net; with the torch nets, to compare the predictions."""
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_seeds import d2l_listing, torchvision_listing
    folder = tmp_path_factory.mktemp("pth")
    torch.manual_seed(0)
    nets = {"torchvision": torchvision_listing(1000, widths=THIN).eval(), "d2l": d2l_listing(10, 5, THIN).eval()}
    for name, net in nets.items():
        torch.save(net.state_dict(), folder / f"{name}.pth")
    return folder, nets


@pytest.mark.parametrize("name, dataset", [("torchvision", "imagenet"), ("d2l", "fashion-mnist-raw")])
def test_predict_top5_from_torch_weights_is_torchs(torch_weights, photo, name, dataset, capsys):
    """The same net in torch, on the same prepared image, ranks the same five classes with the
    same probabilities; torchvision's 1000 classes are named from the ImageNet list."""
    import torch
    folder, nets = torch_weights
    script = load_script("predict")
    top5 = script.main(["--weights", str(folder / f"{name}.pth"), "--image", str(photo)])
    state = tn.load_torch(folder / f"{name}.pth")
    _, model_name, shape = script.model_from_state_dict(state)
    assert model_name == name
    _, x = script.prepare(str(photo), shape, dataset)
    with torch.no_grad():
        probs = torch.softmax(nets[name](torch.tensor(x.numpy())).double(), dim=1)[0].numpy()
    names = script.class_names(len(probs), dataset)
    ours = [names.index(n) for n, _ in top5]
    np.testing.assert_allclose([p for _, p in top5], probs[ours], rtol=1e-4)   # each class's own probability
    assert min(p for _, p in top5) >= np.sort(probs)[-5] * (1 - 1e-4)          # and they are torch's top five
    out = capsys.readouterr().out
    assert f"trained on {dataset}" in out
    if name == "torchvision":
        from tinynet.data import imagenet_classes
        assert all(n in imagenet_classes() for n, _ in top5) and "3 x 224 x 224" in out


@pytest.mark.parametrize("name", ["torchvision", "d2l"])
def test_show_filters_of_torch_weights(torch_weights, tmp_path, name):
    folder, _ = torch_weights
    script = load_script("show_filters")
    out = script.main(["--weights", str(folder / f"{name}.pth"), "--out", str(tmp_path / "f.png"),
                       "--dpi", str(DPI)])
    assert_picture(Path(out), script)


@pytest.mark.parametrize("script, missing", [("show_im2col", "matplotlib"), ("show_filters", "matplotlib"),
                                             ("show_feature_maps", "matplotlib"), ("predict", "PIL")])
def test_a_script_without_the_examples_extra_says_how_to_install_it_in_one_line(script, missing):
    """Run from a checkout as the README runs them (PYTHONPATH=., no path set by the script), with
    `missing` not importable: one line naming the extra, not a traceback."""
    import os
    import subprocess
    root = str(EXAMPLES.parent)
    code = (f"import runpy, sys; sys.modules[{missing!r}] = None; sys.argv = [{script + '.py'!r}, '--help']; "
            f"runpy.run_path({str(EXAMPLES / (script + '.py'))!r}, run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root,
                            env=dict(os.environ, PYTHONPATH=root))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith('is not installed: pip install -e ".[examples]"'), result.stderr


def test_show_feature_maps_without_scikit_image_names_the_extra(monkeypatch):
    script = load_script("show_feature_maps")
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(SystemExit, match=r'pip install -e "\.\[examples\]", or pass --image photo\.jpg'):
        script.sample_photo("coffee")
