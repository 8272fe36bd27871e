# Two entry points for a fresh clone: `make demo` (the main job) and `make test`.
PYTHON ?= python3.11
TORCH_INDEX ?=
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build; where the
	# index serves CUDA builds, TORCH_INDEX=https://download.pytorch.org/whl/cpu
	$(PY) -m pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	# the demo's MCMC column needs NumPyro (the 'mcmc' extra)
	$(PY) -m pip install --quiet -e '.[mcmc]'
	$(VENV)/bin/noisybayes demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/mypy src/noisybayes
	$(VENV)/bin/lint-imports

test: $(STAMP) lint
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/speed.py
	$(PY) benchmarks/linreg.py
	$(PY) benchmarks/uci.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
