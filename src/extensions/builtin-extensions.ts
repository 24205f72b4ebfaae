import path from 'node:path';
import { packageRoot } from '../package-info.js';

/**
 * The extensions that ship with the server, in install order. Each is a directory of
 * `extensions/` at the package root, in the format user extensions use (docs/extensions.md).
 * To add one: create `extensions/<id>/` with its extension.json and SQL, and add its id here.
 * `core` stays first: it creates the registry and the ledgers that record every other install.
 * A unit test checks that this list and the directories agree.
 */
export const BUILTIN_EXTENSION_IDS = ['core', 'codebase'] as const;

export const builtinExtensionDirs = BUILTIN_EXTENSION_IDS.map((id) => path.join(packageRoot, 'extensions', id));
