import { createLogger, type Logger } from '../../lib/log.js';

/** A real worker logger (redaction included) whose lines are kept for the test to read. */
export interface CapturedLog {
  readonly logger: Logger;
  /** Every line exactly as written to the destination. */
  lines(): readonly string[];
  /** Lines parsed as JSON (JSON mode only). */
  records(): readonly Record<string, unknown>[];
}

export function captureLog(options: { secrets?: readonly string[]; pretty?: boolean; level?: string } = {}): CapturedLog {
  const written: string[] = [];
  const logger = createLogger({
    level: options.level ?? 'debug',
    secrets: options.secrets ?? [],
    ...(options.pretty === undefined ? {} : { pretty: options.pretty }),
    destination: {
      write(line: string) {
        written.push(line);
      },
    },
  });
  return {
    logger,
    lines: () => [...written],
    records: () => written.map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}
