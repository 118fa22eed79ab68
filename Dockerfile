# syntax=docker/dockerfile:1.7
# One image for every process: api, workers, operator and DLQ replay Jobs (each picks its command).
# Pin the base by digest in your registry mirror (renovate/dependabot keep it current):
#   --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY service ./service
COPY operator ./operator
# Exactly the locked runtime set (scripts/lock.sh); tests/image installs it the same way.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-compile -c constraints.txt .

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="compliance-reporting" \
      org.opencontainers.image.description="Compliance reports over HTTP, delivered by signed webhooks that are never lost" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/compliance-reporting"
RUN groupadd --gid 10001 compliance \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin compliance
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    COMPLIANCE_STORAGE_DIR=/data/reports
WORKDIR /app
USER 10001:10001
EXPOSE 8000 9808
ENTRYPOINT ["compliance"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
