import type { RunwayModel } from '../../lib/config.js';
import type { DurationChoice } from '../../lib/decide/duration.js';
import { MODEL_SPECS } from '../../lib/decide/models.js';
import { PROMPT_MAX_UTF16_UNITS, type PreparedPrompt } from '../../lib/decide/prompt.js';
import { displayedSize } from '../../lib/decide/ratio.js';
import { groupDigits } from './format.js';
import type { PreparedSource } from './photo.js';

/** `2-10 s` for a run of whole seconds, else `4, 6, 8 s`. */
function allowedText(seconds: readonly number[]): string {
  const first = seconds[0] ?? 0;
  const last = seconds.at(-1) ?? 0;
  const isRun = seconds.length > 2 && seconds.every((value, index) => value === first + index);
  return `${isRun ? `${first}-${last}` : seconds.join(', ')} s`;
}

/** The worker's decisions for this photo, one line each, so a surprising video can be traced back. */
export function decisionLines(image: string, model: RunwayModel, source: PreparedSource, duration: DurationChoice, prompt: PreparedPrompt): string[] {
  const { original, sent, ratio } = source.prepared;
  const shown = displayedSize(original.width, original.height, original.orientation);
  const orientation = original.orientation === 1 ? '' : `, EXIF orientation ${original.orientation} (shown ${shown.width}×${shown.height})`;
  const changes = [source.prepared.cropped ? 'centre-cropped' : '', source.prepared.resized ? 'downscaled' : ''].filter(Boolean);
  const allowed = allowedText(MODEL_SPECS[model].durationsSeconds);
  const asked = duration.defaulted
    ? `the worker's default of ${duration.frameCount} frames`
    : `asked ${Number(duration.requestedSeconds.toFixed(2))} s`;
  const snapped = duration.seconds === duration.requestedSeconds ? '' : `; ${model} allows ${allowed}`;
  return [
    `photo:    ${image} — ${original.type.toUpperCase()} ${original.width}×${original.height}${orientation}, ${groupDigits(original.bytes)} bytes`,
    `sent:     JPEG ${sent.width}×${sent.height}, ${groupDigits(sent.bytes)} bytes, no metadata${changes.length > 0 ? `, ${changes.join(' and ')}` : ''}, ${source.via === 'upload' ? 'by ephemeral upload' : 'as a data URI'}`,
    `model:    ${model} · ratio ${ratio} (closest to the photo's shape) · duration ${duration.seconds} s (${asked}${snapped})`,
    ...(prompt.truncated ? [`prompt:   cut at a word boundary to Runway's ${PROMPT_MAX_UTF16_UNITS}-character limit`] : []),
  ];
}
