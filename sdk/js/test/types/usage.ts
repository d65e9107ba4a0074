// Compiled by `npm run typecheck` against the built declarations (dist/):
// the seed's calls type-check as written, results have the seed's types, and
// wrong shapes are refused (each @ts-expect-error must be an error).
import { createVevee, VeveeError, type AttributeValue, type SetAttributeResult } from '../../dist/index.js';

declare const user: { id: string };
const vevee = createVevee({ apiKey: 'sk_live_x', host: 'https://attributes.example.com' });

export async function seed(): Promise<void> {
  // 'persona' is declared in the dashboard as single_choice
  // with options [teacher, student].
  await vevee.analytics.setAttribute({
    distinctId: user.id,
    attribute: 'persona',
    value: 'teacher',
  });
  // 'topics' is multi_choice with options [history, math, science, art].
  const r: SetAttributeResult = await vevee.analytics.setAttribute({
    distinctId: user.id,
    attribute: 'topics',
    value: ['history', 'math'], // server keeps only the matching subset
  });
  const personId: string = r.personId;
  const value: string | number | boolean | string[] = r.value;
  void personId;
  void value;

  const many = await vevee.analytics.setAttributes({ distinctId: user.id, values: { persona: 'teacher', seats: 3 } });
  const stored: Record<string, AttributeValue> = many.values;
  void stored;
  const read = await vevee.analytics.getAttributes({ distinctId: user.id, attributes: ['persona'], includeArchived: true });
  const updatedAt: string | undefined = read.attributes[0]?.updatedAt;
  void updatedAt;
  const cleared: boolean = (await vevee.analytics.clearAttribute({ distinctId: user.id, attribute: 'persona' })).cleared;
  void cleared;
  await vevee.analytics.updateAttributes({
    distinctId: user.id,
    updates: [
      { attribute: 'seats', increment: 1 },
      { attribute: 'topics', add: ['art'], ifEtag: 'e1' },
      { attribute: 'persona', clear: true },
    ],
    validateOnly: true,
  });

  // @ts-expect-error objects are not attribute values
  await vevee.analytics.setAttribute({ distinctId: user.id, attribute: 'persona', value: { a: 1 } });
  // @ts-expect-error distinctId is required
  await vevee.analytics.setAttribute({ attribute: 'persona', value: 'teacher' });
  // @ts-expect-error increment takes a number
  await vevee.analytics.updateAttributes({ distinctId: user.id, updates: [{ attribute: 'seats', increment: '1' }] });

  try {
    await vevee.analytics.setAttribute({ distinctId: user.id, attribute: 'persona', value: 'x' });
  } catch (e) {
    if (e instanceof VeveeError) {
      const code: string = e.code;
      const status: number = e.status;
      const attribute: string | undefined = e.attribute;
      const retryable: boolean = e.retryable;
      const fields: string[] = e.violations.map((v) => v.field);
      void [code, status, attribute, retryable, fields];
    }
  }
}
