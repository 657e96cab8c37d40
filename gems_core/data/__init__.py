"""The data layer: distributions (synthetic, local folders, the paper's datasets), class splits,
uint8 caches and the task samplers that draw N-way K-shot tasks from them."""
from .images import ClassImages
from .sources import Distribution, load_distribution, load_distributions
from .splits import SPLITS
from .tasks import FixedTasks, SplitImages, TaskBatch, TaskSampler

__all__ = ["ClassImages", "Distribution", "FixedTasks", "SPLITS", "SplitImages", "TaskBatch", "TaskSampler",
           "check_against_data", "load_distribution", "load_distributions"]


def check_against_data(params: dict, distributions: list[Distribution]) -> None:
    """Raise ParameterError if a split cannot supply ``ways`` classes with shots + queries images each."""
    from ..params import ParameterError

    need = params["shots"] + params["queries"]
    for dist in distributions:
        for split in SPLITS:
            usable = int((dist.splits[split].counts() >= need).sum())
            if usable < params["ways"]:
                raise ParameterError(
                    f"parameter 'ways' = {params['ways']} is larger than the {usable} classes of "
                    f"{dist.name}/{split} that have shots + queries = {need} images; valid: ways <= {usable}, "
                    f"or fewer shots/queries, or other split_fractions")
