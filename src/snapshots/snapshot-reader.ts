import { createHash } from 'node:crypto';
import pg from 'pg';
import type { Queryable } from '../db/database.js';
import { quoteIdent } from '../db/identifiers.js';
import { memberFor } from '../db/role-membership.js';
import { SANDBOX_SCHEMA } from '../sandbox/sandbox-ddl.js';
import { WorkspaceLifecycleError } from '../workspaces/workspace-lifecycle.js';

/*
 * A copy from a snapshot (a fork of one) runs agent code (a CHECK validated as it is added, a
 * domain, a materialized view) as the copying role, which must read the snapshot. It used to be
 * handed the snapshot for the copy, and that code rewrote the snapshot's rows, moved its
 * sequences and altered its tables: a snapshot is the agent's undo and must stay as taken.
 *
 * So the copier gets no privilege on the snapshot's objects. It reads rows through views in a
 * schema made for that transaction, one per table and sequence, owned by the snapshot role: a
 * view reads its table with its owner's privileges (and so the owner's pass through row level
 * security, as an owner copying had), and the copier may only SELECT them. PostgreSQL enforces
 * it: no write, DDL or setval on the snapshot's objects, whatever the copier's code runs.
 *
 * The copier still needs USAGE on the snapshot's schema: PostgreSQL's deparsers qualify every
 * name that is not visible on the current user's search path, and a schema without USAGE is left
 * out of it, so the copy would replay definitions naming the snapshot. USAGE lets it call the
 * snapshot's functions (their EXECUTE is PUBLIC's unless the agent took it), which run as the
 * caller, except SECURITY DEFINER ones: those would run as the snapshot role, which owns every
 * snapshot of the workspace (setval by OID, DROP OWNED BY CURRENT_USER). They are made SECURITY
 * INVOKER for the transaction and DEFINER again after it (the copy makes its copies DEFINER).
 *
 * What the copier's code could still do is make objects depend on the views or on the
 * snapshot's objects (a view of its own over them, a column of one of its types): the views'
 * dependents refuse the copy here, and the caller checks the snapshot's (copy-bridges.ts).
 */

/** The schema of the views over one snapshot: the server's own name space (no project id maps to it). */
function readerSchemaName(snapshotSchema: string): string {
  return `project_registry_copy_${createHash('sha256').update(snapshotSchema).digest('hex').slice(0, 16)}`;
}

/** The snapshot's SECURITY DEFINER routines, as regprocedure text (qualified as needed). */
const DEFINERS = `
  SELECT p.oid::pg_catalog.regprocedure::text AS routine, p.oid::int8 AS oid FROM pg_catalog.pg_proc p
   WHERE p.pronamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = $1) AND p.prosecdef
   ORDER BY p.oid`;

const RELATIONS = `
  SELECT c.relname::text AS name, c.relkind = 'S' AS sequence
    FROM pg_catalog.pg_class c
   WHERE c.relnamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = $1) AND c.relkind IN ('r', 'S')
   ORDER BY c.oid`;

/** What depends on the views (or their row types), besides their own parts. */
const DEPENDENTS = `
  SELECT DISTINCT CASE WHEN d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                       THEN pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass,
                                                          (SELECT r.ev_class FROM pg_catalog.pg_rewrite r WHERE r.oid = d.objid), 0)
                       ELSE pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) END AS object
    FROM pg_catalog.pg_class v
    JOIN pg_catalog.pg_depend d
      ON (d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = v.oid)
      OR (d.refclassid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.refobjid = v.reltype)
   WHERE v.relnamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = $1)
     AND d.deptype NOT IN ('i', 'a')
     AND NOT (d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
              AND (SELECT r.ev_class FROM pg_catalog.pg_rewrite r WHERE r.oid = d.objid) = v.oid)
   ORDER BY 1 LIMIT 10`;

export interface SnapshotReading {
  /** The snapshot's schema. */
  snapshot: string;
  /** The schema whose views, named as the snapshot's tables and sequences, the copy reads. */
  schema: string;
  views: string[];
  /** The role that reads. */
  reader: string;
  /** The snapshot's owner, whose member the server is for the statements on its objects (memberFor). */
  keeper: string;
  /** The SECURITY DEFINER routines made SECURITY INVOKER for the copy: the copy makes its copies of them DEFINER. */
  definers: { routine: string; oid: string }[];
}

/**
 * In the copy's transaction: views over every table and sequence of `snapshotSchema`, owned by
 * `keeper` (the snapshot's owner), that `reader` may SELECT and nothing else. Making them runs
 * nothing of the agent's (a view's definition is only parsed).
 */
export async function openSnapshotViews(tx: Queryable, snapshotSchema: string, keeper: string, reader: string): Promise<SnapshotReading> {
  const schema = readerSchemaName(snapshotSchema);
  const relations = await tx.query<{ name: string; sequence: boolean }>(RELATIONS, [snapshotSchema]);
  const definers = await tx.query<{ routine: string; oid: string }>(DEFINERS, [snapshotSchema]);
  const [into, from] = [quoteIdent(schema), quoteIdent(snapshotSchema)];
  await tx.exec(
    [
      ...(definers.length > 0 ? [memberFor(keeper, definers.map((d) => `ALTER ROUTINE ${d.routine} SECURITY INVOKER`).join(';\n'))] : []),
      `GRANT USAGE ON SCHEMA ${from} TO ${quoteIdent(reader)}`,
      `CREATE SCHEMA ${into}`,
      ...relations.map((r) =>
        r.sequence
          ? `CREATE VIEW ${into}.${quoteIdent(r.name)} AS SELECT last_value, is_called FROM ${from}.${quoteIdent(r.name)}`
          : `CREATE VIEW ${into}.${quoteIdent(r.name)} AS SELECT * FROM ONLY ${from}.${quoteIdent(r.name)}`,
      ),
      `GRANT CREATE ON SCHEMA ${into} TO ${quoteIdent(keeper)}`,
      `SELECT ${quoteIdent(SANDBOX_SCHEMA)}.adopt_objects(${pg.escapeLiteral(schema)}, ${pg.escapeLiteral(keeper)})`,
      `REVOKE ALL ON SCHEMA ${into} FROM ${quoteIdent(keeper)}`,
      `GRANT USAGE ON SCHEMA ${into} TO ${quoteIdent(reader)}`,
      memberFor(keeper, `GRANT SELECT ON ALL TABLES IN SCHEMA ${into} TO ${quoteIdent(reader)}`),
    ].join(';\n'),
  );
  return { snapshot: snapshotSchema, schema, views: relations.map((r) => r.name), reader, keeper, definers };
}

/**
 * After the copy: the views and their schema dropped, refusing (the transaction rolls back) when
 * code the copy ran made anything depend on them, which would otherwise go with them or keep
 * them; the snapshot's schema closed to the reader again and its routines as they were.
 */
export async function closeSnapshotViews(tx: Queryable, reading: SnapshotReading, what: string): Promise<void> {
  const dependents = (await tx.query<{ object: string }>(DEPENDENTS, [reading.schema])).map((row) => row.object);
  if (dependents.length > 0) {
    throw new WorkspaceLifecycleError(
      `${what} is refused: code the copy ran made objects that depend on the snapshot it read (${dependents.join('; ')}). ` +
        'Find what makes them (a CHECK, domain or materialized view that runs DDL), remove it, and try again. Nothing was changed.',
    );
  }
  const into = quoteIdent(reading.schema);
  const views = reading.views.map((name) => `${into}.${quoteIdent(name)}`);
  await tx.exec(
    [
      ...(views.length > 0 ? [`DROP VIEW ${views.join(', ')}`] : []),
      `DROP SCHEMA ${into}`,
      `REVOKE ALL ON SCHEMA ${quoteIdent(reading.snapshot)} FROM ${quoteIdent(reading.reader)}`,
      ...(reading.definers.length > 0
        ? [memberFor(reading.keeper, reading.definers.map((d) => `ALTER ROUTINE ${d.routine} SECURITY DEFINER`).join(';\n'))]
        : []),
    ].join(';\n'),
  );
}

/**
 * On Citus the views cannot serve: a shard's query runs on its worker as the current user, who
 * must hold SELECT on the shard itself (a view's owner counts on the coordinator only). And the
 * copier's reads forbid any DDL on those shards over another connection for the rest of the
 * transaction: a grant to the copier could not be taken back there. So a role made for the copy,
 * the reader (NOLOGIN, `<new id>--reader`'s name), is granted SELECT on the snapshot's tables and
 * sequences (Citus grants it on their shards too) and USAGE on its schema, the snapshot's
 * SECURITY DEFINER routines are made INVOKER, and the copier becomes a member of the reader, all
 * in the copy's first transaction (committed: the copier's own connections to the workers must
 * see it). The copy's transaction takes back the membership, the USAGE and the routines' INVOKER
 * (no shard DDL), so the copier reads nothing of the snapshot once it commits; the reader's table
 * grants are revoked and the reader dropped right after (finishSnapshotReading). A reader left by
 * a process that stopped in between has no member and can do nothing; doctor lists it as an
 * orphan role. All of it is taken back by OID, wherever a restore meanwhile renamed the snapshot.
 * A snapshot with row level security enabled on a table cannot be read so (the reader is not its
 * owner): such a fork is refused, saying so.
 */
export interface SnapshotGrants {
  /** The snapshot's schema, and its OID: taken back by OID, wherever a restore meanwhile renamed it. */
  snapshot: string;
  snapshotOid: string;
  reader: string;
  /** OIDs of the tables and sequences the reader may SELECT. */
  relations: string[];
  /** OIDs of the SECURITY DEFINER routines made INVOKER for the copy. */
  definers: string[];
  /** The snapshot's owner, whose member the server is for the statements on its objects (memberFor). */
  owner: string | null;
}

const RELATION_OIDS = `
  SELECT c.oid::int8::text AS oid FROM pg_catalog.pg_class c
   WHERE c.relnamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = $1) AND c.relkind IN ('r', 'S')
   ORDER BY c.oid`;

/** The objects of `grants` still there, named as the server's statements need them now. */
const CURRENT_NAMES = `
  SELECT (SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_namespace n WHERE n.oid = $1::pg_catalog.oid) AS schema,
         pg_catalog.to_regrole($2) IS NOT NULL AS reader,
         ARRAY(SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE ' ELSE 'TABLE ' END || c.oid::pg_catalog.regclass::text
                 FROM pg_catalog.pg_class c WHERE c.oid = ANY ($3::pg_catalog.oid[]) ORDER BY c.oid) AS relations,
         ARRAY(SELECT p.oid::pg_catalog.regprocedure::text FROM pg_catalog.pg_proc p WHERE p.oid = ANY ($4::pg_catalog.oid[]) ORDER BY p.oid) AS definers`;

async function currentNames(tx: Queryable, grants: SnapshotGrants) {
  const [now] = await tx.query<{ schema: string | null; reader: boolean; relations: string[]; definers: string[] }>(CURRENT_NAMES, [
    grants.snapshotOid,
    quoteIdent(grants.reader),
    grants.relations,
    grants.definers,
  ]);
  return now ?? { schema: null, reader: false, relations: [], definers: [] };
}

/** The owner of the snapshot's tables and sequences (its snapshot role), if any. */
const OWNER = `
  SELECT pg_catalog.pg_get_userbyid(c.relowner)::text AS owner FROM pg_catalog.pg_class c
   WHERE c.relnamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = $1) AND c.relkind IN ('r', 'S')
   LIMIT 1`;

/**
 * `statements` a statement at a time (Citus forwards DDL on distributed objects as the string it
 * came in), with the server a member of `owner` for them only (memberFor); none: nothing at all.
 */
function asOwner(owner: string | null, statements: string[]): string[] {
  if (statements.length === 0 || !owner) return statements;
  return [`GRANT ${quoteIdent(owner)} TO CURRENT_USER`, ...statements, `REVOKE ${quoteIdent(owner)} FROM CURRENT_USER`];
}

const ROW_SECURITY_TABLES = `
  SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c.relname), ', ' ORDER BY c.relname) AS tables FROM pg_catalog.pg_class c
   WHERE c.relnamespace = (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = $1) AND c.relkind = 'r' AND c.relrowsecurity`;

/**
 * In the committed first transaction of a copy from a snapshot on Citus: the reader, and `copier`
 * its member. Refused (`what` names the copy) when a table of the snapshot has row level security
 * enabled: the reader is not its owner, so its policies would apply, and the copy fails rather
 * than lose rows.
 */
export async function grantSnapshotReading(tx: Queryable, snapshotSchema: string, reader: string, copier: string, what: string): Promise<SnapshotGrants> {
  const [secured] = await tx.query<{ tables: string | null }>(ROW_SECURITY_TABLES, [snapshotSchema]);
  if (secured?.tables) {
    throw new WorkspaceLifecycleError(
      `${what} is refused on Citus: row level security is enabled on its table(s) ${secured.tables}, and the copy reads a snapshot ` +
        'as a role that may only read it, not as its owner, so the policies would apply. Restore the snapshot and fork the workspace ' +
        '(its current state), or fork another snapshot. Nothing was changed.',
    );
  }
  const [schema] = await tx.query<{ oid: string }>('SELECT $1::pg_catalog.regnamespace::pg_catalog.oid::int8::text AS oid', [quoteIdent(snapshotSchema)]);
  const grants: SnapshotGrants = {
    snapshot: snapshotSchema,
    snapshotOid: schema?.oid ?? '0',
    reader,
    relations: (await tx.query<{ oid: string }>(RELATION_OIDS, [snapshotSchema])).map((r) => r.oid),
    definers: (await tx.query<{ oid: string }>(DEFINERS, [snapshotSchema])).map((d) => d.oid),
    owner: (await tx.query<{ owner: string | null }>(OWNER, [snapshotSchema]))[0]?.owner ?? null,
  };
  const names = await currentNames(tx, grants);
  const to = quoteIdent(reader);
  const exists = await tx.query('SELECT FROM pg_catalog.pg_roles WHERE rolname = $1', [reader]);
  // A statement at a time: Citus forwards DDL on distributed objects as the string it came in.
  for (const statement of [
    ...(exists.length > 0 ? [] : [`CREATE ROLE ${to} NOLOGIN NOINHERIT VALID UNTIL '-infinity'`]),
    ...asOwner(grants.owner, [
      ...names.definers.map((routine) => `ALTER ROUTINE ${routine} SECURITY INVOKER`),
      ...names.relations.map((relation) => `GRANT SELECT ON ${relation} TO ${to}`),
    ]),
    `GRANT USAGE ON SCHEMA ${quoteIdent(snapshotSchema)} TO ${to}`,
    // Inheriting, for the copy only: the sandbox refuses every role change.
    `GRANT ${to} TO ${quoteIdent(copier)}`,
    `ALTER ROLE ${quoteIdent(copier)} INHERIT`,
  ]) {
    await tx.exec(statement);
  }
  return grants;
}

/** In the copy's transaction (or when a failed copy is discarded): the copier reads the snapshot no more, its routines are as they were. */
export async function closeSnapshotReading(tx: Queryable, grants: SnapshotGrants, copier: string): Promise<void> {
  const to = quoteIdent(grants.reader);
  const now = await currentNames(tx, grants);
  if (now.reader) {
    await tx.exec(`REVOKE ${to} FROM ${quoteIdent(copier)}`);
    await tx.exec(`ALTER ROLE ${quoteIdent(copier)} NOINHERIT`);
    if (now.schema) await tx.exec(`REVOKE ALL ON SCHEMA ${now.schema} FROM ${to}`);
  }
  for (const statement of asOwner(grants.owner, now.definers.map((routine) => `ALTER ROUTINE ${routine} SECURITY DEFINER`))) await tx.exec(statement);
}

/** After the copy's transaction, in one of its own: the reader's grants revoked and the reader dropped. */
export async function finishSnapshotReading(tx: Queryable, grants: SnapshotGrants): Promise<void> {
  const to = quoteIdent(grants.reader);
  const now = await currentNames(tx, grants);
  if (!now.reader) return;
  for (const statement of asOwner(grants.owner, now.relations.map((relation) => `REVOKE ALL ON ${relation} FROM ${to}`))) await tx.exec(statement);
  await tx.exec(`DROP ROLE ${to}`);
}
