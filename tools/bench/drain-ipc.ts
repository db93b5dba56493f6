import { fork, type ChildProcess } from 'node:child_process';
import { z } from 'zod';

/**
 * Request/reply over Node's IPC channel between the drain benchmark and its child processes
 * (services, worker, photo preparation), and the shapes of every reply. Each request carries
 * an id that its reply repeats; both sides validate what they receive.
 */

const requestSchema = z.object({ id: z.number().int(), command: z.string(), args: z.unknown() });
const replySchema = z.union([
  z.object({ id: z.number().int(), ok: z.literal(true), result: z.unknown() }),
  z.object({ id: z.number().int(), ok: z.literal(false), error: z.string() }),
]);

/** Answers one command; the handler validates its own `args`. */
export type CommandHandler = (args: unknown) => Promise<unknown>;

/**
 * Serves commands from the parent in a child process. The child exits when the parent goes
 * away (its IPC channel closes), so a crashed or killed benchmark leaves no process behind.
 */
export function serveCommands(handlers: Readonly<Record<string, CommandHandler>>): void {
  const send = (reply: z.infer<typeof replySchema>): void => {
    if (process.connected) process.send?.(reply);
  };
  process.on('message', (raw: unknown) => {
    const request = requestSchema.safeParse(raw);
    if (!request.success) return;
    const { id, command, args } = request.data;
    const handler = handlers[command];
    if (handler === undefined) {
      send({ id, ok: false, error: `unknown command ${command}` });
      return;
    }
    handler(args).then(
      (result) => send({ id, ok: true, result: result ?? null }),
      (error: unknown) => send({ id, ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
    );
  });
  process.on('disconnect', () => process.exit(1));
}

/** Every child started by `startChild` and not yet gone: killed when this process exits. */
const liveChildren = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

/** Kills every child still running (on an error or a signal in the benchmark). */
export function killAllChildren(): void {
  for (const child of liveChildren) child.kill('SIGKILL');
}

const LOG_TAIL_LINES = 20;

export interface Child {
  readonly pid: number;
  /** Sends a command and parses its result; rejects if the child fails it or exits first. */
  call<T>(command: string, args: unknown, result: z.ZodType<T>): Promise<T>;
  /** Lines the child wrote to stdout or stderr (its log): how many, and the last few. */
  output(): { readonly lines: number; readonly tail: readonly string[] };
  /** Asks the child to close (the `close` command), then kills it if it has not exited within `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Forks a TypeScript file under tsx with an IPC channel (`nodeOptions`: more Node flags, such
 * as `--cpu-prof`). Its stdout and stderr are kept (counted, with a short tail for error
 * messages) rather than mixed into the benchmark's output.
 */
export function startChild(file: string, cwd: string, nodeOptions: readonly string[] = []): Child {
  const child = fork(file, [], { cwd, execArgv: ['--import', 'tsx', ...nodeOptions], stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  liveChildren.add(child);
  let exited = false;
  const exitedPromise = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true;
      liveChildren.delete(child);
      resolve();
    });
  });

  let lines = 0;
  const tail: string[] = [];
  const keep = (chunk: Buffer): void => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim() === '') continue;
      lines += 1;
      tail.push(line.length > 400 ? `${line.slice(0, 400)}…` : line);
      if (tail.length > LOG_TAIL_LINES) tail.shift();
    }
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);

  let nextId = 1;
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  child.on('message', (raw: unknown) => {
    const reply = replySchema.safeParse(raw);
    if (!reply.success) return;
    const waiter = pending.get(reply.data.id);
    if (waiter === undefined) return;
    pending.delete(reply.data.id);
    if (reply.data.ok) waiter.resolve(reply.data.result);
    else waiter.reject(new Error(`${file}: ${reply.data.error}`));
  });
  void exitedPromise.then(() => {
    const why = new Error(`${file} exited before answering; its last output:\n${tail.join('\n')}`);
    for (const waiter of pending.values()) waiter.reject(why);
    pending.clear();
  });

  const call = async <T>(command: string, args: unknown, result: z.ZodType<T>): Promise<T> => {
    if (exited) throw new Error(`${file} has exited; its last output:\n${tail.join('\n')}`);
    const id = nextId++;
    const answer = new Promise<unknown>((resolve, reject) => pending.set(id, { resolve, reject }));
    child.send({ id, command, args });
    return result.parse(await answer);
  };

  return {
    pid: child.pid ?? -1,
    call,
    output: () => ({ lines, tail: [...tail] }),
    async stop(graceMs = 10_000) {
      if (exited) return;
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      try {
        await call('close', null, z.unknown()).catch(() => undefined);
        await exitedPromise;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** The keys the sandbox app and Runway accept from the worker. */
export const BENCH_KEYS = { worker: 'bench-worker-key', runway: 'bench-runway-key' } as const;

// --- Replies -----------------------------------------------------------------------------

/** Where the services child listens, and the Blob fake's store as the worker must reach it. */
export const servicesStartedSchema = z.object({
  nextApiUrl: z.string(),
  runwayApiUrl: z.string(),
  blobApiUrl: z.string(),
  blobToken: z.string(),
  /** `<store>.private.blob.vercel-storage.com`: the host the SDK reads blobs from. */
  blobStoreHost: z.string(),
  /** The fake's own origin, where the worker sends that host's requests. */
  blobOrigin: z.string(),
});
export type ServicesStarted = z.infer<typeof servicesStartedSchema>;

export const progressSchema = z.object({
  /** Items whose status is completed or failed. */
  reported: z.number(),
  completed: z.number(),
  failed: z.number(),
  /** Epoch ms of the latest applied report, or null before any. */
  lastReportAt: z.number().nullable(),
});
export type Progress = z.infer<typeof progressSchema>;

export const blobCountsSchema = z.record(z.string(), z.number());
export type BlobCounts = z.infer<typeof blobCountsSchema>;

/** Seconds after t0 of the first and last event of a kind, and how many there were. */
const spanSchema = z.object({ count: z.number(), firstS: z.number().nullable(), lastS: z.number().nullable() });
export type Span = z.infer<typeof spanSchema>;

/** What the sandbox services saw, relative to t0. */
export const timelineSchema = z.object({
  runwayCreates: spanSchema,
  runwayPolls: spanSchema,
  outputDownloads: spanSchema,
  nextTaskCalls: spanSchema,
  heartbeats: spanSchema,
  videoUploads: spanSchema,
  reports: spanSchema,
  maxRunwayTasksActive: z.number(),
});
export type Timeline = z.infer<typeof timelineSchema>;

export const workerStartedSchema = z.object({
  url: z.string(),
  maxTasksPerRun: z.number(),
  localCronSeconds: z.number(),
  logLevel: z.string(),
  runwayPollMinSeconds: z.number(),
  backpressure: z.boolean(),
});
export type WorkerStarted = z.infer<typeof workerStartedSchema>;

export const drainStartedSchema = z.object({ t0: z.number() });

/** Worker CPU since the drain started, user and system, all threads (ms). */
export const cpuSchema = z.object({ atMs: z.number(), userMs: z.number(), systemMs: z.number() });
export type CpuSample = z.infer<typeof cpuSchema>;

/** One cron-poll run: a cron tick (the bench's ticker) or a drain continuation (QStash). */
export const runSchema = z.object({
  kind: z.enum(['cron', 'drain']),
  startS: z.number(),
  durationMs: z.number(),
  leased: z.number().nullable(),
  stopped: z.string().nullable(),
});
export type RunRecord = z.infer<typeof runSchema>;

export const qstashStatsSchema = z.object({
  published: z.number(),
  deduplicated: z.number(),
  deliveries: z.number(),
  succeeded: z.number(),
  retried: z.number(),
  failed: z.number(),
});
export type QStashStats = z.infer<typeof qstashStatsSchema>;

/** The worker's QStash figures once it is idle, and every cron-poll run of the drain. */
export const settledSchema = z.object({
  idle: z.boolean(),
  settledAtMs: z.number(),
  qstash: qstashStatsSchema,
  /** Published messages per destination path (`/api/cron-poll`, `/api/runway-callback`, ...). */
  publishedByPath: z.record(z.string(), z.number()),
  runs: z.array(runSchema),
});
export type Settled = z.infer<typeof settledSchema>;

export const idleRunSchema = z.object({ leased: z.number().nullable(), stopped: z.string().nullable(), durationMs: z.number() });

/** Photo preparation cost per call, measured in a fresh process. */
export const prepareCostSchema = z.object({
  rounds: z.number(),
  cpuMsPerCall: z.number(),
  wallMsPerCall: z.number(),
  sent: z.object({ width: z.number(), height: z.number(), bytes: z.number() }),
  ratio: z.string(),
});
export type PrepareCost = z.infer<typeof prepareCostSchema>;
