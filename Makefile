# The book's two commands:
#   make book   -- venv + install + execute every chapter at the `default` scale + HTML in _build/html
#   make test   -- everything CI checks (unit tests, nbval at `smoke`, the book, metrics, browser)
# Both start from a machine with only Python 3.11: the venv is created and filled on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# headless runs: no progress bars in the saved notebooks, one shared metrics folder
export VNOTES_PROGRESS := 0
export VNOTES_METRICS_DIR := $(CURDIR)/_build/metrics
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv book test unit notebooks pages bench clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

# Execute every chapter at `default` and write the site; any notebook error or Sphinx warning fails.
book: $(STAMP)
	rm -rf _build/html _build/jupyter_execute _build/.doctrees _build/metrics/default
	VNOTES_SCALE=default $(BIN)/jupyter-book build . --warningiserror --nitpick --keep-going
	@echo "Open _build/html/index.html in a browser (or: python -m http.server -d _build/html)."

unit: $(STAMP)
	$(BIN)/pytest -q -m "not book" -n 2 --dist loadfile

# Every notebook, top to bottom, at `smoke` (nbval: one fresh kernel per notebook).
notebooks: $(STAMP)
	rm -rf _build/metrics/smoke
	VNOTES_SCALE=smoke $(BIN)/pytest -q --nbval-lax chapters -n 2 --dist loadfile -p no:cacheprovider

# The built pages (metrics thresholds, figures, no tracebacks) -- needs `make book` first.
pages: $(STAMP)
	$(BIN)/pytest -q -m book

test: unit notebooks book pages

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf _build
