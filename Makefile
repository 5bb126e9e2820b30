# evcam: the two everyday commands are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BROKER ?= amqp://guest:guest@127.0.0.1:5672//
PYTEST_ARGS ?=

.PHONY: install test lint bench fuzz run clean

# Re-install whenever pyproject.toml changes, so a fresh clone and an old venv both work.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check evcam tests bench
	$(BIN)/ruff format --check evcam tests bench
	$(BIN)/mypy evcam

bench: $(STAMP)
	$(BIN)/python -m bench

# The suite's property tests of the frame parser and the ingest path, run for minutes.
FUZZ_EXAMPLES ?= 5000
fuzz: $(STAMP)
	EVCAM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -p no:cacheprovider \
		--timeout 0 tests/receiver/test_amqp_fuzz.py tests/receiver/test_ingest_fuzz.py

run: $(STAMP)
	$(BIN)/evcam --foreground --broker $(BROKER) --loglevel INFO

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
