# Two commands set everything up on a fresh machine:
#   make demo   create .venv, install streamrec, run the whole stack with demo data
#   make test   create .venv (and .venv-airflow for the DAG's test), install streamrec with its test tools, run every test
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Airflow lives in an environment of its own (its pins clash with the API's); the tests parse
# the DAG of infra/airflow/ with it
AIRFLOW_VENV  ?= .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed

.PHONY: install demo test bench clean browser

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0   # the CPU wheel; an unpinned torch pulls a multi-GB CUDA build
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/streamrec up --demo

$(AIRFLOW_STAMP):
	python3 -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install -q "apache-airflow==3.3.2"
	touch $(AIRFLOW_STAMP)

# the dashboard's browser test drives Debian's Chromium; installed here when missing and possible
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    { apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }; }; } || \
	  echo "Chromium could not be installed: the dashboard's browser test will skip"

test: install $(AIRFLOW_STAMP) browser
	$(VENV)/bin/pytest

bench: install
	$(PY) benchmarks/stream_throughput.py
	$(PY) benchmarks/serving.py
	$(PY) benchmarks/quality.py
	$(PY) benchmarks/basket_eval.py
	$(PY) benchmarks/basket_latency.py
	$(PY) benchmarks/freshness_sustained.py
	$(PY) benchmarks/training.py
	$(PY) benchmarks/rerank.py --speed --quality

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) .streamrec .pytest_cache
