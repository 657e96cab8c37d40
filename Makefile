# Two commands do everything on a fresh machine (Python 3.11 with pip):
#   make demo   set up, then run the notebook pipeline on the embedded demo data (CPU)
#   make test   set up, then run the test suite
#   make test-fast   the unit tests alone, for the edit-test loop
#   make lint   ruff's lint and format checks and mypy's type check (CI runs them before the tests)
#   make gpu-check   on a GPU machine: correctness on CUDA, then speed and memory at the paper's settings
#   make lab    JupyterLab on the project
#   make data DATASETS=cub,dtd [DATA_ROOT=data]   fetch, check and lay out the paper's datasets (docs/data.md)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.gems-installed

.PHONY: setup demo test test-fast lint gpu-check lab data clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml tools/install_learn2learn.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	PYTHON=$(abspath $(PY)) bash tools/install_learn2learn.sh
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -c "import learn2learn, gems_core, torch; print('environment ready: torch', torch.__version__)"
	touch $(STAMP)

demo: setup
	$(PY) -m gems_core.pipeline parameters/demo.yaml

DATASETS ?= all
DATA_ROOT ?= data
MANIFEST ?= gems_core/data/manifest.json
data: setup
	$(PY) -m gems_core.data.fetch $(DATASETS) --data-root $(DATA_ROOT) --manifest $(MANIFEST)

# test files run in parallel (one worker per core, at most 4; a file's tests share one worker and its
# fixtures), the slowest files first
test: setup
	$(PY) -m pytest -n auto --maxprocesses 4 --dist loadfile --durations=15

# the unit tests alone (no processes, notebooks, sweeps or browser), for the edit-test loop
test-fast: setup
	$(PY) -m pytest -m "not slow"

# ruff's lint and format checks (configured in pyproject.toml); `$(VENV)/bin/ruff format .` fixes the format
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# JupyterLab on the project, with the kit's environment (open notebooks/ and edit a parameters cell)
lab: setup
	$(PY) -m jupyter lab --notebook-dir=$(CURDIR) $(if $(filter 0,$(shell id -u)),--allow-root)

# On a machine with one NVIDIA GPU: the gpu tests, then timings and memory of every method at the
# paper's settings against learn2learn, written to benchmarks/results/<gpu>.json (README: Performance)
gpu-check: setup
	$(PY) benchmarks/gpu_check.py

clean-venv:
	rm -rf $(VENV)
