# One image for every Dais component (api, controller, autoscaler, gateway, the migration Job) and for each
# replica's model-fetch init container; `dais` is the entrypoint: `docker run IMAGE api --host 0.0.0.0`.
#
# Build: docker build -t ghcr.io/dais-dev/dais:0.1.0 .

# -- build: wheels of Dais and its pinned dependencies, into a virtual environment ---------------------------
FROM python:3.11-slim-bookworm AS build
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
COPY dais ./dais
COPY migrations ./migrations
# Runtime dependencies only (no dev extra), at the versions the test suite ran with.
RUN /opt/dais/bin/pip install -c constraints.txt . \
 && find /opt/dais -name '__pycache__' -prune -exec rm -rf {} + \
 && /opt/dais/bin/python -m compileall -q /opt/dais/lib

# -- run: the slim base, the environment, a user without privileges ---------------------------------------
FROM python:3.11-slim-bookworm
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
    HF_HOME=/tmp/hf
USER 10001:10001
WORKDIR /home/dais
EXPOSE 8000 8080 8081
ENTRYPOINT ["dais"]
CMD ["--help"]
