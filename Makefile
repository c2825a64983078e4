# The two commands of the README, and the steps they are made of.
#   make course   set up, export, execute every notebook (fast profile), build the site
#   make test     set up, then every check CI runs
# FM_COURSE_PROFILE=full is the one switch for the full (GPU) profile: the notebooks read it for their sizes, and it
# also runs nbdev's `#| full` cells (`nbdev_test --flags full`; tools/run_notebooks.py adds the flag itself).
#   make test-full  the notebooks' tests at the full profile: use it, not a bare `nbdev_test --flags full`, which
#                   does not set FM_COURSE_PROFILE and so would run the `#| full` cells at fast-profile sizes
#   make smoke      the full profile's code (every `full=` branch and `#| full` cell) at toy sizes on this machine's
#                   device (FM_COURSE_SMOKE=1; every by_profile call gives a `smoke=` size): CI proves it without a GPU
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Exact versions of every package, as the committed results were made (settings.ini keeps ranges).
LOCK := constraints.txt
# Chapters whose re-executed records must equal the committed ones (tools/check_results.py; `all`: every committed
# chapter, as `make test` runs them all). 80_rl: one of the cheapest chapters, its seeded DQN runs repeat bit for bit
# apart from wall-clock, and its exact records are counts and steps on a 5,000-step evaluation grid.
REPRODUCE ?= 80_rl
PROFILE := $(shell p='$(FM_COURSE_PROFILE)'; p="$${p,,}"; p="$${p//[[:space:]]/}"; echo "$${p:-fast}")
NBFLAGS := $(if $(filter full,$(PROFILE)),--flags full)

# Data: $FM_COURSE_DATA if set, else the course's shared data folder beside the checkout, if there is one.
ifeq ($(strip $(FM_COURSE_DATA)),)
  ifneq ($(wildcard ../shared/data/README.md),)
    export FM_COURSE_DATA := $(abspath ../shared/data)
  endif
endif

.PHONY: course test test-full mlm-checkpoint smoke venv lock export execute clean-nbs site readme site-check browser-check \
        lint check-headings check-imports check-export check-clean check-readme check-wheel nbtest reproduce pytest clean

course: execute site readme
	@echo
	@echo "Course executed ($(PROFILE) profile) and site built in _build/html."
	@echo "View it:  $(BIN)/python -m http.server -d _build/html 8000   then open http://127.0.0.1:8000"
	@echo "Notebooks: $(BIN)/jupyter lab nbs/"

mlm-checkpoint: export   ## re-make the MLM chapter's committed pretraining run (artifacts/mlm_small; about 30 minutes on 2 CPU cores)
	$(BIN)/python tools/pretrain_mlm.py

test-full:           ## every notebook's tests at the full profile, `#| full` cells included (records go to a scratch folder)
	$(MAKE) --no-print-directory nbtest FM_COURSE_PROFILE=full

$(STAMP): settings.ini setup.py $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -c $(LOCK) pip wheel setuptools
	$(BIN)/python -m pip install -c $(LOCK) --no-build-isolation --no-compile -e ".[dev]"
	@# pip byte-compiles the ~6 GB of packages on one core; compileall does the same work on every core (14 s less here).
	@# Excluded: a torch test helper written in Python 3.12 syntax, which pip's own compile step skips silently.
	$(BIN)/python -m compileall -q -j 0 -x 'py312_intrinsics' $(VENV)/lib
	touch $@

venv: $(STAMP)

lock: venv           ## rewrite $(LOCK) from the venv as it is now (after a deliberate upgrade; then re-execute the course)
	{ grep '^#' $(LOCK); $(BIN)/python -m pip freeze --all --exclude-editable --exclude fm_course; } > $(LOCK).new
	mv $(LOCK).new $(LOCK) && touch $(STAMP)

export: venv
	$(BIN)/nbdev_export

# Execute the notebooks in place (outputs are committed), then strip volatile metadata.
execute: export
	$(BIN)/python tools/run_notebooks.py
	$(BIN)/nbdev_clean

clean-nbs: venv
	$(BIN)/nbdev_clean

site: venv
	$(BIN)/python tools/build_site.py build

readme: venv
	$(BIN)/python tools/build_site.py readme

site-check: site
	$(BIN)/python tools/build_site.py check

browser-check: venv
	@test -f _build/html/index.html || $(MAKE) site
	$(BIN)/python tools/browser_check.py

lint: venv           ## pyflakes and syntax errors (ruff.toml)
	$(BIN)/ruff check fm_course tools tests

check-headings: venv ## every Markdown heading starts its own block (Pandoc/Quarto would show it as text otherwise)
	$(BIN)/python tools/check_headings.py

check-imports: venv  ## no code cell mixes imports with other code (nbdev would run it at every docs build)
	$(BIN)/python tools/check_import_cells.py

# --- checks that need a scratch folder ------------------------------------------------------
SCRATCH_TARGETS := test check-export check-clean check-readme check-wheel nbtest reproduce smoke pytest
ifeq ($(strip $(SCRATCH)),)
# Run in a sub-make with a fresh scratch folder, removed when it exits, passed or failed. (SCRATCH=DIR uses DIR and keeps it.)
$(SCRATCH_TARGETS):
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && trap 'exit 130' INT TERM && \
	  $(MAKE) --no-print-directory $@ SCRATCH="$$tmp"
else
test: venv lint check-headings check-imports check-export check-clean check-readme check-wheel nbtest reproduce smoke pytest site-check
	@echo "make test: all checks passed"

check-export: venv   ## the library is exactly what the notebooks export
	@rm -rf $(SCRATCH)/lib && cp -r fm_course $(SCRATCH)/lib
	$(BIN)/nbdev_export
	@diff -r -x __pycache__ $(SCRATCH)/lib fm_course \
	  || { echo "fm_course/ is not what the notebooks export: run 'make export' and commit both"; exit 1; }

check-clean: venv    ## notebooks are committed clean (nbdev_clean changes nothing)
	@rm -rf $(SCRATCH)/nbs && mkdir -p $(SCRATCH)/nbs && cp nbs/*.ipynb $(SCRATCH)/nbs/
	$(BIN)/nbdev_clean
	@for f in nbs/*.ipynb; do \
	  cmp -s "$$f" "$(SCRATCH)/nbs/$$(basename $$f)" || { echo "$$f was not clean: run 'make clean-nbs' and commit"; exit 1; }; done

check-readme: venv   ## README.md is what nbs/index.ipynb generates
	@cp README.md $(SCRATCH)/README.md
	$(BIN)/python tools/build_site.py readme
	@cmp -s README.md $(SCRATCH)/README.md || { echo "README.md differs from nbs/index.ipynb: run 'make readme' and commit"; exit 1; }

check-wheel: venv    ## `pip install .` (not editable) gives a package whose every module imports, away from the checkout
	$(BIN)/python tools/check_wheel.py --work $(SCRATCH)/wheel

nbtest: venv         ## every notebook runs and its proof cells pass (records go to a scratch folder).
                     ## One at a time: each chapter uses both cores, and parallel notebooks only fight over them.
	FM_COURSE_PROFILE=$(PROFILE) FM_COURSE_RESULTS=$(SCRATCH)/results $(BIN)/nbdev_test --timing --n_workers 1 $(NBFLAGS)

reproduce: venv      ## the $(REPRODUCE) chapters re-executed record exactly the committed numbers
                     ## (after nbtest in `make test`, its records are used; alone, only these chapters run)
	@for ch in $(REPRODUCE); do \
	  [ "$$ch" = all ] && continue; \
	  test -f nbs/$$ch.ipynb || { echo "REPRODUCE: no notebook nbs/$$ch.ipynb"; exit 1; }; \
	  grep -qs "\"$$ch\": {" $(SCRATCH)/results/$(PROFILE).json && continue; \
	  echo "FM_COURSE_PROFILE=$(PROFILE) $(BIN)/nbdev_test --path nbs/$$ch.ipynb $(NBFLAGS)"; \
	  FM_COURSE_PROFILE=$(PROFILE) FM_COURSE_RESULTS=$(SCRATCH)/results $(BIN)/nbdev_test --path nbs/$$ch.ipynb $(NBFLAGS) \
	    || exit 1; done
	$(BIN)/python tools/check_results.py $(SCRATCH)/results/$(PROFILE).json results/$(PROFILE).json --chapters $(REPRODUCE)

smoke: venv          ## the full profile at toy sizes: every notebook, `#| full` cells included (records to a scratch folder;
                     ## SMOKE_ARGS='--path nbs/XX.ipynb' for one notebook)
	FM_COURSE_PROFILE=full FM_COURSE_SMOKE=1 FM_COURSE_RESULTS=$(SCRATCH)/smoke \
	  $(BIN)/nbdev_test --flags full --n_workers 1 --timing $(SMOKE_ARGS)

pytest: venv
	FM_COURSE_RESULTS=$(SCRATCH)/results $(BIN)/python -m pytest -q tests/
endif

clean:
	rm -rf _build _proc
