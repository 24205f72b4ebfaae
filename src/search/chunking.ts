import { createHash } from 'node:crypto';

/** A piece of a text as stored in `chunks`: lines are 1-based and inclusive. */
export interface Chunk {
  content: string;
  startLine: number;
  endLine: number;
  /** sha256 of the content: ingest embeds a chunk only when no chunk with this hash is stored. */
  hash: string;
}

export interface ChunkOptions {
  /** The most characters a chunk holds (a longer single line is cut). */
  size: number;
  /** Characters of whole lines the next chunk repeats from the end of the previous one. */
  overlap: number;
}

export const DEFAULT_CHUNK_OPTIONS: ChunkOptions = { size: 1500, overlap: 200 };
export const CHUNK_SIZE_RANGE = { min: 100, max: 20_000 } as const;

export type Boundaries = 'prose' | 'code';

export class ChunkOptionsError extends RangeError {
  override name = 'ChunkOptionsError';
}

export function contentHash(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export function checkChunkOptions({ size, overlap }: ChunkOptions): void {
  if (!Number.isInteger(size) || size < CHUNK_SIZE_RANGE.min || size > CHUNK_SIZE_RANGE.max) {
    throw new ChunkOptionsError(`chunk_size must be a whole number of characters from ${CHUNK_SIZE_RANGE.min} to ${CHUNK_SIZE_RANGE.max}, got ${size}.`);
  }
  if (!Number.isInteger(overlap) || overlap < 0 || overlap >= size / 2) {
    throw new ChunkOptionsError(`chunk_overlap must be a whole number of characters from 0 to less than half of chunk_size (${size}), got ${overlap}.`);
  }
}

/**
 * A top-level definition in most languages: a chunk boundary before it keeps a function or class
 * whole when it fits, so a search hit points at one definition rather than the tail of one and
 * the head of the next.
 */
const DEFINITION =
  /^(export\s+)?(default\s+)?(pub(\([a-z]+\))?\s+)?(async\s+)?(abstract\s+)?(function|class|interface|type|enum|const|let|var|def|fn|impl|struct|trait|func|module|namespace|public|private|protected|static|CREATE|create)\b/;

interface Line {
  text: string;
  number: number;
}

/**
 * Splits a text into chunks of at most `size` characters whose boundaries fall between blocks
 * (prose: paragraphs, that is runs of lines between blank lines; code: top-level definitions and
 * blank lines before unindented code), then between lines, and only inside a line longer than
 * `size`. Each chunk after the first repeats up to `overlap` characters of whole lines from the
 * end of the one before, so a passage cut at a boundary is still found whole in one of them.
 */
export function chunkText(text: string, options: ChunkOptions = DEFAULT_CHUNK_OPTIONS, boundaries: Boundaries = 'prose'): Chunk[] {
  checkChunkOptions(options);
  const lines = text.replace(/\r\n?/g, '\n').split('\n').map((t, i) => ({ text: t, number: i + 1 }));
  const blocks = splitBlocks(lines, boundaries);
  const chunks: Chunk[] = [];
  let current: Line[] = [];
  let length = 0;
  // How many lines at the start of `current` repeat the previous chunk.
  let carriedCount = 0;
  const emit = () => {
    const trimmed = trimBlank(current);
    if (current.slice(carriedCount).some((l) => l.text.trim() !== '')) {
      const content = trimmed.map((l) => l.text).join('\n');
      chunks.push({ content, startLine: (trimmed[0] as Line).number, endLine: (trimmed.at(-1) as Line).number, hash: contentHash(content) });
    }
    const carried: Line[] = [];
    let carriedLength = 0;
    for (let i = current.length - 1; i > 0; i--) {
      const line = current[i] as Line;
      if (carriedLength + line.text.length + 1 > options.overlap) break;
      carried.unshift(line);
      carriedLength += line.text.length + 1;
    }
    current = carried;
    length = carriedLength;
    carriedCount = carried.length;
  };
  const add = (line: Line) => {
    if (length + line.text.length + 1 > options.size) {
      if (current.length > carriedCount) emit();
      // Only repeated lines left: drop them from the front until the line fits.
      while (current.length > 0 && length + line.text.length + 1 > options.size) {
        length -= (current.shift() as Line).text.length + 1;
        carriedCount--;
      }
    }
    current.push(line);
    length += line.text.length + 1;
  };
  for (const block of blocks) {
    const blockLength = block.reduce((n, l) => n + l.text.length + 1, 0);
    // A block that does not fit in what is left starts a chunk of its own.
    if (length + blockLength > options.size && current.length > carriedCount) emit();
    for (const line of block) for (const piece of cutLine(line, options.size)) add(piece);
  }
  if (current.length > carriedCount) emit();
  return chunks;
}

function splitBlocks(lines: readonly Line[], boundaries: Boundaries): Line[][] {
  const blocks: Line[][] = [];
  let block: Line[] = [];
  lines.forEach((line, i) => {
    const previous = lines[i - 1];
    const blankBefore = previous !== undefined && previous.text.trim() === '';
    const starts =
      boundaries === 'prose'
        ? blankBefore && line.text.trim() !== ''
        : DEFINITION.test(line.text) || (blankBefore && /^\S/.test(line.text));
    if (starts && block.length > 0) {
      blocks.push(block);
      block = [];
    }
    block.push(line);
  });
  if (block.length > 0) blocks.push(block);
  return blocks;
}

/** A line longer than a chunk becomes pieces of `size` - 1 characters, all on its line number. */
function cutLine(line: Line, size: number): Line[] {
  if (line.text.length < size) return [line];
  const pieces: Line[] = [];
  for (let at = 0; at < line.text.length; at += size - 1) pieces.push({ text: line.text.slice(at, at + size - 1), number: line.number });
  return pieces;
}

function trimBlank(lines: readonly Line[]): Line[] {
  let start = 0;
  let end = lines.length;
  while (start < end && (lines[start] as Line).text.trim() === '') start++;
  while (end > start && (lines[end - 1] as Line).text.trim() === '') end--;
  return lines.slice(start, end);
}
