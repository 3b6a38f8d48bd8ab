# Two commands set everything up on a fresh machine with Python 3.11:
#   make demo   creates .venv, installs, and runs the whole pipeline (dvc repro) on the embedded default
#   make test   creates .venv, installs, and runs the test suite (`make test-journeys`: the README's journeys)
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FONTS := $(VENV)/.fonts-installed
# pyproject's optional dependencies to install with the project; the Dockerfile's image sets EXTRAS= (none).
EXTRAS ?= dev

.PHONY: install install-serve-onnx-deps install-serve-onnx demo test test-journeys test-quick bench bench-paddle gpu-check mlflow-screenshot import-graph dvc-deps prefect-up prefect-down \
	team-up team-down image-base image-serve image-train clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.$(if $(EXTRAS),[$(EXTRAS)])'
	touch $(STAMP)

# The CPU-only ONNX serving install (the Dockerfile's serve-onnx target): pyproject's serve-onnx requirements
# (install-serve-onnx-deps: a layer of its own in the image, which code edits reuse), then the package itself
# without its dependencies, so torch (and the rest of the training stack) never comes.
SERVE_DEPS := $(VENV)/.serve-onnx-deps-installed
$(SERVE_DEPS): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['serve-onnx'], sep=chr(10))" > $(VENV)/serve-onnx.txt
	$(BIN)/python -m pip install -r $(VENV)/serve-onnx.txt
	touch $(SERVE_DEPS)

SERVE_STAMP := $(VENV)/.serve-onnx-installed
$(SERVE_STAMP): $(SERVE_DEPS)
	$(BIN)/python -m pip install --no-deps .
	touch $(SERVE_STAMP)

install-serve-onnx-deps: $(SERVE_DEPS)

install-serve-onnx: $(SERVE_STAMP)

# The renderer's Debian font packages (data.synth.font_packages), so every machine renders the same bytes.
$(FONTS): packages/debian-fonts.txt | $(STAMP)
	bash scripts/install_debian_packages.sh packages/debian-fonts.txt
	touch $(FONTS)

# The team servers' database (PostgreSQL 15), for `make team-up` and the tests that start the team.
POSTGRES := $(VENV)/.postgresql-installed
$(POSTGRES): packages/debian-postgresql.txt | $(STAMP)
	bash scripts/install_debian_packages.sh packages/debian-postgresql.txt
	touch $(POSTGRES)

# Headless Chromium (Debian's package): the README's MLflow picture, and the tests that read the MLflow UI and the
# offline plots.
CHROMIUM := $(VENV)/.chromium-installed
$(CHROMIUM): packages/debian-screenshot.txt | $(STAMP)
	bash scripts/install_debian_packages.sh packages/debian-screenshot.txt
	touch $(CHROMIUM)

# Podman, runc and debootstrap: the images built and run without a container registry (scripts/images.py), and the
# test that builds and runs the serving image.
PODMAN := $(VENV)/.podman-installed
$(PODMAN): packages/debian-podman.txt | $(STAMP)
	bash scripts/install_debian_packages.sh packages/debian-podman.txt
	touch $(PODMAN)

# `dvc plots show` / `dvc plots diff` charts drawn without a network: DVC's page template with vega inline (from the
# vl-convert package) in the venv, named in .dvc/config.local. Where there is a DVC project (not in the Docker build).
PLOTS := $(VENV)/.dvc-plots-offline
$(PLOTS): | $(STAMP)
	$(BIN)/python scripts/dvc_offline_plots.py
	touch $(PLOTS)

# What `make demo` runs and nothing more: the venv, the renderer's fonts and the offline plots. The team's PostgreSQL,
# the UI tests' Chromium and the image tools come with the targets that use them (test, team-up, mlflow-screenshot,
# image-*).
install: $(STAMP) $(FONTS) $(if $(wildcard .dvc/config),$(PLOTS))

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# The suite in two targets, both run by CI (.ci/run). `make test`: every test but the README's journeys, on two
# pytest-xdist workers (tests/conftest.py keeps a module's tests on one worker, so its servers and tiny models are
# made once, and the modules on the Prefect stack on one). `make test-journeys`: the journeys run as the README
# tells them from a clone (marked journey: "Read text" and "Bring your own data", the pipeline's Prefect
# deployments and "Compare experiments" with their MLflow UI, "For a team", the serving image built and run); they
# start the team's PostgreSQL, read the MLflow UI in Chromium and build the image with Podman.
test: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -n 2 -m "not journey"

test-journeys: install $(POSTGRES) $(CHROMIUM) $(PODMAN)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -n 2 -m journey

# The edit-test loop: every test but the end-to-end ones (marked slow: they train, start a server, or run dvc,
# prefect or torchrun).
test-quick: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -m "not slow and not journey"

bench: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/rosetta bench train

# Our training speed against PaddlePaddle running PaddleOCR's own network (scripts/bench_paddle.py; a table for
# docs/performance.md): PADDLEOCR=DIR names a PaddleOCR checkout, whose network code the Paddle side imports and this
# project never holds; Paddle runs from a venv of its own, never a project dependency ($(PADDLE_VENV), made here, or
# PADDLE_PYTHON=<a venv's python>). BENCH_PADDLE_ARGS passes --rounds, --steps and --warmup. The checkout is checked
# before the venv is made, so a wrong PADDLEOCR costs no install.
PADDLE_VENV ?= .venv-paddle
PADDLE_PYTHON ?= $(PADDLE_VENV)/bin/python
$(PADDLE_VENV)/.installed:
	$(PYTHON) -m venv $(PADDLE_VENV)
	$(PADDLE_VENV)/bin/python -m pip install paddlepaddle==2.6.2 numpy==1.26.4 'scipy<1.12'
	touch $(PADDLE_VENV)/.installed

bench-paddle: $(STAMP)
	$(BIN)/python scripts/bench_paddle.py --check-only --paddleocr "$(PADDLEOCR)"
	$(if $(filter $(PADDLE_VENV)/bin/python,$(PADDLE_PYTHON)),$(MAKE) --no-print-directory $(PADDLE_VENV)/.installed)
	$(BIN)/python scripts/bench_paddle.py --paddleocr "$(PADDLEOCR)" --paddle-python "$(PADDLE_PYTHON)" $(BENCH_PADDLE_ARGS)

# Every CUDA path (precisions, torch.compile, torchrun/NCCL, kill-and-resume, ONNX parity) in one table, under
# 8 minutes; without a GPU a dry mode on the CPU. README "On a GPU"; the table as JSON in runs/gpu_check/.
gpu-check: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python scripts/gpu_check.py

# README "Compare runs in `mlflow ui`": docs/mlflow_compare.png from two short real runs (two MobileNetV3 recipes;
# about 3 minutes on 2 cores) in a fresh store, photographed by headless Chromium.
mlflow-screenshot: install $(CHROMIUM)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python scripts/mlflow_screenshot.py

# The Dockerfile's images without a container registry (scripts/images.py): a Debian bookworm + Python 3.11 base made
# once with debootstrap (localhost/debian-python:3.11-bookworm; its tarball cached in $(VENV)/image-cache), then each
# target built on it by Podman, this machine's pip settings passed as build secrets. Where a registry answers,
# `docker build` works as the Dockerfile says.
image-base: $(PODMAN)
	$(BIN)/python scripts/images.py base

image-serve: $(PODMAN)
	$(BIN)/python scripts/images.py build serve-onnx

image-train: $(PODMAN)
	$(BIN)/python scripts/images.py build train

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

# The team's servers on this machine (README "For a team"): PostgreSQL, MLflow, Prefect with two workers, a DVC
# remote; state, logs and secrets in $(TEAM_DIR). Prints the variables a team member sets (also in $(TEAM_DIR)/env.sh).
TEAM_DIR ?= .team
team-up: install $(POSTGRES)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/rosetta team up --folder $(TEAM_DIR)

team-down:
	$(BIN)/rosetta team down --folder $(TEAM_DIR)

clean:
	rm -rf $(VENV)
