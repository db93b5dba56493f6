# Self-hosted mode: the worker against the real app and Runway, without Vercel.
# Set NEXT_API_URL, WORKER_API_KEY, RUNWAY_API_KEY (and QStash or nothing for the embedded one).
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production NO_UPDATE_NOTIFIER=1 VERCEL_TELEMETRY_DISABLED=1
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force
COPY tsconfig.json ./
COPY api ./api
COPY lib ./lib
COPY dev ./dev
ENV PORT=3000 LEDGER_DIR=/data/ledger
RUN mkdir -p /data && chown node:node /data
VOLUME /data
EXPOSE 3000
USER node
# Unhealthy once no cron tick has completed for three intervals (GET /healthz answers 503).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=2 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "--import", "tsx", "dev/start.ts"]
