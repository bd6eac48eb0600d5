# Stand-in for redis:7.2: Debian's redis-server (an older 7.x) with protected mode off, as the
# official image runs it (it patches the default), so that other containers may connect without
# a password. Not the official image (no entrypoint script; runs as the redis user directly).
FROM candlecast-standin/base:minbase
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data \
 # `redis-server ARGS` (compose.yaml's command) as the official image's binary would run it.
 && printf '#!/bin/sh\nexec /usr/bin/redis-server "$@" --protected-mode no\n' > /usr/local/bin/redis-server \
 && chmod 0755 /usr/local/bin/redis-server
WORKDIR /data
# Debian's redis user, whose uid the package picks at install time.
# hadolint ignore=DL3066
USER redis
EXPOSE 6379
CMD ["redis-server"]
