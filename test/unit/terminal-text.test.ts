import { describe, expect, it } from 'vitest';
import { createStderrLogger } from '../../src/logger.js';
import { lineSafe, terminalSafe } from '../../src/terminal-text.js';
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

  it('keeps a log line one line: newlines escaped, in the message and in the fields', () => {
    const lines: string[] = [];
    const log = createStderrLogger('info', (line) => {
      lines.push(line);
      return true;
    });
    log.warn(`upgrade failed: ${HOSTILE}\n2026-12-07T00:00:00.000Z pg-workspace-mcp info: all good`, { error: `x\u009by` });
    expect(lines).toHaveLength(1);
    expect(lines[0]?.split('\n')).toHaveLength(2); // the line and its end
    expect(controls(lines[0] ?? '', '\n')).toEqual([]);
    expect(lines[0]).toContain('\\u001b]0;pwned');
    expect(lineSafe('a\nb')).toBe('a\\u000ab');
  });
});
