import { PermanentError, UpstreamError } from '../../lib/errors.js';
import { failureMessageOf } from '../../lib/decide/failure-message.js';

/** A problem with what the command was given (arguments, environment, files): exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A run that could not finish (refused, failed, timed out): exit code 1. */
export class GenerateError extends Error {
  override readonly name = 'GenerateError';
}

/** Ctrl-C or SIGTERM: the Runway task, if any, was cancelled on the way out. */
export class Interrupted extends Error {
  override readonly name = 'Interrupted';
}

export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
/** 128 + SIGINT, what shells report for a command stopped by Ctrl-C. */
export const EXIT_INTERRUPTED = 130;

/** One line for the terminal, with nothing secret in it (the lib's admin-message rules). */
export function errorLine(error: unknown): string {
  if (error instanceof UsageError || error instanceof GenerateError || error instanceof Interrupted) return error.message;
  if (error instanceof UpstreamError && error.service === 'runway' && error.status === 401) {
    return `${failureMessageOf(error)} — check RUNWAY_API_KEY`;
  }
  if (error instanceof UpstreamError || error instanceof PermanentError) return failureMessageOf(error);
  return failureMessageOf(error).replace(/^worker: /, '');
}

export function exitCodeOf(error: unknown): number {
  if (error instanceof UsageError) return EXIT_USAGE;
  if (error instanceof Interrupted) return EXIT_INTERRUPTED;
  return EXIT_FAILED;
}
