"""What a run reports: the epoch record (the JSON log's line and the printed line) and the
progress bar. Only the main process (comm.is_main) calls the writers."""
import errno
import json
import os
import sys
import warnings


def epoch_record(epoch, sums, test, eval_seconds, lr):
    """The log record of a finished epoch from its running sums (checkpoint.zero_sums's keys) and
    evaluate()'s result on the test set."""
    images = max(sums["images"], 1)
    train_seconds = max(sums["seconds"], 1e-9)
    record = {
        "epoch": epoch + 1,
        "train_loss": sums["loss"] / images,
        "train_acc": sums["correct"] / images,
        "test_loss": test["loss"],
        "test_acc": test["acc"],
    }
    if "top5" in test:
        record["test_top5"] = test["top5"]
    record.update({
        "images_per_s": sums["images"] / train_seconds,   # training images per training second
        "seconds": train_seconds + eval_seconds,          # the whole epoch, evaluation included
        "data_wait_fraction": sums["wait"] / train_seconds,
        "lr": lr,                                         # the rate this epoch trained with
    })
    return record


def format_epoch(record, epochs):
    """The one line printed after each epoch."""
    top5 = f"  test top-5 {record['test_top5']:.2%}" if "test_top5" in record else ""
    return (f"epoch {record['epoch']:3d}/{epochs}  train loss {record['train_loss']:.4f} "
            f"acc {record['train_acc']:.2%}  test loss {record['test_loss']:.4f} "
            f"acc {record['test_acc']:.2%}{top5}  {record['images_per_s']:.0f} img/s  "
            f"{record['seconds']:.1f} s  data wait {record['data_wait_fraction']:.1%}  lr {record['lr']:g}")


class LogNotWritable(ValueError):
    """The JSON log cannot be written (one line naming the file)."""


def why_not_written(err):
    """An OSError of a write as a few words: a full disk says so by name."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full ({err.strerror}, errno {errno.errorcode[err.errno]})"
    return err.strerror or str(err)


def check_writable(path):
    """LogNotWritable now, before any training, unless `path` can be opened for appending (its
    folder is made if missing; an existing log is left as it is)."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        open(path, "a").close()
    except OSError as err:
        raise LogNotWritable(f"JSON log {path} cannot be written ({err.strerror or err}); "
                             "pick another with --json-log FILE") from err


def truncate(path):
    """Start the JSON log afresh (a run that does not resume)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    open(path, "w").close()


def append_json_line(path, record):
    """One line of JSON; never a bare NaN or Infinity, which JSON does not have (the loop stops
    on a non-finite loss before it logs, so allow_nan=False only guards that promise).
    A write that fails (a full disk) is LogNotWritable naming the file."""
    line = json.dumps(record, allow_nan=False)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a") as f:
            f.write(line + "\n")
    except OSError as err:
        raise LogNotWritable(f"JSON log {path} cannot be written: {why_not_written(err)}") from None


def match_history(path, history):
    """Make the JSON log at `path` hold exactly `history` (the checkpoint's finished epochs), one
    line each: a run killed between its checkpoint and its log line lacks the last epoch's line,
    a log beside an older checkpoint has lines beyond it, a write cut short leaves half a line.
    Returns None when the log already agreed, else what was wrong (the log is then rewritten,
    atomically)."""
    wanted = [json.loads(json.dumps(record)) for record in history]
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    found = []
    for line in text.splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            found.append(None)
    if found == wanted:
        return None
    have = [r.get("epoch") if isinstance(r, dict) else "a broken line" for r in found]
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.writelines(json.dumps(record, allow_nan=False) + "\n" for record in wanted)
        os.replace(tmp, path)
    except OSError as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise LogNotWritable(f"JSON log {path} cannot be written: {why_not_written(err)}") from None
    return f"its lines were epochs {have}, the checkpoint's are {[r.get('epoch') for r in wanted]}"


def check_outputs(json_log, curves, checkpoint):
    """LogNotWritable now, before any data is read, when the run's files would collide or the
    curves could not be written at the end: the JSON log named like the curves PNG (the curves
    would overwrite it) or like the checkpoint, or a curves path that cannot be created (a name
    too long for the file system, a folder not writable)."""
    same = lambda a, b: os.path.realpath(a) == os.path.realpath(b)  # noqa: E731
    if same(json_log, curves):
        raise LogNotWritable(f"--json-log {json_log}: the loss curves are written to {curves} at the end, "
                             "over the log; give the log another name (e.g. ending in .jsonl)")
    if same(json_log, checkpoint):
        raise LogNotWritable(f"--json-log {json_log} is the checkpoint file; give the log another name")
    existed = os.path.exists(curves)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(curves)), exist_ok=True)
        open(curves, "a").close()
    except OSError as err:
        raise LogNotWritable(f"the loss curves {curves} (named after --json-log) cannot be written "
                             f"({why_not_written(err)}); pick another --json-log FILE") from None
    if not existed:
        os.unlink(curves)


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix_str(self, s, refresh=True):
        pass

    def close(self):
        pass


def progress_bar(enabled, total, initial, desc):
    """A tqdm bar on stderr, or an object with the same methods that shows nothing."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        warnings.warn("progress: tqdm is not installed (pip install tqdm); no progress bar")
        return _NoBar()
    return tqdm(total=total, initial=initial, desc=desc, unit="batch", dynamic_ncols=True,
                leave=False, file=sys.stderr)


def show_running(bar, sums, elapsed):
    """The running epoch's loss, accuracy and speed, on the bar."""
    images = max(sums["images"], 1)
    bar.set_postfix_str(f"loss {sums['loss'] / images:.4f} acc {sums['correct'] / images:.2%} "
                        f"{sums['images'] / max(elapsed, 1e-9):.0f} img/s", refresh=False)


def silent(*args, **kwargs):
    """The `say` of a process that prints nothing (the ranks other than the main one)."""
