/** The control and format characters in `text` (C0, C1, bidi controls), but those allowed. */
export const controls = (text: string, allowed = ''): string[] =>
  [...text].filter((c) => !allowed.includes(c) && /[\p{Cc}\p{Cf}]/u.test(c) && !/[\u00ad\u200b-\u200d\u2060\ufeff]/.test(c));
