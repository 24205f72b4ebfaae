import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_IDENTIFIER_BYTES } from '../../src/db/identifiers.js';
import { rolePrefixFor, roleNameFor } from '../../src/sandbox/sandbox-ddl.js';
import { PROJECT_ID_MAX_LENGTH, PROJECT_ID_PATTERN, projectIdOfSchema, schemaNameFor } from '../../src/workspaces/project-id.js';

/** Valid project ids: lower-case words of letters and digits, the first starting with a letter, single hyphens between. */
const word = fc.stringMatching(/^[a-z0-9]{1,12}$/);
const projectId = fc
  .tuple(fc.stringMatching(/^[a-z][a-z0-9]{0,11}$/), fc.array(word, { maxLength: 8 }))
  .map(([first, rest]) => [first, ...rest].join('-').slice(0, PROJECT_ID_MAX_LENGTH).replace(/-+$/, ''))
  .filter((id) => PROJECT_ID_PATTERN.test(id));
/** Ids near the length where role names switch from spelled out to hashed, where collisions were made. */
const longId = fc
  .tuple(fc.stringMatching(/^[a-z]{1,4}$/), fc.array(fc.stringMatching(/^[a-z0-9]{1,3}$/), { minLength: 12, maxLength: 20 }))
  .map(([first, rest]) => [first, ...rest].join('-').slice(0, PROJECT_ID_MAX_LENGTH).replace(/-+$/, ''))
  .filter((id) => PROJECT_ID_PATTERN.test(id) && id.length >= 45);

const DATABASE = 'workspaces';

describe('workspace schema and role names', () => {
  it('the issue 27 pair (a 50-character id spelling out the hashed name of a 51-character one) get two roles', () => {
    const victim = 'acme-corp-payments-service-production-embeddings-v2';
    const crafted = 'acme-corp-payments-service-production-emb-c7cfb544';
    expect(roleNameFor(DATABASE, victim)).not.toBe(roleNameFor(DATABASE, crafted));
    // The crafted id is spelled out; the long one has the hashed shape, which no spelled-out id has.
    expect(roleNameFor(DATABASE, crafted)).toBe(`${rolePrefixFor(DATABASE)}acme_corp_payments_service_production_emb_c7cfb544`);
    expect(roleNameFor(DATABASE, victim)).toMatch(/__[0-9a-f]{16}$/);
  });

  it('role names fit an identifier and take a shape by length: spelled out (never "__") or hashed (always "__")', () => {
    fc.assert(
      fc.property(fc.oneof(projectId, longId), (id) => {
        const role = roleNameFor(DATABASE, id);
        expect(Buffer.byteLength(role)).toBeLessThanOrEqual(MAX_IDENTIFIER_BYTES);
        const spelled = rolePrefixFor(DATABASE) + id.replaceAll('-', '_');
        if (Buffer.byteLength(spelled) <= MAX_IDENTIFIER_BYTES) {
          expect(role).toBe(spelled);
          expect(role.slice(rolePrefixFor(DATABASE).length)).not.toContain('__');
        } else {
          expect(role).toMatch(/__[0-9a-f]{16}$/);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('two different ids never get the same role or the same schema', () => {
    fc.assert(
      fc.property(fc.oneof(projectId, longId), fc.oneof(projectId, longId), (a, b) => {
        fc.pre(a !== b);
        expect(roleNameFor(DATABASE, a)).not.toBe(roleNameFor(DATABASE, b));
        expect(schemaNameFor(a)).not.toBe(schemaNameFor(b));
      }),
      { numRuns: 5000 },
    );
  });

  it('the schema name gives its id back, so the schema mapping is injective', () => {
    fc.assert(
      fc.property(fc.oneof(projectId, longId), (id) => {
        expect(projectIdOfSchema(schemaNameFor(id))).toBe(id);
      }),
      { numRuns: 2000 },
    );
  });

  it('a spelled-out id ending like a hashed name still differs from it', () => {
    fc.assert(
      fc.property(longId, (long) => {
        const role = roleNameFor(DATABASE, long);
        fc.pre(!role.endsWith(long.replaceAll('-', '_')));
        // The id a crafter would try: the hashed name's tail, spelled out with hyphens.
        const tail = role.slice(rolePrefixFor(DATABASE).length).replaceAll('_', '-');
        if (PROJECT_ID_PATTERN.test(tail) && tail.length <= PROJECT_ID_MAX_LENGTH) expect(roleNameFor(DATABASE, tail)).not.toBe(role);
        else expect(PROJECT_ID_PATTERN.test(tail)).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });
});
