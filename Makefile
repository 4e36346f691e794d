# kvyard: `make serve` serves the embedded default; `make test` runs the whole suite.
# Both install what is missing first (quick when nothing changed).
VENV ?= .venv
STAMP := $(VENV)/.kvyard-installed
PORT ?= 8000

.PHONY: install serve test clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py scripts/install.sh scripts/constraints.txt
	bash scripts/install.sh

serve: install
	$(VENV)/bin/kvyard serve --port $(PORT)

test: install
	$(VENV)/bin/python -m pytest -ra

clean:
	rm -rf $(VENV) .pytest_cache
