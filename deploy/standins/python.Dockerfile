# Stand-in for python:3.11-slim: Debian's own Python 3.11 (python3, venv, pip) on the minbase
# rootfs. It proves that candlecast's Dockerfile builds and runs; it is not the official image
# (Debian's 3.11 point release, under /usr/bin rather than /usr/local/bin, Debian's pip).
FROM candlecast-standin/base:minbase
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip python-is-python3 \
 && rm -rf /var/lib/apt/lists/* \
 # The official image's Python is not "externally managed": `pip install` works as root there.
 && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED
# pip (and npm, which the Dockerfile copies in from node) trust the system store, which holds
# the host's locally added CA certificates too.
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
