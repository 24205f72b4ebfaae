import { describe, expect, it } from 'vitest';
import { parseStatements, rejectInstallerOwnedStatements, SqlFileError } from '../../src/extensions/extension-sql.js';

const parse = (sql: string, path = 'ext/schema.sql') => parseStatements({ path, sql });

describe('parseStatements', () => {
  it('splits a file into numbered statements with the line each starts on', async () => {
    const statements = await parse('-- header\nCREATE TABLE a (id int);\n\n  CREATE INDEX a_id ON a (id);\nCOMMENT ON TABLE a IS \'x; y\';');
    expect(statements.map((s) => [s.number, s.total, s.line, s.kind, s.sql])).toEqual([
      [1, 3, 2, 'CreateStmt', 'CREATE TABLE a (id int)'],
      [2, 3, 4, 'IndexStmt', 'CREATE INDEX a_id ON a (id)'],
      [3, 3, 5, 'CommentStmt', "COMMENT ON TABLE a IS 'x; y'"],
    ]);
    expect(statements.every((s) => s.file === 'ext/schema.sql')).toBe(true);
  });

  it('counts lines in characters when the text before a statement has multi-byte characters', async () => {
    const [, second] = await parse("COMMENT ON SCHEMA public IS 'héllo wörld ✓';\nCREATE TABLE b (id int);");
    expect(second).toMatchObject({ line: 2, sql: 'CREATE TABLE b (id int)' });
  });

  it('classifies statements into the structural, dependent and other phases', async () => {
    const sql = [
      'CREATE TABLE t (id int)',
      'CREATE SCHEMA s',
      'CREATE SEQUENCE q',
      'CREATE TYPE pair AS (a int, b int)',
      "CREATE TYPE mood AS ENUM ('ok')",
      'CREATE DOMAIN posint AS int CHECK (VALUE > 0)',
      'CREATE TYPE shell',
      'CREATE INDEX i ON t (id)',
      'CREATE VIEW v AS SELECT 1',
      'CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$',
      'ALTER TABLE t ADD COLUMN IF NOT EXISTS x int',
      'GRANT SELECT ON t TO PUBLIC',
      'DO $$ BEGIN END $$',
      'CREATE AGGREGATE agg (int) (sfunc = int4pl, stype = int)',
      "INSERT INTO t VALUES (1)",
      'DROP TABLE t',
    ].join(';\n');
    const roles = (await parse(sql)).map((s) => `${s.kind}:${s.role}`);
    expect(roles).toEqual([
      'CreateStmt:structural',
      'CreateSchemaStmt:structural',
      'CreateSeqStmt:structural',
      'CompositeTypeStmt:structural',
      'CreateEnumStmt:structural',
      'CreateDomainStmt:structural',
      'DefineStmt:structural',
      'IndexStmt:dependent',
      'ViewStmt:dependent',
      'CreateFunctionStmt:dependent',
      'AlterTableStmt:dependent',
      'GrantStmt:dependent',
      'DoStmt:dependent',
      'DefineStmt:dependent',
      'InsertStmt:other',
      'DropStmt:other',
    ]);
  });

  it('records the table a CREATE TABLE makes, qualified only when the SQL qualifies it, and the tables a DROP removes', async () => {
    const [bare, qualified, dropped, view] = await parse(
      'CREATE TABLE notes (id int); CREATE TABLE reg.kinds (k text); DROP TABLE IF EXISTS a, s.b; DROP VIEW v',
    );
    expect(bare?.createsTable).toEqual({ schema: undefined, name: 'notes' });
    expect(qualified?.createsTable).toEqual({ schema: 'reg', name: 'kinds' });
    expect(dropped?.dropsTables).toEqual(['a', 'b']);
    expect(view?.dropsTables).toBeUndefined();
  });

  it('lists the schemas a statement names, but not column references, enum labels or option values', async () => {
    const schemasOf = async (sql: string) => (await parse(sql))[0]?.schemas;
    expect(await schemasOf('CREATE SCHEMA IF NOT EXISTS project_lookup')).toEqual(['project_lookup']);
    expect(await schemasOf('CREATE TABLE s1.t (id int REFERENCES s2.other)')).toEqual(expect.arrayContaining(['s1', 's2']));
    expect(await schemasOf("CREATE FUNCTION fs.f() RETURNS text LANGUAGE sql AS 'SELECT 1'")).toEqual(['fs']);
    // The parser itself qualifies built-in type keywords (int is pg_catalog.int4).
    expect(await schemasOf('CREATE TABLE t (id int)')).toEqual(['pg_catalog']);
    expect(await schemasOf('GRANT USAGE ON SCHEMA granted TO PUBLIC')).toEqual(['granted']);
    expect(await schemasOf('ALTER DEFAULT PRIVILEGES IN SCHEMA defaults GRANT SELECT ON TABLES TO PUBLIC')).toEqual(['defaults']);
    expect(await schemasOf('DROP SCHEMA IF EXISTS gone CASCADE')).toEqual(['gone']);
    expect(await schemasOf('ALTER TABLE t SET SCHEMA moved')).toEqual(['moved']);
    expect(await schemasOf('CREATE VIEW v AS SELECT t.id FROM t')).toEqual([]);
    expect(await schemasOf("CREATE TYPE e AS ENUM ('a.b', 'c')")).toEqual([]);
  });

  it('names the file and line of a syntax error', async () => {
    const failure = await parse('CREATE TABLE ok (id int);\nCREATE TABLE broken (id int,);', 'notes/schema.sql').catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(SqlFileError);
    expect((failure as Error).message).toMatch(/^notes\/schema\.sql: syntax error at line 2: syntax error at or near "\)"/);
  });
});

describe('rejectInstallerOwnedStatements', () => {
  it('refuses transaction control, saying the installer runs each file in its own transaction', async () => {
    const statements = await parse('CREATE TABLE t (id int);\nBEGIN;\nCOMMIT;', 'notes/seeds/a.sql');
    expect(() => rejectInstallerOwnedStatements(statements)).toThrow(
      'notes/seeds/a.sql: statement 2 (line 2) controls the transaction; remove it: the installer runs each file inside its own transaction.',
    );
  });

  it('refuses CREATE EXTENSION, pointing at "requires" in extension.json', async () => {
    const statements = await parse('\n\nCREATE EXTENSION IF NOT EXISTS pg_trgm;', 'notes/schema.sql');
    expect(() => rejectInstallerOwnedStatements(statements)).toThrow(
      /^notes\/schema\.sql: statement 1 \(line 3\) creates a PostgreSQL extension; list it in extension\.json "requires" instead/,
    );
  });

  it('accepts everything else', async () => {
    expect(() => rejectInstallerOwnedStatements([])).not.toThrow();
  });
});
