# Two commands do everything on a fresh machine: `make book` and `make test`.
# Both create .venv from requirements.txt when it is missing or out of date.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TRITON_STAMP := $(VENV)/.installed-triton
NOTEBOOKS ?= $(sort $(wildcard chapters/*.ipynb))
# The course: sources with solutions, the blanks generated from them, the learner's copies.
SOURCES := $(sort $(wildcard assignments/source/*.ipynb))
BLANKS := $(sort $(wildcard assignments/[0-9]*.ipynb))
WORK ?= assignments/work
LAB ?= chapters
A ?=
DEVICE ?= cuda
# One BLAS/OpenMP thread per kernel: nbval runs two notebooks at once on two cores, and
# oversubscribed BLAS threads slow small matrix products by an order of magnitude.
SINGLE_THREAD := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

.PHONY: help setup setup-triton book test lint unit nbval book-check check-pages pages-if-browser lab execute \
	bench verify-gpu setup-cell clean student grade course-check
# The page check drives this Chromium (Debian's `chromium` package); REQUIRE_PAGE_CHECK=1
# (set by .ci/run) makes `make test` fail when it is missing instead of skipping the check.
CHROMIUM ?= /usr/bin/chromium
REQUIRE_PAGE_CHECK ?=

help:
	@echo "make book        set up .venv, then build the HTML book into _build/html"
	@echo "make test        set up .venv, then lint, unit tests, strict nbval, book build"
	@echo "make check-pages open every built page in headless Chromium, offline, and check it"
	@echo "make lab         JupyterLab on the chapters (LAB=assignments/work for the course)"
	@echo "make setup-triton  install Triton (1 GB) for chapter 07's kernels and their tests"
	@echo "make execute     re-execute every notebook in place, each in a fresh kernel"
	@echo "make bench       speed and memory of bn_lib against PyTorch (CPU)"
	@echo "make verify-gpu  re-verify bn_lib against PyTorch on DEVICE (default cuda)"
	@echo "make grade       grade your assignments in $(WORK) (A=03 for one)"
	@echo "make student     set-up cells, then the blank assignments from assignments/source"
	@echo "make course-check  sources full marks, blanks not attempted, mutants caught"

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

# Triton (about 1 GB) for bn_triton, chapter 07's kernels: make test, nbval and execute
# install it (they run chapter 07 and the Triton tests); book, unit and lab do not.
$(TRITON_STAMP): requirements-triton.txt $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-triton.txt
	touch $(TRITON_STAMP)

setup-triton: $(TRITON_STAMP)

book: setup
	$(BIN)/jupyter-book build . --keep-going
	@echo "The book: $(CURDIR)/_build/html/index.html"

test: setup setup-triton lint unit nbval course-check book-check pages-if-browser
	@echo "make test: all checks passed"

lint: setup
	$(BIN)/ruff check bn_lib bn_triton bn_course tests benchmarks chapters tools _ext $(SOURCES)

# Triton's tests skip where it is missing, so the unit tests need only .venv; make test
# installs Triton first and runs them too.
unit: setup
	$(SINGLE_THREAD) $(BIN)/python -m pytest tests -n 2 --dist loadgroup -q

nbval: setup-triton
	$(SINGLE_THREAD) $(BIN)/python -m pytest --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
		-n 2 --dist loadfile -q -p no:cacheprovider $(NOTEBOOKS)

# The strict build: a broken reference or a warning fails it.
book-check: setup
	rm -rf _build
	$(BIN)/jupyter-book build . -W -n --keep-going

# The course (assignments/): the learner's command, the generator and the honesty check.
grade: setup
	$(SINGLE_THREAD) $(BIN)/python -m bn_course.grade --work $(WORK) $(if $(A),--assignment $(A))

# The assignments' Colab set-up cell (tools/setup_cell.py), then the blanks from the sources.
student: setup
	$(BIN)/python -m tools.setup_cell --assignments
	$(BIN)/python -m bn_course.make_student

# Sources at full marks and strict nbval; blanks all "not attempted", run top to bottom
# without an error (nbval's lax mode); every mutant caught; blanks up to date.
course-check: setup
	$(SINGLE_THREAD) $(BIN)/python -m bn_course.course_check
	$(SINGLE_THREAD) $(BIN)/python -m pytest --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
		-n 2 --dist loadfile -q -p no:cacheprovider $(SOURCES)
	$(SINGLE_THREAD) $(BIN)/python -m pytest --nbval-lax --nbval-current-env \
		-n 2 --dist loadfile -q -p no:cacheprovider $(BLANKS)

# Every built page in a real browser with the network cut: math typeset, images loaded, no
# errors, solutions hidden; screenshots in _build/screenshots/ (tools/check_pages.py).
check-pages: setup
	test -f _build/html/index.html || $(MAKE) book-check
	$(BIN)/python -m tools.check_pages --html _build/html --screenshots _build/screenshots \
		--chromium $(CHROMIUM)

# make test: the page check after the strict build, when a Chromium is there to run it.
pages-if-browser: book-check
	@if [ -x $(CHROMIUM) ]; then \
		$(MAKE) --no-print-directory check-pages; \
	elif [ -n "$(REQUIRE_PAGE_CHECK)" ]; then \
		echo "make test: REQUIRE_PAGE_CHECK is set but there is no Chromium at $(CHROMIUM)"; exit 1; \
	else \
		echo "make test: SKIPPED the page check: no Chromium at $(CHROMIUM) (apt-get install chromium)"; \
	fi

# Only chapter 07's Triton section needs Triton: `make setup-triton` before running it.
lab: setup
	$(BIN)/jupyter lab $(LAB)

execute: setup-triton
	@for nb in $(NOTEBOOKS); do \
		echo "executing $$nb"; \
		$(SINGLE_THREAD) $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.timeout=600 --ExecutePreprocessor.kernel_name=python3 $$nb || exit 1; \
	done

# The CPU benchmarks, each run as `python -m benchmarks.<name>` from the root; the GPU one,
# benchmarks.bench_triton, runs in tools/gpu_session.sh.
bench: setup
	$(BIN)/python -m benchmarks.bench_batchnorm
	$(BIN)/python -m benchmarks.bench_distributed

# bn_lib against PyTorch on DEVICE, plus the bandwidth measurement; the report goes to
# reports/verification_<device checked>.{json,md}. Without a GPU it checks the CPU and says so.
# VERIFY_PYTHON=python runs it with any Python that has numpy and torch (e.g. a CUDA machine's
# own) instead of setting up .venv.
verify-gpu:
	$(if $(VERIFY_PYTHON),,$(MAKE) setup)
	$(or $(VERIFY_PYTHON),$(BIN)/python) -m tools.verify --device $(DEVICE) --bandwidth \
		--report 'reports/verification_{device}'

# Make the canonical set-up cell (tools/setup_cell.py) the first code cell of every chapter.
setup-cell: setup
	$(BIN)/python -m tools.setup_cell $(NOTEBOOKS)

clean:
	rm -rf _build .pytest_cache
