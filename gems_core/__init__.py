"""gems_core: the library under the GEMS kit's notebooks (data, models, learners, training, results)."""

__version__ = "0.1.0"
