# The sessionstream worker. The project is installed here, at build time, so a container starts
# `sessionstream run` at once (docker-compose.yml builds it: `docker compose up -d --build`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Only what the package is built from (see .dockerignore): a change to the tests or docs does
# not invalidate the install layer.
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY streams ./streams
COPY projections ./projections
COPY agents ./agents
COPY app ./app
RUN pip install . && sessionstream --help > /dev/null

# Runs as root so the read-only session folders mounted from the host (files an agent writes
# with mode 0600 for its own user) stay readable.
ENV SESSIONSTREAM_STATE_DIR=/var/lib/sessionstream
VOLUME ["/var/lib/sessionstream"]
# 9464: Prometheus metrics; 8787: the publish API and its health endpoint.
EXPOSE 9464 8787
CMD ["sessionstream", "run"]
