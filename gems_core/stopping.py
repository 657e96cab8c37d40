"""Stopping a training run on request: SIGTERM (Slurm's requeue, ``scancel``, a dying sweep) sets ``STOP``;
the training loop saves a checkpoint after its current iteration and raises ``Stopped``."""

from __future__ import annotations

import signal
import threading

STOP = threading.Event()  # set by SIGTERM in a sweep's job: save at the next iteration and stop


class Stopped(Exception):
    """Training stopped on request (``stop_on_sigterm``) after saving a checkpoint at ``iteration``."""

    def __init__(self, iteration: int):
        super().__init__(f"stopped at iteration {iteration} on SIGTERM; its checkpoint is saved there")
        self.iteration = iteration


def stop_on_sigterm() -> None:
    """From now on SIGTERM makes the training loop save a checkpoint after its current iteration and raise
    ``Stopped``, so the next attempt loses no iteration."""
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
