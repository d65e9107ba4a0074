/**
 * The shapes of the calls, as the seed documents `vevee.analytics.setAttribute()`
 * and the REST face (section 7 of the contract) answers them.
 */

/** A value as sent and as stored: its shape depends on the attribute's declared type. */
export type AttributeValue = string | number | boolean | string[];

/** What `createVevee` takes. */
export interface VeveeOptions {
  /**
   * `sk_live_` / `sk_test_` from a backend; `pk_live_` / `pk_test_` in a
   * browser page (writes only, and only while the workspace's "Client-side
   * attribute writes" flag is on).
   */
  apiKey: string;
  /** The service's base URL, e.g. `https://attributes.example.com` or `http://127.0.0.1:50051`. */
  host: string;
  /**
   * The most one call may take, retries and their waits included, in
   * milliseconds (default 10000). Past it the call rejects with `timeout`.
   */
  timeoutMs?: number;
  /**
   * How many times a call is retried after a network error, a 503 or a 429
   * (default 2, so at most 3 attempts). 0 turns retries off.
   */
  retries?: number;
  /**
   * The identity signature of the current user (`hex(HMAC-SHA256(secret,
   * distinctId))`, computed by your backend), sent as `x-vevee-identity` on
   * every request, for workspaces that require identity verification.
   */
  identity?: string;
  /** A `fetch` to use instead of the global one (tests, instrumentation, old runtimes). */
  fetch?: FetchLike;
}

/** The part of `fetch` the client uses. */
export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

/** Arguments of `setAttribute`, as the seed's Signature. */
export interface SetAttributeArgs {
  /** Your user's identifier, 1-200 characters. Must match the id you use in capture(). */
  distinctId: string;
  /** The attribute's key as declared in the dashboard. */
  attribute: string;
  /** Shape depends on the attribute's declared type; arrays only for multi_choice. */
  value: AttributeValue;
  /**
   * The idempotency key (a UUID) sent with every attempt of this write. The
   * client makes one when it isn't given; pass your own to repeat a write
   * that failed without applying it twice.
   */
  requestId?: string;
}

/** What coercion did to a value (section 8 of the contract), so no change is silent. */
export interface Adjustment {
  kind: 'TRIMMED' | 'CASE_NORMALIZED' | 'TRUNCATED' | 'OPTIONS_DROPPED' | 'DUPLICATES_DROPPED' | 'CONVERTED' | string;
  /** TRUNCATED: the length before truncation. */
  originalLength: number;
  /** OPTIONS_DROPPED, DUPLICATES_DROPPED: the elements left out. */
  dropped: string[];
}

/**
 * The persisted result, as the seed's Returns: `value` is what the server
 * stored, possibly normalized or truncated from the input. Also the stored
 * value's `etag` (for `ifEtag` preconditions) and the `adjustments` that
 * say what was normalized.
 */
export interface SetAttributeResult {
  personId: string;
  attribute: string;
  value: AttributeValue;
  etag: string;
  adjustments: Adjustment[];
}

/** Arguments of `setAttributes`: 1 to 100 values of one person, all or nothing. */
export interface SetAttributesArgs {
  distinctId: string;
  values: Record<string, AttributeValue>;
  requestId?: string;
}

/** The values as stored, by attribute key. */
export interface SetAttributesResult {
  personId: string;
  values: Record<string, AttributeValue>;
  /** The etag of each stored value. */
  etags: Record<string, string>;
  /** What coercion did, by attribute (only those it changed). */
  adjustments: Record<string, { adjustments: Adjustment[] }>;
}

/** Arguments of `getAttributes` (secret keys only). */
export interface GetAttributesArgs {
  distinctId: string;
  /** Only these attributes; all when absent or empty. */
  attributes?: string[];
  /** Also values of archived attributes. */
  includeArchived?: boolean;
}

/** One stored value. */
export interface StoredAttribute {
  attribute: string;
  value: AttributeValue;
  /** When it was last written, RFC 3339 UTC. */
  updatedAt: string;
  /** Changes whenever the value does; send it as `ifEtag` to update only that value. */
  etag: string;
}

/** A person's values, sorted by attribute key. */
export interface GetAttributesResult {
  personId: string;
  attributes: StoredAttribute[];
}

/** Arguments of `clearAttribute`. */
export interface ClearAttributeArgs {
  distinctId: string;
  attribute: string;
  requestId?: string;
}

/** `cleared` is false when the person had no value for the attribute. */
export interface ClearAttributeResult {
  personId: string;
  attribute: string;
  cleared: boolean;
}

/** The operation of one update (section 8 of the contract): exactly one of these. */
export type AttributeOperation =
  | { set: AttributeValue }
  | { setOnce: AttributeValue }
  | { increment: number }
  | { add: string | string[] }
  | { remove: string | string[] }
  | { clear: true };

/** One update: an attribute, one operation, and an optional precondition. */
export type AttributeUpdate = {
  attribute: string;
  /** Apply only if the stored value's etag is still this one; `""`: only if none is stored. */
  ifEtag?: string;
} & AttributeOperation;

/** Arguments of `updateAttributes`: 1 to 100 updates of one person, all or nothing. */
export interface UpdateAttributesArgs {
  distinctId: string;
  updates: AttributeUpdate[];
  requestId?: string;
  /** Run every check and return what the update would do, writing nothing. */
  validateOnly?: boolean;
}

/** What one update did. */
export interface AttributeUpdateResult {
  attribute: string;
  /** The value stored now; absent when none is. */
  value?: AttributeValue;
  /** False when the update changed nothing. */
  applied: boolean;
  /** The etag of the value stored now; empty when none is. */
  etag: string;
  /** What coercion did to the operation's value. */
  adjustments: Adjustment[];
}

/** One result per update, in the order of the request. */
export interface UpdateAttributesResult {
  personId: string;
  results: AttributeUpdateResult[];
}

/** `vevee.analytics`. */
export interface Analytics {
  /** Sets one attribute value on a person (`POST /api/v1/attributes/values`). */
  setAttribute(args: SetAttributeArgs): Promise<SetAttributeResult>;
  /** Sets 1-100 values of one person, all or nothing (`POST /api/v1/attributes/values:batchSet`). */
  setAttributes(args: SetAttributesArgs): Promise<SetAttributesResult>;
  /** Reads a person's current values; secret keys only (`GET /api/v1/persons/{distinctId}/attributes`). */
  getAttributes(args: GetAttributesArgs): Promise<GetAttributesResult>;
  /** Removes one value (`DELETE /api/v1/persons/{distinctId}/attributes/{attribute}`). */
  clearAttribute(args: ClearAttributeArgs): Promise<ClearAttributeResult>;
  /**
   * Update operations decided by the server: set, setOnce, increment, add,
   * remove, clear, with etag preconditions
   * (`POST /api/v1/persons/{distinctId}/attributes:update`).
   */
  updateAttributes(args: UpdateAttributesArgs): Promise<UpdateAttributesResult>;
}

/** What `createVevee` returns. */
export interface Vevee {
  analytics: Analytics;
}
