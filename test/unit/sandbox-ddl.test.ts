import fc from 'fast-check';
import { parse, parsePlPgSQL } from 'libpg-query';
import { describe, expect, it } from 'vitest';
import {
  distributeNewTables,
  dropSandboxFunction,
  principalScript,
  SANDBOX_LOCK_CLASS,
  SANDBOX_SCHEMA,
  sandboxBodyScript,
  sandboxSearchPath,
  sandboxSource,
  type Principal,
} from '../../src/sandbox/sandbox-ddl.js';

/*
 * The sandbox DDL builders, read back through PostgreSQL's own parser (libpg-query): the role
 * and schema a script names are exactly the ones it was given, whatever their characters, and
 * the steps that keep the workspace's role from more than its schema come in the order that
 * makes them hold.
 */

type Node = Record<string, unknown>;

/** Each statement of `sql` as { kind, node }, e.g. { kind: 'CreateRoleStmt', node: {...} }. */
async function statements(sql: string): Promise<Array<{ kind: string; node: Node }>> {
  const tree = await parse(sql);
  return (tree.stmts ?? []).map(({ stmt }) => {
    const [kind, node] = Object.entries(stmt as Node)[0] as [string, Node];
    return { kind, node };
  });
}

/** The String nodes' values of a qualified name (funcname, objname). */
const names = (list: unknown): string[] => (list as Array<{ String: { sval: string } }>).map((n) => n.String.sval);

/** Identifiers as PostgreSQL takes them quoted: any character but NUL (and `$`, see below), at most 63 bytes. */
const identifier = fc
  .oneof(
    // Mostly the characters that break quoting: quotes, backslashes, separators, case, multibyte.
    fc.string({ minLength: 1, maxLength: 15, unit: fc.constantFrom('"', "'", '\\', ' ', ';', '-', '\n', 'a', 'Z', '_', 'é', '😀') }),
    fc.string({ minLength: 1, maxLength: 15, unit: 'binary' }),
  )
  // `$` never occurs in the names the server makes (project ids are [a-z0-9-]); a `$sandbox$`
  // inside one would end the dollar-quoted function body early.
  .filter((s) => !s.includes('\0') && !s.includes('$') && Buffer.byteLength(s) <= 63);

const principalOf = (schemaName: string, roleName: string): Principal => ({ schemaName, roleName, searchPath: ['public', 'ext schema'] });

describe('principalScript', () => {
  it('names exactly the role and schema it is given, whatever their characters', async () => {
    await fc.assert(
      fc.asyncProperty(identifier, identifier, identifier, fc.boolean(), async (schemaName, roleName, serverRole, createRole) => {
        const p = principalOf(schemaName, roleName);
        const script = await statements(principalScript(p, createRole, serverRole));
        const of = (kind: string) => script.filter((s) => s.kind === kind).map((s) => s.node);

        expect(of('CreateRoleStmt').map((n) => n['role'])).toEqual(createRole ? [roleName] : []);
        expect(of('AlterRoleStmt').map((n) => (n['role'] as Node)['rolename'])).toEqual([roleName]);
        // The server a member of the role, then no longer, in the same script (role-membership.ts).
        const memberships = of('GrantRoleStmt').map((n) => [
          Boolean(n['is_grant']),
          (n['granted_roles'] as Array<{ AccessPriv: { priv_name: string } }>)[0]?.AccessPriv.priv_name,
          (n['grantee_roles'] as Array<{ RoleSpec: { roletype: string } }>)[0]?.RoleSpec.roletype,
        ]);
        expect(memberships).toEqual([
          [true, roleName, 'ROLESPEC_CURRENT_USER'],
          [false, roleName, 'ROLESPEC_CURRENT_USER'],
        ]);
        const execute = of('GrantStmt').filter((n) => n['objtype'] === 'OBJECT_FUNCTION' && n['is_grant']);
        expect(execute.map((n) => (n['grantees'] as Array<{ RoleSpec: { rolename: string } }>)[0]?.RoleSpec.rolename)).toEqual([serverRole]);

        const functions = of('CreateFunctionStmt').filter((n) => names(n['funcname'])[0] === SANDBOX_SCHEMA);
        expect(functions.map((n) => names(n['funcname']))).toEqual([[SANDBOX_SCHEMA, schemaName]]);
        const options = functions[0]?.['options'] as Array<{ DefElem: { defname: string; arg: unknown } }>;
        const body = options.find((o) => o.DefElem.defname === 'as')?.DefElem.arg as { List: { items: Array<{ String: { sval: string } }> } };
        expect(body.List.items.map((i) => i.String.sval)).toEqual([sandboxSource(p)]);
        expect(options.find((o) => o.DefElem.defname === 'security')?.DefElem.arg).toEqual({ Boolean: { boolval: true } });
        // The body's call passes the workspace's schema and role as string constants, intact.
        const [call] = await statements(sandboxSource(p));
        const args = (((call?.node['targetList'] as Array<{ ResTarget: { val: { FuncCall: { args: Node[] } } } }>)[0]?.ResTarget.val.FuncCall.args) ?? [])
          .map((a) => ((a['A_Const'] as { sval?: { sval: string } } | undefined)?.sval?.sval));
        expect(args.slice(-2)).toEqual([schemaName, roleName]);
        const searchPath = options.find((o) => o.DefElem.defname === 'set')?.DefElem.arg as { VariableSetStmt: { args: Array<{ A_Const: { sval: { sval: string } } }> } };
        expect(searchPath.VariableSetStmt.args.map((a) => a.A_Const.sval.sval)).toEqual(sandboxSearchPath(p));
      }),
      { numRuns: 60 },
    );
  });

  it("locks first, gives the function away only after PUBLIC lost EXECUTE and grants the server's EXECUTE, as a member of the role from the old function's drop to then, then takes back the CREATE it lent", async () => {
    for (const citus of [false, true]) {
      const script = await statements(principalScript(principalOf('project_a', 'pgw_0_a'), true, 'server', citus));
      const first = script[0]?.node['targetList'] as Array<{ ResTarget: { val: { FuncCall: { funcname: unknown; args: Node[] } } } }>;
      expect(names(first[0]?.ResTarget.val.FuncCall.funcname)).toEqual(['pg_catalog', 'pg_advisory_xact_lock']);
      expect(first[0]?.ResTarget.val.FuncCall.args[0]).toMatchObject({ A_Const: { ival: { ival: SANDBOX_LOCK_CLASS } } });

      const index = (test: (s: { kind: string; node: Node }) => boolean) => script.findIndex(test);
      const onSandboxSchema = (s: { kind: string; node: Node }, isGrant: boolean) =>
        s.kind === 'GrantStmt' && (s.node['objtype'] === 'OBJECT_SCHEMA') && names(s.node['objects'])[0] === SANDBOX_SCHEMA && Boolean(s.node['is_grant']) === isGrant;
      const created = index((s) => s.kind === 'CreateFunctionStmt' && names(s.node['funcname'])[0] === SANDBOX_SCHEMA);
      const revokedFromPublic = index((s) => s.kind === 'GrantStmt' && s.node['objtype'] === 'OBJECT_FUNCTION' && !s.node['is_grant']);
      const lent = index((s) => onSandboxSchema(s, true));
      const givenAway = index((s) => s.kind === 'AlterOwnerStmt' && s.node['objectType'] === 'OBJECT_FUNCTION');
      const takenBack = index((s) => onSandboxSchema(s, false));
      expect(created).toBeGreaterThan(0);
      // The server's own EXECUTE after the owner change, which would have made it the owner's.
      const serverExecute = index((s) => s.kind === 'GrantStmt' && s.node['objtype'] === 'OBJECT_FUNCTION' && Boolean(s.node['is_grant']));
      const member = index((s) => s.kind === 'GrantRoleStmt' && Boolean(s.node['is_grant']));
      const noLongerMember = index((s) => s.kind === 'GrantRoleStmt' && !s.node['is_grant']);
      // A member of the role from the old function's drop (on Citus the new one replaces the role's on the workers).
      expect(script.slice(lent, created).map((s) => s.kind)).toEqual(['GrantStmt', 'GrantRoleStmt', 'DropStmt', 'DropStmt']);
      expect(member).toBe(lent + 1);
      expect([created, revokedFromPublic, givenAway, serverExecute, noLongerMember, takenBack]).toEqual(Array.from({ length: 6 }, (_, i) => created + i));

      // The role can log in only on Citus (its workers connect as it), and never with a password.
      const alter = script.find((s) => s.kind === 'AlterRoleStmt')?.node['options'] as Array<{ DefElem: { defname: string; arg: unknown } }>;
      expect(alter.map((o) => o.DefElem.defname)).toEqual(citus ? ['canlogin', 'validUntil'] : ['validUntil']);
      expect(alter.at(-1)?.DefElem.arg).toEqual({ String: { sval: '-infinity' } });
      // The workspace's schema: PUBLIC loses everything before the role gets USAGE and CREATE.
      const schemaGrants = script.filter((s) => s.kind === 'GrantStmt' && s.node['objtype'] === 'OBJECT_SCHEMA' && names(s.node['objects'])[0] === 'project_a');
      expect(schemaGrants.map((s) => [Boolean(s.node['is_grant']), (s.node['grantees'] as Array<{ RoleSpec: { roletype: string } }>)[0]?.RoleSpec.roletype])).toEqual([
        [false, 'ROLESPEC_PUBLIC'],
        [true, 'ROLESPEC_CSTRING'],
      ]);
    }
  });
});

describe('dropSandboxFunction', () => {
  it("drops the workspace's function of both signatures, and nothing else", async () => {
    await fc.assert(
      fc.asyncProperty(identifier, async (schemaName) => {
        const drops = await statements(dropSandboxFunction(schemaName));
        expect(drops.map((d) => d.kind)).toEqual(['DropStmt', 'DropStmt']);
        const targets = drops.map((d) => (d.node['objects'] as Array<{ ObjectWithArgs: { objname: unknown; objargs: unknown[] } }>)[0]?.ObjectWithArgs);
        expect(targets.map((t) => names(t?.objname))).toEqual([[SANDBOX_SCHEMA, schemaName], [SANDBOX_SCHEMA, schemaName]]);
        expect(targets.map((t) => t?.objargs.length)).toEqual([4, 3]);
        expect(drops.every((d) => d.node['missing_ok'] === true)).toBe(true);
      }),
      { numRuns: 40 },
    );
  });
});

describe('the shared body and the Citus step', () => {
  it('the body is valid PL/pgSQL', async () => {
    await expect(parsePlPgSQL(sandboxBodyScript())).resolves.toBeDefined();
  });

  it('distributeNewTables looks only in the schema it is given', async () => {
    await fc.assert(
      fc.asyncProperty(identifier, async (schemaName) => {
        const sql = distributeNewTables(schemaName);
        const constants: string[] = [];
        const walk = (node: unknown): void => {
          if (Array.isArray(node)) node.forEach(walk);
          else if (node && typeof node === 'object') {
            const constant = (node as Node)['A_Const'] as { sval?: { sval: string } } | undefined;
            if (constant?.sval) constants.push(constant.sval.sval);
            Object.values(node).forEach(walk);
          }
        };
        walk(await parse(sql));
        // The schema's name twice (the anchor's and the tables'), and the relkinds.
        expect(constants.filter((c) => c !== '{r,p}')).toEqual([schemaName, schemaName]);
      }),
      { numRuns: 40 },
    );
  });
});
