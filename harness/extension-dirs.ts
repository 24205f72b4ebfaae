import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Writes an extension directory: `files` maps relative paths (e.g. `workspace/schema.sql`) to SQL. */
export async function writeExtension(
  root: string,
  manifest: Record<string, unknown> & { id: string },
  files: Record<string, string> = {},
): Promise<string> {
  const dir = path.join(root, manifest.id);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'extension.json'), JSON.stringify({ version: '1', ...manifest }));
  for (const [relative, sql] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, relative)), { recursive: true });
    await writeFile(path.join(dir, relative), sql);
  }
  return dir;
}
