import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import * as z from 'zod';
import type { Extension, Migration, SqlFile } from './extension.js';
import { extensionManifest } from './manifest.js';

export class ExtensionLoadError extends Error {
  override name = 'ExtensionLoadError';
}

const MIGRATION_FILE = /^(\d{4})_[A-Za-z0-9_-]+\.sql$/;

/**
 * Loads extension directories in order and drops the disabled ones. `core` holds the registry
 * and the installer's ledger, so it cannot be disabled and always comes first.
 */
export async function loadExtensions(
  directories: readonly string[],
  disabled: readonly string[] = [],
): Promise<Extension[]> {
  if (disabled.includes('core')) {
    throw new ExtensionLoadError(
      'The `core` extension cannot be disabled: it holds the workspace registry and the migration ledger.',
    );
  }
  const loaded = await Promise.all(directories.map(loadExtension));
  const seen = new Map<string, string>();
  for (const extension of loaded) {
    const other = seen.get(extension.id);
    if (other) {
      throw new ExtensionLoadError(
        `Two extensions have the id "${extension.id}": ${other} and ${extension.directory}. Rename one in its extension.json.`,
      );
    }
    seen.set(extension.id, extension.directory);
  }
  const unknown = disabled.filter((id) => !seen.has(id));
  if (unknown.length > 0) {
    throw new ExtensionLoadError(
      `Cannot disable unknown extension(s): ${unknown.join(', ')}. Known: ${[...seen.keys()].join(', ')}.`,
    );
  }
  return loaded.filter((e) => !disabled.includes(e.id));
}

export async function loadExtension(directory: string): Promise<Extension> {
  const manifestPath = path.join(directory, 'extension.json');
  const manifestText = await readFile(manifestPath, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new ExtensionLoadError(
      `${manifestPath} cannot be read (${error.code ?? error.message}): every extension directory needs an extension.json.`,
    );
  });
  let json: unknown;
  try {
    json = JSON.parse(manifestText);
  } catch (error) {
    throw new ExtensionLoadError(`${manifestPath} is not valid JSON: ${(error as Error).message}`);
  }
  const parsed = extensionManifest.safeParse(json);
  if (!parsed.success) {
    throw new ExtensionLoadError(`${manifestPath} is invalid:\n${z.prettifyError(parsed.error)}`);
  }
  const manifest = parsed.data;
  const label = path.basename(directory);
  const read = (relative: string) => readSqlFile(directory, label, relative);
  return {
    id: manifest.id,
    version: manifest.version,
    directory,
    requires: manifest.requires,
    requiredColumns: manifest.required_columns,
    usesTables: manifest.uses_tables,
    schema: await read('schema.sql'),
    migrations: await readMigrations(directory, label, 'migrations'),
    seeds: await readSqlDir(directory, label, 'seeds'),
    workspaceSchema: await read('workspace/schema.sql'),
    workspaceMigrations: await readMigrations(directory, label, 'workspace/migrations'),
  };
}

async function readSqlFile(dir: string, label: string, relative: string): Promise<SqlFile | undefined> {
  try {
    const sql = await readFile(path.join(dir, relative), 'utf8');
    return { path: `${label}/${relative}`, sql };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

async function listSqlFiles(dir: string, relative: string): Promise<string[]> {
  try {
    const names = await readdir(path.join(dir, relative));
    return names.filter((n) => n.endsWith('.sql')).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

async function readSqlDir(dir: string, label: string, relative: string): Promise<SqlFile[]> {
  const files = await Promise.all(
    (await listSqlFiles(dir, relative)).map((name) => readSqlFile(dir, label, `${relative}/${name}`)),
  );
  return files.filter((f): f is SqlFile => f !== undefined);
}

async function readMigrations(dir: string, label: string, relative: string): Promise<Migration[]> {
  const files = await readSqlDir(dir, label, relative);
  const byNumber = new Map<string, string>();
  return files.map((file) => {
    const fileName = path.basename(file.path);
    const match = MIGRATION_FILE.exec(fileName);
    if (!match) {
      throw new ExtensionLoadError(
        `${file.path}: migration files are named NNNN_description.sql (four digits, e.g. 0001_add_language.sql).`,
      );
    }
    const number = match[1] as string;
    const clash = byNumber.get(number);
    if (clash) {
      throw new ExtensionLoadError(`${file.path} and ${clash} share the number ${number}: renumber one.`);
    }
    byNumber.set(number, file.path);
    return { ...file, name: fileName.slice(0, -'.sql'.length), checksum: sha256(file.sql) };
  });
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
