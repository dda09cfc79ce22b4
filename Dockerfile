# One image for every Dais component (api, controller, autoscaler, gateway, the migration Job), for each
# replica's model-fetch init container, and for Dais's own engine (`dais engine`, the engine catalog's
# `huggingface` image); `dais` is the entrypoint: `docker run IMAGE api --host 0.0.0.0`.
#
# Build (CPU): docker build -t ghcr.io/dais-dev/dais:0.1.0 .
# Build (GPU engine): the same with llama.cpp's CUDA build of the xllamacpp wheel and a CUDA runtime base:
#   docker build -t ghcr.io/dais-dev/dais:0.1.0-cuda \
#     --build-arg BASE=nvidia/cuda:12.4.1-runtime-ubuntu22.04 --build-arg XLLAMACPP_INDEX=<xllamacpp's cu124 index> .
#   (the base must provide python3.11; `dais engine` then logs "CUDA: <gpu>" at start, or why it fell back to CPU)
ARG BASE=python:3.11-slim-bookworm

# -- build: wheels of Dais and its pinned dependencies, into a virtual environment ---------------------------
FROM ${BASE} AS build
ARG XLLAMACPP_INDEX=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/dais
COPY pyproject.toml constraints.txt README.md ./
COPY core ./core
COPY hub ./hub
COPY api ./api
COPY controller ./controller
COPY autoscaler ./autoscaler
COPY gateway ./gateway
COPY engine ./engine
COPY dais ./dais
COPY migrations ./migrations
COPY console ./console
# Runtime dependencies only (no dev extra), at the versions the test suite ran with. Then the gateway's request
# path compiled by mypyc (gateway/native.py) into /opt/dais/native; the compiler and mypy stay in this stage.
RUN apt-get update -q && apt-get install -y -q --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
ENV DAIS_NATIVE_CACHE=/opt/dais/native
RUN /opt/dais/bin/pip install -c constraints.txt '.[native]' \
 && /opt/dais/bin/dais gateway-build \
 && /opt/dais/bin/pip uninstall -y -q mypy \
 && if [ -n "$XLLAMACPP_INDEX" ]; then \
      /opt/dais/bin/pip install --force-reinstall --no-deps --index-url "$XLLAMACPP_INDEX" \
        "xllamacpp==$(grep '^xllamacpp==' constraints.txt | cut -d= -f3)"; fi \
 && find /opt/dais -name '__pycache__' -prune -exec rm -rf {} + \
 && /opt/dais/bin/python -m compileall -q /opt/dais/lib

# -- run: the slim base, the environment, a user without privileges ---------------------------------------
FROM ${BASE}
LABEL org.opencontainers.image.title="dais" \
      org.opencontainers.image.description="Self-hosted Inference Endpoints on Kubernetes" \
      org.opencontainers.image.source="https://github.com/dais-dev/dais" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 dais \
 && useradd --system --uid 10001 --gid dais --home-dir /home/dais --create-home --shell /usr/sbin/nologin dais
COPY --from=build /opt/dais /opt/dais
ENV PATH=/opt/dais/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DAIS_HOME=/home/dais/.dais \
    DAIS_NATIVE_CACHE=/opt/dais/native \
    HF_HOME=/tmp/hf
USER 10001:10001
WORKDIR /home/dais
EXPOSE 8000 8080 8081
ENTRYPOINT ["dais"]
CMD ["--help"]
