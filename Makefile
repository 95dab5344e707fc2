# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint stop worker dev bench clean lock

$(STAMP): pyproject.toml dev-constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c dev-constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## start the dev server and a worker, run an example agent offline
	$(BIN)/onward demo

test: $(STAMP) lint  ## lint, type-check and run the whole test suite
	$(BIN)/pytest -q -n auto --maxprocesses 4

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

stop: $(STAMP)  ## stop the background dev server started by `make demo`
	$(BIN)/onward dev stop

worker: $(STAMP)
	$(BIN)/onward worker

dev: $(STAMP)
	$(BIN)/onward dev

bench: $(STAMP)  ## Onward vs the bare workflow and the peers (about 40 min; ARGS=--quick for a minute)
	$(BIN)/python -m bench.run $(ARGS)

clean: stop
	rm -rf $(VENV) .onward bench/.venv-peers

lock: $(STAMP)  ## re-resolve dev-constraints.txt from pyproject.toml (uv resolves in a second)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --quiet \
		--index-strategy unsafe-best-match --no-header --no-annotate -o .lock.tmp
	{ sed -n '1,3p' dev-constraints.txt; cat .lock.tmp; } > .lock.new && mv .lock.new dev-constraints.txt && rm .lock.tmp
