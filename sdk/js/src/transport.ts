/**
 * One call of the REST face: the request, its deadline, and its retries.
 *
 * A call has one deadline (`timeoutMs`) for all its attempts and the waits
 * between them. Only answers that say nothing was done are retried: no
 * answer at all (a network error), 503 `unavailable`, 429 `rate_limited`
 * (after its `Retry-After`) and 409 `request_in_progress` (a retry whose
 * first attempt the server is still applying). Writes carry one
 * `requestId` for all their attempts, so a write whose answer was lost is
 * applied once however often it is sent.
 */

import { errorOfResponse, VeveeError } from './errors.js';
import type { FetchLike } from './types.js';

/** What a transport needs, fixed at `createVevee`. */
export interface TransportConfig {
  apiKey: string;
  /** The base URL without a trailing slash. */
  host: string;
  timeoutMs: number;
  retries: number;
  identity: string | undefined;
  fetch: FetchLike | undefined;
}

/** One call. */
export interface CallSpec {
  method: 'GET' | 'POST' | 'DELETE';
  /** The path, its variables already percent-encoded. */
  path: string;
  query?: Array<[string, string]>;
  body?: Record<string, unknown>;
  /** The idempotency key of a write, for the error it may reject with. */
  requestId?: string;
  /** The attribute a violation's field is about. */
  attributeOfField?: (field: string) => string | undefined;
}

/** The first backoff, doubled per retry up to `MAX_BACKOFF_MS`, each with jitter. */
const BASE_BACKOFF_MS = 200;
const MAX_BACKOFF_MS = 5000;

function shouldRetry(e: VeveeError): boolean {
  return (
    e.code === 'network_error' ||
    e.status === 503 ||
    e.status === 429 ||
    e.code === 'request_in_progress'
  );
}

/** Exponential backoff with "equal jitter": half fixed, half random. */
function backoffMs(retry: number): number {
  const d = Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** retry);
  return d / 2 + Math.random() * (d / 2);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs `spec`, retrying as the module doc says; resolves with the parsed JSON body. */
export async function call<T>(config: TransportConfig, spec: CallSpec): Promise<T> {
  const deadline = Date.now() + config.timeoutMs;
  let url = config.host + spec.path;
  if (spec.query && spec.query.length > 0) {
    url += '?' + spec.query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
  }
  const headers: Record<string, string> = {
    authorization: `Bearer ${config.apiKey}`,
    accept: 'application/json',
  };
  if (spec.body !== undefined) headers['content-type'] = 'application/json';
  if (config.identity !== undefined) headers['x-vevee-identity'] = config.identity;
  const body = spec.body === undefined ? undefined : JSON.stringify(spec.body);

  for (let attempt = 0; ; attempt++) {
    const outcome = await attemptOnce<T>(config, spec, url, headers, body, deadline);
    if (!(outcome instanceof VeveeError)) return outcome.value;
    const error = outcome;
    if (attempt >= config.retries || !shouldRetry(error)) throw error;
    const wait = error.retryAfterMs ?? backoffMs(attempt);
    // A wait that ends past the deadline can't help: give the caller the
    // answer now rather than a timeout later.
    if (Date.now() + wait >= deadline) throw error;
    await sleep(wait);
  }
}

/** One attempt: `{value}` on success, the error to retry or throw otherwise. */
async function attemptOnce<T>(
  config: TransportConfig,
  spec: CallSpec,
  url: string,
  headers: Record<string, string>,
  body: string | undefined,
  deadline: number,
): Promise<{ value: T } | VeveeError> {
  const remaining = deadline - Date.now();
  if (remaining <= 0) return timeoutError(config, spec, undefined);
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, remaining);
  try {
    // Looked up per call, so that a fetch installed or mocked later is used.
    const fetchFn: FetchLike = config.fetch ?? ((input, init) => globalThis.fetch(input, init));
    const init: RequestInit = { method: spec.method, headers, signal: controller.signal };
    if (body !== undefined) init.body = body;
    const response = await fetchFn(url, init);
    // The body is read under the same deadline as the answer's head.
    const text = await response.text();
    if (response.ok) {
      try {
        return { value: JSON.parse(text) as T };
      } catch (cause) {
        return new VeveeError({
          code: 'invalid_response',
          status: response.status,
          message: `The server at ${config.host} answered HTTP ${response.status} with a body that is not JSON.`,
          requestId: spec.requestId,
          cause,
        });
      }
    }
    return errorOfResponse(
      response.status,
      response.headers.get('retry-after'),
      text,
      spec.requestId,
      spec.attributeOfField ?? (() => undefined),
    );
  } catch (cause) {
    if (timedOut) return timeoutError(config, spec, cause);
    const detail = cause instanceof Error ? cause.message : String(cause);
    return new VeveeError({
      code: 'network_error',
      status: 0,
      message: `Could not reach ${config.host} (${detail}).`,
      requestId: spec.requestId,
      cause,
    });
  } finally {
    clearTimeout(timer);
  }
}

function timeoutError(config: TransportConfig, spec: CallSpec, cause: unknown): VeveeError {
  return new VeveeError({
    code: 'timeout',
    status: 0,
    message: `No answer from ${config.host} within ${config.timeoutMs} ms (timeoutMs).`,
    requestId: spec.requestId,
    cause,
  });
}
