# Two commands do all set-up: `make demo` and `make test` create .venv if missing and install
# the project with torch pinned by constraints.txt (a CPU build where the machine has one).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@run=runs/demo-$$(date +%Y%m%d-%H%M%S) && \
	$(PY) -m mixgan train --model gmgan --dataset digits --out $$run && \
	$(PY) -m mixgan evaluate $$run --quiet && \
	$(PY) -m mixgan cluster $$run --quiet && \
	$(PY) -m mixgan tradeoff $$run --quiet && \
	$(PY) -m mixgan report $$run && \
	echo "samples: $$run/samples  metrics: $$run/metrics.json  report: $$run/report.html"

test: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow"

# the tests that train for tens of seconds or run the documentation's examples (.ci/run runs them too)
test-slow: $(STAMP)
	$(PY) -m pytest -q -n 2 -m slow

clean:
	rm -rf runs .pytest_cache
