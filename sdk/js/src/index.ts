/**
 * The JavaScript client of vevee-attributes: `createVevee({ apiKey, host })`
 * returns `vevee.analytics`, whose calls speak the service's REST face and
 * resolve to what the server stored, or reject with a `VeveeError`.
 *
 * Layout: `types.ts` the shapes of the calls, `errors.ts` `VeveeError` and
 * the reading of error bodies, `transport.ts` one HTTP call with its
 * deadline and retries, this file the calls themselves.
 */

import { VeveeError } from './errors.js';
import { call, type TransportConfig } from './transport.js';
import type {
  ClearAttributeArgs,
  ClearAttributeResult,
  GetAttributesArgs,
  GetAttributesResult,
  SetAttributeArgs,
  SetAttributeResult,
  SetAttributesArgs,
  SetAttributesResult,
  UpdateAttributesArgs,
  UpdateAttributesResult,
  Vevee,
  VeveeOptions,
} from './types.js';

export { VeveeError } from './errors.js';
export type { VeveeErrorCode, Violation } from './errors.js';
export type {
  Analytics,
  Adjustment,
  AttributeOperation,
  AttributeUpdate,
  AttributeUpdateResult,
  AttributeValue,
  ClearAttributeArgs,
  ClearAttributeResult,
  FetchLike,
  GetAttributesArgs,
  GetAttributesResult,
  SetAttributeArgs,
  SetAttributeResult,
  SetAttributesArgs,
  SetAttributesResult,
  StoredAttribute,
  UpdateAttributesArgs,
  UpdateAttributesResult,
  Vevee,
  VeveeOptions,
} from './types.js';

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_RETRIES = 2;

/** True in a web page (not in Node, Deno's CLI or a worker). */
function inBrowserPage(): boolean {
  const g = globalThis as { window?: unknown; document?: unknown };
  return typeof g.window !== 'undefined' && typeof g.document !== 'undefined';
}

/** A random UUID v4: `crypto.randomUUID` where there is one (not on plain-HTTP pages, nor Node 18's global scope). */
function newRequestId(): string {
  const c = (globalThis as { crypto?: Partial<Crypto> }).crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c && typeof c.getRandomValues === 'function') c.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  bytes[6] = ((bytes[6] as number) & 0x0f) | 0x40;
  bytes[8] = ((bytes[8] as number) & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A path variable, percent-encoded (a distinct_id may hold `/`, `:`, spaces, non-ASCII). */
const seg = encodeURIComponent;

/** `values.persona` -> `persona`. */
function attributeOfValuesField(field: string): string | undefined {
  return field.startsWith('values.') ? field.slice('values.'.length) : undefined;
}

/**
 * Creates a client. Throws a `VeveeError` with code `secret_key_in_browser`
 * when given a secret key (`sk_...`) in a web page: secret keys belong on
 * your backend; a page uses the public key (`pk_...`).
 */
export function createVevee(options: VeveeOptions): Vevee {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('createVevee({ apiKey, host }): options are required.');
  }
  const { apiKey, host } = options;
  if (typeof apiKey !== 'string' || apiKey === '') {
    throw new TypeError('createVevee: `apiKey` is required (sk_... on a backend, pk_... in a browser).');
  }
  if (typeof host !== 'string' || !/^https?:\/\/[^/]/.test(host)) {
    throw new TypeError('createVevee: `host` must be the service\'s base URL, e.g. "https://attributes.example.com".');
  }
  if (apiKey.startsWith('sk_') && inBrowserPage()) {
    throw new VeveeError({
      code: 'secret_key_in_browser',
      status: 0,
      message:
        'createVevee was given a secret key (sk_...) in a browser page. Secret keys must stay on your ' +
        'backend; in the browser use your public key (pk_live_... or pk_test_...), and turn on ' +
        '"Client-side attribute writes" in Settings -> Security for it to write.',
    });
  }
  const retries = options.retries ?? DEFAULT_RETRIES;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isInteger(retries) || retries < 0) {
    throw new TypeError('createVevee: `retries` must be a whole number >= 0.');
  }
  if (!(timeoutMs > 0)) throw new TypeError('createVevee: `timeoutMs` must be > 0.');
  if (options.fetch === undefined && typeof globalThis.fetch !== 'function') {
    throw new TypeError('createVevee: no global fetch here (Node 18+ and browsers have one); pass `fetch`.');
  }
  const config: TransportConfig = {
    apiKey,
    host: host.replace(/\/+$/, ''),
    timeoutMs,
    retries,
    identity: options.identity,
    fetch: options.fetch,
  };

  return {
    analytics: {
      setAttribute({ distinctId, attribute, value, requestId = newRequestId() }: SetAttributeArgs) {
        return call<SetAttributeResult>(config, {
          method: 'POST',
          path: '/api/v1/attributes/values',
          body: { distinctId, attribute, value, requestId },
          requestId,
        });
      },

      setAttributes({ distinctId, values, requestId = newRequestId() }: SetAttributesArgs) {
        return call<SetAttributesResult>(config, {
          method: 'POST',
          path: '/api/v1/attributes/values:batchSet',
          body: { distinctId, values, requestId },
          requestId,
          attributeOfField: attributeOfValuesField,
        });
      },

      async getAttributes({ distinctId, attributes, includeArchived }: GetAttributesArgs) {
        const query: Array<[string, string]> = (attributes ?? []).map((a) => ['attributes', a]);
        if (includeArchived) query.push(['includeArchived', 'true']);
        const result = await call<GetAttributesResult>(config, {
          method: 'GET',
          path: `/api/v1/persons/${seg(distinctId)}/attributes`,
          query,
        });
        // proto3 JSON leaves an empty repeated field out of nothing; keep the shape.
        return { ...result, attributes: result.attributes ?? [] };
      },

      clearAttribute({ distinctId, attribute, requestId = newRequestId() }: ClearAttributeArgs) {
        // DELETE has no body: the idempotency key goes as a query parameter.
        return call<ClearAttributeResult>(config, {
          method: 'DELETE',
          path: `/api/v1/persons/${seg(distinctId)}/attributes/${seg(attribute)}`,
          query: [['requestId', requestId]],
          requestId,
        });
      },

      updateAttributes({ distinctId, updates, requestId = newRequestId(), validateOnly }: UpdateAttributesArgs) {
        // proto3 JSON of `google.protobuf.Empty clear` is `{}`.
        const wire = updates.map((u) => ('clear' in u ? { ...u, clear: {} } : u));
        const body: Record<string, unknown> = { updates: wire, requestId };
        if (validateOnly) body['validateOnly'] = true;
        return call<UpdateAttributesResult>(config, {
          method: 'POST',
          path: `/api/v1/persons/${seg(distinctId)}/attributes:update`,
          body,
          requestId,
          attributeOfField: (field) => {
            const m = /^updates\[(\d+)\]/.exec(field);
            return m ? updates[Number(m[1])]?.attribute : undefined;
          },
        });
      },
    },
  };
}
