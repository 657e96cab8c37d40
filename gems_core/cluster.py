"""The sweep's Slurm settings (``slurm_*``): what a job array asks of the cluster; the sweep's flags
(``python -m gems_core.sweep --executor slurm``) override them. ``Config`` inherits them and
``params.SCHEMA`` collects them; none shapes a run's outcome."""

from __future__ import annotations

from dataclasses import dataclass

from .schema import between, setting


def _sbatch_options(v) -> str | None:
    return None if all(isinstance(o, str) and "=" in o for o in v) else "must be KEY=VALUE strings"


@dataclass(frozen=True, kw_only=True)
class SlurmSettings:
    """Where and how the sweep's job array runs on a Slurm cluster."""

    slurm_partition: str = setting(
        str, "", "partition the sweep's job array is submitted to (empty: the cluster's default)", shapes=False
    )
    slurm_time_limit_min: int = setting(
        int,
        240,
        "time limit of each job, in minutes; a job that reaches it requeues itself and resumes",
        between(1, 100_000),
        shapes=False,
    )
    slurm_gpus_per_task: int = setting(
        int, 1, "GPUs per job (one run); 0, or device: cpu, asks for none", between(0, 16), shapes=False
    )
    slurm_array_parallelism: int = setting(
        int, 16, "jobs of the array running at once", between(1, 10_000), shapes=False
    )
    slurm_max_requeues: int = setting(
        int, 10, "times a job may reach its time limit and requeue itself", between(0, 1000), shapes=False
    )
    slurm_sbatch_options: tuple[str, ...] = setting(
        list,
        [],
        "extra sbatch options as KEY=VALUE strings, e.g. ['qos=high', 'account=lab']",
        _sbatch_options,
        shapes=False,
    )
