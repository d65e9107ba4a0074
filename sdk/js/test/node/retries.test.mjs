// Retries, timeouts and the wire details that the real server can't be made
// to show on demand: stub HTTP servers answer 503, 429, drop the connection
// or stay silent. Network errors and a retried write are also shown against
// the real binary.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { createVevee, VeveeError } from '../../dist/index.js';
import { gatewayError, ok, startServer, startStub } from '../helpers/server.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const stored = { personId: 'p1', attribute: 'persona', value: 'teacher' };
const args = { distinctId: 'u1', attribute: 'persona', value: 'teacher' };

async function withStub(handler, fn) {
  const stub = await startStub(handler);
  try {
    await fn(stub);
  } finally {
    await stub.stop();
  }
}

function unavailable(res) {
  gatewayError(res, 503, 14, 'unavailable', 'The database cannot be reached right now; retry.');
}

describe('retries', () => {
  it('a 503 then a success: the call resolves, and both attempts carry one requestId', () =>
    withStub(
      (req, res, _e, n) => (n === 1 ? unavailable(res) : ok(res, stored)),
      async (stub) => {
        const vevee = createVevee({ apiKey: 'sk_test_x', host: stub.url });
        assert.deepEqual(await vevee.analytics.setAttribute(args), stored);
        assert.equal(stub.requests.length, 2);
        const [first, second] = stub.requests;
        assert.match(first.body.requestId, UUID);
        assert.equal(second.body.requestId, first.body.requestId);
        assert.deepEqual(second.body, first.body);
        assert.deepEqual(first.body, { ...args, requestId: first.body.requestId });
      },
    ));

  it('two calls get two requestIds; a requestId given by the caller is used as is', () =>
    withStub(
      (req, res) => ok(res, stored),
      async (stub) => {
        const vevee = createVevee({ apiKey: 'sk_test_x', host: stub.url });
        await vevee.analytics.setAttribute(args);
        await vevee.analytics.setAttribute(args);
        const requestId = '7d444840-9dc0-41ad-b23c-9b6a4b5a7c11';
        await vevee.analytics.setAttribute({ ...args, requestId });
        const ids = stub.requests.map((r) => r.body.requestId);
        assert.notEqual(ids[0], ids[1]);
        assert.equal(ids[2], requestId);
      },
    ));

  it('setAttributes, clearAttribute and updateAttributes keep their requestId across retries too', () =>
    withStub(
      (req, res, _e, n) => (n % 2 === 1 ? unavailable(res) : ok(res, {})),
      async (stub) => {
        const vevee = createVevee({ apiKey: 'sk_test_x', host: stub.url });
        await vevee.analytics.setAttributes({ distinctId: 'u1', values: { persona: 'teacher' } });
        await vevee.analytics.clearAttribute({ distinctId: 'u1', attribute: 'persona' });
        await vevee.analytics.updateAttributes({ distinctId: 'u1', updates: [{ attribute: 'seats', increment: 1 }] });
        const idOf = (r) => r.body?.requestId ?? new URL(r.url, stub.url).searchParams.get('requestId');
        assert.equal(stub.requests.length, 6);
        for (let i = 0; i < 6; i += 2) {
          assert.match(idOf(stub.requests[i]), UUID);
          assert.equal(idOf(stub.requests[i + 1]), idOf(stub.requests[i]));
          assert.equal(stub.requests[i + 1].url, stub.requests[i].url);
        }
      },
    ));

  it('a dropped connection (network error) then a success: retried with the same requestId', () =>
    withStub(
      (req, res, _e, n) => (n === 1 ? req.socket.destroy() : ok(res, stored)),
      async (stub) => {
        const vevee = createVevee({ apiKey: 'sk_test_x', host: stub.url });
        assert.deepEqual(await vevee.analytics.setAttribute(args), stored);
        assert.equal(stub.requests.length, 2);
        assert.equal(stub.requests[1].body.requestId, stub.requests[0].body.requestId);
      },
    ));

  it('bounded: `retries` retries with growing, jittered waits, then the 503 reaches the caller', () =>
    withStub(
      (req, res) => unavailable(res),
      async (stub) => {
        const vevee = createVevee({ apiKey: 'sk_test_x', host: stub.url, retries: 3 });
        await assert.rejects(vevee.analytics.setAttribute(args), (e) => {
          assert.ok(e instanceof VeveeError);
          assert.equal(e.code, 'unavailable');
          assert.equal(e.status, 503);
          assert.equal(e.retryable, true);
          return true;
        });
        assert.equal(stub.requests.length, 4);
        const gaps = stub.requests.slice(1).map((r, i) => r.at - stub.requests[i].at);
        // 200 ms doubled per retry, each between half and all of it.
        const bounds = [[100, 200], [200, 400], [400, 800]];
        gaps.forEach((gap, i) => {
          assert.ok(gap >= bounds[i][0] - 5 && gap <= bounds[i][1] + 300, `wait ${i + 1} was ${gap} ms`);
        });
      },
    ));

  it('the default is 2 retries; retries: 0 sends once', () =>
    withStub(
      (req, res) => unavailable(res),
      async (stub) => {
        await assert.rejects(createVevee({ apiKey: 'sk_test_x', host: stub.url }).analytics.setAttribute(args));
        assert.equal(stub.requests.length, 3);
        await assert.rejects(
          createVevee({ apiKey: 'sk_test_x', host: stub.url, retries: 0 }).analytics.setAttribute(args),
          { code: 'unavailable' },
        );
        assert.equal(stub.requests.length, 4);
      },
    ));

  it('429 waits for its Retry-After, then succeeds', () =>
    withStub(
      (req, res, _e, n) =>
        n === 1
          ? gatewayError(res, 429, 8, 'rate_limited', 'Too many requests for this key; retry later.', { 'retry-after': '1' })
          : ok(res, stored),
      async (stub) => {
        const vevee = createVevee({ apiKey: 'pk_test_x', host: stub.url });
        assert.deepEqual(await vevee.analytics.setAttribute(args), stored);
        const gap = stub.requests[1].at - stub.requests[0].at;
        assert.ok(gap >= 990 && gap < 2000, `waited ${gap} ms for Retry-After: 1`);
      },
    ));

  it('429 whose Retry-After ends past the deadline rejects at once with rate_limited', () =>
    withStub(
      (req, res) => gatewayError(res, 429, 8, 'rate_limited', 'Too many requests.', { 'retry-after': '30' }),
      async (stub) => {
        const vevee = createVevee({ apiKey: 'pk_test_x', host: stub.url, timeoutMs: 2000 });
        const start = Date.now();
        await assert.rejects(vevee.analytics.setAttribute(args), (e) => {
          assert.equal(e.code, 'rate_limited');
          assert.equal(e.status, 429);
          assert.equal(e.retryable, true);
          assert.equal(e.retryAfterMs, 30_000);
          return true;
        });
        assert.ok(Date.now() - start < 500);
        assert.equal(stub.requests.length, 1);
      },
    ));

  it('409 request_in_progress (a retry whose first attempt is still being applied) is retried', () =>
    withStub(
      (req, res, _e, n) =>
        n === 1 ? gatewayError(res, 409, 10, 'request_in_progress', 'Still applying the first request.') : ok(res, stored),
      async (stub) => {
        const vevee = createVevee({ apiKey: 'sk_test_x', host: stub.url });
        assert.deepEqual(await vevee.analytics.setAttribute(args), stored);
        assert.equal(stub.requests.length, 2);
      },
    ));

  it('other errors are not retried: 400, 403, 500, and a proxy page that is not JSON', () =>
    withStub(
      (req, res, _e, n) => {
        if (n === 1) return gatewayError(res, 400, 3, 'attribute_value_invalid', 'Not an option.');
        if (n === 2) return gatewayError(res, 403, 7, 'client_attribute_writes_disabled', 'Writes are off.');
        if (n === 3) return gatewayError(res, 500, 13, 'internal', 'Boom.');
        res.writeHead(502, { 'content-type': 'text/html' });
        res.end('<html>Bad Gateway</html>');
      },
      async (stub) => {
        const vevee = createVevee({ apiKey: 'sk_test_x', host: stub.url });
        const expected = [
          ['attribute_value_invalid', 400],
          ['client_attribute_writes_disabled', 403],
          ['internal', 500],
          ['unavailable', 502],
        ];
        for (const [code, status] of expected) {
          await assert.rejects(vevee.analytics.setAttribute(args), (e) => {
            assert.equal(e.code, code);
            assert.equal(e.status, status);
            return true;
          });
        }
        assert.equal(stub.requests.length, 4);
      },
    ));
});

describe('timeouts', () => {
  it('no answer within timeoutMs rejects with timeout, status 0', () =>
    withStub(
      () => {}, // never answers
      async (stub) => {
        const vevee = createVevee({ apiKey: 'sk_test_x', host: stub.url, timeoutMs: 300 });
        const start = Date.now();
        await assert.rejects(vevee.analytics.setAttribute(args), (e) => {
          assert.ok(e instanceof VeveeError);
          assert.equal(e.code, 'timeout');
          assert.equal(e.status, 0);
          assert.equal(e.retryable, true);
          assert.match(e.message, /300 ms/);
          return true;
        });
        const took = Date.now() - start;
        assert.ok(took >= 290 && took < 1500, `took ${took} ms`);
        assert.equal(stub.requests.length, 1, 'a timed-out attempt is not retried: the deadline is spent');
      },
    ));

  it('timeoutMs bounds the whole call, retries and their waits included', () =>
    withStub(
      (req, res, _e, n) => (n === 1 ? unavailable(res) : undefined), // 503, then silence
      async (stub) => {
        const vevee = createVevee({ apiKey: 'sk_test_x', host: stub.url, timeoutMs: 600, retries: 5 });
        const start = Date.now();
        await assert.rejects(vevee.analytics.setAttribute(args), { code: 'timeout' });
        const took = Date.now() - start;
        assert.ok(took >= 590 && took < 1700, `took ${took} ms`);
        assert.equal(stub.requests.length, 2);
      },
    ));

  it('a reply that arrives in time resolves', () =>
    withStub(
      (req, res) => setTimeout(() => ok(res, stored), 100),
      async (stub) => {
        const vevee = createVevee({ apiKey: 'sk_test_x', host: stub.url, timeoutMs: 2000 });
        assert.deepEqual(await vevee.analytics.setAttribute(args), stored);
      },
    ));
});

describe('network errors and retries against the real server', () => {
  let server;
  before(async () => {
    server = await startServer();
    await server.admin.defineSeedAttributes();
  });
  after(() => server?.stop());

  it('a host where nothing listens rejects with network_error after the retries', async () => {
    const stub = await startStub(() => {});
    const url = stub.url;
    await stub.stop(); // the port is free now: connections are refused
    let calls = 0;
    const counting = (input, init) => {
      calls++;
      return fetch(input, init);
    };
    const vevee = createVevee({ apiKey: server.keys.sk_live, host: url, fetch: counting });
    await assert.rejects(vevee.analytics.setAttribute(args), (e) => {
      assert.ok(e instanceof VeveeError);
      assert.equal(e.code, 'network_error');
      assert.equal(e.status, 0);
      assert.equal(e.retryable, true);
      assert.ok(e.message.includes(url));
      assert.ok(e.cause, 'the fetch error is kept as cause');
      return true;
    });
    assert.equal(calls, 3);
  });

  it('a first attempt that fails to send is retried to the real server with the same requestId, and stores the value', async () => {
    const seen = [];
    const flaky = (input, init) => {
      seen.push(JSON.parse(init.body).requestId);
      if (seen.length === 1) return Promise.reject(new TypeError('fetch failed'));
      return fetch(input, init);
    };
    const vevee = createVevee({ apiKey: server.keys.sk_live, host: server.url, fetch: flaky });
    const result = await vevee.analytics.setAttribute({ distinctId: 'flaky', attribute: 'topics', value: ['math', 'cooking'] });
    assert.deepEqual(result.value, ['math']);
    assert.equal(seen.length, 2);
    assert.equal(seen[1], seen[0]);
    const read = await createVevee({ apiKey: server.keys.sk_live, host: server.url }).analytics.getAttributes({
      distinctId: 'flaky',
    });
    assert.deepEqual(read.attributes.map((a) => a.value), [['math']]);
  });
});

describe('what goes on the wire', () => {
  it('authorization, content-type, and x-vevee-identity when an identity is given', () =>
    withStub(
      (req, res) => ok(res, stored),
      async (stub) => {
        await createVevee({ apiKey: 'pk_live_abc', host: stub.url, identity: 'f00d' }).analytics.setAttribute(args);
        await createVevee({ apiKey: 'pk_live_abc', host: stub.url }).analytics.setAttribute(args);
        const [withId, without] = stub.requests;
        assert.equal(withId.headers.authorization, 'Bearer pk_live_abc');
        assert.equal(withId.headers['content-type'], 'application/json');
        assert.equal(withId.headers['x-vevee-identity'], 'f00d');
        assert.equal(without.headers['x-vevee-identity'], undefined);
      },
    ));

  it('getAttributes repeats `attributes` and sends includeArchived only when true', () =>
    withStub(
      (req, res) => ok(res, { personId: 'p1' }),
      async (stub) => {
        const vevee = createVevee({ apiKey: 'sk_live_abc', host: stub.url });
        const r = await vevee.analytics.getAttributes({ distinctId: 'a/b c', attributes: ['x', 'y'], includeArchived: true });
        // proto3 JSON may leave an empty list out; the SDK keeps the shape.
        assert.deepEqual(r, { personId: 'p1', attributes: [] });
        await vevee.analytics.getAttributes({ distinctId: 'u' });
        assert.equal(stub.requests[0].method, 'GET');
        assert.equal(stub.requests[0].url, '/api/v1/persons/a%2Fb%20c/attributes?attributes=x&attributes=y&includeArchived=true');
        assert.equal(stub.requests[0].body, undefined);
        assert.equal(stub.requests[1].url, '/api/v1/persons/u/attributes');
      },
    ));

  it('updateAttributes: POST .../attributes:update with the typed updates (not yet on the server: stub only)', () =>
    withStub(
      (req, res, _e, n) =>
        n === 1
          ? ok(res, { personId: 'p1', results: [{ attribute: 'seats', value: 3, applied: true, etag: 'e1' }] })
          : (() => {
              res.writeHead(400, { 'content-type': 'application/json' });
              res.end(
                JSON.stringify({
                  code: 3,
                  message: 'increment does not fit topics.',
                  details: [
                    { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'attribute_operation_invalid', domain: 'attributes.vevee.dev', metadata: { attribute: 'topics' } },
                    { '@type': 'type.googleapis.com/google.rpc.BadRequest', fieldViolations: [{ field: 'updates[1]', description: 'attribute_operation_invalid: increment does not fit topics.' }] },
                  ],
                }),
              );
            })(),
      async (stub) => {
        const vevee = createVevee({ apiKey: 'sk_live_abc', host: stub.url });
        const result = await vevee.analytics.updateAttributes({
          distinctId: 'u:1',
          updates: [
            { attribute: 'seats', increment: 2, ifEtag: 'e0' },
            { attribute: 'topics', add: ['math'] },
            { attribute: 'persona', clear: true },
          ],
          validateOnly: true,
        });
        assert.deepEqual(result.results[0], { attribute: 'seats', value: 3, applied: true, etag: 'e1' });
        const sent = stub.requests[0];
        assert.equal(sent.method, 'POST');
        assert.equal(sent.url, '/api/v1/persons/u%3A1/attributes:update');
        assert.match(sent.body.requestId, UUID);
        assert.deepEqual(sent.body, {
          updates: [
            { attribute: 'seats', increment: 2, ifEtag: 'e0' },
            { attribute: 'topics', add: ['math'] },
            { attribute: 'persona', clear: {} },
          ],
          requestId: sent.body.requestId,
          validateOnly: true,
        });
        await assert.rejects(
          vevee.analytics.updateAttributes({
            distinctId: 'u',
            updates: [{ attribute: 'seats', set: 1 }, { attribute: 'topics', increment: 1 }],
          }),
          (e) => {
            assert.equal(e.code, 'attribute_operation_invalid');
            assert.deepEqual(e.violations, [
              { field: 'updates[1]', attribute: 'topics', code: 'attribute_operation_invalid', message: 'increment does not fit topics.' },
            ]);
            return true;
          },
        );
        assert.equal('validateOnly' in stub.requests[1].body, false);
      },
    ));
});
