import { afterAll } from 'vitest';
import { removeTempDirs } from '../../harness/temp-dirs.js';

// Registered before any test file's hooks, so it runs after them: servers are closed by then.
afterAll(removeTempDirs);
