/**
 * `VeveeError`, and how an HTTP answer of the REST face becomes one.
 *
 * The server's errors are grpc-gateway bodies, `{code, message, details}`,
 * whose `google.rpc.ErrorInfo` detail carries the reason (the seed's
 * lower-case codes) and the attribute. Answers without one (a proxy's HTML
 * page, an unknown path) still get a code: the gRPC code's name when the body
 * has one, else one derived from the HTTP status.
 */

/** The codes of the contract's error table, plus the client's own. */
export type VeveeErrorCode =
  // The seed's table.
  | 'attribute_not_defined'
  | 'attribute_value_invalid'
  | 'attribute_value_too_long'
  | 'attribute_archived'
  | 'client_attribute_writes_disabled'
  // The rest of the contract's table (section 5).
  | 'secret_key_required'
  | 'missing_api_key'
  | 'invalid_api_key'
  | 'invalid_distinct_id'
  | 'person_not_found'
  | 'too_many_values'
  | 'invalid_argument'
  | 'unavailable'
  | 'attribute_operation_invalid'
  | 'attribute_value_changed'
  | 'request_id_reused'
  | 'request_in_progress'
  | 'identity_verification_failed'
  | 'attribute_not_client_writable'
  | 'origin_not_allowed'
  | 'rate_limited'
  // The client's own.
  | 'network_error'
  | 'timeout'
  | 'request_too_large'
  | 'invalid_response'
  | 'secret_key_in_browser'
  // Any other reason a newer server sends.
  | (string & {});

/** One failing field of a request (SetAttributes: one per failing attribute). */
export interface Violation {
  /** The request field, e.g. `values.persona` or `updates[1]`. */
  field: string;
  /** The attribute it is about, where the field names one. */
  attribute?: string;
  /** The reason of this field's failure, e.g. `attribute_value_invalid`. */
  code?: string;
  /** What is wrong, a sentence a person can act on. */
  message: string;
}

/** What a `VeveeError` is built from. */
export interface VeveeErrorInit {
  code: VeveeErrorCode;
  status: number;
  message: string;
  attribute?: string | undefined;
  violations?: Violation[];
  retryAfterMs?: number | undefined;
  requestId?: string | undefined;
  cause?: unknown;
}

/** Codes that the same request may succeed with later. */
const RETRYABLE = new Set<string>([
  'network_error',
  'timeout',
  'unavailable',
  'rate_limited',
  'request_in_progress',
]);

/** Every rejection of the client. `instanceof Error`. */
export class VeveeError extends Error {
  /** The reason, e.g. `attribute_not_defined`; `network_error` / `timeout` when no answer came. */
  readonly code: VeveeErrorCode;
  /** The HTTP status (400, 403 ...); 0 when there was no HTTP answer. */
  readonly status: number;
  /** The attribute the error is about, where there is one. */
  readonly attribute: string | undefined;
  /** Per-field failures (SetAttributes: one per failing attribute); empty otherwise. */
  readonly violations: Violation[];
  /** True when the same call may succeed later unchanged (the client already retried it). */
  readonly retryable: boolean;
  /** How long the server asked to wait before retrying (429's `Retry-After`), in milliseconds. */
  readonly retryAfterMs: number | undefined;
  /** The idempotency key the write was sent with: pass it again to retry it safely. */
  readonly requestId: string | undefined;

  constructor(init: VeveeErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'VeveeError';
    this.code = init.code;
    this.status = init.status;
    this.attribute = init.attribute;
    this.violations = init.violations ?? [];
    this.retryable = RETRYABLE.has(init.code) || init.status === 503 || init.status === 429;
    this.retryAfterMs = init.retryAfterMs;
    this.requestId = init.requestId;
  }
}

/** gRPC code numbers by name, for bodies without an ErrorInfo. */
const GRPC_CODES = [
  'ok', 'cancelled', 'unknown', 'invalid_argument', 'deadline_exceeded', 'not_found',
  'already_exists', 'permission_denied', 'resource_exhausted', 'failed_precondition',
  'aborted', 'out_of_range', 'unimplemented', 'internal', 'unavailable', 'data_loss',
  'unauthenticated',
];

/** The code of an answer without a readable reason, from its HTTP status. */
function codeOfStatus(status: number): string {
  switch (status) {
    case 400: return 'invalid_argument';
    case 401: return 'unauthenticated';
    case 403: return 'permission_denied';
    case 404: return 'not_found';
    case 409: return 'aborted';
    case 413: return 'request_too_large';
    case 429: return 'rate_limited';
    case 502: case 503: return 'unavailable';
    case 504: return 'deadline_exceeded';
    default: return status >= 500 ? 'internal' : 'http_' + status;
  }
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function typeIs(detail: Json, name: string): boolean {
  const t = detail['@type'];
  return typeof t === 'string' && t.endsWith('/' + name);
}

/** `Retry-After` (seconds or an HTTP date), else RetryInfo's `retryDelay` ("1.5s"). */
function retryAfterOf(header: string | null, details: Json[]): number | undefined {
  if (header) {
    const seconds = Number(header);
    if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
    const date = Date.parse(header);
    if (!Number.isNaN(date)) return Math.max(0, date - Date.now());
  }
  const info = details.find((d) => typeIs(d, 'google.rpc.RetryInfo'));
  const delay = info?.['retryDelay'];
  if (typeof delay === 'string' && /^\d+(\.\d+)?s$/.test(delay)) {
    return parseFloat(delay) * 1000;
  }
  return undefined;
}

/**
 * The `VeveeError` of a non-2xx answer. `attributeOfField` names the
 * attribute of a violation's field (`values.persona`, `updates[1]`).
 */
export function errorOfResponse(
  status: number,
  retryAfterHeader: string | null,
  bodyText: string,
  requestId: string | undefined,
  attributeOfField: (field: string) => string | undefined,
): VeveeError {
  let body: unknown;
  try {
    body = JSON.parse(bodyText);
  } catch {
    body = undefined;
  }
  const details = isObject(body) && Array.isArray(body['details'])
    ? (body['details'] as unknown[]).filter(isObject)
    : [];
  const info = details.find((d) => typeIs(d, 'google.rpc.ErrorInfo'));
  const grpcCode = isObject(body) ? body['code'] : undefined;
  let code: string;
  if (info && typeof info['reason'] === 'string' && info['reason'] !== '') {
    code = info['reason'];
  } else if (typeof grpcCode === 'number' && GRPC_CODES[grpcCode] && status !== 413) {
    code = GRPC_CODES[grpcCode] as string;
  } else {
    code = codeOfStatus(status);
  }
  const metadata = info && isObject(info['metadata']) ? info['metadata'] : {};
  const attribute = typeof metadata['attribute'] === 'string' ? metadata['attribute'] : undefined;
  const violations: Violation[] = [];
  for (const d of details) {
    if (!typeIs(d, 'google.rpc.BadRequest') || !Array.isArray(d['fieldViolations'])) continue;
    for (const v of d['fieldViolations'] as unknown[]) {
      if (!isObject(v) || typeof v['field'] !== 'string') continue;
      const description = typeof v['description'] === 'string' ? v['description'] : '';
      // The description starts with its reason: "attribute_value_invalid: ...".
      const m = /^([a-z][a-z0-9_]*): ([\s\S]*)$/.exec(description);
      const violation: Violation = { field: v['field'], message: m ? (m[2] as string) : description };
      const attr = attributeOfField(v['field']);
      if (attr !== undefined) violation.attribute = attr;
      if (m) violation.code = m[1] as string;
      else if (typeof v['reason'] === 'string' && v['reason'] !== '') violation.code = v['reason'];
      violations.push(violation);
    }
  }
  const message = isObject(body) && typeof body['message'] === 'string' && body['message'] !== ''
    ? body['message']
    : `The server answered HTTP ${status}` + (bodyText ? `: ${bodyText.slice(0, 200)}` : '.');
  return new VeveeError({
    code,
    status,
    message,
    attribute,
    violations,
    retryAfterMs: retryAfterOf(retryAfterHeader, details),
    requestId,
  });
}
