import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { renderToolsDoc, TOOLS_DOC } from '../../scripts/tools-doc.js';
import { TOOL_NAMES } from '../../src/mcp/tool-registry.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('docs/tools.md', () => {
  it('is what the tools\' schemas, descriptions and docs/tools/*.md make of it (else: npm run docs:tools)', async () => {
    const page = await renderToolsDoc(root);
    expect(await readFile(path.join(root, TOOLS_DOC), 'utf8'), 'docs/tools.md is stale: run `npm run docs:tools`').toBe(page);
  });

  it('has a section with arguments and result for every tool the server lists', async () => {
    const page = await renderToolsDoc(root);
    for (const name of TOOL_NAMES) {
      const section = page.split(`\n## ${name}\n`)[1]?.split('\n## ')[0] ?? '';
      expect(section, name).toMatch(/^Arguments:/m);
      expect(section, name).toMatch(/^Result:/m);
    }
  });
});
