import pg from 'pg';

/*
 * The copy of one workspace schema into another (a snapshot, or a fork's new workspace), as one
 * PL/pgSQL DO block that the server runs inside the workspace's SQL sandbox, so as the
 * workspace's own role: reading the catalogs, deparsing definitions, creating the copies and
 * moving the rows. Nothing of the agent's (a trigger, a default, an index expression, a view, an
 * operator shadowing a built-in one while names are resolved here) can run as the server's role,
 * because no part of the copy does. See docs/snapshots.md.
 *
 * Definitions are deparsed by PostgreSQL (pg_get_viewdef, pg_get_indexdef, pg_get_triggerdef,
 * pg_get_constraintdef, pg_get_expr, pg_get_functiondef, format_type) with the search path set
 * to the source schema first, so references to the source's own objects come out unqualified;
 * they are replayed with the target schema first, so they bind to the copies. Function bodies
 * are text and are not rewritten: the sandbox runs them with the workspace first on the search
 * path, so unqualified names in them resolve to wherever the function lives.
 *
 * Order: types, functions whose signature needs no table, domain checks, sequences, tables (columns, defaults,
 * generated and identity columns), sequence ownership, the other functions, rows, keys and checks,
 * views and materialized views, indexes, foreign keys, sequence values, triggers, row level
 * security. Rows go in before indexes and triggers exist: no trigger fires, defaults are not
 * evaluated (every value is given), generated columns are recomputed. Objects this copy does not
 * reproduce are refused by name before anything is made.
 */

/** SQLSTATE of the refusal naming objects a copy would not reproduce. */
export const UNSUPPORTED_OBJECTS = 'PW020';

export interface SchemaCopy {
  source: string;
  target: string;
  /** Role names replaced in row level security policies (a fork's policies name the new workspace's role). */
  roleMap?: Readonly<Record<string, string>>;
  /**
   * Where rows and sequence values are read, when not from the source itself: a schema of views
   * named as the source's tables and sequences (snapshot-reader.ts), for a copier that may only
   * read a snapshot.
   */
  readFrom?: string;
  /** Routines of the source (OIDs) the copy makes SECURITY DEFINER, which the source holds as INVOKER for the copy (snapshot-reader.ts). */
  definers?: readonly string[];
  /** A role whose grants on the source are not copied: a copy's reader of a snapshot (snapshot-reader.ts). */
  ignoreGrantee?: string;
  /** Takes SHARE locks on the source's tables first: its rows cannot change while they are read, its reads go on. */
  lockSource: boolean;
  /**
   * Which steps run (default all). On Citus the tables are made and filled first, as local
   * tables, then distributed (citus-schema-copy.ts), then the rest is made on the distributed
   * tables: a foreign key between local tables stops Citus from distributing either.
   */
  part?: 'whole' | 'before-distribution' | 'after-distribution';
}

const literal = (value: string) => pg.escapeLiteral(value);

export function schemaCopyScript(copy: SchemaCopy): string {
  return `DO $pgw_copy$
DECLARE
  source text := ${literal(copy.source)};
  target text := ${literal(copy.target)};
  read_from text := ${literal(copy.readFrom ?? copy.source)};
  ignore_grantee text := ${literal(copy.ignoreGrantee ?? '')};
  definers oid[] := ${literal(`{${(copy.definers ?? []).join(',')}}`)};
  role_map jsonb := ${literal(JSON.stringify(copy.roleMap ?? {}))};
  lock_source boolean := ${copy.lockSource ? 'true' : 'false'};
  part text := ${literal(copy.part ?? 'whole')};
${COPY_BODY}
$pgw_copy$`;
}

// Every name below is written with pg_catalog. and every operator as OPERATOR(pg_catalog.x): the
// search path starts with the agent's schema while this runs, so its objects must not be picked
// up in place of the built-in ones (they would only run as the workspace's role, but could break the copy).
const COPY_BODY = `
  src oid;
  unsupported text;
  locks text;
  step text;
  types text[] := '{}';
  early_functions text[] := '{}';
  domain_checks text[] := '{}';
  sequences text[] := '{}';
  tables text[] := '{}';
  late_functions text[] := '{}';
  definer_flags text[] := '{}';
  rows_copied text[] := '{}';
  keys text[] := '{}';
  views text[] := '{}';
  indexes text[] := '{}';
  foreign_keys text[] := '{}';
  storage text[] := '{}';
  sequence_owners text[] := '{}';
  sequence_state text[] := '{}';
  triggers text[] := '{}';
  security text[] := '{}';
  grants text[] := '{}';
  comments text[] := '{}';
  steps text[] := '{}';
  item record;
  definition text;
  prefix text;
BEGIN
  src := (SELECT n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) source);
  IF src IS NULL THEN
    RAISE EXCEPTION 'schema % does not exist', source;
  END IF;

  unsupported := (SELECT pg_catalog.string_agg(what, ', ') FROM (
      SELECT pg_catalog.format('%s %I', CASE c.relkind WHEN 'p' THEN 'partitioned table' WHEN 'f' THEN 'foreign table'
                                                       WHEN 'I' THEN 'partitioned index' ELSE 'relation' END, c.relname) AS what
        FROM pg_catalog.pg_class c
       WHERE c.relnamespace OPERATOR(pg_catalog.=) src AND c.relkind OPERATOR(pg_catalog.<>) ALL ('{r,i,S,v,m,c}'::"char"[])
      UNION ALL
      SELECT pg_catalog.format('typed table %I', c.relname) FROM pg_catalog.pg_class c
       WHERE c.relnamespace OPERATOR(pg_catalog.=) src AND c.reloftype OPERATOR(pg_catalog.<>) 0
      UNION ALL
      SELECT pg_catalog.format('inheritance of table %I', c.relname) FROM pg_catalog.pg_inherits i
        JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.inhrelid WHERE c.relnamespace OPERATOR(pg_catalog.=) src
      UNION ALL
      SELECT pg_catalog.format('rule %I on %I', r.rulename, c.relname) FROM pg_catalog.pg_rewrite r
        JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.ev_class
       WHERE c.relnamespace OPERATOR(pg_catalog.=) src AND r.rulename OPERATOR(pg_catalog.<>) '_RETURN'
      UNION ALL
      SELECT pg_catalog.format('statistics object %I', s.stxname) FROM pg_catalog.pg_statistic_ext s WHERE s.stxnamespace OPERATOR(pg_catalog.=) src
      UNION ALL
      SELECT pg_catalog.format('aggregate %I', p.proname) FROM pg_catalog.pg_proc p
       WHERE p.pronamespace OPERATOR(pg_catalog.=) src AND p.prokind OPERATOR(pg_catalog.=) 'a'
      UNION ALL
      SELECT pg_catalog.format('operator %s', o.oprname) FROM pg_catalog.pg_operator o WHERE o.oprnamespace OPERATOR(pg_catalog.=) src
      UNION ALL
      SELECT pg_catalog.format('operator class %I', x.opcname) FROM pg_catalog.pg_opclass x WHERE x.opcnamespace OPERATOR(pg_catalog.=) src
      UNION ALL
      SELECT pg_catalog.format('operator family %I', x.opfname) FROM pg_catalog.pg_opfamily x WHERE x.opfnamespace OPERATOR(pg_catalog.=) src
      UNION ALL
      SELECT pg_catalog.format('collation %I', x.collname) FROM pg_catalog.pg_collation x WHERE x.collnamespace OPERATOR(pg_catalog.=) src
      UNION ALL
      SELECT pg_catalog.format('conversion %I', x.conname) FROM pg_catalog.pg_conversion x WHERE x.connamespace OPERATOR(pg_catalog.=) src
      UNION ALL
      SELECT pg_catalog.format('text search configuration %I', x.cfgname) FROM pg_catalog.pg_ts_config x WHERE x.cfgnamespace OPERATOR(pg_catalog.=) src
      UNION ALL
      SELECT pg_catalog.format('text search dictionary %I', x.dictname) FROM pg_catalog.pg_ts_dict x WHERE x.dictnamespace OPERATOR(pg_catalog.=) src
      UNION ALL
      SELECT pg_catalog.format('type %I', t.typname) FROM pg_catalog.pg_type t
       WHERE t.typnamespace OPERATOR(pg_catalog.=) src AND t.typtype OPERATOR(pg_catalog.=) ANY ('{b,p}'::"char"[])
         AND NOT (t.typelem OPERATOR(pg_catalog.<>) 0 AND t.typcategory OPERATOR(pg_catalog.=) 'A')) u);
  IF unsupported IS NOT NULL THEN
    RAISE EXCEPTION 'schema % holds objects a snapshot or fork does not copy: %', source, unsupported
      USING ERRCODE = '${UNSUPPORTED_OBJECTS}',
            HINT = 'Drop or replace them (see docs/snapshots.md, "What is copied"), then try again.';
  END IF;

  -- The rows must all be read as one state: no write to these tables commits until this
  -- transaction does (reads go on). Row level security must not hide rows from the copy:
  -- with row_security off, a table whose policies would apply (FORCE) fails instead.
  IF lock_source THEN
    locks := (SELECT pg_catalog.string_agg(pg_catalog.format('%I.%I', source, c.relname), ', ' ORDER BY c.oid)
                FROM pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=) src AND c.relkind OPERATOR(pg_catalog.=) 'r');
    IF locks IS NOT NULL THEN
      EXECUTE 'LOCK TABLE ' OPERATOR(pg_catalog.||) locks OPERATOR(pg_catalog.||) ' IN SHARE MODE';
    END IF;
  END IF;
  PERFORM pg_catalog.set_config('row_security', 'off', true);
  PERFORM pg_catalog.set_config('check_function_bodies', 'off', true);
  -- Deparsing: the source's objects print unqualified.
  PERFORM pg_catalog.set_config('search_path', pg_catalog.format('%I, pg_catalog, pg_temp', source), true);

  -- Types: enums, composite types, domains (with their constraints), ranges.
  FOR item IN
    SELECT t.oid, t.typname, t.typtype, t.typbasetype, t.typtypmod, t.typnotnull, t.typdefaultbin, t.typrelid
      FROM pg_catalog.pg_type t
     WHERE t.typnamespace OPERATOR(pg_catalog.=) src AND t.typtype OPERATOR(pg_catalog.=) ANY ('{e,c,d,r}'::"char"[])
       AND (t.typtype OPERATOR(pg_catalog.<>) 'c'
            OR (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) t.typrelid) OPERATOR(pg_catalog.=) 'c')
     ORDER BY t.oid
  LOOP
    IF item.typtype OPERATOR(pg_catalog.=) 'e' THEN
      types := types OPERATOR(pg_catalog.||) pg_catalog.format('CREATE TYPE %I AS ENUM (%s)', item.typname,
        (SELECT pg_catalog.string_agg(pg_catalog.quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
           FROM pg_catalog.pg_enum e WHERE e.enumtypid OPERATOR(pg_catalog.=) item.oid));
    ELSIF item.typtype OPERATOR(pg_catalog.=) 'c' THEN
      types := types OPERATOR(pg_catalog.||) pg_catalog.format('CREATE TYPE %I AS (%s)', item.typname,
        (SELECT pg_catalog.string_agg(pg_catalog.format('%I %s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum)
           FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) item.typrelid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped));
    ELSIF item.typtype OPERATOR(pg_catalog.=) 'd' THEN
      types := types OPERATOR(pg_catalog.||) pg_catalog.format('CREATE DOMAIN %I AS %s%s%s', item.typname,
        pg_catalog.format_type(item.typbasetype, item.typtypmod),
        CASE WHEN item.typdefaultbin IS NOT NULL THEN ' DEFAULT ' OPERATOR(pg_catalog.||) pg_catalog.pg_get_expr(item.typdefaultbin, 0) ELSE '' END,
        CASE WHEN item.typnotnull THEN ' NOT NULL' ELSE '' END);
      -- Its checks may call the agent's functions: added once those exist.
      domain_checks := domain_checks OPERATOR(pg_catalog.||) ARRAY(
        SELECT pg_catalog.format('ALTER DOMAIN %I ADD CONSTRAINT %I %s', item.typname, k.conname, pg_catalog.pg_get_constraintdef(k.oid))
          FROM pg_catalog.pg_constraint k WHERE k.contypid OPERATOR(pg_catalog.=) item.oid ORDER BY k.oid);
    ELSE
      types := types OPERATOR(pg_catalog.||) pg_catalog.format('CREATE TYPE %I AS RANGE (SUBTYPE = %s)', item.typname,
        (SELECT pg_catalog.format_type(r.rngsubtype, NULL) FROM pg_catalog.pg_range r WHERE r.rngtypid OPERATOR(pg_catalog.=) item.oid));
    END IF;
  END LOOP;

  -- Functions and procedures: those whose signature names a table's row type, or whose SQL-standard
  -- body (parsed when made) names its tables, come after the tables.
  FOR item IN
    SELECT p.oid, p.proname, p.prokind,
           p.prosqlbody IS NOT NULL OR EXISTS (
             SELECT FROM pg_catalog.pg_depend d
              WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) p.oid
                AND (d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                     OR EXISTS (SELECT FROM pg_catalog.pg_type t JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.typrelid
                                 WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_type'::pg_catalog.regclass
                                   AND t.oid OPERATOR(pg_catalog.=) d.refobjid AND c.relkind OPERATOR(pg_catalog.<>) 'c'))) AS late
      FROM pg_catalog.pg_proc p WHERE p.pronamespace OPERATOR(pg_catalog.=) src ORDER BY p.oid
  LOOP
    definition := pg_catalog.pg_get_functiondef(item.oid);
    prefix := pg_catalog.format('CREATE OR REPLACE %s %s.%s(', CASE item.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
                                pg_catalog.quote_ident(source), pg_catalog.quote_ident(item.proname));
    IF NOT pg_catalog.starts_with(definition, prefix) THEN
      RAISE EXCEPTION 'cannot copy function %: its definition does not start as expected', item.proname;
    END IF;
    definition := pg_catalog.format('CREATE %s %I(', CASE item.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, item.proname)
                  OPERATOR(pg_catalog.||) pg_catalog.substr(definition, pg_catalog.length(prefix) OPERATOR(pg_catalog.+) 1);
    IF item.oid OPERATOR(pg_catalog.=) ANY (definers) THEN
      definer_flags := definer_flags OPERATOR(pg_catalog.||) pg_catalog.format('ALTER ROUTINE %I(%s) SECURITY DEFINER', item.proname,
                                                                                 pg_catalog.pg_get_function_identity_arguments(item.oid));
    END IF;
    IF item.late THEN
      late_functions := late_functions OPERATOR(pg_catalog.||) definition;
    ELSE
      early_functions := early_functions OPERATOR(pg_catalog.||) definition;
    END IF;
  END LOOP;

  -- Sequences: made here unless an identity column makes its own (serial columns' are), all set to their values.
  FOR item IN
    SELECT c.oid, c.relname, s.*,
           (SELECT pg_catalog.format('%I.%I', t.relname, a.attname) FROM pg_catalog.pg_depend d
              JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) d.refobjid
              JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) t.oid AND a.attnum OPERATOR(pg_catalog.=) d.refobjsubid
             WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) c.oid
               AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype OPERATOR(pg_catalog.=) 'a') AS owned_by,
           EXISTS (SELECT FROM pg_catalog.pg_depend d
                    WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                      AND d.objid OPERATOR(pg_catalog.=) c.oid AND d.deptype OPERATOR(pg_catalog.=) 'i') AS identity
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_sequence s ON s.seqrelid OPERATOR(pg_catalog.=) c.oid
     WHERE c.relnamespace OPERATOR(pg_catalog.=) src AND c.relkind OPERATOR(pg_catalog.=) 'S'
     ORDER BY c.oid
  LOOP
    -- Every sequence is set to its value; an identity column's is made with its table, under its name.
    sequence_state := sequence_state OPERATOR(pg_catalog.||) pg_catalog.format(
      'SELECT pg_catalog.setval(%L::pg_catalog.regclass, s.last_value, s.is_called) FROM %I.%I s',
      pg_catalog.format('%I.%I', target, item.relname), read_from, item.relname);
    CONTINUE WHEN item.identity;
    sequences := sequences OPERATOR(pg_catalog.||) pg_catalog.format(
      'CREATE SEQUENCE %I AS %s INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s %s',
      item.relname, pg_catalog.format_type(item.seqtypid, NULL), item.seqincrement, item.seqmin, item.seqmax, item.seqstart, item.seqcache,
      CASE WHEN item.seqcycle THEN 'CYCLE' ELSE 'NO CYCLE' END);
    IF item.owned_by IS NOT NULL THEN
      sequence_owners := sequence_owners OPERATOR(pg_catalog.||) pg_catalog.format('ALTER SEQUENCE %I OWNED BY %s', item.relname, item.owned_by);
    END IF;
  END LOOP;

  -- Tables: columns with their types, collations, defaults, generated and identity columns, and
  -- the table's storage options (its TOAST table's as toast.*).
  FOR item IN
    SELECT c.oid, c.relname, c.relpersistence, c.relrowsecurity, c.relforcerowsecurity,
           c.reloptions OPERATOR(pg_catalog.||) ARRAY(SELECT 'toast.' OPERATOR(pg_catalog.||) o FROM pg_catalog.pg_class x, pg_catalog.unnest(x.reloptions) o
                                                       WHERE x.oid OPERATOR(pg_catalog.=) c.reltoastrelid) AS options
      FROM pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=) src AND c.relkind OPERATOR(pg_catalog.=) 'r' ORDER BY c.oid
  LOOP
    tables := tables OPERATOR(pg_catalog.||) pg_catalog.format('CREATE %sTABLE %I (%s)%s',
      CASE WHEN item.relpersistence OPERATOR(pg_catalog.=) 'u' THEN 'UNLOGGED ' ELSE '' END, item.relname,
      COALESCE((SELECT pg_catalog.string_agg(pg_catalog.format('%I %s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod))
                 OPERATOR(pg_catalog.||) CASE WHEN a.attcollation OPERATOR(pg_catalog.<>) t.typcollation
                                              THEN pg_catalog.format(' COLLATE %I.%I', cn.nspname, co.collname) ELSE '' END
                 OPERATOR(pg_catalog.||) CASE WHEN a.attgenerated OPERATOR(pg_catalog.=) 's'
                                              THEN pg_catalog.format(' GENERATED ALWAYS AS (%s) STORED', pg_catalog.pg_get_expr(ad.adbin, ad.adrelid))
                                              WHEN ad.adbin IS NOT NULL
                                              THEN ' DEFAULT ' OPERATOR(pg_catalog.||) pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) ELSE '' END
                 OPERATOR(pg_catalog.||) CASE WHEN a.attidentity OPERATOR(pg_catalog.<>) ''
                                              THEN pg_catalog.format(' GENERATED %s AS IDENTITY (SEQUENCE NAME %I INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s %s)',
                                                     CASE a.attidentity WHEN 'a' THEN 'ALWAYS' ELSE 'BY DEFAULT' END, ids.relname, ids.seqincrement,
                                                     ids.seqmin, ids.seqmax, ids.seqstart, ids.seqcache, CASE WHEN ids.seqcycle THEN 'CYCLE' ELSE 'NO CYCLE' END)
                                              ELSE '' END
                 OPERATOR(pg_catalog.||) CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END, ', ' ORDER BY a.attnum)
         FROM pg_catalog.pg_attribute a
         JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
         LEFT JOIN pg_catalog.pg_collation co ON co.oid OPERATOR(pg_catalog.=) a.attcollation
         LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid OPERATOR(pg_catalog.=) co.collnamespace
         LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid OPERATOR(pg_catalog.=) a.attrelid AND ad.adnum OPERATOR(pg_catalog.=) a.attnum
         LEFT JOIN LATERAL (
           SELECT sc.relname, sq.* FROM pg_catalog.pg_depend d
             JOIN pg_catalog.pg_class sc ON sc.oid OPERATOR(pg_catalog.=) d.objid
             JOIN pg_catalog.pg_sequence sq ON sq.seqrelid OPERATOR(pg_catalog.=) sc.oid
            WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid OPERATOR(pg_catalog.=) a.attrelid
              AND d.refobjsubid OPERATOR(pg_catalog.=) a.attnum AND d.deptype OPERATOR(pg_catalog.=) 'i' AND sc.relkind OPERATOR(pg_catalog.=) 'S') ids ON true
        WHERE a.attrelid OPERATOR(pg_catalog.=) item.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped), ''),
      CASE WHEN pg_catalog.cardinality(item.options) OPERATOR(pg_catalog.>) 0
           THEN pg_catalog.format(' WITH (%s)', pg_catalog.array_to_string(item.options, ', ')) ELSE '' END);
    -- Column storage, compression, statistics targets and options, set before the rows go in.
    storage := storage OPERATOR(pg_catalog.||) ARRAY(
      SELECT pg_catalog.format('ALTER TABLE %I ALTER COLUMN %I %s', item.relname, a.attname, s.setting)
        FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid,
             LATERAL (SELECT 'SET STORAGE ' OPERATOR(pg_catalog.||) CASE a.attstorage WHEN 'p' THEN 'PLAIN' WHEN 'e' THEN 'EXTERNAL' WHEN 'm' THEN 'MAIN' ELSE 'EXTENDED' END
                       WHERE a.attstorage OPERATOR(pg_catalog.<>) t.typstorage
                      UNION ALL
                      SELECT 'SET COMPRESSION ' OPERATOR(pg_catalog.||) CASE a.attcompression WHEN 'l' THEN 'lz4' ELSE 'pglz' END
                       WHERE a.attcompression OPERATOR(pg_catalog.<>) ''
                      UNION ALL
                      SELECT 'SET STATISTICS ' OPERATOR(pg_catalog.||) a.attstattarget WHERE a.attstattarget OPERATOR(pg_catalog.>=) 0
                      UNION ALL
                      -- The column options PostgreSQL defines (a server build may keep stamps of its own there).
                      SELECT pg_catalog.format('SET (%s)', pg_catalog.array_to_string(ARRAY(
                               SELECT o FROM pg_catalog.unnest(a.attoptions) o WHERE o OPERATOR(pg_catalog.~) '^n_distinct(_inherited)?='), ', '))
                       WHERE EXISTS (SELECT FROM pg_catalog.unnest(a.attoptions) o WHERE o OPERATOR(pg_catalog.~) '^n_distinct(_inherited)?=')) s(setting)
       WHERE a.attrelid OPERATOR(pg_catalog.=) item.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped ORDER BY a.attnum);
    rows_copied := rows_copied OPERATOR(pg_catalog.||) (
      SELECT pg_catalog.format('INSERT INTO %I.%I (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM ONLY %I.%I', target, item.relname, cols, vals, read_from, item.relname)
        FROM (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum) AS cols,
                     -- A value of one of the source's own types (enum, composite, domain, range, or an array of
                     -- one) becomes the target's through its text form.
                     pg_catalog.string_agg(CASE WHEN t.typnamespace OPERATOR(pg_catalog.=) src OR e.typnamespace OPERATOR(pg_catalog.=) src
                                                THEN pg_catalog.format('%I::pg_catalog.text::%s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod))
                                                ELSE pg_catalog.quote_ident(a.attname) END, ', ' ORDER BY a.attnum) AS vals
                FROM pg_catalog.pg_attribute a
                JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
                LEFT JOIN pg_catalog.pg_type e ON e.oid OPERATOR(pg_catalog.=) t.typelem
               WHERE a.attrelid OPERATOR(pg_catalog.=) item.oid AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
                 AND a.attgenerated OPERATOR(pg_catalog.=) '') x
       WHERE cols IS NOT NULL);
    keys := keys OPERATOR(pg_catalog.||) ARRAY(
      SELECT pg_catalog.format('ALTER TABLE %I ADD CONSTRAINT %I %s', item.relname, k.conname, pg_catalog.pg_get_constraintdef(k.oid))
        FROM pg_catalog.pg_constraint k
       WHERE k.conrelid OPERATOR(pg_catalog.=) item.oid AND k.contype OPERATOR(pg_catalog.=) ANY ('{p,u,x,c}'::"char"[])
       ORDER BY k.contype OPERATOR(pg_catalog.=) 'c', k.oid)
      -- A constraint's index's storage options (pg_get_constraintdef leaves them out).
      OPERATOR(pg_catalog.||) ARRAY(
      SELECT pg_catalog.format('ALTER INDEX %I SET (%s)', x.relname, pg_catalog.array_to_string(x.reloptions, ', '))
        FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class x ON x.oid OPERATOR(pg_catalog.=) k.conindid
       WHERE k.conrelid OPERATOR(pg_catalog.=) item.oid AND k.contype OPERATOR(pg_catalog.=) ANY ('{p,u,x}'::"char"[]) AND x.reloptions IS NOT NULL
       ORDER BY k.oid);
    foreign_keys := foreign_keys OPERATOR(pg_catalog.||) ARRAY(
      SELECT pg_catalog.format('ALTER TABLE %I ADD CONSTRAINT %I %s', item.relname, k.conname, pg_catalog.pg_get_constraintdef(k.oid))
        FROM pg_catalog.pg_constraint k
       WHERE k.conrelid OPERATOR(pg_catalog.=) item.oid AND k.contype OPERATOR(pg_catalog.=) 'f' ORDER BY k.oid);
    IF item.relrowsecurity THEN
      security := security OPERATOR(pg_catalog.||) pg_catalog.format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', item.relname);
    END IF;
    IF item.relforcerowsecurity THEN
      security := security OPERATOR(pg_catalog.||) pg_catalog.format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', item.relname);
    END IF;
    security := security OPERATOR(pg_catalog.||) ARRAY(
      SELECT pg_catalog.format('CREATE POLICY %I ON %I AS %s FOR %s TO %s%s%s', p.polname, item.relname,
               CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
               CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
               (SELECT pg_catalog.string_agg(CASE WHEN r OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                                                  ELSE pg_catalog.quote_ident(COALESCE(role_map OPERATOR(pg_catalog.->>) pg_catalog.pg_get_userbyid(r)::text,
                                                                                                  pg_catalog.pg_get_userbyid(r)::text)) END, ', ')
                  FROM pg_catalog.unnest(p.polroles) r),
               CASE WHEN p.polqual IS NOT NULL THEN pg_catalog.format(' USING (%s)', pg_catalog.pg_get_expr(p.polqual, p.polrelid)) ELSE '' END,
               CASE WHEN p.polwithcheck IS NOT NULL THEN pg_catalog.format(' WITH CHECK (%s)', pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)) ELSE '' END)
        FROM pg_catalog.pg_policy p WHERE p.polrelid OPERATOR(pg_catalog.=) item.oid ORDER BY p.oid);
  END LOOP;

  -- Views and materialized views, in the order they were made (a view on a view comes after it).
  FOR item IN
    SELECT c.oid, c.relname, c.relkind, c.relispopulated, c.reloptions
      FROM pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=) src AND c.relkind OPERATOR(pg_catalog.=) ANY ('{v,m}'::"char"[]) ORDER BY c.oid
  LOOP
    definition := pg_catalog.regexp_replace(pg_catalog.pg_get_viewdef(item.oid), ';\\s*$', '');
    IF item.relkind OPERATOR(pg_catalog.=) 'v' THEN
      views := views OPERATOR(pg_catalog.||) pg_catalog.format('CREATE VIEW %I%s AS %s', item.relname,
        CASE WHEN item.reloptions IS NOT NULL THEN pg_catalog.format(' WITH (%s)', pg_catalog.array_to_string(item.reloptions, ', ')) ELSE '' END, definition);
    ELSE
      views := views OPERATOR(pg_catalog.||) pg_catalog.format('CREATE MATERIALIZED VIEW %I%s AS %s WITH %sDATA', item.relname,
        CASE WHEN item.reloptions IS NOT NULL THEN pg_catalog.format(' WITH (%s)', pg_catalog.array_to_string(item.reloptions, ', ')) ELSE '' END,
        definition, CASE WHEN item.relispopulated THEN '' ELSE 'NO ' END);
    END IF;
  END LOOP;

  -- Indexes that no constraint made (those come with their constraint), HNSW ones included.
  indexes := ARRAY(
    SELECT pg_catalog.pg_get_indexdef(i.indexrelid, 0, true)
      FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indrelid
     WHERE c.relnamespace OPERATOR(pg_catalog.=) src
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint k WHERE k.conindid OPERATOR(pg_catalog.=) i.indexrelid
                          AND k.conrelid OPERATOR(pg_catalog.=) i.indrelid AND k.contype OPERATOR(pg_catalog.=) ANY ('{p,u,x}'::"char"[]))
     ORDER BY i.indexrelid);

  -- Triggers, made after the rows are in (none fires while copying), and their enabled state.
  FOR item IN
    SELECT t.oid, t.tgname, t.tgenabled, c.relname, c.relkind
      FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.tgrelid
     WHERE c.relnamespace OPERATOR(pg_catalog.=) src AND NOT t.tgisinternal ORDER BY t.oid
  LOOP
    triggers := triggers OPERATOR(pg_catalog.||) pg_catalog.pg_get_triggerdef(item.oid, true);
    IF item.tgenabled OPERATOR(pg_catalog.<>) 'O' THEN
      triggers := triggers OPERATOR(pg_catalog.||) pg_catalog.format('ALTER TABLE %I %s TRIGGER %I', item.relname,
        CASE item.tgenabled WHEN 'D' THEN 'DISABLE' WHEN 'R' THEN 'ENABLE REPLICA' ELSE 'ENABLE ALWAYS' END, item.tgname);
    END IF;
  END LOOP;

  -- Grants on single objects (tables, views, sequences, columns, functions, types): all taken away,
  -- then given as they were, the owner's own to CURRENT_USER (the copy's owner while it copies;
  -- ALTER ... OWNER moves them to the next owner with the object).
  FOR item IN
    SELECT pg_catalog.format(CASE c.relkind WHEN 'S' THEN 'SEQUENCE %I' ELSE 'TABLE %I' END, c.relname) AS object, c.relacl AS acl, c.relowner AS owner, NULL::text AS columns
      FROM pg_catalog.pg_class c
     WHERE c.relnamespace OPERATOR(pg_catalog.=) src AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,v,m,S}'::"char"[]) AND c.relacl IS NOT NULL
    UNION ALL
    SELECT pg_catalog.format('TABLE %I', c.relname), a.attacl, c.relowner, pg_catalog.quote_ident(a.attname)
      FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid
     WHERE c.relnamespace OPERATOR(pg_catalog.=) src AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,v,m}'::"char"[])
       AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
    UNION ALL
    SELECT pg_catalog.format('%s %I(%s)', CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)),
           p.proacl, p.proowner, NULL
      FROM pg_catalog.pg_proc p WHERE p.pronamespace OPERATOR(pg_catalog.=) src AND p.proacl IS NOT NULL
    UNION ALL
    SELECT pg_catalog.format('TYPE %I', t.typname), t.typacl, t.typowner, NULL
      FROM pg_catalog.pg_type t
     WHERE t.typnamespace OPERATOR(pg_catalog.=) src AND t.typacl IS NOT NULL AND t.typtype OPERATOR(pg_catalog.=) ANY ('{e,c,d,r}'::"char"[])
  LOOP
    IF item.columns IS NULL THEN
      grants := grants OPERATOR(pg_catalog.||) pg_catalog.format('REVOKE ALL ON %s FROM PUBLIC, CURRENT_USER', item.object);
    END IF;
    grants := grants OPERATOR(pg_catalog.||) ARRAY(
      SELECT pg_catalog.format('GRANT %s%s ON %s TO %s%s', a.privilege_type,
               CASE WHEN item.columns IS NOT NULL THEN pg_catalog.format(' (%s)', item.columns) ELSE '' END, item.object,
               CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC' WHEN a.grantee OPERATOR(pg_catalog.=) item.owner THEN 'CURRENT_USER'
                    ELSE pg_catalog.quote_ident(COALESCE(role_map OPERATOR(pg_catalog.->>) pg_catalog.pg_get_userbyid(a.grantee)::text,
                                                         pg_catalog.pg_get_userbyid(a.grantee)::text)) END,
               CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
        FROM pg_catalog.aclexplode(item.acl) a
       WHERE a.grantee OPERATOR(pg_catalog.=) 0 OR pg_catalog.pg_get_userbyid(a.grantee)::text OPERATOR(pg_catalog.<>) ignore_grantee
       ORDER BY a.grantee, a.privilege_type);
  END LOOP;

  -- Comments on every object copied (the schema's own stays the server's).
  comments := ARRAY(
    SELECT pg_catalog.format('COMMENT ON %s IS %L', o.what, d.description)
      FROM (SELECT pg_catalog.format('%s %I', CASE c.relkind WHEN 'r' THEN 'TABLE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                                             WHEN 'S' THEN 'SEQUENCE' ELSE 'INDEX' END, c.relname) AS what,
                   'pg_catalog.pg_class'::pg_catalog.regclass AS classoid, c.oid AS objoid, 0 AS objsubid
              FROM pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=) src AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,v,m,S,i}'::"char"[])
            UNION ALL
            SELECT pg_catalog.format('COLUMN %I.%I', c.relname, a.attname), 'pg_catalog.pg_class'::pg_catalog.regclass, c.oid, a.attnum
              FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid
             WHERE c.relnamespace OPERATOR(pg_catalog.=) src AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,v,m,c}'::"char"[])
               AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
            UNION ALL
            SELECT pg_catalog.format('%s %I(%s)', CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)),
                   'pg_catalog.pg_proc'::pg_catalog.regclass, p.oid, 0
              FROM pg_catalog.pg_proc p WHERE p.pronamespace OPERATOR(pg_catalog.=) src
            UNION ALL
            SELECT pg_catalog.format('%s %I', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.typname), 'pg_catalog.pg_type'::pg_catalog.regclass, t.oid, 0
              FROM pg_catalog.pg_type t WHERE t.typnamespace OPERATOR(pg_catalog.=) src AND t.typtype OPERATOR(pg_catalog.=) ANY ('{e,c,d,r}'::"char"[])
            UNION ALL
            SELECT pg_catalog.format('CONSTRAINT %I ON %I', k.conname, c.relname), 'pg_catalog.pg_constraint'::pg_catalog.regclass, k.oid, 0
              FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) k.conrelid WHERE c.relnamespace OPERATOR(pg_catalog.=) src
            UNION ALL
            SELECT pg_catalog.format('CONSTRAINT %I ON DOMAIN %I', k.conname, t.typname), 'pg_catalog.pg_constraint'::pg_catalog.regclass, k.oid, 0
              FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) k.contypid WHERE t.typnamespace OPERATOR(pg_catalog.=) src
            UNION ALL
            SELECT pg_catalog.format('TRIGGER %I ON %I', g.tgname, c.relname), 'pg_catalog.pg_trigger'::pg_catalog.regclass, g.oid, 0
              FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) g.tgrelid
             WHERE c.relnamespace OPERATOR(pg_catalog.=) src AND NOT g.tgisinternal
            UNION ALL
            SELECT pg_catalog.format('POLICY %I ON %I', y.polname, c.relname), 'pg_catalog.pg_policy'::pg_catalog.regclass, y.oid, 0
              FROM pg_catalog.pg_policy y JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) y.polrelid WHERE c.relnamespace OPERATOR(pg_catalog.=) src) o
      JOIN pg_catalog.pg_description d
        ON d.classoid OPERATOR(pg_catalog.=) o.classoid AND d.objoid OPERATOR(pg_catalog.=) o.objoid AND d.objsubid OPERATOR(pg_catalog.=) o.objsubid
     ORDER BY o.what);

  -- Replaying: unqualified names now mean the target's objects.
  PERFORM pg_catalog.set_config('search_path', pg_catalog.format('%I, pg_catalog, pg_temp', target), true);
  IF part OPERATOR(pg_catalog.<>) 'after-distribution' THEN
    steps := types OPERATOR(pg_catalog.||) early_functions OPERATOR(pg_catalog.||) domain_checks OPERATOR(pg_catalog.||) sequences
             OPERATOR(pg_catalog.||) tables OPERATOR(pg_catalog.||) storage OPERATOR(pg_catalog.||) sequence_owners OPERATOR(pg_catalog.||) late_functions OPERATOR(pg_catalog.||) definer_flags
             OPERATOR(pg_catalog.||) rows_copied OPERATOR(pg_catalog.||) keys;
  END IF;
  IF part OPERATOR(pg_catalog.<>) 'before-distribution' THEN
    steps := steps OPERATOR(pg_catalog.||) views OPERATOR(pg_catalog.||) indexes OPERATOR(pg_catalog.||) foreign_keys
             OPERATOR(pg_catalog.||) sequence_state OPERATOR(pg_catalog.||) triggers OPERATOR(pg_catalog.||) security
             OPERATOR(pg_catalog.||) grants OPERATOR(pg_catalog.||) comments;
  END IF;
  FOREACH step IN ARRAY steps LOOP
    IF step IS NOT NULL THEN
      EXECUTE step;
    END IF;
  END LOOP;
END`;
