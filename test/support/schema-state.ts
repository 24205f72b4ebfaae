import type { Queryable } from '../../src/db/database.js';

/**
 * An ACL column as its entries, the object owner's written as "owner" (a snapshot's owner is not
 * the workspace's). A relation's ACL written out as its owner's default reads as the default it
 * is: on Citus a fork of a snapshot grants its reader SELECT and takes it back, which leaves it so.
 */
const ACL = (acl: string, owner: string) =>
  `(SELECT json_agg(CASE e.grantee WHEN 0 THEN 'PUBLIC' WHEN ${owner} THEN 'owner' ELSE pg_get_userbyid(e.grantee)::text END || ' ' || e.privilege_type ||
                    CASE WHEN e.is_grantable THEN '*' ELSE '' END ORDER BY 1) FROM aclexplode(${acl}) e)`;

/**
 * Every object of a schema and its definition, storage options, grants (the owner's written as
 * "owner") and comment, and every table's rows, as text (the schema's name written as <schema>).
 */
export async function stateOf(q: Queryable, schema: string): Promise<string> {
  const [row] = await q.query<{ state: string }>(
    `SELECT json_build_object(
       'relations', (SELECT json_agg(json_build_object('name', c.relname, 'kind', c.relkind, 'owner_is_keeper', false,
                       'columns', (SELECT json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod),
                                     'not_null', a.attnotnull, 'default', pg_get_expr(d.adbin, d.adrelid), 'generated', a.attgenerated,
                                     'identity', a.attidentity, 'storage', a.attstorage, 'statistics', nullif(a.attstattarget, -1),
                                     'options', (SELECT array_agg(o) FROM unnest(a.attoptions) o WHERE o ~ '^n_distinct'), 'acl', ${ACL('a.attacl', 'c.relowner')}, 'comment', col_description(c.oid, a.attnum)) ORDER BY a.attnum)
                                     FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                                    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
                       'constraints', (SELECT json_agg(conname || ' ' || pg_get_constraintdef(k.oid) ORDER BY conname) FROM pg_constraint k WHERE k.conrelid = c.oid),
                       'indexes', (SELECT json_agg(pg_get_indexdef(i.indexrelid) ORDER BY pg_get_indexdef(i.indexrelid)) FROM pg_index i WHERE i.indrelid = c.oid),
                       'triggers', (SELECT json_agg(pg_get_triggerdef(t.oid) || coalesce(' -- ' || obj_description(t.oid, 'pg_trigger'), '') ORDER BY t.tgname) FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal),
                       'policies', (SELECT json_agg(p.polname || ' ' || pg_get_expr(p.polqual, p.polrelid) ORDER BY p.polname) FROM pg_policy p WHERE p.polrelid = c.oid),
                       'rls', c.relrowsecurity,
                       'options', c.reloptions, 'toast_options', (SELECT x.reloptions FROM pg_class x WHERE x.oid = c.reltoastrelid),
                       'acl', ${ACL(`NULLIF(c.relacl, acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner))`, 'c.relowner')}, 'comment', obj_description(c.oid, 'pg_class'),
                       'index_comments', (SELECT json_agg(obj_description(i.indexrelid, 'pg_class') ORDER BY i.indexrelid::regclass::text) FROM pg_index i WHERE i.indrelid = c.oid),
                       'constraint_comments', (SELECT json_agg(conname || ' ' || obj_description(k.oid, 'pg_constraint') ORDER BY conname) FROM pg_constraint k WHERE k.conrelid = c.oid),
                       'view', CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END) ORDER BY c.relname)
                      FROM pg_class c WHERE c.relnamespace = to_regnamespace($1)),
       'functions', (SELECT json_agg(json_build_object('signature', p.proname || '(' || pg_get_function_arguments(p.oid) || ') ' || pg_get_function_result(p.oid),
                                       'body', p.prosrc, 'acl', ${ACL('p.proacl', 'p.proowner')}, 'comment', obj_description(p.oid, 'pg_proc')) ORDER BY p.proname)
                       FROM pg_proc p WHERE p.pronamespace = to_regnamespace($1)),
       'types', (SELECT json_agg(json_build_object('type', t.typname || ' ' || t.typtype::text, 'acl', ${ACL('t.typacl', 't.typowner')},
                                                   'comment', obj_description(t.oid, 'pg_type')) ORDER BY t.typname)
                   FROM pg_type t WHERE t.typnamespace = to_regnamespace($1)),
       'enum', (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typnamespace = to_regnamespace($1))
     )::text AS state`,
    [schema],
  );
  const tables = await q.query<{ name: string; kind: string }>(
    "SELECT relname AS name, relkind::text AS kind FROM pg_class WHERE relnamespace = to_regnamespace($1) AND relkind IN ('r', 'm', 'S') ORDER BY 1",
    [schema],
  );
  const data: Record<string, unknown> = {};
  for (const t of tables) {
    const from = `"${schema}"."${t.name}"`;
    data[t.name] =
      t.kind === 'S'
        ? (await q.query(`SELECT last_value::text, is_called FROM ${from}`))[0]
        : (await q.query<{ r: string }>(`SELECT to_jsonb(t)::text AS r FROM ${from} t`)).map((r) => r.r).sort();
  }
  return `${row?.state ?? ''}\n${JSON.stringify(data)}`.replaceAll(schema, '<schema>');
}

export const schemaExists = async (q: Queryable, schema: string) =>
  (await q.query<{ present: boolean }>('SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1) AS present', [schema]))[0]?.present;
