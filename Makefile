# The two set-up commands: `make demo` and `make test`. Each creates/updates .venv itself.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export NO_MKDOCS_2_WARNING := 1

.PHONY: demo test lint bench docs clean

$(STAMP): pyproject.toml constraints-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints-dev.txt -e ".[test,demo,docs]"
	# the Cityscapes authors' label table, for a test (its own requirements are not needed for that table)
	$(PY) -m pip install -q --no-deps cityscapesScripts==2.3.0
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lipcert demo

test: $(STAMP)
	$(PY) -m ruff check lipcert tests benchmarks
	$(PY) -m ruff format --check lipcert tests benchmarks
	$(PY) -m pytest -q --doctest-modules lipcert tests
	$(VENV)/bin/mkdocs build --strict

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

bench: $(STAMP)
	$(PY) benchmarks/bench_certify.py
	$(PY) benchmarks/bench_iou.py
	$(PY) benchmarks/bench_smoothing.py
	$(PY) benchmarks/bench_models.py
	$(PY) benchmarks/bench_zoo.py
	$(PY) benchmarks/bench_zoo_gap.py
	$(PY) benchmarks/bench_relaxed_gap.py
	$(PY) benchmarks/compare_segcertify.py --out runs/compare

clean:
	rm -rf $(VENV) .pytest_cache
