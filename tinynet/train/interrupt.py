"""Ctrl-C during training: the first one asks the loop to stop at the next step boundary (with a
consistent state to save), a second one stops at once - except inside the parameter update,
which it lets finish first, so that no checkpoint ever sees half of the weights moved."""
import signal


class StopOnInterrupt:
    """While active (a `with` block), the first Ctrl-C only sets `requested`; a second one raises
    KeyboardInterrupt, at once or, inside a `deferred()` block, when that block ends.
    Signal handlers can only be set from the main thread; elsewhere Ctrl-C raises as usual."""

    def __init__(self, say):
        self.requested, self.say, self.previous = False, say, None
        self._deferring = self._pending = False

    def _handler(self, signum, frame):
        if not self.requested:
            self.requested = True
            self.say("\nCtrl-C: finishing this step, then saving a checkpoint (Ctrl-C again to stop at once)")
        elif self._deferring:
            self._pending = True
        else:
            raise KeyboardInterrupt

    def deferred(self):
        """`with stop.deferred():` a second Ctrl-C inside the block raises only when it ends."""
        return _Deferred(self)

    def __enter__(self):
        try:
            self.previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread
            self.previous = None
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


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
