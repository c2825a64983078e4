# The two commands of the README, and the steps they are made of.
#   make course   set up, export, execute every notebook (fast profile), build the site
#   make test     set up, then every check CI runs
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TMP := $(shell mktemp -d 2>/dev/null || echo /tmp/fm_course_make)

# Data: $FM_COURSE_DATA if set, else the course's shared data folder beside the checkout, if there is one.
ifeq ($(strip $(FM_COURSE_DATA)),)
  ifneq ($(wildcard ../shared/data/README.md),)
    export FM_COURSE_DATA := $(abspath ../shared/data)
  endif
endif

.PHONY: course test venv export execute clean-nbs site readme site-check browser-check \
        check-export check-clean check-readme nbtest pytest clean

course: execute site readme
	@echo
	@echo "Course executed ($${FM_COURSE_PROFILE:-fast} profile) and site built in _build/html."
	@echo "View it:  $(BIN)/python -m http.server -d _build/html 8000   then open http://127.0.0.1:8000"
	@echo "Notebooks: $(BIN)/jupyter lab nbs/"

test: venv check-export check-clean check-readme nbtest pytest site-check
	@echo "make test: all checks passed"

$(STAMP): settings.ini setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip wheel setuptools
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

venv: $(STAMP)

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

# --- checks ---------------------------------------------------------------------------------
check-export: venv   ## the library is exactly what the notebooks export
	@rm -rf $(TMP)/lib && cp -r fm_course $(TMP)/lib
	$(BIN)/nbdev_export
	@diff -r -x __pycache__ $(TMP)/lib fm_course \
	  || { echo "fm_course/ is not what the notebooks export: run 'make export' and commit both"; exit 1; }

check-clean: venv    ## notebooks are committed clean (nbdev_clean changes nothing)
	@rm -rf $(TMP)/nbs && mkdir -p $(TMP)/nbs && cp nbs/*.ipynb $(TMP)/nbs/
	$(BIN)/nbdev_clean
	@for f in nbs/*.ipynb; do \
	  cmp -s "$$f" "$(TMP)/nbs/$$(basename $$f)" || { echo "$$f was not clean: run 'make clean-nbs' and commit"; exit 1; }; done

check-readme: venv   ## README.md is what nbs/index.ipynb generates
	@cp README.md $(TMP)/README.md
	$(BIN)/python tools/build_site.py readme
	@cmp -s README.md $(TMP)/README.md || { echo "README.md differs from nbs/index.ipynb: run 'make readme' and commit"; exit 1; }

nbtest: venv         ## every notebook runs and its proof cells pass (fast profile; records go to a scratch folder).
                     ## One at a time: each chapter uses both cores, and parallel notebooks only fight over them.
	FM_COURSE_RESULTS=$(TMP)/results $(BIN)/nbdev_test --timing --n_workers 1

pytest: venv
	FM_COURSE_RESULTS=$(TMP)/results $(BIN)/python -m pytest -q tests/

clean:
	rm -rf _build _proc
