# Self-hosted mode: the worker against the real app and Runway, without Vercel.
# Set NEXT_API_URL, WORKER_API_KEY, RUNWAY_API_KEY (and QStash or nothing for the embedded one).

# Build: compile the server and the library it runs (server/, lib/) to dist/.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY lib ./lib
COPY server ./server
RUN npm run build

# Runtime: production dependencies and the compiled JavaScript only — no sources, sandbox or tools.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production NO_UPDATE_NOTIFIER=1
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY --from=build /src/dist ./dist
ENV PORT=3000 LEDGER_DIR=/data/ledger
RUN mkdir -p /data && chown node:node /data
VOLUME /data
EXPOSE 3000
USER node
# Unhealthy once no cron tick has completed for three intervals (GET /healthz answers 503).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=2 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# A small young generation keeps the idle server near Node's memory floor (the worker is I/O-bound).
CMD ["node", "--enable-source-maps", "--max-semi-space-size=1", "dist/server/main.js"]
