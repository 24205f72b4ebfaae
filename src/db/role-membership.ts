import { quoteIdent } from './identifiers.js';

/**
 * `sql` run with the server a member of `role` (a workspace or snapshot role), in the caller's
 * transaction and for those statements only: PostgreSQL asks for the membership to hand the role
 * objects, to drop what it owns, or to act as its objects' owner. A server that stayed a member
 * of every workspace role paid, on each membership check after any role change in the cluster,
 * the rebuild of its list of all of them, in quadratic time before PostgreSQL 17: 163 ms of CPU
 * for a new workspace's first call at 10,000 workspaces (docs/benchmarks.md, Fleet scale). On
 * PostgreSQL 16 and later the REVOKE takes back only the server's own grant, never the ADMIN
 * OPTION PostgreSQL gave it on the roles it created. Never nested for one role: the inner REVOKE
 * would end the outer membership.
 */
export function memberFor(role: string, sql: string): string {
  return `GRANT ${quoteIdent(role)} TO CURRENT_USER;\n${sql};\nREVOKE ${quoteIdent(role)} FROM CURRENT_USER`;
}

/** Drops a role and what it owns, as a member of it (DROP OWNED BY asks for that; DROP ROLE ends it). */
export function dropRoleSql(role: string): string {
  return `GRANT ${quoteIdent(role)} TO CURRENT_USER; DROP OWNED BY ${quoteIdent(role)}; DROP ROLE ${quoteIdent(role)}`;
}
