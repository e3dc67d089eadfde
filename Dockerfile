# ksqlpy server image: the package is installed at build time, the server runs as a non-root
# user, data lives in the /data volume, and Docker reports the container healthy once the
# server answers /chc/ready (the engine has replayed its command log and started its queries).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY ksqlpy ./ksqlpy
COPY cli ./cli
RUN pip install . \
    && useradd --system --create-home --uid 10001 ksqlpy \
    && mkdir -p /data \
    && chown ksqlpy:ksqlpy /data

USER ksqlpy
WORKDIR /home/ksqlpy
VOLUME ["/data"]
EXPOSE 8088

# Server properties come from KSQL_* variables, as in Confluent's images
# (KSQL_BOOTSTRAP_SERVERS=kafka:19092 -> bootstrap.servers).
ENV KSQL_LISTENERS=http://0.0.0.0:8088 \
    KSQL_KSQL_STREAMS_STATE_DIR=/data

# slim images have no curl: Python asks for /chc/ready (200 when ready, 503 before).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8088/chc/ready', timeout=4)"]

CMD ["ksqlpy", "server"]
