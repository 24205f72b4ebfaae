import type { Queryable } from '../db/database.js';
import { NODE_COMMAND_FUNCTIONS, REVOKE_WORKER_STATS, SERVER_NODE_COMMANDS, WORKER_LARGE_OBJECT_MAKERS } from '../db/postgres/citus.js';

/**
 * The REVOKE statements (one a line) for the functions of pg_catalog named `names` that PUBLIC
 * may EXECUTE on a node, and on a `worker` for pg_stats if PUBLIC may read it: asked of the
 * coordinator (NODE_COMMAND_FUNCTIONS) and, through run_command_on_workers, of every worker
 * (those, a call pushed down to a worker in a router query connecting where it likes, and
 * WORKER_LARGE_OBJECT_MAKERS and pg_stats, see there).
 */
const openOnNode = (names: readonly string[], worker: boolean) => `
  SELECT coalesce(pg_catalog.string_agg(s.statement, E'\\n' ORDER BY s.statement), '') FROM (
    SELECT format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC;', p.oid::pg_catalog.regprocedure) AS statement
      FROM pg_catalog.pg_proc p
     WHERE p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace
       AND p.proname = ANY ('{${names.join(',')}}'::text[])
       AND EXISTS (SELECT FROM pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) g
                    WHERE g.grantee = 0 AND g.privilege_type = 'EXECUTE')
    UNION ALL
    SELECT '${REVOKE_WORKER_STATS}' FROM pg_catalog.pg_class c
     WHERE ${worker} AND c.oid = 'pg_catalog.pg_stats'::pg_catalog.regclass
       AND EXISTS (SELECT FROM pg_catalog.aclexplode(coalesce(c.relacl, pg_catalog.acldefault('r', c.relowner))) g
                    WHERE g.grantee = 0 AND g.privilege_type = 'SELECT')) s`;

/**
 * What the SQL tools need of the database before they run any agent SQL, read in one query and
 * used by both the tools (WorkspaceSandbox refuses with the first problem) and `doctor` (one finding
 * per problem), so the two can never disagree.
 *
 * Isolation needs roles: the server must create them (CREATEROLE or superuser). An extension
 * schema in the search path where everyone may create objects would let a workspace plant
 * functions or operators there. A table outside the workspaces that every role may reference or
 * put triggers on would run the workspace's code as whoever changes its rows (the server
 * included): a workspace table's foreign key ON DELETE CASCADE makes the deletes cascade into
 * it, and its AFTER triggers fire as the deleting role, as would a trigger on that table itself.
 * pg_logical_emit_message(), which PUBLIC may call, puts any text into the WAL, where logical
 * decoding (wal_level = logical) hands it to every replication consumer: data leaving by a
 * read-only query. Citus's run_command_on_*() and master_run_on_worker(), which PUBLIC may call,
 * run any command on the cluster's nodes (the coordinator included) over connections of their
 * own as the caller: a workspace's SQL would run there outside its sandbox (none of its checks,
 * committed even from a read-only query), and a large object it granted to PUBLIC there was
 * read by another workspace.
 */
const SANDBOX_CAPABILITY = `
  SELECT current_database()::text AS database, current_user::text AS role,
         (SELECT rolsuper OR rolcreaterole FROM pg_catalog.pg_roles WHERE rolname = current_user) AS create_role,
         ARRAY(SELECT n.nspname::text FROM pg_catalog.pg_namespace n, aclexplode(n.nspacl) a
                WHERE n.nspname = ANY ($1::text[]) AND a.grantee = 0 AND a.privilege_type = 'CREATE') AS open_schemas,
         ARRAY(SELECT format('REVOKE REFERENCES, TRIGGER ON TABLE %I.%I FROM PUBLIC;', n.nspname, c.relname)
                        || CASE WHEN cols.names IS NULL THEN ''
                                ELSE format(' REVOKE REFERENCES (%s) ON TABLE %I.%I FROM PUBLIC;', cols.names, n.nspname, c.relname) END
                 FROM pg_catalog.pg_class c
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 LEFT JOIN LATERAL (SELECT string_agg(quote_ident(at.attname), ', ' ORDER BY at.attnum) AS names
                                      FROM pg_catalog.pg_attribute at, aclexplode(at.attacl) g
                                     WHERE at.attrelid = c.oid AND at.attacl IS NOT NULL
                                       AND g.grantee = 0 AND g.privilege_type = 'REFERENCES') cols ON true
                WHERE c.relkind IN ('r', 'p', 'v', 'f', 'm')
                  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                  AND (n.nspname = ANY ($1::text[])
                       OR EXISTS (SELECT FROM aclexplode(n.nspacl) u WHERE u.grantee = 0 AND u.privilege_type = 'USAGE'))
                  AND (cols.names IS NOT NULL
                       OR EXISTS (SELECT FROM aclexplode(c.relacl) g
                                   WHERE g.grantee = 0 AND g.privilege_type IN ('REFERENCES', 'TRIGGER')))
                ORDER BY n.nspname, c.relname) AS open_tables,
         ARRAY(SELECT format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC;', p.oid::regprocedure)
                 FROM pg_catalog.pg_proc p
                WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = 'pg_logical_emit_message'
                  AND current_setting('wal_level') = 'logical'
                  AND EXISTS (SELECT FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) g
                               WHERE g.grantee = 0 AND g.privilege_type = 'EXECUTE')
                ORDER BY 1) AS open_functions,
         EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus') AS citus,
         (${openOnNode(NODE_COMMAND_FUNCTIONS, false)}) AS coordinator_node_commands`;

export interface SandboxCapability {
  database: string;
  /** The server's role. */
  role: string;
  create_role: boolean;
  /** Search-path schemas where PUBLIC may CREATE. */
  open_schemas: string[];
  /** The REVOKE statements for tables PUBLIC may reference or put triggers on. */
  open_tables: string[];
  /** The REVOKE statements for functions that would carry data out (with wal_level = logical). */
  open_functions: string[];
  /** Per Citus node that lets PUBLIC call its functions that run commands on the nodes (NODE_COMMAND_FUNCTIONS), or on a worker make large objects or read pg_stats: the REVOKE statements to run there. */
  node_commands: { node: string; statements: string[] }[];
}

/** One reason the SQL tools refuse to run, with the statements that lift it. */
export interface CapabilityProblem {
  /** What the role lacks or the database allows, for doctor's finding. */
  privilege: string;
  message: string;
  grants: string[];
}

type CapabilityRow = Omit<SandboxCapability, 'node_commands'> & { citus: boolean; coordinator_node_commands: string };

/**
 * With `workers` (the SQL tools' check and doctor), on Citus every worker is asked too; the others
 * read only what the coordinator says (the database's name, the server's role).
 */
export async function readSandboxCapability(q: Queryable, searchPathSchemas: readonly string[], { workers = false } = {}): Promise<SandboxCapability> {
  const [row] = await q.query<CapabilityRow>(SANDBOX_CAPABILITY, [[...searchPathSchemas]]);
  if (!row) throw new Error('capability check returned no row');
  const { citus, coordinator_node_commands, ...capability } = row;
  const asked = [{ node: 'the coordinator', success: true, result: coordinator_node_commands }];
  if (citus && workers) {
    // As the server, which the install needs granted these anyway (SERVER_NODE_COMMANDS).
    const workers = await q.query<{ node: string; success: boolean; result: string }>(
      `SELECT 'worker ' || nodename || ':' || nodeport AS node, success, result FROM pg_catalog.run_command_on_workers($1)`,
      [openOnNode([...NODE_COMMAND_FUNCTIONS, ...WORKER_LARGE_OBJECT_MAKERS], true)],
    );
    asked.push(...workers);
  }
  const node_commands = asked.flatMap(({ node, success, result }) => {
    if (!success) throw new Error(`could not ask Citus ${node} who may run commands on the nodes: ${result}`);
    return result === '' ? [] : [{ node, statements: result.split('\n') }];
  });
  return { ...capability, node_commands };
}

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** Every reason the SQL tools refuse to run here, most basic first; none: they run. */
export function capabilityProblems(c: SandboxCapability): CapabilityProblem[] {
  const problems: CapabilityProblem[] = [];
  if (!c.create_role) {
    problems.push({
      privilege: 'CREATEROLE',
      message:
        `The SQL tools run each workspace's SQL as a PostgreSQL role of its own, and the server's role ${quote(c.role)} ` +
        'cannot create roles (the other tools keep working without it).',
      grants: [`ALTER ROLE ${quote(c.role)} CREATEROLE;`],
    });
  }
  for (const schema of c.open_schemas) {
    problems.push({
      privilege: `no CREATE for PUBLIC on schema ${quote(schema)}`,
      message: `Every role may create objects in schema ${quote(schema)}, which workspaces search for extension types: a workspace could plant functions there.`,
      grants: [`REVOKE CREATE ON SCHEMA ${quote(schema)} FROM PUBLIC;`],
    });
  }
  if (c.open_tables.length > 0) {
    problems.push({
      privilege: 'no REFERENCES or TRIGGER for PUBLIC on tables outside the workspaces',
      message:
        'Every role may reference or put triggers on table(s) outside the workspaces: a workspace could make its own code run ' +
        'as whoever changes their rows (the server included), through a foreign key ON DELETE CASCADE or a trigger.',
      grants: c.open_tables,
    });
  }
  if (c.open_functions.length > 0) {
    problems.push({
      privilege: 'no EXECUTE for PUBLIC on pg_logical_emit_message()',
      message:
        'Every role may write messages into the WAL with pg_logical_emit_message(), and with wal_level = logical every logical ' +
        'replication stream of this database carries them: a workspace could send its data out, even from a read-only query.',
      grants: c.open_functions,
    });
  }
  for (const { node, statements } of c.node_commands) {
    const coordinator = node === 'the coordinator';
    problems.push({
      privilege: `no EXECUTE for PUBLIC on Citus's run_command_on_*() and master_run_on_worker()${coordinator ? '' : ', nor on the functions that make large objects, nor SELECT on pg_stats,'} on ${node}`,
      message:
        "Every role may run commands on the cluster's nodes through Citus's run_command_on_*() and master_run_on_worker(), over " +
        "connections of their own: a workspace's SQL would run there outside its sandbox, committed even from a read-only query " +
        '(a large object it granted to PUBLIC there was read by another workspace). ' +
        (coordinator
          ? "Revoke them in this database on every node, and grant the server's role the two it asks the workers for their extensions through"
          : `A workspace's function also runs on its worker, where the sandbox's checks do not look: a large object it made there, or its shard, granted to PUBLIC was read by another workspace's function (the shard's values through pg_stats). Revoke those in this database on ${node}`) +
        ' (docs/citus.md).',
      grants: coordinator ? [...statements, `GRANT EXECUTE ON FUNCTION ${SERVER_NODE_COMMANDS} TO ${quote(c.role)};`] : statements,
    });
  }
  return problems;
}
