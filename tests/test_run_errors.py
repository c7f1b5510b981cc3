"""A run's bad inputs and unsafe moments, as a new user met them (issue 14): every flag no run can
have, a damaged checkpoint, a resume with other settings, an output that cannot be written, a
test loss that is not finite. Each ends in one line naming the flag or file, exit status 2 for a
usage or data error (1 for divergence), and no traceback; the log and checkpoint stay consistent.

Trainer-level cases use test_train's tiny net on synthetic data; command-line cases run
examples/train_alexnet.py's main() on 48 fake Fashion-MNIST images.
"""
import json

import numpy as np
import pytest

import tinynet as tn
import tinynet.nn
from tinynet import nn, train
from tinynet.data import DataLoader
from tinynet.train import evaluation, log

from test_train import _write_idx, load_example, make_trainer, synthetic


@pytest.fixture
def fake_fashion_mnist(tmp_path):
    """A folder of 48 fake 28x28 Fashion-MNIST images (train and test)."""
    folder = tmp_path / "data"
    folder.mkdir()
    images, labels = synthetic(48, side=28)
    for prefix in ("train", "t10k"):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)
    return folder


def run_example(tmp_path, data, *flags):
    """examples/train_alexnet.py's main() on a tiny run: (exit status, checkpoint folder)."""
    ckpt = tmp_path / "ckpt"
    argv = ["--data", str(data), "--width", "4", "--epochs", "1", "--batch-size", "16", "--no-progress",
            "--checkpoint", str(ckpt), "--json-log", str(tmp_path / "log.jsonl"), *flags]
    return load_example().main(argv), ckpt


def one_line(text):
    assert len(text.strip().splitlines()) == 1 and "Traceback" not in text, text
    return text.strip()


# ================================================================= evaluation

class _Scores(nn.Module):
    """A 'model' whose logits are its input: evaluate then scores hand-made rows."""

    def forward(self, x):
        return x


def test_top1_and_top5_count_hand_made_scores_and_never_a_nan_row():
    scores = np.array([
        [6, 5, 4, 3, 2, 1, 0],          # label 5 ranks 6th: a top-6 hit, not a top-5 one
        [6, 5, 4, 3, 2, 1, 0],          # label 4 ranks 5th: top-5 only
        [0, 0, 9, 0, 0, 0, 0],          # label 2 is best: top-1
        [1, 1, 1, 1, 1, 1, 1],          # all equal, label 6: its rank is 6 (ties keep the class order)
        [1, 1, 1, 1, 1, 1, 1],          # all equal, label 2: rank 2, top-5 only
        [np.nan, 0, 0, 0, 0, 0, 0],     # a NaN row ranks nothing: NaN > x is False for every x
    ], np.float32)
    labels = np.array([5, 4, 2, 6, 2, 0])
    loader = DataLoader((scores[:, None], labels), batch_size=4, workers=0)  # (N, 1, 7): one row a "image"
    preprocess = lambda xb: tn.tensor(xb.reshape(len(xb), -1))
    result = train.evaluate(_Scores(), loader, "cpu", preprocess=preprocess)
    assert result["n"] == 6
    assert result["acc"] == 1 / 6        # row 2
    assert result["top5"] == 3 / 6       # rows 1, 2, 4
    assert evaluation._count_topk(np, scores, labels, 6) == 4  # row 0 joins at k = 6; the NaN row never
