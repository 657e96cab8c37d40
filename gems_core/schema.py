"""What a parameter is (``Param``) and how a group of them is declared beside the code they set (``setting``).

The kit's parameters are one flat namespace (a parameters file, ``Config``, run ids). The ones a
learner or the Slurm executor alone reads are declared in a frozen settings dataclass in that module
(``BMPSettings`` in learners/bmp.py, ``SlurmSettings`` in cluster.py): each field's default, meaning and
check ride in its metadata (``setting``); ``Config`` inherits those dataclasses, and ``params.SCHEMA``
collects them (``params_of``). This module imports nothing of the kit, so every module may declare some.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from .errors import KitError

Check = Callable[[Any], str | None]  # returns an error text, or None if valid
LearnerClass = type  # what a learner's parameter names (``Param.type`` shadows the builtin in the class)


class ParameterError(KitError, ValueError):
    """A parameter (or parameters file) is invalid; the message says which and what is valid."""


@dataclass(frozen=True)
class Param:
    """One parameter: its type in a parameters file, default, a one-line meaning, an optional extra check,
    and whether it shapes a run's outcome (its weights or test results), which decides whether it is in the
    run's id (``runs.run_id``). Every parameter must say so: there is no default.

    ``affects_run`` is True (every method's runs), False (bookkeeping: where things live, devices and
    numerics that change rounding only, validation, which runs to make, cluster resources), or a learner
    class (only the runs of methods with that learner, e.g. BMP's embedding; ``params.shapes``)."""

    type: type | tuple
    default: Any
    doc: str
    check: Check | None = None
    affects_run: bool | LearnerClass = field(kw_only=True)
    neutral: Any = field(default=None, kw_only=True)  # a value at which runs are as before the parameter
    # existed: there it stays out of run ids, so adding it re-keys no run (None: no such value)


def setting(kind: type, default: Any, doc: str, check: Check | None = None, *, shapes: bool = True) -> Any:
    """A field of a settings dataclass: its default (a list's as a tuple: the frozen value ``Config``
    holds), with the parameter's file type, meaning, check and whether it shapes the runs of the learner
    it sits beside (``params_of``). Typed ``Any`` so it stands where the field's own type is expected."""
    stored = tuple(default) if isinstance(default, list) else default
    return field(default=stored, metadata={"kind": kind, "doc": doc, "check": check, "shapes": shapes})


def params_of(settings: type, learner: type | None = None) -> dict[str, Param]:
    """The ``Param`` of every field of a settings dataclass (``setting``): one that shapes runs shapes those
    of ``learner`` (or none, if no learner)."""
    out = {}
    for f in fields(settings):
        m = f.metadata
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        if f.default is MISSING:
            raise TypeError(f"{settings.__name__}.{f.name} has no default: declare it with setting()")
        affects: bool | type = learner if m["shapes"] and learner is not None else False
        out[f.name] = Param(m["kind"], default, m["doc"], m["check"], affects_run=affects)
    return out


SHOWN_CHARACTERS = 80  # of a bad value in a message


def shown(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut to ``SHOWN_CHARACTERS`` (a value may be huge)."""
    text = (
        repr(value)
        if not isinstance(value, list | dict) or len(value) < 1000
        else f"<{type(value).__name__} of {len(value)}>"
    )
    return text if len(text) <= SHOWN_CHARACTERS else text[: SHOWN_CHARACTERS - 3] + "..."


# --- checks -------------------------------------------------------------------------------------------
def between(lo, hi) -> Check:
    def check(v):
        return None if lo <= v <= hi else f"must be between {lo} and {hi}"

    return check


def one_of(*choices) -> Check:
    def check(v):
        return None if v in choices else f"must be one of {list(choices)}"

    return check
