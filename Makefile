# Set-up and the two everyday jobs. `make demo` and `make test` create the virtual environment on
# first use. TORCH pins the wheel installed into it: the local CPU build on our machines; any
# torch >= 2.6 works (pip install -e . into an environment that already has torch also works).
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

$(BIN)/moegrow: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)" -e ".[dev]"
	touch $@

.PHONY: demo test test-all lint fuzz fuzz
demo: $(BIN)/moegrow
	$(BIN)/moegrow demo --overwrite

lint: $(BIN)/moegrow
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Tests run in one worker per core, each with one OpenMP thread (tiny models gain nothing from more).
test: lint
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n auto

test-all: lint
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n auto -m ''

# The fuzz and fault suite with a larger budget: 4 rounds of mutations with another seed and
# kill -9 at 20 points of grow, train and data prepare.
fuzz: $(BIN)/moegrow
	MOEGROW_FUZZ_ROUNDS=4 MOEGROW_FUZZ_SEED=$${SEED:-1} $(BIN)/python -m pytest -m '' -s tests/test_fuzz.py tests/test_faults.py
