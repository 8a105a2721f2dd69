# liberate as a container: `docker build -t liberate .`, then
#   docker run --rm -v "$PWD/config:/config:ro" liberate check /config/quickstart.yaml
# The image runs as an unprivileged user; the working directory /data is where relative paths
# in a run file (the embedded stream file, SQLite databases) end up: mount a volume there to
# keep them. docker-compose.yml runs it against the whole integration stack.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Every runtime dependency ships as a manylinux wheel (psycopg[binary], confluent-kafka,
# fastavro, ...): no compiler and no system library is needed.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY liberate ./liberate
COPY connectors ./connectors
COPY sinks ./sinks
COPY outbox ./outbox
RUN pip install . && rm -rf /src

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin liberate \
    && mkdir /data && chown liberate:liberate /data
USER liberate
WORKDIR /data

ENTRYPOINT ["liberate"]
CMD ["--help"]
