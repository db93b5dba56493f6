import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseConfig } from '../../lib/config.js';
import { nextPollDelaySeconds } from '../../lib/decide/poll-schedule.js';
import type { Print } from './stats.js';
import { generateTasks, runTask, summarizeRuns, type PollBounds, type PollFigures, type PollSchedule, type SimulatedTask, type TaskMix } from './poll-simulation.js';

/**
 * How many looks a video costs and how late its finish is seen: 10,000 simulated Runway
 * tasks in virtual time, polled by the worker's schedule and by a fixed 5 s one.
 * Targets: polls per video ≤ 40 % of the fixed 5 s baseline, detect delay p50 ≤ 5 s and
 * p95 ≤ 15 s, no two looks at one task closer than RUNWAY_POLL_MIN_SECONDS.
 */

const TASK_MIX: TaskMix = {
  count: 10_000,
  seed: 20_240_601,
  // Runway documents "30-120 s"; the spread is widened both ways on purpose.
  runningSeconds: [20, 180],
  throttledShare: 0.1,
  throttledSeconds: [0, 120],
  progressNoise: 0.05,
};
const FIXED_POLL_SECONDS = 5;
const TARGET_POLLS_VS_FIXED_PERCENT = 40;
const TARGET_DETECT_P50_SECONDS = 5;
const TARGET_DETECT_P95_SECONDS = 15;

/** Only for the defaults: parseConfig insists on these, and nothing here calls a service. */
const PLACEHOLDER_ENV = {
  NEXT_API_URL: 'http://bench.invalid',
  WORKER_API_KEY: 'bench',
  RUNWAY_API_KEY: 'bench',
  QSTASH_TOKEN: 'bench',
  QSTASH_CURRENT_SIGNING_KEY: 'bench',
  QSTASH_NEXT_SIGNING_KEY: 'bench',
  WORKER_BASE_URL: 'http://bench.invalid',
} as const;

function defaultBounds(): PollBounds {
  const config = parseConfig(PLACEHOLDER_ENV);
  return { minSeconds: config.runwayPollMinSeconds, maxSeconds: config.runwayPollMaxSeconds, timeoutSeconds: config.runwayTimeoutSeconds };
}

const fixedSchedule: PollSchedule = () => FIXED_POLL_SECONDS;

function simulate(tasks: readonly SimulatedTask[], schedule: PollSchedule, bounds: PollBounds): { all: PollFigures; throttled: PollFigures } {
  const runs = tasks.map((task) => runTask(task, schedule, bounds));
  return { all: summarizeRuns(runs), throttled: summarizeRuns(runs.filter((run) => run.throttled)) };
}

function printFigures(print: Print, prefix: string, figures: PollFigures): void {
  print(`${prefix}_polls_per_video_mean`, figures.pollsPerVideoMean);
  print(`${prefix}_detect_delay_p50_s`, figures.detectDelayP50Seconds, 's');
  print(`${prefix}_detect_delay_p95_s`, figures.detectDelayP95Seconds, 's');
  print(`${prefix}_detect_delay_max_s`, figures.detectDelayMaxSeconds, 's');
}

export function benchPollSchedule(print: Print): void {
  const bounds = defaultBounds();
  const tasks = generateTasks(TASK_MIX);
  const ours = simulate(tasks, nextPollDelaySeconds, bounds);
  const fixed = simulate(tasks, fixedSchedule, bounds);

  print('poll_schedule_tasks', tasks.length);
  print('poll_schedule_throttled_tasks', ours.throttled.tasks);
  print(
    'poll_schedule_mix',
    `models gen4_turbo, gen4.5, veo3.1, veo3.1_fast in equal shares; RUNNING ${TASK_MIX.runningSeconds.join('-')} s uniform, ` +
      `progress linear ±${TASK_MIX.progressNoise}; ${TASK_MIX.throttledShare * 100} % THROTTLED ${TASK_MIX.throttledSeconds.join('-')} s first; seed ${TASK_MIX.seed}`,
  );
  print('poll_schedule_bounds', `min ${bounds.minSeconds} s, max ${bounds.maxSeconds} s, timeout ${bounds.timeoutSeconds} s (config defaults)`);
  print(
    'poll_schedule_targets',
    `polls ≤ ${TARGET_POLLS_VS_FIXED_PERCENT} % of fixed ${FIXED_POLL_SECONDS} s, detect delay p50 ≤ ${TARGET_DETECT_P50_SECONDS} s and p95 ≤ ${TARGET_DETECT_P95_SECONDS} s, min gap ≥ ${bounds.minSeconds} s`,
  );
  printFigures(print, `poll_fixed${FIXED_POLL_SECONDS}`, fixed.all);
  printFigures(print, 'poll', ours.all);
  const pollsVsFixedPercent = (100 * ours.all.pollsPerVideoMean) / fixed.all.pollsPerVideoMean;
  print(`poll_polls_vs_fixed${FIXED_POLL_SECONDS}_percent`, pollsVsFixedPercent, '%');
  print('poll_min_gap_s', ours.all.minGapSeconds, 's');
  print('poll_timed_out_tasks', ours.all.timedOut);
  printFigures(print, `poll_fixed${FIXED_POLL_SECONDS}_throttled`, fixed.throttled);
  printFigures(print, 'poll_throttled', ours.throttled);
}

const invokedPath = process.argv[1];
if (invokedPath !== undefined && import.meta.url === pathToFileURL(path.resolve(invokedPath)).href) {
  benchPollSchedule((name, value, unit = '') => {
    process.stdout.write(`${name}: ${typeof value === 'number' ? Number(value.toFixed(2)) : value}${unit ? ` ${unit}` : ''}\n`);
  });
}
