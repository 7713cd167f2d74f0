# Convoy on CPU: torch's CPU build (no CUDA wheels), pinned dependencies, the packaged
# all-MiniLM-L6-v2 inside and served offline, non-root. Same entrypoint and settings as Dockerfile.gpu.
#
#   docker build -t convoy:cpu -f Dockerfile .
#   docker run -p 8000:8000 --stop-timeout 45 convoy:cpu
#
# Configure with CONVOY_* env vars; add Ray Serve with --build-arg CONVOY_EXTRAS=ray.

# Python 3.12: the python3 of the GPU image's Ubuntu 24.04, so both images run the same interpreter.
ARG PYTHON_IMAGE=python:3.12-slim-trixie

# ---- build: a venv with torch (CPU build) and Convoy, versions from constraints/gpu.txt ----
FROM ${PYTHON_IMAGE} AS build
ARG CONVOY_EXTRAS=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/convoy/bin:$PATH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN python3 -m venv /opt/convoy
WORKDIR /src
# constraints/gpu.txt pins every runtime dependency of both images at the versions of the tested
# venv (none of them is CUDA-specific; the name predates this image).
COPY constraints/gpu.txt constraints/gpu.txt
# torch alone from PyTorch's CPU index: on x86_64 Linux, PyPI's torch wheel is the CUDA build and
# would pull gigabytes of nvidia-* wheels this image never uses. --no-deps, and not --index-url for
# everything, for the reason Dockerfile.gpu gives: the mirror there lacks many exact versions.
RUN torch_version="$(sed -n 's/^torch==//p' constraints/gpu.txt)" \
    && test -n "${torch_version}" \
    && pip install --no-deps --index-url https://download.pytorch.org/whl/cpu "torch==${torch_version}"
COPY pyproject.toml README.md ./
COPY server server
COPY models models
COPY deploy/check_build.py deploy/check_build.py
# Then Convoy and everything else from PyPI, torch's dependencies included; pip keeps the CPU build.
# check_build.py fails the build on a CUDA torch, any CUDA wheel, or a default model that needs the
# network.
RUN pip install -c constraints/gpu.txt ".${CONVOY_EXTRAS:+[${CONVOY_EXTRAS}]}" \
    && pip check \
    && python deploy/check_build.py cpu \
    && convoy serve --help > /dev/null

# ---- runtime: the venv on a clean base, run as uid 1000 ----
FROM ${PYTHON_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN groupadd --gid 1000 convoy \
    && useradd --uid 1000 --gid 1000 --create-home --shell /usr/sbin/nologin convoy \
    && mkdir -p /data/hf \
    && chown 1000:1000 /data/hf
COPY --from=build /opt/convoy /opt/convoy
COPY --chmod=0755 deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh

# The same in both images (tests/unit/test_dockerfile.py compares them). The packaged model is in
# the venv and HF_HUB_OFFLINE=1 keeps start-up off the network; -e HF_HUB_OFFLINE=0 lets a hub
# model download into the cache volume, once per host rather than per container.
ENV PATH=/opt/convoy/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/data/hf \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    CONVOY_HOST=0.0.0.0 \
    CONVOY_PORT=8000
ENV CONVOY_DEVICE=cpu \
    CONVOY_DTYPE=float32
VOLUME ["/data/hf"]
USER 1000:1000
WORKDIR /home/convoy
EXPOSE 8000

# /ready turns 200 once every model is loaded and warm, 503 while loading or draining.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('CONVOY_PORT', '8000'), timeout=4)"]

# Convoy drains on SIGTERM (up to CONVOY_DRAIN_TIMEOUT_S, 30 s): run with `--stop-timeout 45`.
# The entrypoint execs `convoy serve` with the arguments after the image name; on CPU its CUDA part
# finds nothing to do.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
