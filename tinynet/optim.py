"""SGD with the paper's update rule, and learning-rate schedules.

Section 5 of the paper:
    v <- momentum * v - weight_decay * lr * w - lr * dL/dw
    w <- w + v
with momentum 0.9, weight decay 0.0005, lr 0.01 divided by 10 when validation error stops improving.
(PyTorch's SGD puts lr outside the velocity, v <- m v + g + wd w; w <- w - lr v. The two agree
while lr is constant and differ for one step after lr changes.)
"""
import numpy as np

from .autograd import no_grad


class SGD:
    def __init__(self, params, lr=0.01, momentum=0.9, weight_decay=5e-4):
        self.params = list(params)
        if not self.params:
            raise ValueError("SGD: got an empty parameter list")
        seen = {}
        for i, p in enumerate(self.params):  # twice in the list, it would move twice a step (PyTorch refuses too)
            if id(p) in seen:
                raise ValueError(f"SGD: parameter {i} is parameter {seen[id(p)]} again (shape {tuple(p.shape)}); "
                                 "expected each parameter once")
            seen[id(p)] = i
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"SGD: {name} must be a non-negative number, got {value!r}")
        if momentum >= 1:  # v <- momentum * v - ... never forgets an old gradient: the steps grow without bound
            raise ValueError(f"SGD: momentum must be below 1, got {momentum!r} (the paper's is 0.9)")
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.velocity = [None] * len(self.params)

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @no_grad()
    def step(self):
        """One update of every parameter that has a gradient, by the backend's fused kernel."""
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            with p.device.context():
                if self.velocity[i] is None or self.velocity[i].shape != p.data.shape:
                    self.velocity[i] = p.device.xp.zeros_like(p.data)
                p.device.backend.sgd_update_(p.data, p.grad, self.velocity[i], self.lr,
                                             self.momentum, self.weight_decay)

    def state_dict(self):
        """lr, momentum, weight decay and every velocity (as NumPy, None where never stepped)."""
        velocity = [None if v is None else (v.get() if hasattr(v, "get") else np.array(v)) for v in self.velocity]
        return {"lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay, "velocity": velocity}

    def load_state_dict(self, state):
        if len(state["velocity"]) != len(self.params):
            raise ValueError(f"SGD.load_state_dict: state has {len(state['velocity'])} velocities, "
                             f"optimizer has {len(self.params)} parameters")
        self.lr, self.momentum, self.weight_decay = state["lr"], state["momentum"], state["weight_decay"]
        for i, (p, v) in enumerate(zip(self.params, state["velocity"])):
            if v is None:
                self.velocity[i] = None
                continue
            with p.device.context():
                self.velocity[i] = p.device.xp.asarray(np.asarray(v, dtype=p.dtype))


class StepLR:
    """lr = lr0 * gamma ** (epoch // step_size): divide by 10 every step_size epochs."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        if not 0 < gamma < float("inf"):  # gamma <= 0 makes the rate 0 or negative: ascent, not descent
            raise ValueError(f"StepLR: gamma must be a positive number (0.1 divides by 10), got {gamma!r}")
        self.optimizer, self.step_size, self.gamma = optimizer, step_size, gamma
        self.base_lr, self.epoch = optimizer.lr, 0

    def step(self, metric=None):
        self.epoch += 1
        self.optimizer.lr = self.base_lr * self.gamma ** (self.epoch // self.step_size)

    def state_dict(self):
        return {"base_lr": self.base_lr, "epoch": self.epoch}

    def load_state_dict(self, state):
        self.base_lr, self.epoch = state["base_lr"], state["epoch"]


class ReduceLROnPlateau:
    """The paper's schedule: divide lr by 10 (factor 0.1) when the monitored loss has not
    improved by more than `threshold` (relative) for `patience` epochs."""

    def __init__(self, optimizer, factor=0.1, patience=1, threshold=1e-3, min_lr=1e-6):
        self.optimizer, self.factor, self.patience = optimizer, factor, patience
        self.threshold, self.min_lr = threshold, min_lr
        self.best, self.bad_epochs = float("inf"), 0

    def step(self, metric):
        if metric < self.best * (1 - self.threshold):
            self.best, self.bad_epochs = metric, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.optimizer.lr = max(self.optimizer.lr * self.factor, self.min_lr)
            self.bad_epochs = 0

    def state_dict(self):
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state):
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]
