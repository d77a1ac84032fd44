# Set-up is part of every target: a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test models lint bench detector system-demo system-test

demo: system-demo models
	$(BIN)/voicebot demo

# Two workers: many tests wait on calls played in real time, so two share a 2-core machine well.
test: system-test models
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n 2

models: $(STAMP)
	$(BIN)/voicebot models fetch
	$(BIN)/voicebot nlu train --if-missing

# Retrains the semantic detector from compliance_rules/data (the shipped weights come from exactly this).
detector: $(STAMP)
	$(BIN)/voicebot rules train-model

lint: $(STAMP)
	$(BIN)/ruff check .

bench: system-demo models
	$(BIN)/python bench/asr.py
	$(BIN)/python bench/rules.py
	$(BIN)/python bench/detect.py
	$(BIN)/python bench/live.py
	$(BIN)/python bench/overload.py
	$(BIN)/python bench/nlu.py
	$(BIN)/python bench/tts.py
	$(BIN)/python bench/bot.py
	$(BIN)/python bench/diarize.py
	$(BIN)/python bench/screening.py

# The Debian packages in system-packages.txt that the target needs: installed as root or with passwordless sudo,
# else one line says what to run. Cheap when they are installed (dpkg-query, no apt-get).
system-demo system-test:
	@scripts/setup-system $(@:system-%=%)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,cluster]'
	touch $(STAMP)
