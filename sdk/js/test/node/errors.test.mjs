// Every error code of the seed's table, and the other refusals the SDK's
// calls can meet, reach the caller as a VeveeError with the right code,
// status, attribute and violations: against the real server binary.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { createVevee, VeveeError } from '../../dist/index.js';
import { startServer } from '../helpers/server.mjs';

/** Awaits `promise`, which must reject with a VeveeError; returns it. */
async function refusal(promise) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof VeveeError, `expected a VeveeError, got ${e}`);
    assert.ok(e instanceof Error);
    assert.equal(e.name, 'VeveeError');
    assert.equal(typeof e.message, 'string');
    assert.ok(e.message.length > 10, 'the message is a sentence');
    return e;
  }
  assert.fail('expected the call to reject');
}

describe('errors from the real server', () => {
  let server;
  let secret;
  let publicKey;

  before(async () => {
    server = await startServer();
    await server.admin.defineSeedAttributes();
    await server.admin.define('nickname', 'text', { text: { maxLength: 5 } });
    await server.admin.define('legacy', 'text', {});
    await server.admin.archive('legacy');
    secret = createVevee({ apiKey: server.keys.sk_live, host: server.url });
    publicKey = createVevee({ apiKey: server.keys.pk_live, host: server.url });
  });
  after(() => server?.stop());

  describe("the seed's error table", () => {
    it('attribute_not_defined / 400: the key is not declared', async () => {
      const e = await refusal(secret.analytics.setAttribute({ distinctId: 'u', attribute: 'undeclared', value: 'x' }));
      assert.equal(e.code, 'attribute_not_defined');
      assert.equal(e.status, 400);
      assert.equal(e.attribute, 'undeclared');
      assert.equal(e.retryable, false);
    });

    it('attribute_value_invalid / 400: not one of the options', async () => {
      const e = await refusal(secret.analytics.setAttribute({ distinctId: 'u', attribute: 'persona', value: 'pirate' }));
      assert.equal(e.code, 'attribute_value_invalid');
      assert.equal(e.status, 400);
      assert.equal(e.attribute, 'persona');
      assert.match(e.message, /teacher, student/);
      assert.deepEqual(e.violations, []);
    });

    it('attribute_value_too_long / 400: over max_length', async () => {
      const e = await refusal(secret.analytics.setAttribute({ distinctId: 'u', attribute: 'nickname', value: 'abcdefgh' }));
      assert.equal(e.code, 'attribute_value_too_long');
      assert.equal(e.status, 400);
      assert.equal(e.attribute, 'nickname');
    });

    it('attribute_archived / 400: the attribute is archived', async () => {
      const e = await refusal(secret.analytics.setAttribute({ distinctId: 'u', attribute: 'legacy', value: 'x' }));
      assert.equal(e.code, 'attribute_archived');
      assert.equal(e.status, 400);
      assert.equal(e.attribute, 'legacy');
    });

    it('client_attribute_writes_disabled / 403: a public-key write while the flag is off', async () => {
      const e = await refusal(publicKey.analytics.setAttribute({ distinctId: 'u', attribute: 'persona', value: 'teacher' }));
      assert.equal(e.code, 'client_attribute_writes_disabled');
      assert.equal(e.status, 403);
      assert.equal(e.retryable, false);
      assert.match(e.message, /secret key|client_attribute_writes/);
    });
  });

  describe('the other refusals of these calls', () => {
    it('setAttributes: all or nothing, one violation per failing attribute', async () => {
      const e = await refusal(
        secret.analytics.setAttributes({
          distinctId: 'batch-fail',
          values: { persona: 'pirate', topics: ['cooking'], nickname: 'ok' },
        }),
      );
      // The first failure by key order gives the code.
      assert.equal(e.code, 'attribute_value_invalid');
      assert.equal(e.status, 400);
      assert.equal(e.attribute, 'persona');
      assert.deepEqual(
        e.violations.map((v) => [v.field, v.attribute, v.code]),
        [
          ['values.persona', 'persona', 'attribute_value_invalid'],
          ['values.topics', 'topics', 'attribute_value_invalid'],
        ],
      );
      for (const v of e.violations) assert.ok(v.message.length > 0 && !v.message.startsWith('attribute_'));
      // Nothing was written, not even the person.
      const read = await refusal(secret.analytics.getAttributes({ distinctId: 'batch-fail' }));
      assert.equal(read.code, 'person_not_found');
    });

    it('too_many_values / 400: setAttributes with no values', async () => {
      const e = await refusal(secret.analytics.setAttributes({ distinctId: 'u', values: {} }));
      assert.equal(e.code, 'too_many_values');
      assert.equal(e.status, 400);
    });

    it('invalid_distinct_id / 400: empty, or over 200 characters', async () => {
      for (const distinctId of ['', 'x'.repeat(201)]) {
        const e = await refusal(secret.analytics.setAttribute({ distinctId, attribute: 'persona', value: 'teacher' }));
        assert.equal(e.code, 'invalid_distinct_id');
        assert.equal(e.status, 400);
      }
    });

    it('person_not_found / 404: reading or clearing an unknown person', async () => {
      // Thunks, so that no call rejects before it is awaited.
      for (const call of [
        () => secret.analytics.getAttributes({ distinctId: 'nobody' }),
        () => secret.analytics.clearAttribute({ distinctId: 'nobody', attribute: 'persona' }),
      ]) {
        const e = await refusal(call());
        assert.equal(e.code, 'person_not_found');
        assert.equal(e.status, 404);
      }
    });

    it('attribute_not_defined / 400 also for a getAttributes filter and a clear of an undeclared key', async () => {
      await secret.analytics.setAttribute({ distinctId: 'known', attribute: 'persona', value: 'teacher' });
      for (const call of [
        () => secret.analytics.getAttributes({ distinctId: 'known', attributes: ['nope'] }),
        () => secret.analytics.clearAttribute({ distinctId: 'known', attribute: 'nope' }),
      ]) {
        const e = await refusal(call());
        assert.equal(e.code, 'attribute_not_defined');
        assert.equal(e.status, 400);
      }
    });

    it('secret_key_required / 403: getAttributes with a public key', async () => {
      const e = await refusal(publicKey.analytics.getAttributes({ distinctId: 'known' }));
      assert.equal(e.code, 'secret_key_required');
      assert.equal(e.status, 403);
    });

    it('invalid_api_key / 401: an unknown or malformed key', async () => {
      for (const apiKey of ['sk_live_nope', server.keys.sk_live.slice(0, -1) + 'x']) {
        const bad = createVevee({ apiKey, host: server.url });
        const e = await refusal(bad.analytics.setAttribute({ distinctId: 'u', attribute: 'persona', value: 'teacher' }));
        assert.equal(e.code, 'invalid_api_key');
        assert.equal(e.status, 401);
        assert.equal(e.retryable, false);
      }
    });

    it('request_too_large / 413: a body over the server\'s limit', async () => {
      const e = await refusal(
        secret.analytics.setAttribute({ distinctId: 'u', attribute: 'nickname', value: 'x'.repeat(5 * 1024 * 1024) }),
      );
      assert.equal(e.code, 'request_too_large');
      assert.equal(e.status, 413);
      assert.match(e.message, /larger than the server accepts/);
    });

    it('a write error carries the requestId it was sent with, for a manual retry', async () => {
      const requestId = '0b6f1c1e-8d3a-4c52-9a57-2f4f6f1f0b11';
      const e = await refusal(
        secret.analytics.setAttribute({ distinctId: 'u', attribute: 'persona', value: 'pirate', requestId }),
      );
      assert.equal(e.requestId, requestId);
    });
  });
});
