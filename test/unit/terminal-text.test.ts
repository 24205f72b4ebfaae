import { describe, expect, it } from 'vitest';
import { terminalSafe } from '../../src/terminal-text.js';
import { controls } from './control-characters.js';

// What a red team's trigger raised: retitle the window, erase the line, hide what follows.
const HOSTILE = 'failed\u001b]0;pwned\u0007\u001b[2K\r\u001b[8mhidden\u009b31m\u202eevil';

describe('terminal-safe text', () => {
  it('shows every control character escaped, keeps newlines and tabs, stays valid inside a JSON string', () => {
    const safe = terminalSafe(`${HOSTILE}\n\tnext`);
    expect(safe).toBe('failed\\u001b]0;pwned\\u0007\\u001b[2K\\u000d\\u001b[8mhidden\\u009b31m\\u202eevil\n\tnext');
    expect(controls(safe, '\n\t')).toEqual([]);
    expect(JSON.parse(`"${terminalSafe(HOSTILE).replaceAll('"', '\\"')}"`)).toBe(HOSTILE);
    expect(terminalSafe('plain text, ünïcode ✓')).toBe('plain text, ünïcode ✓');
  });
});
