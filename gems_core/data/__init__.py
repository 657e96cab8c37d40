"""The data layer: distributions (synthetic, local folders, the paper's datasets), class splits,
uint8 caches and the task samplers that draw N-way K-shot tasks from them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .images import ClassImages
from .sources import Distribution, load_distribution, load_distributions
from .splits import SPLITS
from .tasks import FixedTasks, SplitImages, TaskBatch, TaskSampler

if TYPE_CHECKING:  # the parameters module imports the learners
    from ..params import Config

__all__ = [
    "ClassImages",
    "Distribution",
    "FixedTasks",
    "SPLITS",
    "SplitImages",
    "TaskBatch",
    "TaskSampler",
    "check_against_data",
    "load_distribution",
    "load_distributions",
]


def check_against_data(params: Config, distributions: list[Distribution]) -> None:
    """Raise ParameterError if a split drops more than ``max_dropped_classes`` of the classes it names
    (absent from the data, or with fewer than shots + queries images), or cannot supply ``ways`` classes."""
    from ..params import ParameterError

    need = params.shots + params.queries
    usable = {}
    for dist in distributions:
        for split in SPLITS:
            named = len(dist.splits[split].class_names) + len(dist.missing.get(split, []))
            missing, too_few = dist.missing.get(split, []), dist.too_few(split, need)
            dropped = len(missing) + len(too_few)
            if named and dropped / named > params.max_dropped_classes:
                raise ParameterError(
                    f"{dist.name}/{split} drops {dropped} of its {named} classes ({len(missing)} absent from the data"
                    f"{': ' + ', '.join(missing[:5]) + ('...' if len(missing) > 5 else '') if missing else ''}; "
                    f"{len(too_few)} with fewer than shots + queries = {need} images), more than "
                    f"max_dropped_classes = {params.max_dropped_classes}; check the data under data_root, "
                    "or use fewer shots/queries, or raise max_dropped_classes"
                )
            usable[f"{dist.name}/{split}"] = named - dropped
    smallest = min(usable, key=lambda name: usable[name])
    if usable[smallest] < params.ways:
        raise ParameterError(
            f"parameter 'ways' = {params.ways} is larger than the {usable[smallest]} classes of {smallest} that "
            f"have shots + queries = {need} images (the fewest of any split); valid: ways <= {usable[smallest]}, "
            "or fewer shots/queries, or other split_fractions"
        )
