# Two entry points for a fresh Debian machine (see README):
#   make repro   set everything up, then run the pipeline on the default parameters
#   make test    set everything up, then run the whole test suite
SHELL := /bin/bash
VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export TF_CPP_MIN_LOG_LEVEL := 2
export GX_ANALYTICS_ENABLED := False

.PHONY: setup repro test test-fast bench ui

setup:
	@bash scripts/setup.sh

repro: setup
	dvc repro

test: setup
	python -m pytest

test-fast: setup
	python -m pytest -m "not slow"

bench: setup
	python bench/bench_lensing.py

ui: setup
	cmbml ui
