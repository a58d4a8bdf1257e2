# One-command set-up: every target installs what it needs into .venv/ first.
#   make demo [IMAGES=photos/ CLASSES='cat sofa "wall, brick wall"'] [ARGS=...]
#   make eval CONFIG=configs/oveva_vitb16_ade.py [ARGS="--tta --show-dir vis"]
#   make test [PYTEST_ARGS="-k segmentor"]
#   make docs   (the MkDocs site from docs/ into site/)
#   make app [PORT=7860] [ARGS="--cfg-options model.clip.variant=sclip"]
# Pins live in requirements.txt only; openmim goes in with --no-deps because
# its own pins downgrade setuptools and rich.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ov-eva-installed
CONFIG ?= configs/oveva_vitb16_ade.py
IMAGES ?= demo
CLASSES ?= cat "coffee cup, mug" saucer spoon table "sky, clouds" rocket smoke tree grass wall
OUT ?= demo_out
ARGS ?=
PORT ?= 7860
PYTEST_ARGS ?=
PORT ?= 7860

.PHONY: venv demo app eval test lint docs

$(STAMP): requirements.txt setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	grep -v '^openmim' requirements.txt > $(VENV)/requirements.txt
	$(PY) -m pip install -q -r $(VENV)/requirements.txt
	$(PY) -m pip install -q --no-deps $$(grep '^openmim' requirements.txt)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py $(IMAGES) --classes $(CLASSES) --out $(OUT) $(ARGS)

app: $(STAMP)
	$(PY) tools/app.py --port $(PORT) $(ARGS)

eval: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) tools/test.py $(CONFIG) $(ARGS)

test: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m flake8 projects tools tests configs

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site
