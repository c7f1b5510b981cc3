"""Why isn't it learning: per-layer statistics of a training run, and warnings for known failures.

With examples/train_alexnet.py --diagnose N the Trainer gets a Diagnosis. Every N steps it records,
per layer (the model's leaf modules, named as their parameters are):

    mean, std     of the layer's output over the batch
    dead          ReLU layers: the share of units that are zero for every image of the batch
    grad_norm     ||dL/dW|| over the layer's parameters, after the backward
    update_ratio  ||W_after - W_before|| / ||W_before|| of the weight over the step (cs231n's rule
                  of thumb: about 1e-3)

The records of an epoch go into that epoch's JSON log line ("diagnose": [...]) and so onto the
explain page. A warning is one printed line (each kind once per layer) and is logged ("warnings"):

    the train loss within 1% of ln(classes) after an epoch    the net predicts the uniform guess
    the total gradient norm growing 10x in one step            (checked every step) lr too large
    more than half of a ReLU layer's units dead                dead ReLUs
    an update ratio above 1e-1 or below 1e-5                   lr too large / too small

Without --diagnose the Trainer holds None and nothing here runs: the cost is one `is None` test
per step. With it, the layers' forward is wrapped to look at their outputs on recorded steps
only; every step costs one sum of squares over the gradients (the 10x check).
"""
import math

from .. import nn

DEFAULT_EVERY = 100          # steps between records when --diagnose has no N
LOSS_BAND = 0.01             # "within 1% of ln(classes)"
GROWTH = 10.0                # gradient norm growth in one step that warns
DEAD = 0.5                   # share of dead units that warns
RATIO_HIGH, RATIO_LOW = 1e-1, 1e-5


class Diagnosis:
    """The per-layer statistics of one training run (see the module docstring).

    model: the net being trained; every: steps between records; classes: for the ln(classes)
    check (default: the outputs of the model's last Linear layer); say: where warnings go."""

    def __init__(self, model, every=DEFAULT_EVERY, classes=None, say=print):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"Diagnosis: every={every!r}, expected a positive number of steps")
        self.model, self.every, self.classes, self.say = model, every, classes, say
        self.layers = [(name, m) for name, m in model.named_modules() if name and not m._modules]
        if classes is None:
            classes = [m for _, m in self.layers if isinstance(m, nn.Linear)][-1].out_features
        self.classes = classes
        self.records, self.warnings, self._warned = [], [], set()
        self.active, self._acts, self._before, self._last_norm = False, {}, {}, None
        self.step = self.epoch = 0
        for name, layer in self.layers:
            if not isinstance(layer, (nn.Dropout, nn.Flatten)):
                self._watch(name, layer)

    def _watch(self, name, layer):
        """Wrap layer.forward: on recorded steps, keep its output's statistics."""
        forward = layer.forward

        def watched(*args, **kwargs):
            out = forward(*args, **kwargs)
            if self.active:
                y = out.data
                stats = {"mean": float(y.mean()), "std": float(y.std())}
                if isinstance(layer, nn.ReLU):
                    stats["dead"] = float(1.0 - (y > 0).any(axis=0).mean())   # zero for every image
                self._acts[name] = stats
            return out
        layer.forward = watched

    def _warn(self, key, text):
        if key in self._warned:
            return
        self._warned.add(key)
        line = f"diagnose: {text}"
        self.warnings.append(line)
        self.say(line)

    # ------------------------------------------------------------ the Trainer's calls, in step order

    def begin(self, epoch, step):
        """Before the forward of step `step` (0-based in the epoch): record it every `every` steps."""
        self.epoch, self.step = epoch, step
        self.active = step % self.every == 0
        self._acts = {}

    def gradients(self):
        """After the backward, before the update: the gradient norms (and the 10x check)."""
        xp = None
        total = 0.0
        norms = {}
        for name, layer in self.layers:
            params = [p for p in layer.parameters() if p.grad is not None]
            if not params:
                continue
            xp = params[0].device.xp
            sq = sum(float(xp.sum(p.grad.astype(xp.float64) ** 2)) for p in params)
            total += sq
            norms[name] = math.sqrt(sq)
            if self.active and getattr(layer, "weight", None) is not None:
                self._before[name] = layer.weight.data.copy()
        total = math.sqrt(total)
        if self._last_norm and self._last_norm > 0 and total > GROWTH * self._last_norm:
            self._warn("growth", f"epoch {self.epoch + 1}, step {self.step + 1}: the gradient norm grew "
                                 f"{total / self._last_norm:.0f}x in one step ({self._last_norm:.3g} -> {total:.3g}); "
                                 "the learning rate may be too large")
        self._last_norm = total
        self._norms = norms

    def updated(self):
        """After the update: the update ratios; on recorded steps, the record and its warnings."""
        if not self.active:
            return
        layers = {}
        for name, layer in self.layers:
            stats = dict(self._acts.get(name, {}))
            if name in self._norms:
                stats["grad_norm"] = self._norms[name]
            if name in self._before:
                w0 = self._before.pop(name)
                xp = layer.weight.device.xp
                denom = float(xp.linalg.norm(w0.ravel().astype(xp.float64)))
                step = float(xp.linalg.norm((layer.weight.data - w0).ravel().astype(xp.float64)))
                r = step / denom if denom > 0 else None     # all-zero weights have no ratio
                stats["update_ratio"] = r
                if r is not None and (r > RATIO_HIGH or r < RATIO_LOW):
                    side = "above 1e-1: the learning rate may be too large" if r > RATIO_HIGH else \
                        "below 1e-5: the learning rate may be too small (or the weights zero)"
                    self._warn(("ratio", name), f"epoch {self.epoch + 1}, step {self.step + 1}: {name}'s "
                                                f"update / weight norm ratio is {r:.2g}, {side}")
            if stats.get("dead", 0) > DEAD:
                self._warn(("dead", name), f"epoch {self.epoch + 1}, step {self.step + 1}: {name}: "
                                           f"{stats['dead']:.0%} of its units are zero for the whole batch (dead ReLUs)")
            if stats:
                layers[name] = {k: (v if v is not None and math.isfinite(v) else None) for k, v in stats.items()}
        self.records.append({"epoch": self.epoch + 1, "step": self.step + 1, "layers": layers})
        self.active = False

    def end_epoch(self, record):
        """At the end of an epoch: the ln(classes) check on its train loss; adds this epoch's
        records and warnings to the JSON log `record` (and empties them)."""
        chance = math.log(self.classes)
        if abs(record["train_loss"] - chance) <= LOSS_BAND * chance:
            self._warn(("loss", record["epoch"]), f"epoch {record['epoch']}: the train loss {record['train_loss']:.4f} "
                                                  f"is within 1% of ln({self.classes}) = {chance:.4f}: the net "
                                                  "still guesses uniformly (learning rate too small? weights zero?)")
        record["diagnose"], record["warnings"] = self.records, self.warnings
        self.records, self.warnings = [], []
        return record
