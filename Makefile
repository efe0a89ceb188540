# The README's two commands: `make run` and `make test`. Both set up .venv from the pinned requirements.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint install browser clean screenshots

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

# Debian's chromium drives the end-to-end browser test (Playwright never downloads a browser here);
# poppler-utils (pdftoppm, pdftotext) renders the PDF case reports in tests/test_report.py.
browser:
	@missing=""; \
	  { command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; } || missing="$$missing chromium"; \
	  command -v pdftoppm >/dev/null 2>&1 && command -v pdftotext >/dev/null 2>&1 || missing="$$missing poppler-utils"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian$$missing for the browser and report tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null; \
	  fi

run: install
	$(VENV)/bin/streamlit run app.py

# Two worker processes (pytest-xdist), a test file each at a time: module-scoped servers and browsers are not
# duplicated, and one worker's waiting (servers starting, pages painting) overlaps the other's computing.
test: install browser
	$(PY) -m pytest -q -n 2 --dist loadfile

# Refresh the README's screenshots from the browser tests (make test never writes tracked files). The pictures
# with a slice in them use a made-up one: no dataset image is committed.
screenshots: install browser
	BRAINCLF_SCREENSHOTS=1 $(PY) -m pytest -q tests/test_e2e.py tests/test_e2e_evaluation.py

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
