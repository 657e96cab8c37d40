"""gems_core: the library under the GEMS kit's notebooks (data, models, learners, training, results)."""
import warnings

# learn2learn imports gym, which warns at import that it is unmaintained; the kit never uses gym.
warnings.filterwarnings("ignore", message=".*Gym has been unmaintained.*")

__version__ = "0.1.0"
