import { createRunway, type Runway, type RunwayTask } from '../../lib/clients/runway.js';
import { RUNWAY_CANCELLED_MESSAGE, failureMessageOf, runwayFailureMessage } from '../../lib/decide/failure-message.js';
import { DEFAULT_TIMEOUTS } from '../../lib/deps.js';
import { parseCommand, USAGE } from './args.js';
import { errorLine, GenerateError, Interrupted } from './errors.js';
import { creditsText, describeRequest, finalCreditsLine, groupDigits, pollLine, secondsText } from './format.js';
import { assertWritable, outputPathFor, saveOutput } from './output.js';
import { prepareSource, readPhoto } from './photo.js';
import { waitForTask } from './poll.js';
import { planRequest } from './request.js';
import { chooseModel, parseSettings, withEnvFile, type Env } from './settings.js';
import { decisionLines } from './summary.js';

export interface GenerateContext {
  readonly argv: readonly string[];
  readonly env: Env;
  readonly cwd: string;
  /** Aborted on Ctrl-C / SIGTERM. */
  readonly signal: AbortSignal;
  readonly print: (line: string) => void;
}

/** Stops paying for a task that will not be used; says so when Runway did not take the cancel. */
async function cancelQuietly(runway: Runway, taskId: string): Promise<string | undefined> {
  try {
    await runway.cancelTask(taskId);
    return undefined;
  } catch (error) {
    return failureMessageOf(error);
  }
}

/**
 * Waits for the task. On any other way out (Ctrl-C, the timeout, a poll that failed for good)
 * the task is cancelled, so nothing keeps running and billing unseen.
 */
async function awaitTask(
  runway: Runway,
  taskId: string,
  wait: () => Promise<RunwayTask | undefined>,
  signal: AbortSignal,
): Promise<RunwayTask | undefined> {
  try {
    if (signal.aborted) throw signal.reason;
    return await wait();
  } catch (error) {
    const notCancelled = await cancelQuietly(runway, taskId);
    const outcome = notCancelled === undefined ? `cancelled Runway task ${taskId}` : `could not cancel Runway task ${taskId} (${notCancelled}): it may still run and be billed`;
    if (signal.aborted) throw new Interrupted(`interrupted: ${outcome}`);
    throw new GenerateError(`${errorLine(error)}; ${outcome}`);
  }
}

/** One photo through Runway image-to-video the worker's way, the video saved to disk. */
export async function runGenerate(context: GenerateContext): Promise<void> {
  const { print, signal } = context;
  const command = parseCommand(context.argv);
  if (command.kind === 'help') {
    print(USAGE);
    return;
  }
  const { args } = command;
  const startedMs = Date.now();
  const settings = parseSettings(await withEnvFile(context.env, args.envFile));
  const model = chooseModel(args.model, settings);
  const source = await prepareSource(args.image, await readPhoto(args.image), model, args.upload);
  const outFile = outputPathFor(args.image, args.out, context.cwd);
  await assertWritable(outFile);

  const runway = createRunway({ baseUrl: settings.runwayApiUrl, apiKey: settings.runwayApiKey, timeoutMs: DEFAULT_TIMEOUTS.runwayMs });
  const plan = await planRequest(runway, source, args.image, {
    model,
    durationSeconds: args.durationSeconds,
    prompt: args.prompt,
    audio: settings.audio,
  });
  for (const line of decisionLines(args.image, model, source, plan.duration, plan.prompt)) print(line);
  print(`POST ${settings.runwayApiUrl}/v1/image_to_video`);
  print(describeRequest(plan.body));
  if (signal.aborted) throw new Interrupted('interrupted before a Runway task was created');

  const created = await runway.createTask(plan.body);
  const createdAtMs = Date.now();
  const estimate = created.estimatedCredits === undefined ? 'no cost estimate' : `estimated ${creditsText(created.estimatedCredits)}`;
  print(`task:     ${created.id} created · ${estimate}`);

  const task = await awaitTask(
    runway,
    created.id,
    () =>
      waitForTask(runway, created.id, {
        model,
        createdAtMs,
        minSeconds: settings.pollMinSeconds,
        maxSeconds: settings.pollMaxSeconds,
        timeoutSeconds: settings.timeoutSeconds,
        signal,
        onPoll: (poll, elapsedMs, polled) => print(pollLine(poll, elapsedMs, polled)),
      }),
    signal,
  );
  const generationMs = Date.now() - createdAtMs;
  if (task === undefined) throw new GenerateError(`runway: task ${created.id} was cancelled or deleted at Runway`);
  if (task.status !== 'SUCCEEDED') {
    print(`time:     ${secondsText(Date.now() - startedMs)} in all, ${secondsText(generationMs)} at Runway`);
    throw new GenerateError(task.status === 'CANCELLED' ? RUNWAY_CANCELLED_MESSAGE : runwayFailureMessage(task.failureCode, task.failure));
  }
  const outputUrl = task.output?.[0];
  if (outputUrl === undefined) throw new GenerateError(`runway: task ${task.id} succeeded without an output URL`);
  let bytes: number;
  try {
    bytes = await saveOutput(outputUrl, outFile, signal);
  } catch (error) {
    if (signal.aborted) throw new Interrupted(`interrupted: the video of task ${task.id} was not saved`);
    throw error;
  }
  print(`saved:    ${outFile} (${groupDigits(bytes)} bytes, MP4)`);
  print(finalCreditsLine(task, created.estimatedCredits));
  print(`time:     ${secondsText(Date.now() - startedMs)} in all, ${secondsText(generationMs)} at Runway`);
}
