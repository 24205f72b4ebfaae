import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BUILTIN_EXTENSION_IDS, builtinExtensionDirs } from '../../src/extensions/builtin-extensions.js';
import { loadExtensions } from '../../src/extensions/load-extensions.js';
import { packageRoot } from '../../src/package-info.js';

describe('built-in extensions', () => {
  it('lists every directory of extensions/ once, core first', async () => {
    const entries = await readdir(path.join(packageRoot, 'extensions'), { withFileTypes: true });
    const directories = entries.filter((e) => e.isDirectory()).map((e) => e.name);
    expect([...BUILTIN_EXTENSION_IDS].sort()).toEqual(directories.sort());
    expect(BUILTIN_EXTENSION_IDS[0]).toBe('core');
  });

  it('load, each with the id of its directory', async () => {
    const loaded = await loadExtensions(builtinExtensionDirs);
    expect(loaded.map((e) => e.id)).toEqual([...BUILTIN_EXTENSION_IDS]);
  });
});
