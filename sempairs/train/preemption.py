"""Preemption: SIGUSR1 or SIGTERM asks a run to checkpoint where it is and exit with ``PREEMPTED_STATUS``.

SLURM warns a job before it ends it (``--signal=B:USR1@120``, forwarded to the tasks by the batch
script; a requeue or ``scancel`` sends SIGTERM), and torchrun passes a SIGTERM on to its workers.
While :class:`PreemptionSignals` is active those signals only set a flag; the training loop reads
it at its next logged step (``train.log_every``), where the processes already agree on the loss,
so a signal seen by any one process stops them all after the same step, at no extra collective.
Process 0 then writes one checkpoint holding the position within the epoch (see
``sempairs.train.loop``) and every process raises :class:`Preempted`; the command line exits with
``PREEMPTED_STATUS``, and the same command with ``--resume auto`` continues exactly.
"""

from __future__ import annotations

import signal
import threading

from sempairs.errors import SempairsError

PREEMPTED_STATUS = 75  # EX_TEMPFAIL (sysexits.h): try again later
SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class Preempted(SempairsError, RuntimeError):
    """The run saved its position after a preemption signal and stopped; the same command with ``--resume auto`` continues it.

    Every process raises it after the same step; ``rank`` is the raising process's. ``exit_status``:
    the status a command ends with.
    """

    exit_status = PREEMPTED_STATUS

    def __init__(self, message: str, rank: int = 0):
        super().__init__(message)
        self.rank = rank


class PreemptionSignals:
    """While active (``with``), SIGUSR1 and SIGTERM set :attr:`received` (the signal's name) instead of ending the process.

    The previous handlers come back on exit. Handlers can only be installed in the main thread: in
    another thread this does nothing (the signals keep their usual effect).
    """

    def __init__(self):
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.received = signal.Signals(signum).name

    def __enter__(self) -> PreemptionSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
