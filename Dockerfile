# syntax=docker/dockerfile:1
# candlecast image: the wheel built here (with the chart module inside), the pinned Python lock,
# a non-root runtime.

# 1. Node.js, only for the build hook's `npm ci` (package-lock.json pins the chart library).
FROM node:20-slim AS node

# 2. Build the wheel: hatch_build.py runs npm ci and puts the chart module into the package.
#    The build backend comes from the hashed requirements-build.lock.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
WORKDIR /src
COPY requirements-build.lock ./
RUN pip install --require-hashes -r requirements-build.lock
COPY pyproject.toml README.md hatch_build.py package.json package-lock.json ./
COPY service ./service
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /dist .

# 3. Runtime dependencies from the hashed lock (runtime only, no dev tools), then the wheel.
FROM python:3.11-slim AS venv
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.lock /tmp/
RUN pip install --require-hashes -r /tmp/requirements.lock
COPY --from=build /dist /tmp/dist
RUN pip install --no-deps /tmp/dist/*.whl

# 4. Runtime: the venv only (candlecast finds the chart module inside its package).
FROM python:3.11-slim
RUN groupadd --system --gid 10001 candlecast \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin candlecast
COPY --from=venv /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CANDLECAST_HOST=0.0.0.0 \
    CANDLECAST_PORT=8000 \
    CANDLECAST_PROXY_HEADERS=true \
    CANDLECAST_FORWARDED_ALLOW_IPS=127.0.0.1
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# python -c, not curl: the slim image has no curl, and this adds nothing to it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('CANDLECAST_PORT', '8000')}/healthz\", timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["candlecast"]
