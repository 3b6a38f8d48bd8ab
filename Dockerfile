# Two images of the Rosetta pipeline, both on python:3.11-slim (Debian bookworm, as the Makefile expects),
# both running as the non-root user rosetta (uid 1000):
#
#   docker build -t rosetta-pipeline:latest .                     # training: a Prefect worker for the GPU pool
#   docker run --gpus all -e PREFECT_API_URL=http://<server>:4200/api rosetta-pipeline:latest
#
#   docker build --target serve-onnx -t rosetta-serve:latest .    # serving the ONNX model on the CPU, no torch
#   docker run -p 5001:5001 -v $PWD:$PWD -e MLFLOW_TRACKING_URI=sqlite:///$PWD/mlflow.db rosetta-serve:latest
#   (the store mounted at its own path: its artifact locations are absolute paths)
#
# One CUDA stack: the torch wheel from PyPI brings its own CUDA runtime libraries (the nvidia-* wheels), so no
# CUDA base image is needed; the host needs only the NVIDIA driver and the container toolkit (--gpus all).
# No dev extras in either image (`make install EXTRAS=`; the serving image installs pyproject's serve-onnx group).
#
# The training image's default command is a Prefect worker for the process pool `gpu` (prefect.yaml's
# train-rosetta/gpu). Docker pool variant: `prefect work-pool create gpu --type docker`, a worker with
# prefect-docker on the GPU host, and in the gpu deployment `job_variables: {image: rosetta-pipeline:latest,
# container_create_kwargs: {device_requests: [{driver: nvidia, count: -1, capabilities: [[gpu]]}]}}` plus a
# `set_working_directory: {directory: /opt/rosetta}` pull step (commented in prefect.yaml).
#
# Without a registry, on Debian's own packages (scripts/images.py): `make image-serve`, `make image-train` build these
# targets on a local Debian bookworm + Python 3.11 base (PYTHON_IMAGE=localhost/debian-python:3.11-bookworm).
# pip's settings come in as build secrets, never in a layer: the pip steps mount pip.conf (PIP_CONFIG_FILE), its CA
# bundle and constraints when the build passes them (`docker build --secret id=pip.conf,src=...`), and run without.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LANG=C.UTF-8 \
    MPLCONFIGDIR=/tmp/matplotlib
RUN useradd --create-home --uid 1000 --shell /bin/bash rosetta \
    && install -d -o rosetta -g rosetta /opt/rosetta
WORKDIR /opt/rosetta

# ---------------------------------------------------------------- serving: ONNX Runtime on the CPU, no torch
FROM base AS serve-onnx-build
# make runs the same install a test runs (`make install-serve-onnx`); it stays in this build stage.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
USER 1000:1000
# The dependencies first, so code edits reuse their layer.
COPY --chown=1000:1000 pyproject.toml Makefile ./
RUN --mount=type=secret,id=pip.conf,uid=1000 --mount=type=secret,id=pip-cert,uid=1000 \
    --mount=type=secret,id=pip-constraint,uid=1000 \
    PIP_CONFIG_FILE=/run/secrets/pip.conf make install-serve-onnx-deps
COPY --chown=1000:1000 README.md ./
COPY --chown=1000:1000 src ./src
RUN --mount=type=secret,id=pip.conf,uid=1000 --mount=type=secret,id=pip-cert,uid=1000 \
    --mount=type=secret,id=pip-constraint,uid=1000 \
    PIP_CONFIG_FILE=/run/secrets/pip.conf make install-serve-onnx

FROM base AS serve-onnx
COPY --from=serve-onnx-build --chown=1000:1000 /opt/rosetta/.venv /opt/rosetta/.venv
USER 1000:1000
# A local store's models:/ is loaded in place from the mounted artifact store: no .pyc may land beside the model's
# code there, or its files no longer match the digest the registry recorded (rosetta predict and serve refuse it).
ENV PATH="/opt/rosetta/.venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1
EXPOSE 5001
CMD ["mlflow", "models", "serve", "-m", "models:/rosetta@production", "--env-manager", "local", \
     "--host", "0.0.0.0", "--port", "5001"]

# ---------------------------------------------------------------- training (the default target: built last)
FROM base AS train
# git because DVC stages and the provenance tags read the repository; make for `make install`.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# The synthetic renderer's fonts (data.synth.font_packages), as root: `make install` then finds them installed.
COPY packages/debian-fonts.txt /tmp/debian-fonts.txt
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && sed 's/#.*//' /tmp/debian-fonts.txt | xargs apt-get install -y --no-install-recommends \
    && rm -rf /var/lib/apt/lists/* /tmp/debian-fonts.txt

USER 1000:1000
# The install layer first, so code and params edits reuse it.
COPY --chown=1000:1000 pyproject.toml Makefile README.md ./
COPY --chown=1000:1000 packages ./packages
COPY --chown=1000:1000 scripts/install_debian_packages.sh ./scripts/
COPY --chown=1000:1000 src ./src
RUN --mount=type=secret,id=pip.conf,uid=1000 --mount=type=secret,id=pip-cert,uid=1000 \
    --mount=type=secret,id=pip-constraint,uid=1000 \
    PIP_CONFIG_FILE=/run/secrets/pip.conf make install EXTRAS=

COPY --chown=1000:1000 . .

ENV PATH="/opt/rosetta/.venv/bin:${PATH}"

CMD ["prefect", "worker", "start", "--pool", "gpu"]
