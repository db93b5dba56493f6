import { parseArgs } from 'node:util';
import { UsageError } from './errors.js';

export interface GenerateArgs {
  readonly image: string;
  readonly model: string | undefined;
  readonly prompt: string | undefined;
  /** Seconds asked for, before snapping to what the model allows. */
  readonly durationSeconds: number | undefined;
  readonly out: string | undefined;
  readonly envFile: string | undefined;
  /** Send the photo by ephemeral upload even when a data URI would fit. */
  readonly upload: boolean;
}

export type ParsedCommand = { readonly kind: 'help' } | { readonly kind: 'run'; readonly args: GenerateArgs };

export const USAGE = `Usage: npm run generate -- --image photo.jpg [options]

Runs one photo through Runway image-to-video the way the worker does (ratio from the
photo, duration snapped to the model, photo prepared and sent as a data URI) and saves
the video.

  --image <path>      JPEG, PNG or WebP photo (required)
  --model <name>      gen4_turbo, gen4.5, veo3.1 or veo3.1_fast (default: RUNWAY_MODEL, else gen4_turbo)
  --prompt <text>     prompt text (default: the worker's default prompt)
  --duration <s>      seconds wanted; snapped to the model's allowed durations (default: 121 frames at 24 fps, about 5 s)
  --out <path>        where to write the MP4 (default: <image name>.mp4 in the current directory)
  --upload            send the photo by Runway ephemeral upload instead of a data URI
  --env-file <path>   read RUNWAY_* variables from this file (the environment wins)
  -h, --help          show this help

Environment: RUNWAY_API_KEY (required), RUNWAY_API_URL (default https://api.dev.runwayml.com),
RUNWAY_MODEL, RUNWAY_AUDIO, RUNWAY_POLL_MIN_SECONDS, RUNWAY_POLL_MAX_SECONDS, RUNWAY_TIMEOUT_SECONDS.`;

const OPTIONS = {
  image: { type: 'string' },
  model: { type: 'string' },
  prompt: { type: 'string' },
  duration: { type: 'string' },
  out: { type: 'string' },
  upload: { type: 'boolean', default: false },
  'env-file': { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

function secondsOf(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const seconds = /^\s*\d+(?:\.\d+)?\s*$/.test(text) ? Number(text) : Number.NaN;
  if (!(seconds > 0 && Number.isFinite(seconds))) {
    throw new UsageError(`--duration must be a positive number of seconds, got ${JSON.stringify(text)}`);
  }
  return seconds;
}

/** Reads the command line (without `node` and the script). Throws UsageError with a one-line reason. */
export function parseCommand(argv: readonly string[]): ParsedCommand {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; strict: true; allowPositionals: false }>>;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, strict: true, allowPositionals: false });
  } catch (error) {
    // node:util words these well ("Unknown option '--modle'"); only the first line is kept.
    const reason = error instanceof Error ? (error.message.split('\n')[0] ?? error.message) : String(error);
    throw new UsageError(`${reason} (see --help)`);
  }
  const { values } = parsed;
  if (values.help) return { kind: 'help' };
  if (values.image === undefined || values.image.trim() === '') throw new UsageError('--image <path> is required (see --help)');
  return {
    kind: 'run',
    args: {
      image: values.image,
      model: values.model,
      prompt: values.prompt,
      durationSeconds: secondsOf(values.duration),
      out: values.out,
      envFile: values['env-file'],
      upload: values.upload,
    },
  };
}
