# Rosetta pipeline image: a CUDA runtime with the project installed the way the README does it
# (`make install`: .venv, then `pip install -e '.[dev]'`), running as a non-root user.
#
#   docker build -t rosetta-pipeline:latest .
#   docker run --gpus all -e PREFECT_API_URL=http://<server>:4200/api rosetta-pipeline:latest
#
# The default command is a Prefect worker for the process pool `gpu` (prefect.yaml's train-rosetta/gpu).
# Docker pool variant: `prefect work-pool create gpu --type docker`, a worker with prefect-docker on the
# GPU host, and in the gpu deployment `job_variables: {image: rosetta-pipeline:latest,
# container_create_kwargs: {device_requests: [{driver: nvidia, count: -1, capabilities: [[gpu]]}]}}` plus a
# `set_working_directory: {directory: /opt/rosetta}` pull step (commented in prefect.yaml).
FROM nvidia/cuda:12.8.1-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LANG=C.UTF-8

# Python 3.11 as the Makefile expects it; git because DVC stages and the provenance tags read the repository.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv make git ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 --shell /bin/bash rosetta \
    && install -d -o rosetta -g rosetta /opt/rosetta

# The synthetic renderer's fonts (data.synth.font_packages), as root: `make install` then finds them installed.
COPY packages/debian-fonts.txt /tmp/debian-fonts.txt
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && sed 's/#.*//' /tmp/debian-fonts.txt | xargs apt-get install -y --no-install-recommends \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/rosetta
USER 1000:1000

# The install layer first, so code and params edits reuse it.
COPY --chown=1000:1000 pyproject.toml Makefile README.md ./
COPY --chown=1000:1000 packages ./packages
COPY --chown=1000:1000 scripts/install_debian_packages.sh ./scripts/
COPY --chown=1000:1000 src ./src
RUN make install

COPY --chown=1000:1000 . .

ENV PATH="/opt/rosetta/.venv/bin:${PATH}" \
    MPLCONFIGDIR=/tmp/matplotlib

CMD ["prefect", "worker", "start", "--pool", "gpu"]
