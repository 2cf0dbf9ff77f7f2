# Two commands set everything up on a fresh machine:
#   make demo   create .venv, install streamrec, run the whole stack with demo data
#   make test   create .venv, install streamrec with its test tools, run every test
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0   # the CPU wheel; an unpinned torch pulls a multi-GB CUDA build
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/streamrec up --demo

test: install
	$(VENV)/bin/pytest

bench: install
	$(PY) benchmarks/stream_throughput.py
	$(PY) benchmarks/serving.py
	$(PY) benchmarks/quality.py
	$(PY) benchmarks/basket_eval.py

clean:
	rm -rf $(VENV) .streamrec .pytest_cache
