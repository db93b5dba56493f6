import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { RUNWAY_MODELS } from '../../lib/config.js';
import { preparePhoto } from '../../lib/media/prepare-photo.js';
import { serveCommands, type PrepareCost } from './drain-ipc.js';

/**
 * The worker's photo preparation alone, in a fresh process: `preparePhoto(photo, model)`
 * exactly as `prepareGeneration` (lib/steps/generation.ts) calls it for every new Runway
 * task, after warm-up calls, one call at a time. CPU is `process.cpuUsage()` (user +
 * system, every thread: libvips works on the libuv pool), divided by the calls.
 */

const argsSchema = z.object({
  photoFile: z.string(),
  model: z.enum(RUNWAY_MODELS),
  warmups: z.number().int().positive(),
  rounds: z.number().int().positive(),
});

async function measure(raw: unknown): Promise<PrepareCost> {
  const { photoFile, model, warmups, rounds } = argsSchema.parse(raw);
  const photo = await readFile(photoFile);
  let last = await preparePhoto(photo, model);
  for (let i = 1; i < warmups; i++) last = await preparePhoto(photo, model);
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  for (let i = 0; i < rounds; i++) last = await preparePhoto(photo, model);
  const wallMs = performance.now() - started;
  const used = process.cpuUsage(cpuBefore);
  return {
    rounds,
    cpuMsPerCall: (used.user + used.system) / 1000 / rounds,
    wallMsPerCall: wallMs / rounds,
    sent: { width: last.sent.width, height: last.sent.height, bytes: last.sent.bytes },
    ratio: last.ratio,
  };
}

serveCommands({
  measure,
  close: () => {
    setImmediate(() => process.exit(0));
    return Promise.resolve(null);
  },
});
