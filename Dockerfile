# syntax=docker/dockerfile:1
FROM python:3.11-slim AS build
WORKDIR /src
# The image's pip installs only the pinned installer (by hash); uv then installs the lock
# exactly, and builds our wheel with the setuptools the dev lock pins.
COPY requirements-uv.lock requirements.lock requirements-dev.lock ./
ENV UV_PYTHON_DOWNLOADS=never UV_NO_CACHE=1
RUN pip install --no-cache-dir --no-deps --require-hashes --target /opt/uv -r requirements-uv.lock \
    && /opt/uv/bin/uv venv /opt/venv \
    && /opt/uv/bin/uv pip sync --require-hashes --python /opt/venv/bin/python requirements.lock
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
COPY storage ./storage
RUN /opt/uv/bin/uv pip install --no-deps --build-constraints requirements-dev.lock \
    --python /opt/venv/bin/python .

FROM python:3.11-slim
RUN groupadd --gid 10001 bot \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin bot \
    && mkdir /data \
    && chown bot:bot /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DATA_DIR=/data \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HTTP_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["gemini-bot"]
CMD ["run"]
