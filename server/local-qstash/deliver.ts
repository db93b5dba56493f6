import { parseRetryAfterMs, type AttemptOutcome } from './delivery-policy.js';
import { signDelivery } from './signature.js';

const RESPONSE_SNIPPET_BYTES = 1024;
const NO_BODY = new Uint8Array(0);

/** The parts of a message one delivery needs. */
export interface DeliverableMessage {
  readonly messageId: string;
  readonly url: string;
  readonly method: string;
  readonly body: Uint8Array;
  readonly contentType: string | undefined;
  readonly forwardedHeaders: Readonly<Record<string, string>>;
}

export interface DeliverOnceInput {
  readonly message: DeliverableMessage;
  /** Sent as `Upstash-Retried`. */
  readonly retried: number;
  readonly signingKey: string;
  readonly timeoutMs: number;
  /** Aborts the attempt when the local QStash closes. */
  readonly signal: AbortSignal;
}

export interface DeliveryResult {
  readonly outcome: AttemptOutcome;
  readonly status: number | undefined;
  readonly error: string | undefined;
  readonly responseBody: string;
}

/** Makes one signed HTTP delivery of a message, the way QStash calls a destination. */
export async function deliverOnce(input: DeliverOnceInput): Promise<DeliveryResult> {
  const { message, retried } = input;
  // fetch refuses a body on GET and HEAD, so such deliveries carry (and sign) none.
  const carriesBody = message.method !== 'GET' && message.method !== 'HEAD';
  const body = carriesBody ? message.body : NO_BODY;
  const signature = await signDelivery({
    signingKey: input.signingKey,
    url: message.url,
    body,
    nowSeconds: Math.floor(Date.now() / 1000),
  });
  const headers: Record<string, string> = { ...message.forwardedHeaders };
  if (message.contentType !== undefined) headers['content-type'] = message.contentType;
  headers['user-agent'] = 'Upstash-QStash';
  headers['upstash-signature'] = signature;
  headers['upstash-message-id'] = message.messageId;
  headers['upstash-retried'] = String(retried);

  const signal = AbortSignal.any([input.signal, AbortSignal.timeout(input.timeoutMs)]);
  try {
    const response = await fetch(message.url, {
      method: message.method,
      headers,
      // A copy typed over a plain ArrayBuffer, which is what fetch's BodyInit accepts.
      ...(carriesBody ? { body: new Uint8Array(body) } : {}),
      redirect: 'manual',
      signal,
    });
    const responseBody = await readSnippet(response);
    return {
      outcome: {
        kind: 'response',
        status: response.status,
        nonRetryable: response.headers.get('upstash-nonretryable-error')?.trim().toLowerCase() === 'true',
        retryAfterMs: parseRetryAfterMs(response.headers.get('retry-after'), Date.now()),
      },
      status: response.status,
      error: undefined,
      responseBody,
    };
  } catch (error) {
    const description = describeFailure(error, input, signal);
    return { outcome: { kind: 'error', error: description }, status: undefined, error: description, responseBody: '' };
  }
}

async function readSnippet(response: Response): Promise<string> {
  const bytes = new Uint8Array(await response.arrayBuffer());
  return new TextDecoder().decode(bytes.subarray(0, RESPONSE_SNIPPET_BYTES));
}

function describeFailure(error: unknown, input: DeliverOnceInput, signal: AbortSignal): string {
  if (input.signal.aborted) return 'aborted: local QStash closed';
  if (signal.aborted) return `timeout after ${input.timeoutMs} ms`;
  if (!(error instanceof Error)) return String(error);
  const cause: unknown = error.cause;
  if (cause instanceof Error) {
    const code = 'code' in cause && typeof cause.code === 'string' ? ` (${cause.code})` : '';
    return `${error.message}: ${cause.message}${code}`;
  }
  return error.message;
}
