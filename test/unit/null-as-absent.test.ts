import * as z from 'zod';
import { describe, expect, it } from 'vitest';
import { nullAsAbsent } from '../../src/mcp/null-as-absent.js';

describe('nullAsAbsent', () => {
  const schema = z.object({
    required: z.string(),
    optional: z.array(z.string()).optional(),
    defaulted: z.number().default(5),
    nullable: z.string().nullable().optional(),
  });

  it('drops null only where the field may be missing but not null', () => {
    expect(nullAsAbsent(schema, { required: null, optional: null, defaulted: null, nullable: null })).toEqual({ required: null, nullable: null });
    const parsed = schema.safeParse(nullAsAbsent(schema, { required: 'a', optional: null, defaulted: null }));
    expect(parsed.data).toEqual({ required: 'a', defaulted: 5 });
  });

  it('leaves other values, unknown keys and schemas without a shape alone', () => {
    const args = { optional: ['x'], extra: null };
    expect(nullAsAbsent(schema, args)).toBe(args);
    expect(nullAsAbsent(z.union([z.string(), z.number()]), { a: null })).toEqual({ a: null });
    expect(nullAsAbsent(undefined, { a: null })).toEqual({ a: null });
  });
});
