# make run: serve the chat on http://127.0.0.1:8000 (embedded store, no Redis needed)
# make test: the whole test suite: tests/unit, tests/integration (needs redis-server),
#            tests/browser (needs chromium)
# make test-unit: the unit tests alone, fast (no redis-server, gunicorn or chromium)
# make screenshots: docs/*.png, the pages in headless chromium (needs chromium)
# make bench: the fan-out benchmark, every scenario once, 3-4 minutes (needs redis-server;
#             BENCH_ARGS='--repeat 3' for medians, '--help' for the options; writes only
#             under bench/results/; see bench/)
# make fuzz: both fuzzers at their default budgets, about 4 minutes, not part of make test
#            (fuzz/parsers.py: atheris, 60 s; fuzz/protocol.py: a real server, 150 s at most;
#            needs redis-server; PARSERS_ARGS='-runs=200000', PROTOCOL_ARGS='--seconds 30')
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test test-unit screenshots bench fuzz clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/gunicorn -c gunicorn.conf.py wsgi:app

test: $(VENV)/.installed-bench  # the benchmark's own unit tests need numpy and matplotlib
	$(PY) -m pytest

test-unit: $(VENV)/.installed-bench
	$(PY) -m pytest tests/unit

screenshots: $(VENV)/.installed
	$(PY) -m tests.browser.screenshots

bench: $(VENV)/.installed-bench
	$(PY) -m bench $(BENCH_ARGS)

$(VENV)/.installed-bench: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[bench]'
	touch $@

fuzz: $(VENV)/.installed-fuzz
	$(PY) -m fuzz.parsers $(PARSERS_ARGS)
	$(PY) -m fuzz.protocol $(PROTOCOL_ARGS)

$(VENV)/.installed-fuzz: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[fuzz]'
	touch $@

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
