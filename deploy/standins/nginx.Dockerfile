# Stand-in for nginx:1.27: Debian's nginx-light (an older nginx, with the modules the recipes in
# deploy/ use: upstream least_conn and keepalive, map, limit_conn, limit_req), run the way the
# official image runs it: in the foreground, stopped with SIGQUIT. Not the official image (no
# entrypoint scripts, no templates).
FROM candlecast-standin/base:minbase
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx-light \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
