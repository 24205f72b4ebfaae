import { describe, expect, it } from 'vitest';
import { createStderrLogger, MAX_LOG_LINE_CHARS } from '../../src/logger.js';
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

describe('the stderr logger', () => {
  const lines = (fn: (log: ReturnType<typeof createStderrLogger>) => void) => {
    const written: string[] = [];
    fn(createStderrLogger('info', (line) => written.push(line)));
    return written;
  };

  it('writes one line per entry with every control character escaped, message and fields alike', () => {
    const [line] = lines((log) => log.warn(`maintenance of ${HOSTILE}\nforged line`, { error: HOSTILE }));
    expect(line?.endsWith('\n')).toBe(true);
    expect(line?.split('\n')).toHaveLength(2);
    expect(controls(line?.slice(0, -1) ?? '')).toEqual([]);
    expect(line).toContain('maintenance of failed\\u001b]0;pwned\\u0007');
    // JSON.stringify leaves C1 controls, DEL and bidi overrides raw: escaped here.
    expect(line).toContain('hidden\\u009b31m\\u202eevil');
  });

  it('cuts a huge entry before escaping it: the line stays bounded however long the text', () => {
    const huge = '\u001b'.repeat(10 * 1024 * 1024);
    const [line] = lines((log) => log.error('boom', { error: huge }));
    expect(line?.length).toBeLessThan(MAX_LOG_LINE_CHARS * 6 + 200);
    expect(line).toMatch(/… \(\d+ more characters\)\n$/);
  });
});
