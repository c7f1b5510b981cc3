"""The training loop: Trainer.fit runs epochs of steps, evaluates, logs and checkpoints.

One step is the paper's (section 5): forward, softmax cross-entropy, backward, and the SGD rule
v <- m v - wd lr w - lr g; w <- w + v (tn.optim.SGD). After every epoch the test set is
evaluated, the schedule steps, a checkpoint is written (tinynet.train.checkpoint says what it
holds) and then one JSON line is appended to the log (so a failed save leaves no line behind).

Stopping. Ctrl-C or SIGTERM finishes the current step, writes a checkpoint at that step and
returns (a second one stops at once, after the parameter update if it lands inside one); with
several ranks, any rank's signal stops every rank after the same step. A loss that is
NaN or inf raises TrainingDiverged naming the epoch and step; no checkpoint is written after the
last good one.

No hidden synchronisation. On a GPU, reading a value to the host waits for every queued kernel,
so the loss and the count of correct answers are summed on the device and read only every
`log_every` steps (and at the end of the epoch). The NaN check happens at those reads.

Several processes (data parallel) plug in through `comm` (tinynet.train.communicator): each rank trains
on its shard of every batch, gradients are averaged before the update, metric sums are added
over the ranks, and only the main rank prints, logs and checkpoints. Two details make N ranks
compute what one process computes: a rank weighs its loss's gradient by n_r * N / n (its share
of a global batch of n; shares differ only in a short last batch), and dropout draws the whole
global batch's masks and keeps the rank's rows (tn.random.batch_rows).
"""
import math
import os
import time

import numpy as np

from .. import functional as F
from .. import profile as tn_profile
from .. import random as tn_random
from ..device import as_device
from . import log
from .checkpoint import Checkpoint, TrainingState, data_fingerprint, zero_sums
from .communicator import SingleProcess
from .evaluation import evaluate
from .interrupt import Interrupted, StopOnInterrupt
from .preprocess import BatchPreprocess


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the message names the epoch and the step."""


class Trainer:
    """Trains `model` with `optimizer` for `epochs` epochs of `train_loader`, evaluating on
    `test_loader` after each. See the module docstring for what happens when.

    Args:
        device: where batches go (the first tower's device for the two-tower net).
        scheduler: tn.optim.StepLR or ReduceLROnPlateau (stepped with the test loss), or None.
        comm: the process group (tinynet.train.communicator); None is SingleProcess(). With more than
            one rank the loaders are sharded: loader.shard(comm.rank, comm.size).
        checkpoint_dir: folder of checkpoint.npz; None saves nothing (and resume is impossible).
            fit() holds the folder (a second run on it is refused) and stores the training set's
            size and fingerprint, which a resume must match.
        json_log: file that gets one JSON line per epoch (on resume, first made to agree with
            the checkpoint's epochs). Both are checked writable when fit() starts.
        settings: the run's settings (a JSON-able dict, e.g. the command line's flags that
            define the run); stored in the checkpoint, and a resume with other values is refused.
        progress: show a tqdm bar with loss, accuracy and images/s.
        log_every: steps between reads of the running loss to the host (and NaN checks);
            default 1 on a CPU (a read costs nothing there), 20 on a GPU.
        preprocess: host batch -> Tensor on the device (default BatchPreprocess(device, dtype)).
        ten_crop, crop_size: evaluate with the paper's ten patches (see evaluate).
        say: where messages go (print by default).
        diagnose: a tinynet.train.diagnose.Diagnosis of the model (per-layer statistics and
            warnings into the JSON log), or None: nothing is measured.
    """

    def __init__(self, model, optimizer, train_loader, test_loader, device, epochs, *, scheduler=None,
                 comm=None, checkpoint_dir=None, json_log=None, progress=True, log_every=None,
                 preprocess=None, ten_crop=False, crop_size=None, settings=None, say=print, diagnose=None):
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"Trainer: epochs={epochs!r}, expected an int >= 1")
        self.comm = comm or SingleProcess()
        if self.comm.size > 1:
            train_loader = train_loader.shard(self.comm.rank, self.comm.size)
            test_loader = test_loader.shard(self.comm.rank, self.comm.size)
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.train_loader, self.test_loader = train_loader, test_loader
        self.device = as_device(device)
        self.epochs = epochs
        self.checkpoint = (None if checkpoint_dir is None else
                           Checkpoint(checkpoint_dir, model, optimizer, scheduler, self.train_loader, self.comm.size,
                                      settings, self.comm.is_main, data_fingerprint(train_loader.dataset)))
        self.json_log = None if json_log is None else os.fspath(json_log)
        self.progress = progress and self.comm.is_main
        self.log_every = log_every or (1 if self.device.type == "cpu" else 20)
        self.preprocess = preprocess or BatchPreprocess(self.device, model.parameters()[0].dtype)
        self.ten_crop, self.crop_size = ten_crop, crop_size
        self.say = say if self.comm.is_main else log.silent
        self.state = TrainingState()
        self.diagnose = diagnose
        self.status = None              # "finished", "interrupted" or "diverged" after fit()

    @property
    def position(self):
        """(epoch, step) of the next batch to run."""
        return self.state.position

    @property
    def history(self):
        """One log record per finished epoch."""
        return self.state.history

    @property
    def checkpoint_path(self):
        return None if self.checkpoint is None else self.checkpoint.path

    def load(self):
        """Restore the run from its checkpoint (weights, optimizer, schedule, generators, position)."""
        if self.checkpoint is None:
            raise ValueError("Trainer.load: no checkpoint_dir was given")
        self.state = self.checkpoint.restore(self.say)

    def fit(self, resume=False, overwrite=False):
        """Train from the start, or from the checkpoint when `resume` is set and one exists.
        Without either flag, a checkpoint folder that holds an unfinished run is refused
        (CheckpointError); `overwrite` replaces it. Returns the history (one log dict per epoch).
        self.status says how it ended."""
        if resume and overwrite:
            raise ValueError("fit: resume and overwrite both set; expected at most one")
        if self.comm.is_main:  # an output that cannot be written is found now, not after an epoch
            if self.checkpoint is not None:
                self.checkpoint.check_writable()
            if self.json_log:
                log.check_writable(self.json_log)
            if self.checkpoint is not None:
                self.checkpoint.lock()
        try:
            if resume:
                self._resume()
            else:
                if self.checkpoint is not None and not overwrite:
                    note = self.checkpoint.unfinished()
                    if note:
                        self.say(note)
                if self.json_log and self.comm.is_main:
                    log.truncate(self.json_log)
            return self._train()
        finally:
            if self.checkpoint is not None:
                self.checkpoint.unlock()

    def _train(self):
        self.comm.broadcast_parameters(self.model.parameters())
        self.status = "finished"
        with StopOnInterrupt(self.say) as stop:
            try:
                while self.position[0] < self.epochs:
                    self._run_epoch(stop)
                    if self._stop_agreed(stop) and self.position[0] < self.epochs:  # a signal during evaluation
                        self.say(f"interrupted after epoch {self.position[0]}: checkpoint saved to "
                                 f"{self.checkpoint_path}; run again with --resume to continue")
                        raise Interrupted
            except Interrupted:
                self.status = "interrupted"
        return self.history

    def _stop_agreed(self, stop):
        """Whether to stop now: this process was signalled or, with several ranks, any rank was
        (one all-reduce of a flag, after every step), so every rank stops after the same step."""
        if self.comm.size > 1:  # (the flag is only read here: a signal may land inside the all-reduce)
            return self.comm.allreduce_sum([float(stop.requested)])[0] > 0
        return stop.requested

    def _resume(self):
        if self.checkpoint is None:
            raise ValueError("fit(resume=True) needs a checkpoint_dir")
        if self.checkpoint.exists():
            self.load()
            epoch, step = self.position
            if epoch >= self.epochs:
                self.say(f"resume: {self.checkpoint_path} is a finished run ({epoch} epochs done, this run "
                         f"asks for {self.epochs}): nothing to train; pass a larger --epochs to train on")
            else:
                self.say(f"resumed from {self.checkpoint_path}: epoch {epoch + 1}, step {step}")
        else:
            self.say(f"resume: no checkpoint at {self.checkpoint_path}; starting from scratch")
        if self.json_log and self.comm.is_main:  # the log holds the checkpoint's epochs, no more, no fewer
            wrong = log.match_history(self.json_log, self.history)
            if wrong:
                self.say(f"resume: the JSON log {self.json_log} did not agree with the checkpoint ({wrong}); "
                         "rewritten from the checkpoint")

    def _run_epoch(self, stop):
        """The steps of one epoch (from the saved position on), then _end_epoch. On Ctrl-C the
        checkpoint gets the last finished step and the generators as that step left them."""
        epoch, start = self.position
        total = len(self.train_loader)
        self.model.train()
        bar = log.progress_bar(self.progress, total, start, f"epoch {epoch + 1}/{self.epochs}")
        running = _RunningSums(self.state.sums, self.comm, read_through=start)
        rng_state, interrupted, t_start = tn_random.get_state(), False, time.perf_counter()
        try:
            with self.device.context():
                for xb, yb in self.train_loader.iter_epoch(epoch, start):
                    rng_state = self._step(xb, yb, running, stop)
                    step = self.position[1]
                    if step % self.log_every == 0 or step == total:
                        self._read(running, epoch, step)
                        log.show_running(bar, running.host, running.host["seconds"] + time.perf_counter() - t_start)
                    bar.update(1)
                    if self._stop_agreed(stop):
                        raise Interrupted
            self._read(running, epoch, self.position[1])
        except (KeyboardInterrupt, Interrupted):
            interrupted = True
        finally:
            bar.close()
        running.host["seconds"] += time.perf_counter() - t_start
        running.host["wait"] += self.train_loader.wait_seconds
        if interrupted:
            running.read()  # the finished steps' sums, unchecked: they go into the checkpoint
            self._save_interrupted(rng_state)
            raise Interrupted
        self._end_epoch(epoch)

    def _step(self, xb, yb, running, stop):
        """One SGD step on a batch. The position advances with the weights, and the generators'
        state after the step is returned with them, so that a checkpoint pairs all three."""
        epoch, step = self.position
        x, labels = self.preprocess(xb), self.preprocess.labels(yb)
        if self.diagnose is not None:
            self.diagnose.begin(epoch, step)
        if self.comm.size > 1:  # dropout draws the global batch's masks and keeps this rank's rows
            with tn_random.batch_rows(*self.train_loader.rows(step)):
                logits = self.model(x)
        else:
            logits = self.model(x)
        loss = F.softmax_cross_entropy(logits, labels)
        if self.device.type == "cpu":  # reading costs nothing here: stop before a bad update
            value = float(loss.data)
            if self.comm.size > 1:     # every rank must stop together
                value = float(self.comm.allreduce_sum([value])[0])
            self._check_finite(value, epoch, step + 1, step + 1)
        self.optimizer.zero_grad()
        if self.comm.size > 1:  # d(global mean)/d(local mean) = n_r / n; the all-reduce then divides by size
            share = len(yb) * self.comm.size / self.train_loader.global_batch_size(step)
            with self.device.context():
                loss.backward(self.device.xp.asarray(share, dtype=loss.dtype))
        else:
            loss.backward()
        with stop.deferred():          # all the weights move, or none
            self.comm.allreduce_gradients(self.model.parameters())
            if self.diagnose is not None:
                self.diagnose.gradients()
            self.optimizer.step()
            if self.diagnose is not None:
                self.diagnose.updated()
            running.add(loss.data, logits.data, labels, len(yb))
            self.state.position = (epoch, step + 1)
            return tn_random.get_state()

    def _read(self, running, epoch, step):
        """Bring the device's sums of the steps since the last read to the host (checked finite)."""
        first = running.read_through + 1
        loss_sum = running.read()
        if loss_sum is not None:
            self._check_finite(loss_sum, epoch, first, step)
        running.read_through = step

    def _check_finite(self, value, epoch, first_step, last_step):
        """Raise TrainingDiverged unless `value` (a loss, or a sum of losses of steps
        first_step..last_step, 1-based) is finite."""
        if math.isfinite(value):
            return
        where = (f"step {last_step}" if first_step == last_step else
                 f"one of steps {first_step}..{last_step} (the loss is read every {self.log_every} steps)")
        self._diverged(f"the loss is {value} at epoch {epoch + 1}, {where} of {len(self.train_loader)}")

    def _diverged(self, what):
        """Raise TrainingDiverged: what went wrong, and which checkpoint is the last good one."""
        last = self.history[-1]["epoch"] if self.history else None
        kept = (f"The last good checkpoint, {self.checkpoint_path} (end of epoch {last}), is kept"
                if self.checkpoint and last is not None and self.checkpoint.exists()
                else "No checkpoint had been written yet")
        self.status = "diverged"
        raise TrainingDiverged(f"training diverged: {what}; stopped. {kept}. Try a lower learning "
                               f"rate (lr is {self.optimizer.lr:g}).")

    def _save_interrupted(self, rng_state):
        """Write the checkpoint of the last finished step: its position and sums, and the
        generators as it left them (a step cut short in its forward has drawn dropout masks)."""
        epoch, step = self.position
        if self.checkpoint is None:
            self.say(f"interrupted at epoch {epoch + 1}, step {step} (no checkpoint_dir: nothing saved)")
            return
        self.checkpoint.save(self.state, self.epochs, rng_state)  # every rank: only the main one writes
        self.say(f"interrupted at epoch {epoch + 1}, after step {step}: checkpoint saved to "
                 f"{self.checkpoint_path}; run again with --resume to continue")

    def _end_epoch(self, epoch):
        """Evaluate, step the schedule, write the checkpoint, then log the epoch (a failed save
        leaves no log line that a resume would write a second time). A test loss that is NaN or
        inf is divergence: that epoch is neither checkpointed nor logged."""
        t0 = time.perf_counter()
        test = evaluate(self.model, self.test_loader, self.device, self.ten_crop, self.crop_size,
                        self.preprocess, comm=self.comm)
        if not math.isfinite(test["loss"]):
            self._diverged(f"the test loss is {test['loss']} after epoch {epoch + 1}")
        record = log.epoch_record(epoch, self.state.sums, test, time.perf_counter() - t0, self.optimizer.lr)
        if self.diagnose is not None:
            self.diagnose.end_epoch(record)
        if self.scheduler is not None:
            self.scheduler.step(test["loss"])
        self.state = TrainingState((epoch + 1, 0), zero_sums(), self.history + [record])
        if self.checkpoint is not None:
            self.checkpoint.save(self.state, self.epochs)  # every rank: only the main one writes
        if self.comm.is_main and self.json_log:  # after the checkpoint: a failed save logs nothing
            try:
                log.append_json_line(self.json_log, record)
            except log.LogNotWritable as err:
                raise log.LogNotWritable(f"{err}; the checkpoint of epoch {epoch + 1} is saved, and --resume "
                                         "completes the log from it once there is room") from None
        self.say(log.format_epoch(record, self.epochs))

    def profile_step(self):
        """Time training steps on the next epoch's first batch, layer by layer, and print the table
        (tinynet.profile; medians of PROFILE_REPEATS). Weights, gradients and the random streams
        are left as they were."""
        xb, yb = self._first_batch()
        rows = tn_profile.profile_step(self.model, self.preprocess(xb), self.preprocess.labels(yb),
                                       repeats=PROFILE_REPEATS)
        self.model.zero_grad()
        self.say(f"one training step, layer by layer (batch {len(yb)}, medians of {PROFILE_REPEATS} steps):\n"
                 f"{tn_profile.format_profile(rows)}")

    def warm_up(self):
        """One forward and backward on the next epoch's first batch, so that compiling (or
        loading) the kernels happens before the clock of the first epoch starts: its ETA and
        img/s then measure training. Weights, gradients and the random streams are left as they
        were. Returns the seconds it took."""
        t0 = time.perf_counter()
        xb, yb = self._first_batch()
        with self.device.context():
            tn_profile.profile_step(self.model, self.preprocess(xb), self.preprocess.labels(yb), warmup=0, repeats=1)
        self.model.zero_grad()
        return time.perf_counter() - t0

    def _first_batch(self):
        batches = self.train_loader.iter_epoch(self.position[0])
        xb, yb = next(batches)
        batches.close()  # stops the loader's threads
        return xb, yb


# --profile times this many steps and prints each layer's median: one step on a shared machine
# can be off by tens of percent. The steps leave the run's random streams alone (profile_step).
PROFILE_REPEATS = 10


class _RunningSums:
    """The running epoch's loss (summed over images), correct answers and images: added to on
    the device every step, brought to the host (`host`, checkpoint.zero_sums's keys) by read(),
    the only synchronisation of the step loop. With several ranks read() adds them over ranks."""

    def __init__(self, host, comm, read_through):
        self.host, self.comm = host, comm
        self.read_through = read_through  # the last step (1-based) whose sums are on the host
        self._zero()

    def _zero(self):
        self.loss, self.correct, self.images = 0.0, 0, 0

    def add(self, loss, logits, labels, n):
        self.loss = self.loss + loss.astype(np.float64) * n
        self.correct = self.correct + (logits.argmax(axis=1) == labels).sum()
        self.images += n

    def read(self):
        """Move the unread sums to the host; returns their loss sum (None when nothing was unread)."""
        if not self.images:
            return None
        sums = [float(self.loss), float(self.correct), self.images]
        if self.comm.size > 1:
            sums = self.comm.allreduce_sum(sums)
        self.host["loss"] += sums[0]
        self.host["correct"] += sums[1]
        self.host["images"] += sums[2]
        self._zero()
        return sums[0]



def fit(model, optimizer, train_loader, test_loader, device, epochs, resume=False, overwrite=False, **options):
    """Trainer(model, optimizer, train_loader, test_loader, device, epochs, **options).fit(resume, overwrite)."""
    return Trainer(model, optimizer, train_loader, test_loader, device, epochs, **options).fit(resume, overwrite)
