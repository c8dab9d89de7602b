# ZensCall: `make run` starts the whole product on the embedded default; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fs lint check clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) scripts/devstack.py

test: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest -q $(PYTEST_ARGS)

# the real-switch suite: a real FreeSWITCH 1.11.1 in $$FS_HOME (default /opt/freeswitch) runs
# fs_conf/; fails (never skips) when FreeSWITCH is missing
test-fs: $(STAMP)
	ZC_REALSWITCH=1 PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest -q tests/realswitch $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --strict core/call_states.py core/campaign_states.py core/redis_keys.py core/sqlbatch.py dialer/events.py billing/rating.py core/phone.py core/states.py core/window.py campaigns/csv_reader.py core/spreadsheet.py core/names.py dialer/cdr.py webhooks/signing.py webhooks/urls.py webhooks/http.py

check: lint test

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
