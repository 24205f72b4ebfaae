import { SUGGESTED_WORKSPACES_PER_DATABASE } from '../config.js';

/**
 * Workspaces in one database from which doctor suggests spreading them over databases: at 250,
 * a CREATE FUNCTION or CREATE TRIGGER already costs PostgreSQL 1.9 and 1.7 times what it costs
 * beside 10 workspaces, and the cost grows linearly from there (docs/benchmarks.md, Spread over
 * databases: the knee).
 */
export const CROWDED_DATABASE_WORKSPACES = 250;

/** What doctor knows of the database it advises on. */
export interface SpreadingFacts {
  /** Registered workspaces in the database. */
  workspaces: number;
  /** DATABASE_URL's own database on a single PostgreSQL server: the one --workspaces-per-database spreads from (not the embedded store, not Citus, not a member database). */
  spreadable: boolean;
  /** The database records member databases: servers spread its new workspaces already, so it no longer grows. */
  spreading: boolean;
}

/** The advice to spread new workspaces over databases, when a database that could is crowded and does not. */
export function spreadingAdvice(facts: SpreadingFacts): { message: string; fix: string } | undefined {
  if (!facts.spreadable || facts.spreading || facts.workspaces < CROWDED_DATABASE_WORKSPACES) return undefined;
  return {
    message:
      `This database holds ${facts.workspaces} workspaces. PostgreSQL's catalogs are per database, and some of its own work grows with ` +
      `the workspaces beside a call: at ${CROWDED_DATABASE_WORKSPACES}, a CREATE FUNCTION or CREATE TRIGGER already costs it about twice ` +
      'what it costs beside 10, and four times at 1,000 (docs/benchmarks.md).',
    fix:
      `Start the servers with --workspaces-per-database ${SUGGESTED_WORKSPACES_PER_DATABASE} (PG_WORKSPACE_WORKSPACES_PER_DATABASE): new ` +
      'workspaces then go to databases of their own, each holding a bounded share; those already here stay. The server\'s role ' +
      'needs CREATEDB, and template1 pgvector (docs/operations.md, Many workspaces).',
  };
}
