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


# ================================================================= flags

@pytest.mark.parametrize("flags, message", [
    (["--lr", "nan"], "--lr nan: expected a positive number"),
    (["--lr", "inf"], "--lr inf: expected a positive number"),
    (["--weight-decay", "nan"], "--weight-decay nan: expected a number >= 0"),
    (["--momentum", "-1"], r"--momentum -1.0: expected a number in [0, 1)"),
    (["--momentum", "5"], r"--momentum 5.0: expected a number in [0, 1)"),
    (["--width", "0"], "--width 0: expected an integer >= 1"),
    (["--width", "-4"], "--width -4: expected an integer >= 1"),
    (["--seed", "-1"], "--seed -1: expected an integer >= 0"),
    (["--patience", "-1"], "--patience -1: expected an integer >= 0"),
    (["--model", "alexnet", "--dropout", "1"], r"--dropout 1.0: expected a probability in [0, 1)"),
    (["--lr", "abc"], "argument --lr: invalid float value: 'abc'"),
])
def test_a_flag_no_run_can_have_is_one_line_and_exit_2_before_any_data_is_read(flags, message, monkeypatch, capsys):
    example = load_example()
    monkeypatch.setattr(train.job, "load_data", lambda config: pytest.fail("data read before the flags were checked"))
    with pytest.raises(SystemExit) as exit_info:
        example.main(flags + ["--no-progress"])
    assert exit_info.value.code == 2
    assert one_line(capsys.readouterr().err) == f"train_alexnet.py: error: {message}"


def test_data_that_is_a_file_is_named_before_anything_is_read(tmp_path, capsys):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"")
    with pytest.raises(SystemExit) as exit_info:
        load_example().main(["--data", str(path), "--no-progress"])
    assert exit_info.value.code == 2
    assert one_line(capsys.readouterr().err).endswith(
        f"--data {path}: a file; expected the folder that holds the data set")


def test_an_image_folder_with_no_readable_image_ends_in_one_line(tmp_path, capsys):
    # before: the run "trained" with loss 0.0000 at 0 img/s and exited 0
    for part in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / "images" / part / cls).mkdir(parents=True)
            (tmp_path / "images" / part / cls / "a.jpg").write_bytes(b"\xff\xd8 not a JPEG")
    with pytest.warns(UserWarning, match="unreadable image"):
        code, _ = run_example(tmp_path, tmp_path / "images", "--dataset", "imagefolder", "--model", "alexnet-small",
                              "--image-size", "32", "--batch-size", "2")
    err = one_line(capsys.readouterr().err)
    assert code == 2
    assert "no readable example in epoch 0" in err and str(tmp_path / "images") in err


# ================================================================= checkpoints

@pytest.mark.parametrize("mode", ["--resume", "--eval-only"])
@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped"])
def test_a_damaged_checkpoint_is_named_with_what_to_do(tmp_path, fake_fashion_mnist, capsys, mode, damage):
    code, ckpt = run_example(tmp_path, fake_fashion_mnist)
    assert code == 0
    path = ckpt / train.CHECKPOINT_NAME
    raw = path.read_bytes()
    middle = len(raw) // 2
    path.write_bytes({"empty": b"", "truncated": raw[:middle],
                      "flipped": raw[:middle] + bytes([raw[middle] ^ 0xFF]) + raw[middle + 1:]}[damage])
    capsys.readouterr()
    code, _ = run_example(tmp_path, fake_fashion_mnist, mode, "--epochs", "2")
    err = one_line(capsys.readouterr().err)
    assert code == 2
    assert str(path) in err and "is damaged" in err and "move it away to start the run afresh" in err


def test_resume_with_other_settings_names_each_one(tmp_path, fake_fashion_mnist, capsys):
    # before: another --lr-schedule ended in KeyError: 'best', another --batch-size skipped the wrong
    # number of batches, another --lr came back silently from the checkpoint
    assert run_example(tmp_path, fake_fashion_mnist, "--lr-schedule", "step")[0] == 0
    capsys.readouterr()
    code, ckpt = run_example(tmp_path, fake_fashion_mnist, "--resume", "--epochs", "2", "--lr-schedule", "plateau",
                             "--batch-size", "8", "--lr", "0.5")
    err = one_line(capsys.readouterr().err)
    assert code == 2
    assert str(ckpt / train.CHECKPOINT_NAME) in err
    for differs in ("batch_size 16 (this run: 8)", "lr 0.02 (this run: 0.5)", "lr_schedule 'step' (this run: 'plateau')"):
        assert differs in err, err


def test_resume_of_a_finished_run_says_it_is_complete(tmp_path):
    make_trainer(tmp_path, epochs=2).fit()
    again = make_trainer(tmp_path, epochs=1)
    history = again.fit(resume=True)
    assert [r["epoch"] for r in history] == [1, 2]  # nothing trained, nothing lost
    assert any("is a finished run (2 epochs done, this run asks for 1): nothing to train" in m
               for m in again.messages), again.messages


@pytest.mark.parametrize("where", ["a regular file", "/proc"])
def test_a_checkpoint_folder_that_cannot_be_written_is_found_before_training(tmp_path, where):
    if where == "a regular file":
        folder = tmp_path / "ckpt"
        folder.write_text("not a folder")
    else:
        folder = "/proc/tinynet-cannot-be-here"
    trainer = make_trainer(tmp_path, epochs=1)
    trainer.checkpoint = train.Checkpoint(folder, trainer.model, trainer.optimizer, trainer.scheduler,
                                          trainer.train_loader)
    with pytest.raises(train.CheckpointError, match=rf"checkpoint folder {folder} cannot be written .*--checkpoint"):
        trainer.fit()
    assert trainer.position == (0, 0)  # not one step was spent


def test_a_json_log_that_cannot_be_written_is_found_before_training(tmp_path):
    (tmp_path / "file").write_text("a file, so no folder can be made here")
    trainer = make_trainer(tmp_path, epochs=1, json_log=tmp_path / "file" / "log.jsonl")
    with pytest.raises(train.LogNotWritable, match=r"JSON log .*log.jsonl cannot be written .*--json-log"):
        trainer.fit()
    assert trainer.position == (0, 0)


def test_the_log_line_of_an_epoch_follows_its_checkpoint(tmp_path, monkeypatch):
    # before: the line was written first, so after a failed save a resume logged that epoch twice
    json_log = tmp_path / "log.jsonl"
    make_trainer(tmp_path, epochs=1, json_log=json_log).fit()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(tinynet.nn.np, "savez", disk_full)
    with pytest.raises(train.CheckpointError, match="the disk is full"):
        make_trainer(tmp_path, epochs=2, json_log=json_log).fit(resume=True)
    assert [json.loads(line)["epoch"] for line in json_log.read_text().splitlines()] == [1]


def test_a_test_loss_that_is_not_finite_is_divergence_and_nothing_is_kept_of_that_epoch(tmp_path):
    # before: the epoch was checkpointed, called "the last good checkpoint", and logged as a bare NaN
    trainer = make_trainer(tmp_path, epochs=2, json_log=tmp_path / "log.jsonl")
    images, labels = synthetic(32, seed=1)
    images = images.astype(np.float32)
    images[5] = np.nan
    trainer.test_loader = DataLoader((images, labels), batch_size=16, workers=0)
    with pytest.raises(train.TrainingDiverged, match=r"the test loss is nan after epoch 1; stopped\. "
                                                     r"No checkpoint had been written yet"):
        trainer.fit()
    assert trainer.status == "diverged"
    assert not (tmp_path / train.CHECKPOINT_NAME).exists()
    assert (tmp_path / "log.jsonl").read_text() == ""


def test_the_json_log_never_holds_a_bare_nan(tmp_path):
    path = tmp_path / "log.jsonl"
    log.append_json_line(path, {"epoch": 1, "test_loss": 0.5})
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        log.append_json_line(path, {"epoch": 2, "test_loss": float("nan")})
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"epoch": 1, "test_loss": 0.5}]


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
