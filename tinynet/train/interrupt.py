"""Ctrl-C or SIGTERM during training: the first one asks the loop to stop at the next step
boundary (with a consistent state to save), a second one stops at once - except inside the
parameter update, which it lets finish first, so that no checkpoint ever sees half of the
weights moved.

SIGTERM is what batch schedulers (Slurm, Kubernetes) and `timeout` send before they kill a job,
and what mpirun passes on to its ranks: it is treated exactly like Ctrl-C, so a run that is told
to end saves its checkpoint first. Several ranks agree on the step to stop at (Trainer asks
`comm` whether any rank was signalled after every step), so each rank stops after the same step.

mpirun itself signalled (Open MPI 4, measured with 4.1.4): it sends its ranks SIGCONT at once, then
SIGTERM `odls_base_sigkill_timeout` seconds later (1 by default) immediately followed by SIGKILL.
So under Open MPI's launcher SIGCONT is the notice that counts, and it asks for a stop too: the
ranks finish the step and save within that timeout (give it time: --mca odls_base_sigkill_timeout 60)."""
import os
import signal

# The signals that ask a run to stop, and how a message names them.
STOP_SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
OPEN_MPI_NOTICE = {signal.SIGCONT: "mpirun was signalled (SIGCONT)"}


def stop_signals():
    """STOP_SIGNALS, and under Open MPI's launcher (OMPI_COMM_WORLD_RANK set) its SIGCONT notice."""
    return {**STOP_SIGNALS, **(OPEN_MPI_NOTICE if "OMPI_COMM_WORLD_RANK" in os.environ else {})}


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
            name = stop_signals().get(signum, f"signal {signum}")
            self.say(f"\n{name}: finishing this step, then saving a checkpoint ({name} again to stop at once)")
        elif self._deferring:
            self._pending = True
        else:
            raise KeyboardInterrupt

    def deferred(self):
        """`with stop.deferred():` a second Ctrl-C inside the block raises only when it ends."""
        return _Deferred(self)

    def __enter__(self):
        for signum in stop_signals():
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
