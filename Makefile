# lemur: every target does its own set-up (creates .venv and installs the pinned stack if missing).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= data/synth-small
PRESET ?= small

.PHONY: help install test test-fast demo data bench gpu-check fuzz freeze clean

help:
	@echo "make demo   - set up, generate the built-in data, train + evaluate recipes/lemur.yaml"
	@echo "make test   - set up, then lint (ruff check) and run the whole test suite"
	@echo "make bench  - run every benchmark script (benchmarks/results/)"
	@echo "make gpu-check - one-shot GPU check, <= 8 min on one H100/H200 (GPU_ARGS=--dry-run: CPU smoke run)"
	@echo "make fuzz   - run the bad-input sweep and print its table"
	@echo "make install - only create $(VENV) and install the pinned dependencies"

# The stamp depends on the files that define the environment, so editing them reinstalls.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

$(DATA)/events.parquet: | $(STAMP)
	$(BIN)/lemur data synth --preset $(PRESET) --out $(DATA)

data: $(DATA)/events.parquet

# ruff first: CI fails on a lint error before it spends minutes on the tests.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

demo: $(STAMP) $(DATA)/events.parquet
	$(BIN)/lemur fit -c recipes/lemur.yaml --data.init_args.root $(DATA)

# Every benchmark script in one go; results land in benchmarks/results/ (see benchmarks/README.md).
bench: $(STAMP) $(DATA)/events.parquet
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

# One-shot GPU check (<= 8 min on one H100/H200): the demo at bf16, history L=0 vs L=1000, bank ops at 1e7 / 1e8,
# throughput vs batch size; results in benchmarks/results/. GPU_ARGS=--dry-run: CPU, tiny, a temp folder (~1 min).
# It makes its own data (benchmarks/common.py ensure_data) and needs no network.
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py $(GPU_ARGS)

# The generated bad-input sweep: prints a table of cases tried / rejected / skipped / crashed.
fuzz: $(STAMP)
	$(BIN)/python -m lemur.fuzz $(FUZZ_ARGS)

# Regenerate constraints.txt from the current venv after a deliberate upgrade.
freeze: $(STAMP)
	@head -3 constraints.txt > constraints.new
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^lemur' >> constraints.new
	mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) mlruns.db mlartifacts lightning_logs checkpoints .pytest_cache
