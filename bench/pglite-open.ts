/**
 * Scenario 12's floor for a spawned server: a bare Node process that opens an existing PGlite
 * store as PGlite does by default (with pgvector), asks `SELECT 1`, prints `ready` and closes.
 * Usage: node dist/bench/pglite-open.js <pgdata>
 */
import { PGlite } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';

const pglite = await PGlite.create({ dataDir: process.argv[2] ?? '', extensions: { vector } });
await pglite.query('SELECT 1');
process.stdout.write('ready\n');
await pglite.close();
