# Executable lecture notes on linear neural networks.
#
#   make book      execute every chapter and build the HTML book into _build/html
#   make test      run the test suite (tests/) and every chapter notebook (nbval); the browser
#                  checks of tests/test_browser.py reuse _build/html when it is up to date
#   make print     the whole book as one PDF, _build/print/book.pdf (single-page HTML printed by Chromium)
#   make student   the student edition (solutions removed) into _build/student
#   make static    fetch the offline browser assets (MathJax, widgets; axe-core for the browser test) only
#   make seeds     execute every chapter under the alternate seeds SEEDS (default 1-5), print a pass table
#   make bench     print the speed figures of lnn (benchmarks/, not timed tests)
#   make assign    exercise autograders (otter-grader) and the student bundle into _build/assign (book/exercises.md)
#   make grade SUBMISSIONS=dir/   grade submitted exercise notebooks offline into dir/grades.csv
#   make clean     remove build outputs and artifacts/ (keeps .venv; `make distclean` removes it too)
#
# Needs python3.11, make and npm; Chromium (Debian package `chromium`) for the browser checks of
# `make test` (skipped without it) and for `make print`. The first run creates .venv from
# requirements.txt; later runs reinstall only when requirements.txt or pyproject.toml change.

SHELL        := /bin/bash
.SHELLFLAGS  := -euo pipefail -c
.DEFAULT_GOAL := book

PYTHON       ?= python3.11
VENV         := .venv
BIN          := $(VENV)/bin
# The install stamp is named after the content of the files that define the environment.
REQ_HASH     := $(shell cat requirements.txt pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
STAMP        := $(VENV)/.installed-$(REQ_HASH)
VENDOR       := book/_static/vendor
VENDOR_STAMP := $(VENDOR)/PINS.txt

NOTEBOOKS    := $(sort $(wildcard book/*.ipynb))
# The exercise notebooks run under nbval too: student stubs (cells tagged raises-exception must raise
# "not yet implemented") and the solution edition (every checker must accept the solutions).
EXERCISE_NOTEBOOKS := $(sort $(wildcard exercises/*.ipynb exercises/source/*.ipynb))
CELL_TIMEOUT ?= 300
JB_FLAGS     := --all -W --keep-going
# Written after a successful strict build; tests/test_browser.py reuses _build/html while it is newer
# than every source of the book (and builds the book itself otherwise).
BUILT_STAMP  := _build/.book-built
# The chapters a successful strict build executed, with the key of each execution (code, lnn/, environment):
# `make test` runs under nbval only the chapters without a recorded execution under today's key.
EXECUTED     := _build/executed.json
EXEC_CACHE   := $(BIN)/python tools/execution_cache.py

# Quiet lnn's progress output in builds and tests; the thread count is left to torch.
export LNN_QUIET := 1
# Explorers (lnn/explorer.py) precompute their frames for the kernel-less book, and the test suite checks that
# path too; a notebook opened by a person (no LNN_EXPLORER) shows live ipywidgets sliders instead.
export LNN_EXPLORER := static
export PYDEVD_DISABLE_FILE_VALIDATION := 1
# Make the venv's tools (python, jupyter) the ones that kernels and subprocesses find.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export VIRTUAL_ENV := $(CURDIR)/$(VENV)

.PHONY: book test student print static venv bench seeds clean distclean assign grade

venv: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): | $(BIN)/python
	rm -f $(VENV)/.installed-*
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@$(BIN)/python -c "import torch, sys; v = torch.__version__; print('torch', v); sys.exit(0 if v.startswith('2.13.0') else 'torch must be 2.13.0')"
	touch $@

# The vendored assets are refetched whenever the pins in the script change.
$(VENDOR_STAMP): scripts/fetch_static.sh
	bash scripts/fetch_static.sh $(VENDOR)
	touch $@

static: $(VENDOR_STAMP)

# Execution is cached per notebook, keyed on its code AND on lnn/ + the environment (tools/execution_cache.py
# writes the config): a prose-only edit re-executes nothing. CI=true empties the cache first, so every chapter
# runs from scratch. The chapters to run are executed in parallel (one kernel per core, LNN_EXECUTE_JOBS to
# override) before the build reads them from the cache. After a successful build the executions are recorded
# for `make test`.
book: $(STAMP) $(VENDOR_STAMP)
	rm -f $(BUILT_STAMP) $(EXECUTED)
	$(EXEC_CACHE) config _config.yml _build/_config_book.yml
	$(EXEC_CACHE) execute _build/_config_book.yml $(NOTEBOOKS)
	$(BIN)/jupyter-book build $(JB_FLAGS) --config _build/_config_book.yml .
	$(EXEC_CACHE) record $(NOTEBOOKS)
	touch $(BUILT_STAMP)
	@echo "Open _build/html/index.html"

# Student edition: the same sources and config with sphinx-exercise's hide_solutions on.
student: $(STAMP) $(VENDOR_STAMP)
	mkdir -p _build
	$(BIN)/python scripts/student_config.py _config.yml _build/_config_student.yml
	$(BIN)/jupyter-book build $(JB_FLAGS) --config _build/_config_student.yml --path-output _build/.student .
	rm -rf _build/student
	mv _build/.student/_build/html _build/student
	rm -rf _build/.student
	@echo "Open _build/student/index.html"

# Printable edition: the single-page HTML build (all chapters executed again) printed to PDF by the
# installed Chromium, offline (Jupyter Book's own `pdfhtml` needs pyppeteer to download a browser).
print: $(STAMP) $(VENDOR_STAMP)
	$(BIN)/jupyter-book build $(JB_FLAGS) --builder singlehtml .
	$(BIN)/python scripts/print_book.py _build/singlehtml/index.html _build/print/book.pdf

# The suite runs in TEST_JOBS processes at once (pytest-xdist; default one per core), each test file (each
# notebook's cells, in order) in one process, every process and kernel on one torch thread (OMP_NUM_THREADS=1:
# two threads per process on two busy cores cost far more than they gain, see the Timings page).
TEST_JOBS    ?= auto
test: $(STAMP) $(VENDOR_STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests $$($(EXEC_CACHE) stale $(NOTEBOOKS)) $(EXERCISE_NOTEBOOKS) \
	  --nbval-lax --nbval-current-env --nbval-cell-timeout=$(CELL_TIMEOUT) \
	  -n $(TEST_JOBS) --dist loadfile -p no:cacheprovider

# Any seed: every chapter executed again under each of SEEDS (LNN_SEED, read in one place by each chapter), with
# a pass table. Not part of `make test` (it runs every chapter len(SEEDS) times).
SEEDS ?= 1 2 3 4 5
seeds: $(STAMP)
	$(BIN)/python scripts/run_seeds.py $(NOTEBOOKS) --seeds $(SEEDS)

# Speed is a measured property, not a timed test: these print figures (see book/performance.md).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_dynamics.py
	$(BIN)/python benchmarks/bench_dynamics.py --n 32
	$(BIN)/python benchmarks/bench_ntk.py
	$(BIN)/python benchmarks/bench_ntk.py --model lenet --skip-vp
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_book.py

# Exercises for credit (book/exercises.md): from exercises/source (the one source with solutions), otter-grader
# autograder zips with hidden tests and an environment that installs the pinned torch and this checkout's wheel,
# plus the student bundle (notebooks without solutions, the wheel, requirements.txt). `make grade` runs otter's local
# grading (no Docker) on every notebook under SUBMISSIONS and writes SUBMISSIONS/grades.csv.
ASSIGN_DIR ?= _build/assign
assign: $(STAMP)
	$(BIN)/python scripts/make_exercises.py --assign $(ASSIGN_DIR)

grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=dir/  (after make assign)"; exit 2; }
	$(BIN)/python scripts/grade_exercises.py $(SUBMISSIONS) --autograders $(ASSIGN_DIR)/autograder \
	  --out $(SUBMISSIONS)/grades.csv --details $(SUBMISSIONS)/grades-details.json

clean:
	rm -rf _build .jupyter_cache book/.ipynb_checkpoints .pytest_cache artifacts

distclean: clean
	rm -rf $(VENV) $(VENDOR)
