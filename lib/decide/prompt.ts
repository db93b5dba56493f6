import type { RunwayModel } from '../config.js';
import { MODEL_SPECS } from './models.js';

/** Runway's `promptText` limit, counted in UTF-16 code units (JS `string.length`), contract §2.1. */
export const PROMPT_MAX_UTF16_UNITS = 1000;
/** Sent when the model requires a prompt and the task has none. */
export const DEFAULT_PROMPT = 'Gentle, natural motion bringing the photo to life.';
/** A word boundary further back than this from the limit loses too much text; cut hard instead. */
const WORD_BOUNDARY_SEARCH_UNITS = 200;

export interface PreparedPrompt {
  /** What to send as `promptText`; undefined means leave the field out. */
  readonly text: string | undefined;
  readonly truncated: boolean;
  readonly defaulted: boolean;
}

const isHighSurrogate = (code: number): boolean => code >= 0xd800 && code <= 0xdbff;

/**
 * Cuts `text` to at most `limit` UTF-16 units: at the last whitespace at or before the
 * limit when one is near, else at the limit itself, stepping back one unit rather than
 * leaving half of a surrogate pair.
 */
function cutToLimit(text: string, limit: number): string {
  // A space right after the limit is a boundary too: cutting there keeps `limit` units.
  for (let index = limit; index >= limit - WORD_BOUNDARY_SEARCH_UNITS; index -= 1) {
    if (/\s/.test(text.charAt(index))) return text.slice(0, index).trimEnd();
  }
  // No whitespace near the limit, so there is none at the end of this cut to trim.
  const end = isHighSurrogate(text.charCodeAt(limit - 1)) ? limit - 1 : limit;
  return text.slice(0, end);
}

/** Prompt for a task (design §3): trimmed, cut to Runway's limit, defaulted when required. */
export function preparePrompt(model: RunwayModel, prompt: string | null | undefined): PreparedPrompt {
  const trimmed = (prompt ?? '').trim();
  if (trimmed === '') {
    return MODEL_SPECS[model].promptRequired
      ? { text: DEFAULT_PROMPT, truncated: false, defaulted: true }
      : { text: undefined, truncated: false, defaulted: false };
  }
  if (trimmed.length <= PROMPT_MAX_UTF16_UNITS) return { text: trimmed, truncated: false, defaulted: false };
  return { text: cutToLimit(trimmed, PROMPT_MAX_UTF16_UNITS), truncated: true, defaulted: false };
}
