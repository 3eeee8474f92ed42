# dialguard, the compliance gateway, as a container: `dialguard serve` (FastAGI 4573, HTTP 8080).
# README: "Running as a service next to Asterisk". Build: docker build -t dialguard .
#
# Inside a container the gateway must listen on every interface (set below), so Asterisk in another
# container or host can reach it. FastAGI has NO authentication: set DIALGUARD_AGI_ALLOW to the
# address(es) of your Asterisk (CIDRs). Until you do, only loopback is allowed and every AGI call from
# outside the container is refused (and so blocked: fail-closed).
# Without DIALGUARD_DATABASE_DSN the embedded PostgreSQL runs in /var/lib/dialguard (a volume); in
# production give it your PostgreSQL 14+ (docker-compose.yml runs postgres:16 beside it).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the wheel, from exactly the files a wheel needs (.dockerignore keeps the rest out)
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- run: the package and its dependencies (not the dev extras), an unprivileged user
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/dialguard \
        --shell /usr/sbin/nologin dialguard \
    && install -d -o dialguard -g dialguard -m 0750 /var/lib/dialguard

# The settings the image needs (tests/deploy/test_dockerfile.py loads these very lines with
# load_settings); every other key comes from your env file or DIALGUARD_CONFIG.
ENV DIALGUARD_AGI_HOST=0.0.0.0 \
    DIALGUARD_HTTP_HOST=0.0.0.0 \
    DIALGUARD_DATABASE_DATA_DIR=/var/lib/dialguard \
    DIALGUARD_CALLS_JOURNAL_PATH=/var/lib/dialguard/optout-journal.jsonl

USER dialguard
WORKDIR /var/lib/dialguard
# The opt-out journal (opt-outs taken while the database is away) must survive the container.
VOLUME ["/var/lib/dialguard"]
EXPOSE 4573 8080

# 200 from /healthz: serving, and the database answers. Slim images have no curl: the check is Python.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "dialguard.healthcheck"]

# `docker run IMAGE` serves; `docker run IMAGE token create ...` runs any other dialguard command.
ENTRYPOINT ["dialguard"]
CMD ["serve"]
