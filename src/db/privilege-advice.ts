import type { Queryable } from './database.js';
import { quoteIdent } from './identifiers.js';

/** Where a permission failure (42501) happened: schemas the SQL creates objects in, and ones it only uses. */
export interface PrivilegeScope {
  creates?: readonly string[];
  uses?: readonly string[];
  /** The SQL creates unqualified objects, in the first schema of the search path. */
  unqualified?: boolean;
}

export interface PrivilegeFacts {
  role: string;
  database: string;
  create_on_database: boolean;
  registry_owner: string | null;
  registry_owner_is_superuser: boolean | null;
  acts_as_registry_owner: boolean | null;
  registry_usage: boolean | null;
  schemas: { schema: string; usage: boolean; create: boolean }[];
}

/** What the current role may do, asked of PostgreSQL after a 42501 rather than guessed from the message. */
const FACTS = `
  SELECT current_user AS role, current_database() AS database,
         has_database_privilege(current_database(), 'CREATE') AS create_on_database,
         r.rolname AS registry_owner, r.rolsuper AS registry_owner_is_superuser,
         pg_has_role(r.oid, 'USAGE') AS acts_as_registry_owner,
         has_schema_privilege(n.oid, 'USAGE') AS registry_usage,
         (SELECT coalesce(json_agg(json_build_object('schema', s.nspname, 'usage', has_schema_privilege(s.oid, 'USAGE'),
                                                     'create', has_schema_privilege(s.oid, 'CREATE')) ORDER BY s.nspname), '[]')
            FROM pg_catalog.pg_namespace s
           WHERE s.nspname = ANY ($1::text[]) OR ($2 AND s.nspname = current_schema())) AS schemas
    FROM (SELECT 1) AS one
    LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = 'project_registry'
    LEFT JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner`;

const REGISTRY = 'project_registry';

/**
 * The privileges the current role lacks for `scope`, each with the statement an administrator
 * runs to grant it. Checked in the catalog: CREATE on the database (for new schemas), CREATE
 * and USAGE on the schemas involved, and whether the role may act as the registry's owner,
 * which every server sharing a database must: the installer re-creates the registry's
 * functions (CREATE OR REPLACE) and workspace upgrades alter tables, and PostgreSQL allows
 * both only to the owner and the members of its role.
 */
export async function privilegeAdvice(db: Queryable, scope: PrivilegeScope): Promise<string> {
  const creates = (scope.creates ?? []).filter((s) => s !== REGISTRY);
  const uses = (scope.uses ?? []).filter((s) => s !== REGISTRY);
  let facts: PrivilegeFacts | undefined;
  try {
    facts = await privilegeFacts(db, [...creates, ...uses], scope.unqualified === true);
  } catch {
    facts = undefined;
  }
  if (!facts) return 'The database role lacks a privilege (the privileges could not be read to say which).';
  const role = quoteIdent(facts.role);
  const grants: string[] = [];
  const why: string[] = [];
  if (!facts.create_on_database) {
    grants.push(`GRANT CREATE ON DATABASE ${quoteIdent(facts.database)} TO ${role};`);
    why.push(`CREATE on database "${facts.database}" (to create the registry schema and a schema per workspace)`);
  }
  for (const { schema, usage, create } of facts.schemas) {
    const written = creates.includes(schema) || !uses.includes(schema);
    if (!usage) {
      grants.push(`GRANT USAGE ON SCHEMA ${quoteIdent(schema)} TO ${role};`);
      why.push(`USAGE on schema "${schema}"`);
    }
    if (written && !create) {
      grants.push(`GRANT CREATE ON SCHEMA ${quoteIdent(schema)} TO ${role};`);
      why.push(`CREATE on schema "${schema}" (the SQL creates objects there)`);
    }
  }
  const owner = facts.registry_owner;
  if (owner !== null && !facts.acts_as_registry_owner && (!facts.registry_usage || grants.length === 0)) {
    why.push(
      `the rights of role "${owner}", which owns the workspace registry (schema ${REGISTRY}): servers sharing a database ` +
        'must act as one owner, because the installer re-creates the registry\'s functions and workspace upgrades alter ' +
        'tables, which PostgreSQL allows only to the owner',
    );
    grants.push(...registryOwnerGrants(facts));
  }
  if (why.length === 0) {
    return (
      `The role "${facts.role}" has CREATE on the database and the privileges on the schemas involved; PostgreSQL's message ` +
      'names what else is missing, most often ownership of an existing object, which only its owner (or a member of ' +
      'the owning role) may alter: run every server as the role that owns the registry and the workspaces.'
    );
  }
  return (
    `The role "${facts.role}" lacks ${why.join('; and ')}. An administrator can fix it with:\n` +
    grants.map((g) => `  ${g}`).join('\n')
  );
}

/** What the current role may do on the database and on `schemas` (and the current schema when `currentSchema`). */
export async function privilegeFacts(db: Queryable, schemas: readonly string[], currentSchema = false): Promise<PrivilegeFacts | undefined> {
  const [facts] = await db.query<PrivilegeFacts>(FACTS, [schemas, currentSchema]);
  return facts;
}

/** The statements that let the current role act as the registry's owner (see privilegeAdvice). */
export function registryOwnerGrants(facts: PrivilegeFacts): string[] {
  const owner = facts.registry_owner;
  if (owner === null) return [];
  const role = quoteIdent(facts.role);
  if (facts.registry_owner_is_superuser) {
    return [
      `-- "${owner}" is a superuser, whose rights a server should not share: run the servers as one ordinary role and, as a superuser, ` +
        `make it the owner of schema ${REGISTRY}, of every object in it and of the workspace schemas (ALTER ... OWNER TO ${role}).`,
    ];
  }
  // Membership gives the owner's rights; the default role makes new workspaces belong to the owner too.
  return [`GRANT ${quoteIdent(owner)} TO ${role};`, `ALTER ROLE ${role} SET role = ${quoteLiteral(owner)};  -- from its next connection`];
}

function quoteLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}
