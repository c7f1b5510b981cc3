"""Ctrl-C or SIGTERM during training: the first one asks the loop to stop at the next step
boundary (with a consistent state to save), a second one stops at once - except inside the
parameter update, which it lets finish first, so that no checkpoint ever sees half of the
weights moved.

SIGTERM is what batch schedulers (Slurm, Kubernetes) and `timeout` send before they kill a job,
and what mpirun passes on to its ranks: it is treated exactly like Ctrl-C, so a run that is told
to end saves its checkpoint first. Several ranks agree on the step to stop at (Trainer asks
`comm` whether any rank was signalled after every step), so each rank stops after the same step."""
import signal

# The signals that ask a run to stop, and how a message names them.
STOP_SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class StopOnInterrupt:
    """While active (a `with` block), the first Ctrl-C or SIGTERM only sets `requested`; a second
    one raises KeyboardInterrupt, at once or, inside a `deferred()` block, when that block ends.
    Signal handlers can only be set from the main thread; elsewhere Ctrl-C raises as usual."""

    def __init__(self, say):
        self.requested, self.say, self.previous = False, say, {}
        self._deferring = self._pending = False

    def _handler(self, signum, frame):
        if not self.requested:
            self.requested = True
            name = STOP_SIGNALS.get(signum, f"signal {signum}")
            self.say(f"\n{name}: finishing this step, then saving a checkpoint ({name} again to stop at once)")
        elif self._deferring:
            self._pending = True
        else:
            raise KeyboardInterrupt

    def deferred(self):
        """`with stop.deferred():` a second Ctrl-C inside the block raises only when it ends."""
        return _Deferred(self)

    def __enter__(self):
        for signum in STOP_SIGNALS:
            try:
                self.previous[signum] = signal.signal(signum, self._handler)
            except ValueError:  # not the main thread
                break
        return self

    def __exit__(self, *exc):
        for signum, previous in self.previous.items():
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)  # None: set outside Python
        self.previous = {}


class _Deferred:
    def __init__(self, stop):
        self.stop = stop

    def __enter__(self):
        self.stop._deferring = True

    def __exit__(self, *exc):
        self.stop._deferring = False
        if self.stop._pending and exc[0] is None:
            self.stop._pending = False
            raise KeyboardInterrupt


class Interrupted(Exception):
    """Raised inside the loop at a step boundary after Ctrl-C; fit() catches it."""
