// The page of the browser test: imports the built SDK from this page's own
// origin, talks to the API on another origin (CORS), and shows each step's
// outcome in a table, which the test reads and photographs.
import { createVevee, VeveeError } from '/sdk/index.js';

const params = new URLSearchParams(location.search);
const host = params.get('api');
const apiKey = params.get('key');
document.getElementById('page-origin').textContent = location.origin;
document.getElementById('api-origin').textContent = host;
document.getElementById('key-kind').textContent = apiKey.slice(0, 8) + '…';

const vevee = createVevee({ apiKey, host });
const user = { id: params.get('user') };

function show(step, outcome, result) {
  const row = document.createElement('tr');
  for (const [text, cls] of [[step], [outcome, outcome === 'resolved' ? 'ok' : 'refused'], [JSON.stringify(result)]]) {
    const td = document.createElement('td');
    if (cls) td.className = cls;
    const code = document.createElement('code');
    code.textContent = text;
    td.append(code);
    row.append(td);
  }
  document.getElementById('results').append(row);
}

/** Runs `fn`, shows and returns what happened. */
async function step(name, fn) {
  try {
    const result = await fn();
    show(name, 'resolved', result);
    return { resolved: result };
  } catch (e) {
    const refused = {
      isVeveeError: e instanceof VeveeError,
      isError: e instanceof Error,
      code: e.code,
      status: e.status,
      message: e.message,
    };
    show(name, `rejected: ${e.code} / ${e.status}`, { code: e.code, status: e.status, message: e.message });
    return { refused };
  }
}

window.steps = {
  // The seed's examples, verbatim.
  singleChoice: (when) =>
    step(when + ": setAttribute persona 'teacher'", async () => {
      // 'persona' is declared in the dashboard as single_choice
      // with options [teacher, student].
      return await vevee.analytics.setAttribute({
        distinctId: user.id,
        attribute: 'persona',
        value: 'teacher',
      });
    }),
  multiChoice: (when) =>
    step(when + ": setAttribute topics ['history', 'math']", async () => {
      // 'topics' is multi_choice with options [history, math, science, art].
      return await vevee.analytics.setAttribute({
        distinctId: user.id,
        attribute: 'topics',
        value: ['history', 'math'], // server keeps only the matching subset
      });
    }),
  subset: (when) =>
    step(when + ": setAttribute topics ['history', 'math', 'cooking']", () =>
      vevee.analytics.setAttribute({ distinctId: user.id, attribute: 'topics', value: ['history', 'math', 'cooking'] }),
    ),
  identity: (when) =>
    step(when + ': setAttribute with identity (x-vevee-identity header)', () =>
      createVevee({ apiKey, host, identity: params.get('identity') }).analytics.setAttribute({
        distinctId: user.id,
        attribute: 'persona',
        value: 'Student',
      }),
    ),
  secretKey: (when) =>
    step(when + ': createVevee with a secret key', async () => createVevee({ apiKey: 'sk_live_' + 'x'.repeat(38), host })),
};
window.ready = true;
