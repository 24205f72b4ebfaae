import * as z from 'zod';

/**
 * Strict-schema clients send every argument a tool declares, with `null` for the ones the caller
 * did not give. Each top-level argument that is `null` where the tool's input schema accepts it
 * missing but not `null` is dropped here, so it gets the tool's default, for every tool (one
 * that declares a field nullable keeps its `null`). A `null` for a required argument stays and
 * is refused by the SDK's validation as before.
 */
export function nullAsAbsent(inputSchema: unknown, args: Record<string, unknown>): Record<string, unknown> {
  const shape = (inputSchema as { _zod?: { def?: { shape?: Record<string, z.core.$ZodType> } } } | undefined)?._zod?.def?.shape;
  if (!shape) return args;
  const kept = Object.entries(args).filter(([key, value]) => {
    const field = shape[key];
    return !(value === null && field && z.safeParse(field, undefined).success && !z.safeParse(field, null).success);
  });
  return kept.length === Object.keys(args).length ? args : Object.fromEntries(kept);
}
