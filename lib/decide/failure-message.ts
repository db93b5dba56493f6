import { PermanentError, UpstreamError } from '../errors.js';

/**
 * Wording of the `error_message` the app shows admins (design §5): which stage failed and
 * why, short, and with nothing secret in it.
 */

export const MAX_ERROR_MESSAGE_LENGTH = 500;
/** Runway's own `failure` text is only quoted for codes we do not know, and briefly. */
const MAX_QUOTED_FAILURE_LENGTH = 200;
const MAX_CODE_LENGTH = 80;

export type FailureClass = 'moderation' | 'bad-output' | 'transient' | 'input' | 'unknown';

interface FailureFamily {
  /** Matches the code itself and every code below it (`SAFETY.INPUT` matches `SAFETY.INPUT.IMAGE`). */
  readonly code: string;
  readonly kind: FailureClass;
  readonly explanation: string;
}

const MODERATED_INPUT = "the input was rejected by Runway's content moderation";

// Runway's failureCode families (contract §2.3). The set is open, so families match by
// prefix; the first match wins, so specific codes come before their family. Other
// SAFETY.INPUT codes fall to SAFETY, which words them the same.
const FAILURE_FAMILIES: readonly FailureFamily[] = [
  { code: 'SAFETY.INPUT.IMAGE', kind: 'moderation', explanation: "the photo was rejected by Runway's content moderation" },
  { code: 'SAFETY.INPUT.TEXT', kind: 'moderation', explanation: "the prompt was rejected by Runway's content moderation" },
  { code: 'SAFETY.OUTPUT', kind: 'moderation', explanation: "the generated video was blocked by Runway's content moderation" },
  { code: 'SAFETY', kind: 'moderation', explanation: MODERATED_INPUT },
  { code: 'INPUT_PREPROCESSING.SAFETY.TEXT', kind: 'moderation', explanation: "the prompt was rejected by Runway's content moderation" },
  { code: 'INPUT_PREPROCESSING.SAFETY', kind: 'moderation', explanation: MODERATED_INPUT },
  { code: 'INPUT_PREPROCESSING.INTERNAL', kind: 'transient', explanation: 'a temporary failure at Runway while preparing the input' },
  { code: 'INTERNAL.BAD_OUTPUT', kind: 'bad-output', explanation: 'Runway produced an unusable video (often text over the photo)' },
  { code: 'INTERNAL', kind: 'transient', explanation: 'a temporary internal failure at Runway' },
  { code: 'THIRD_PARTY.UNAVAILABLE', kind: 'transient', explanation: "a temporary failure of Runway's model provider" },
  { code: 'ASSET.INVALID', kind: 'input', explanation: 'the photo could not be used' },
];

export const RUNWAY_CANCELLED_MESSAGE = 'runway: task was cancelled';

function normalizeCode(code: string | null | undefined): string {
  return (code ?? '').trim().toUpperCase();
}

function familyOf(code: string): FailureFamily | undefined {
  return FAILURE_FAMILIES.find((family) => code === family.code || code.startsWith(`${family.code}.`));
}

/** What kind of failure a Runway `failureCode` names; 'unknown' for codes outside the known families. */
export function classifyFailureCode(code: string | null | undefined): FailureClass {
  return familyOf(normalizeCode(code))?.kind ?? 'unknown';
}

const REDACTIONS: readonly (readonly [RegExp, string])[] = [
  // Inline images first: base64 would otherwise survive as one long "word".
  [/data:[\w.+/-]*(?:;[\w=.+-]+)*,\S*/gi, '[data]'],
  // Any word holding a URL (http(s), runway://, ...), whatever is glued to it: signed URLs
  // carry their credentials in the query.
  [/\S*:\/\/\S*/g, '[url]'],
  // JWTs (no word boundary: one may be glued to the text before it) and JWT fragments.
  [/eyJ[\w-]{4,}(?:\.[\w-]*){1,2}/g, '[redacted]'],
  // The lookahead spares ordinary words ("Bearer token") and redacts real credentials.
  [/\b(Bearer|Worker|Basic|Token)\s+(?=[\w.~+/=-]*[\d_.~+/=-])[\w.~+/=-]{8,}/gi, '$1 [redacted]'],
  [/\b((?:access_|refresh_|api_?|upload_)?token|signature|sig|key|secret|password|x-amz-[a-z-]+)=[^\s&"']+/gi, '$1=[redacted]'],
  [/\bsig_[A-Za-z0-9]{8,}/g, '[redacted]'],
];

// Any other long opaque run of letters and digits is more likely a key than prose
// (40+ so that UUIDs, such as Runway task ids, stay readable).
const LONG_RUN = /[\w+/=.-]{40,}/g;
const redactKeyLike = (run: string): string => (/\d/.test(run) && /[a-z]/i.test(run) ? '[redacted]' : run);

/** The first `units` UTF-16 units, one fewer rather than half of a surrogate pair. */
function headOf(text: string, units: number): string {
  const last = text.charCodeAt(units - 1);
  return text.slice(0, last >= 0xd800 && last <= 0xdbff ? units - 1 : units);
}

function cutWithEllipsis(text: string, limit: number): string {
  return text.length <= limit ? text : `${headOf(text, limit - 1).trimEnd()}…`;
}

/**
 * Makes any text safe and short enough for an admin-facing message: removes URLs, inline
 * data, tokens and credentials, collapses whitespace and control characters, and cuts to
 * `limit` characters (500 by default) with a trailing "…".
 */
export function sanitizeMessage(text: string, limit: number = MAX_ERROR_MESSAGE_LENGTH): string {
  // Text this far out could never be shown; dropping it first bounds the work.
  const workLimit = limit * 4;
  let clean = text.length > workLimit ? `${headOf(text, workLimit)}…` : text;
  for (const [pattern, replacement] of REDACTIONS) clean = clean.replace(pattern, replacement);
  clean = clean.replace(LONG_RUN, redactKeyLike);
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is removed
  clean = clean.replace(/[\s\u0000-\u001f\u007f]+/g, ' ').trim();
  return cutWithEllipsis(clean, limit);
}

/** The code as shown: only the characters Runway codes use, so a strange value cannot inject text. */
function displayCode(code: string): string {
  return code.replace(/[^A-Z0-9._-]/g, '').slice(0, MAX_CODE_LENGTH);
}

/**
 * `error_message` for a FAILED Runway task, e.g.
 * `runway: SAFETY.INPUT.IMAGE — the photo was rejected by Runway's content moderation`.
 * Runway's `failure` text is quoted (sanitized) only for unknown codes: Runway advises
 * against showing it verbatim, and the code says more for the ones we know.
 */
export function runwayFailureMessage(failureCode?: string | null, failure?: string | null): string {
  const code = displayCode(normalizeCode(failureCode));
  const family = familyOf(code);
  const detail = sanitizeMessage(failure ?? '', MAX_QUOTED_FAILURE_LENGTH);
  let message: string;
  if (family !== undefined) message = `runway: ${code} — ${family.explanation}`;
  else if (code !== '') message = `runway: ${code} — ${detail === '' ? 'task failed' : detail}`;
  else message = detail === '' ? 'runway: task failed (no reason given)' : `runway: task failed — ${detail}`;
  return sanitizeMessage(message);
}

/** `error_message` when a task outlived `RUNWAY_TIMEOUT_SECONDS`, e.g. `runway: timed out after 600 s (last status THROTTLED)`. */
export function timeoutMessage(seconds: number, lastStatus?: string | null, waitedThrottled = false): string {
  const status = (lastStatus ?? '').toUpperCase().replace(/[^A-Z_]/g, '').slice(0, 30);
  const after = Number.isFinite(seconds) ? `${Math.round(seconds)} s` : 'too long';
  const notes = [
    ...(status === '' ? [] : [`last status ${status}`]),
    // A task that waited for a slot and ran out of time just after starting would otherwise
    // read as a slow generation.
    ...(waitedThrottled && status !== 'THROTTLED' ? ["it waited THROTTLED for Runway's concurrency limit"] : []),
  ];
  return sanitizeMessage(`runway: timed out after ${after}${notes.length === 0 ? '' : ` (${notes.join('; ')})`}`);
}

/** The admin-facing message for a thrown error: stage-prefixed, short, no URLs or tokens. */
export function failureMessageOf(error: unknown): string {
  if (error instanceof PermanentError || error instanceof UpstreamError) return sanitizeMessage(error.message);
  const described = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return sanitizeMessage(`worker: unexpected error (${described})`);
}

/** A size as people read it: `512 bytes`, `1.2 KB`, `3.4 MB`, `1.1 GB` (binary units). */
export function humanSize(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return 'unknown size';
  if (bytes < 1024) return `${Math.round(bytes)} bytes`;
  const units = ['KB', 'MB', 'GB', 'TB'] as const;
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit] ?? 'TB'}`;
}

/**
 * `error_message` when Runway's output URL answered with something other than a video,
 * e.g. `output: Runway's output is not a video (text/html, 1.2 KB)`. The type is shown only
 * in the characters media types use, so a strange header cannot inject text.
 */
export function notVideoMessage(mediaType: string | undefined, declaredBytes: number | undefined): string {
  const type = (mediaType ?? '').replace(/[^a-z0-9.+/_-]/gi, '').slice(0, 60) || 'no content type';
  const size = declaredBytes === undefined ? 'unknown size' : humanSize(declaredBytes);
  return sanitizeMessage(`output: Runway's output is not a video (${type}, ${size})`);
}
