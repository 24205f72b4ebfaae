/**
 * Text an agent controls (an error its trigger raised, a table name it chose) reaches operators'
 * terminals through CLI output and logs. Raw, its escape sequences retitle the window, erase the
 * line, move the cursor or hide what follows; a bidirectional override reorders what is shown.
 * Every C0 and C1 control character (but newline and tab), DEL and the bidi controls are shown
 * as `\uXXXX` instead, which is also how JSON writes them, so the same text stays valid in a
 * JSON string.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
// eslint-disable-next-line no-control-regex -- as above
const UNSAFE_IN_LINE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

const escaped = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

/** For a terminal: control characters shown escaped; newlines and tabs kept. */
export function terminalSafe(text: string): string {
  return text.replace(UNSAFE, escaped);
}

/** For one log line: newlines and tabs escaped too, so no text can forge a line of its own. */
export function lineSafe(text: string): string {
  return text.replace(UNSAFE_IN_LINE, escaped);
}
