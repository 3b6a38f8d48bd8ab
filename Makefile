# Two commands set everything up on a fresh machine with Python 3.11:
#   make demo   creates .venv, installs, and runs the whole pipeline (dvc repro) on the embedded default
#   make test   creates .venv, installs, and runs the test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FONTS := $(VENV)/.fonts-installed
# pyproject's optional dependencies to install with the project; the Dockerfile's image sets EXTRAS= (none).
EXTRAS ?= dev

.PHONY: install install-serve-onnx demo test test-quick bench gpu-check mlflow-screenshot import-graph dvc-deps prefect-up prefect-down \
	clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.$(if $(EXTRAS),[$(EXTRAS)])'
	touch $(STAMP)

# The CPU-only ONNX serving install (the Dockerfile's serve-onnx target): pyproject's serve-onnx requirements,
# then the package itself without its dependencies, so torch (and the rest of the training stack) never comes.
SERVE_STAMP := $(VENV)/.serve-onnx-installed
$(SERVE_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['serve-onnx'], sep=chr(10))" > $(VENV)/serve-onnx.txt
	$(BIN)/python -m pip install -r $(VENV)/serve-onnx.txt
	$(BIN)/python -m pip install --no-deps .
	touch $(SERVE_STAMP)

install-serve-onnx: $(SERVE_STAMP)

# The renderer's Debian font packages (data.synth.font_packages), so every machine renders the same bytes.
$(FONTS): packages/debian-fonts.txt | $(STAMP)
	bash scripts/install_debian_packages.sh packages/debian-fonts.txt
	touch $(FONTS)

# Headless Chromium (Debian's package): the README's MLflow picture, and the tests that read the MLflow UI and the
# offline plots.
CHROMIUM := $(VENV)/.chromium-installed
$(CHROMIUM): packages/debian-screenshot.txt | $(STAMP)
	bash scripts/install_debian_packages.sh packages/debian-screenshot.txt
	touch $(CHROMIUM)

# `dvc plots show` / `dvc plots diff` charts drawn without a network: DVC's page template with vega inline (from the
# vl-convert package) in the venv, named in .dvc/config.local. Where there is a DVC project (not in the Docker build).
PLOTS := $(VENV)/.dvc-plots-offline
$(PLOTS): | $(STAMP)
	$(BIN)/python scripts/dvc_offline_plots.py
	touch $(PLOTS)

# With the dev extras (the test suite), also headless Chromium: the MLflow UI and offline-plot tests drive it.
install: $(STAMP) $(FONTS) $(if $(wildcard .dvc/config),$(PLOTS)) $(if $(filter dev,$(EXTRAS)),$(CHROMIUM))

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

# The edit-test loop: every test but the end-to-end ones (marked slow: they train, start a server, or run dvc,
# prefect or torchrun). CI runs `make test`.
test-quick: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/rosetta bench train

# Every CUDA path (precisions, torch.compile, torchrun/NCCL, kill-and-resume, ONNX parity) in one table, under
# 8 minutes; without a GPU a dry mode on the CPU. README "On a GPU"; the table as JSON in runs/gpu_check/.
gpu-check: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python scripts/gpu_check.py

# README "Compare runs in `mlflow ui`": docs/mlflow_compare.png from two short real runs (two MobileNetV3 recipes;
# about 3 minutes on 2 cores) in a fresh store, photographed by headless Chromium.
mlflow-screenshot: install $(CHROMIUM)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python scripts/mlflow_screenshot.py

# docs/import_graph.svg: the packages of src/rosetta and their imports (scripts/import_graph.py), drawn by Graphviz's
# dot (Debian's package, installed here). Run it after moving code between packages, and commit the picture.
GRAPHVIZ := $(VENV)/.graphviz-installed
$(GRAPHVIZ): packages/debian-graphviz.txt | $(STAMP)
	bash scripts/install_debian_packages.sh packages/debian-graphviz.txt
	touch $(GRAPHVIZ)

import-graph: $(STAMP) $(GRAPHVIZ)
	$(BIN)/python scripts/import_graph.py | dot -Tsvg -o docs/import_graph.svg

# dvc.yaml's code deps (each stage's import closure) and the train stage's params (the settings that change the
# model), rewritten from the code; tests/test_dvc_deps.py fails until they match. Then refresh dvc.lock.
dvc-deps: $(STAMP)
	$(BIN)/python scripts/dvc_deps.py

# A local Prefect server on $(PREFECT_HOST):$(PREFECT_PORT) (PREFECT_HOST=0.0.0.0: workers on other hosts reach it),
# work pools local and gpu, and a worker for local, in the background; returns once the server answers. Logs in
# .prefect-local/; `make prefect-down` stops them.
PREFECT_PORT ?= 4200
PREFECT_HOST ?= 127.0.0.1
prefect-up: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python scripts/prefect_local.py up --host $(PREFECT_HOST) --port $(PREFECT_PORT)

prefect-down:
	$(BIN)/python scripts/prefect_local.py down

clean:
	rm -rf $(VENV)
