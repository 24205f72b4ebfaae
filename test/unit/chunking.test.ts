import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { chunkText, contentHash } from '../../src/search/chunking.js';

const paragraph = (n: number, words = 30) => Array.from({ length: words }, (_, i) => `word${n}x${i}`).join(' ');

describe('chunkText', () => {
  it('packs whole paragraphs up to the size and gives 1-based inclusive line ranges', () => {
    const text = [paragraph(1, 10), '', paragraph(2, 10), paragraph(3, 10), '', paragraph(4, 10)].join('\n');
    const chunks = chunkText(text, { size: 200, overlap: 0 });
    expect(chunks.map((c) => [c.startLine, c.endLine])).toEqual([[1, 1], [3, 4], [6, 6]]);
    expect(chunks[1]?.content).toBe(`${paragraph(2, 10)}\n${paragraph(3, 10)}`);
    expect(chunks[0]?.hash).toBe(contentHash(paragraph(1, 10)));
  });

  it('repeats whole lines up to the overlap at the start of the next chunk', () => {
    const lines = Array.from({ length: 40 }, (_, i) => `line ${String(i + 1).padStart(2, '0')} of the text`);
    const chunks = chunkText(lines.join('\n'), { size: 200, overlap: 50 });
    expect(chunks.length).toBeGreaterThan(3);
    for (let i = 1; i < chunks.length; i++) {
      const previous = chunks[i - 1]!;
      const chunk = chunks[i]!;
      expect(chunk.startLine).toBeLessThanOrEqual(previous.endLine);
      expect(chunk.startLine).toBeGreaterThan(previous.startLine);
      expect(chunk.content.startsWith(lines[chunk.startLine - 1]!)).toBe(true);
    }
    expect(chunks.at(-1)?.endLine).toBe(40);
  });

  it('cuts a line longer than a chunk, every piece on that line', () => {
    const chunks = chunkText('short\n' + 'x'.repeat(450) + '\nend', { size: 200, overlap: 0 });
    expect(chunks.every((c) => c.content.length <= 200)).toBe(true);
    expect(chunks.map((c) => c.content).join('')).toContain('x'.repeat(199));
    expect(chunks.filter((c) => c.startLine === 2 && c.endLine === 2).length).toBeGreaterThanOrEqual(2);
  });

  it('starts code chunks at top-level definitions', () => {
    const fn = (name: string) => `export function ${name}(a: number) {\n  const b = a + 1;\n  return b * 2;\n}`;
    const text = [fn('one'), fn('two'), fn('three')].join('\n');
    const chunks = chunkText(text, { size: 130, overlap: 0 }, 'code');
    expect(chunks.map((c) => c.content.split('\n')[0])).toEqual(['export function one(a: number) {', 'export function two(a: number) {', 'export function three(a: number) {']);
    expect(chunks.map((c) => [c.startLine, c.endLine])).toEqual([[1, 4], [5, 8], [9, 12]]);
  });

  it('refuses sizes and overlaps it cannot honour', () => {
    expect(() => chunkText('x', { size: 10, overlap: 0 })).toThrow(/chunk_size/);
    expect(() => chunkText('x', { size: 1000, overlap: 600 })).toThrow(/chunk_overlap/);
  });

  it('covers every non-blank line, within the size, whatever the text', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.constant(''), fc.string({ maxLength: 300 })), { maxLength: 60 }), fc.integer({ min: 100, max: 400 }), (lines, size) => {
        const text = lines.join('\n').replace(/\r/g, '');
        const chunks = chunkText(text, { size, overlap: Math.floor(size / 4) });
        for (const c of chunks) {
          expect(c.content.length).toBeLessThanOrEqual(size);
          expect(c.endLine).toBeGreaterThanOrEqual(c.startLine);
        }
        const covered = new Set(chunks.flatMap((c) => Array.from({ length: c.endLine - c.startLine + 1 }, (_, i) => c.startLine + i)));
        text.split('\n').forEach((line, i) => {
          if (line.trim() !== '') expect(covered.has(i + 1)).toBe(true);
        });
      }),
    );
  });
});
