// Every method of vevee.analytics against the real server binary (SQLite, a
// free port), with the seed's shapes: the seed's two examples first.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { createVevee } from '../../dist/index.js';
import { startServer } from '../helpers/server.mjs';

describe('vevee.analytics against the real server', () => {
  let server;
  let vevee;
  const user = { id: 'user-42' };

  before(async () => {
    server = await startServer();
    await server.admin.defineSeedAttributes();
    await server.admin.define('plan_seats', 'number', { number: { integer: true } });
    await server.admin.define('nickname', 'text', { text: { maxLength: 8, truncate: true } });
    vevee = createVevee({ apiKey: server.keys.sk_live, host: server.url });
  });
  after(() => server?.stop());

  it('the seed example "single choice written from the backend" resolves to what the server stored', async () => {
    const result = await vevee.analytics.setAttribute({
      distinctId: user.id,
      attribute: 'persona',
      value: 'teacher',
    });
    assert.deepEqual(Object.keys(result).sort(), ['adjustments', 'attribute', 'etag', 'personId', 'value']);
    assert.equal(typeof result.personId, 'string');
    assert.ok(result.personId.length > 0);
    assert.equal(result.attribute, 'persona');
    assert.equal(result.value, 'teacher');
  });

  it('the seed example "multi-choice with an array" keeps only the matching subset', async () => {
    const result = await vevee.analytics.setAttribute({
      distinctId: user.id,
      attribute: 'topics',
      value: ['history', 'math'],
    });
    assert.deepEqual(result.value, ['history', 'math']);
    const filtered = await vevee.analytics.setAttribute({
      distinctId: user.id,
      attribute: 'topics',
      value: ['history', 'math', 'cooking'],
    });
    assert.deepEqual(filtered.value, ['history', 'math']);
  });

  it('setAttribute returns the normalized value, and one person keeps one personId', async () => {
    const a = await vevee.analytics.setAttribute({ distinctId: 'norm', attribute: 'persona', value: '  Student ' });
    assert.equal(a.value, 'student');
    const b = await vevee.analytics.setAttribute({ distinctId: 'norm', attribute: 'nickname', value: 'abcdefghijkl' });
    assert.equal(b.value, 'abcdefgh');
    const c = await vevee.analytics.setAttribute({ distinctId: 'norm', attribute: 'plan_seats', value: '12' });
    assert.equal(c.value, 12);
    assert.equal(a.personId, b.personId);
    assert.equal(b.personId, c.personId);
  });

  it('setAttributes writes several values at once and returns them as stored', async () => {
    const result = await vevee.analytics.setAttributes({
      distinctId: 'batch',
      values: { persona: 'TEACHER', topics: ['art', 'cooking'], plan_seats: 3 },
    });
    assert.equal(typeof result.personId, 'string');
    assert.deepEqual(result.values, { persona: 'teacher', topics: ['art'], plan_seats: 3 });
  });

  it('getAttributes reads every value, sorted, or only the named ones', async () => {
    const all = await vevee.analytics.getAttributes({ distinctId: 'batch' });
    assert.deepEqual(
      all.attributes.map((a) => [a.attribute, a.value]),
      [['persona', 'teacher'], ['plan_seats', 3], ['topics', ['art']]],
    );
    for (const a of all.attributes) assert.match(a.updatedAt, /^\d{4}-\d\d-\d\dT.*Z$/);
    const some = await vevee.analytics.getAttributes({ distinctId: 'batch', attributes: ['topics', 'persona'] });
    assert.deepEqual(some.attributes.map((a) => a.attribute), ['persona', 'topics']);
    assert.equal(some.personId, all.personId);
  });

  it('getAttributes with includeArchived shows values of archived attributes', async () => {
    await server.admin.define('legacy', 'boolean', {});
    await vevee.analytics.setAttribute({ distinctId: 'arch', attribute: 'legacy', value: 'TRUE' });
    await server.admin.archive('legacy');
    const hidden = await vevee.analytics.getAttributes({ distinctId: 'arch' });
    assert.deepEqual(hidden.attributes, []);
    const shown = await vevee.analytics.getAttributes({ distinctId: 'arch', includeArchived: true });
    assert.deepEqual(shown.attributes.map((a) => [a.attribute, a.value]), [['legacy', true]]);
  });

  it('clearAttribute removes a value and says whether there was one', async () => {
    await vevee.analytics.setAttribute({ distinctId: 'clear-me', attribute: 'persona', value: 'student' });
    const first = await vevee.analytics.clearAttribute({ distinctId: 'clear-me', attribute: 'persona' });
    assert.equal(first.attribute, 'persona');
    assert.equal(first.cleared, true);
    const again = await vevee.analytics.clearAttribute({ distinctId: 'clear-me', attribute: 'persona' });
    assert.equal(again.cleared, false);
    assert.equal(again.personId, first.personId);
    const read = await vevee.analytics.getAttributes({ distinctId: 'clear-me' });
    assert.deepEqual(read.attributes, []);
  });

  it('distinct ids with "/", ":", "?", "#", spaces and non-ASCII reach the server intact', async () => {
    const distinctId = 'a/b:c?d#e f%20é😀';
    const set = await vevee.analytics.setAttribute({ distinctId, attribute: 'persona', value: 'teacher' });
    const read = await vevee.analytics.getAttributes({ distinctId });
    assert.equal(read.personId, set.personId);
    assert.deepEqual(read.attributes.map((a) => a.value), ['teacher']);
    const cleared = await vevee.analytics.clearAttribute({ distinctId, attribute: 'persona' });
    assert.equal(cleared.cleared, true);
    // Another id that differs only in what encoding would confuse is another person.
    await assert.rejects(vevee.analytics.getAttributes({ distinctId: 'a/b:c?d#e f é😀' }), { code: 'person_not_found' });
  });

  it('the test key sees test data only', async () => {
    const test = createVevee({ apiKey: server.keys.sk_test, host: server.url });
    await test.analytics.setAttribute({ distinctId: 'moded', attribute: 'persona', value: 'student' });
    await assert.rejects(vevee.analytics.getAttributes({ distinctId: 'moded' }), { code: 'person_not_found', status: 404 });
    const read = await test.analytics.getAttributes({ distinctId: 'moded' });
    assert.equal(read.attributes[0].value, 'student');
  });

  it('updateAttributes increments and adds in the database, and a repeated requestId applies once', async () => {
    const distinctId = 'updater';
    await vevee.analytics.setAttribute({ distinctId, attribute: 'plan_seats', value: 1 });
    const requestId = '8d3f1c2a-6b4e-4f0a-9c7d-2e5b1a0f3c99';
    const args = {
      distinctId,
      requestId,
      updates: [
        { attribute: 'plan_seats', increment: 2 },
        { attribute: 'topics', add: ['math', 'art'] },
      ],
    };
    const first = await vevee.analytics.updateAttributes(args);
    assert.deepEqual(first.results.map((r) => [r.attribute, r.value, r.applied]), [
      ['plan_seats', 3, true],
      ['topics', ['math', 'art'], true],
    ]);
    const again = await vevee.analytics.updateAttributes(args);
    assert.deepEqual(again, first, 'the retry gets the first response');
    const read = await vevee.analytics.getAttributes({ distinctId, attributes: ['plan_seats'] });
    assert.equal(read.attributes[0].value, 3, 'applied once');
    // A precondition that no longer holds.
    await assert.rejects(
      vevee.analytics.updateAttributes({
        distinctId,
        updates: [{ attribute: 'plan_seats', set: 9, ifEtag: 'stale' }],
      }),
      { code: 'attribute_value_changed', status: 409 },
    );
    // An operation that doesn't fit the type.
    await assert.rejects(
      vevee.analytics.updateAttributes({ distinctId, updates: [{ attribute: 'persona', increment: 1 }] }),
      { code: 'attribute_operation_invalid', status: 400, attribute: 'persona' },
    );
  });

  it('a host given with a trailing slash works', async () => {
    const slash = createVevee({ apiKey: server.keys.sk_live, host: server.url + '/' });
    const r = await slash.analytics.setAttribute({ distinctId: user.id, attribute: 'persona', value: 'student' });
    assert.equal(r.value, 'student');
  });
});
