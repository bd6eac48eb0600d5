# syntax=docker/dockerfile:1
# candlecast image: the chart library from npm, the pinned Python lock, a non-root runtime.

# 1. Front-end packages (lightweight-charts), from package-lock.json.
FROM node:20-slim AS assets
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# 2. Python dependencies from the hashed lock (runtime only, no dev tools), then candlecast.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install --no-deps .

# 3. Runtime: the venv and the chart module only.
FROM python:3.11-slim
RUN groupadd --system --gid 10001 candlecast \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin candlecast
COPY --from=build /opt/venv /opt/venv
COPY --from=assets /src/node_modules/lightweight-charts/dist/lightweight-charts.standalone.production.mjs \
     /app/vendor/lightweight-charts.mjs
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CANDLECAST_HOST=0.0.0.0 \
    CANDLECAST_PORT=8000 \
    CANDLECAST_CHART_JS=/app/vendor/lightweight-charts.mjs \
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
