# Two commands do everything on a fresh machine (Python 3.11 with pip):
#   make demo   set up, then run the notebook pipeline on the embedded demo data (CPU)
#   make test   set up, then run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.gems-installed

.PHONY: setup demo test clean-venv

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

test: setup
	$(PY) -m pytest

clean-venv:
	rm -rf $(VENV)
