import pLimit from 'p-limit';
import { readInstallState } from '../registry/registry-sql.js';
import type { Ready } from '../services.js';
import { validateProjectId } from '../workspaces/project-id.js';
import { WorkspaceLifecycleError } from '../workspaces/workspace-lifecycle.js';
import { listRange, pageOf, type ListOptions, type WorkspacePage, type WorkspaceSummary } from '../workspaces/workspace-manager.js';
import { ensureMemberDatabase, keptPlacement, listCandidates, memberDatabases, memberDatabaseStates, place, placeIn, type ListCandidate } from './placements.js';

/**
 * What a call does with the workspace it names: 'create' makes it when it does not exist
 * (ensure_workspace, and the tools that create on first use), 'existing' only uses one. Only a
 * call that creates places a new id: a read or a drop of an id nothing knows would otherwise
 * count, in a member database, a workspace that is never made.
 */
export type WorkspaceUse = 'create' | 'existing';

/**
 * How many databases a read over all of them (list_workspaces, the fleet's workspace_status) opens
 * and reads at once. All at once, a server spread over 200 databases opened 200 pools, each
 * checking its install, and past the pool size each waits its turn only up to the connect wait
 * before opening anyway (connection-share.ts): hundreds of connections for one list. Each read is
 * one short query, so a few at a time cost little more than all at once.
 */
const DATABASES_READ_AT_ONCE = 4;

/**
 * The services of each database a PostgreSQL server's workspaces live in (placements.ts): the
 * home database's, booted by the engine, and a member database's, opened (its extension schemas
 * installed, under that database's own install lock) the first time a call needs it. Every tool
 * call reaches its workspace's services through `readyFor`, so the per-workspace services (SQL
 * sandbox, search and ingest, snapshots, claims) work in a member database as they do at home.
 */
export class MemberDatabases {
  readonly #members = new Map<string, Promise<Ready>>();
  /**
   * The member database of each project id placed in one, once known: a placement never changes
   * (drop and rename keep it). A workspace of the home database is looked up on each call: dropped
   * (or renamed away) there, its id is placed in a member database by the next server to make it.
   */
  readonly #placed = new Map<string, string>();

  constructor(
    private readonly home: Ready,
    /** --workspaces-per-database; undefined: placements are followed, none is made. */
    private readonly perDatabase: number | undefined,
    private readonly open: (database: string) => Promise<Ready>,
  ) {}

  /** The services of the database holding `projectId` (placing a new one when spreading and `use` creates it). */
  async readyFor(projectId: string, use: WorkspaceUse): Promise<Ready> {
    const database = await this.databaseOf(projectId, use);
    return database === undefined ? this.home : this.#member(database);
  }

  /**
   * `read` on the home database's services, then on each member database's, the member databases
   * DATABASES_READ_AT_ONCE at a time; the results in that order (the fleet's workspace_status: one
   * query a database; its counts are only each database's to know). Makes nothing: a member database dropped under the
   * servers is left out, not created again by a read (its workspaces went with it; a call to one of
   * them makes it again, remakeGone).
   */
  async readEach<T>(read: (ready: Ready) => Promise<T>): Promise<T[]> {
    const present = (await memberDatabaseStates(this.home.db)).filter((m) => m.present);
    const inTurn = pLimit(DATABASES_READ_AT_ONCE);
    return Promise.all([read(this.home), ...present.map((m) => inTurn(async () => read(await this.#member(m.name, { create: false }))))]);
  }

  /**
   * A page of list_workspaces over every database, reading only the databases that hold its ids:
   * the home database names the candidates (its workspaces and its placements, listCandidates),
   * and each member database among them is asked for its own, DATABASES_READ_AT_ONCE at a time.
   * Reading every database instead cost a server over 200 of them 200 queries a page. A placement
   * whose workspace is gone (dropped, or its creation failed) or whose database is gone yields
   * nothing: the next candidates are read until the page and one more are found, or none are left.
   */
  async list(options: ListOptions, signal?: AbortSignal): Promise<WorkspacePage> {
    const { after, prefix, limit } = listRange(options);
    const found: WorkspaceSummary[] = [];
    for (let from = after; found.length <= limit; ) {
      const wanted = limit + 1 - found.length;
      const candidates = await listCandidates(this.home.db, from, prefix, wanted, options.only);
      found.push(...(await this.#summariesOf(candidates, signal)));
      const last = candidates.at(-1);
      if (candidates.length < wanted || !last) break;
      from = last.project_id;
    }
    return pageOf(found, limit);
  }

  /** The workspaces of `candidates`, in id order; for an id in two databases, the home database's first. */
  async #summariesOf(candidates: readonly ListCandidate[], signal: AbortSignal | undefined): Promise<WorkspaceSummary[]> {
    const home: WorkspaceSummary[] = [];
    const placed = new Map<string, string[]>();
    for (const c of candidates) {
      if (c.schema_name !== null && c.created_at !== null) home.push({ projectId: c.project_id, schemaName: c.schema_name, createdAt: c.created_at });
      if (c.database_name !== null && c.present) placed.set(c.database_name, [...(placed.get(c.database_name) ?? []), c.project_id]);
    }
    const inTurn = pLimit(DATABASES_READ_AT_ONCE);
    const elsewhere = await Promise.all(
      [...placed].map(([database, ids]) =>
        inTurn(async () => {
          // A call the client cancelled reads no more databases.
          signal?.throwIfAborted();
          return (await this.#member(database, { create: false })).workspaces.summariesOf(ids);
        }),
      ),
    );
    // A stable sort: home first on a tie, as before.
    return [...home, ...elsewhere.flat()].sort((a, b) => (a.projectId < b.projectId ? -1 : a.projectId > b.projectId ? 1 : 0));
  }

  /** The home database's services, then every member database's (the commands: migrate-workspaces, reembed --all). */
  async all(): Promise<Ready[]> {
    const names = await memberDatabases(this.home.db);
    return [this.home, ...(await Promise.all(names.map((name) => this.#member(name))))];
  }

  /**
   * A fork's target goes where its source is, which the copy needs (it runs in one database).
   * The target's services; refused when the target id was placed elsewhere before (a workspace
   * dropped there keeps its placement, and its role history, for good).
   */
  async placeBeside(to: string, from: string): Promise<Ready> {
    const source = await this.databaseOf(from, 'existing');
    this.home.workspaces.schemaNameOf(to);
    const target = this.#placed.get(to) ?? (await placeIn(this.home.db, to, source));
    if (target !== undefined) this.#placed.set(to, target);
    if (target !== source) {
      throw new WorkspaceLifecycleError(
        `Cannot fork "${from}" to "${to}": ${keptPlacement(to, target)}, and "${from}" is in ${source ? `"${source}"` : 'the home database'}; ` +
          'a fork is made beside its source. Fork to another id.',
      );
    }
    return source === undefined ? this.home : this.#member(source);
  }

  /** The member database holding `projectId`, or undefined for the home database. */
  async databaseOf(projectId: string, use: WorkspaceUse): Promise<string | undefined> {
    const known = this.#placed.get(projectId);
    if (known !== undefined) return known;
    validateProjectId(projectId);
    const [row] = await this.home.db.query<{ database: string | null; home: boolean }>(
      `SELECT (SELECT database_name FROM project_registry.workspace_placements WHERE project_id = $1) AS database,
              EXISTS (SELECT 1 FROM project_registry.workspace_config WHERE project_id = $1) AS home`,
      [projectId],
    );
    let database = row?.database ?? undefined;
    if (database === undefined && !row?.home) {
      // Unknown here: a new workspace, placed when spreading and the call makes it; else the
      // home database's, which answers that it does not exist or, not spreading, makes it there
      // (not remembered: another server spreading may place it first).
      if (this.perDatabase === undefined || use === 'existing') return undefined;
      // An id no workspace can have is refused before it is placed: its placement would never be used.
      this.home.workspaces.schemaNameOf(projectId);
      // A creating call that fails after this (bad SQL, a refused path, the database down) leaves
      // the placement, by design: every server keeps a placement it has read for good (#placed), so
      // one taken back could see the workspace made there, unplaced, by a server that read it,
      // while the others place the id elsewhere: two workspaces of one id. Kept, it is what a
      // dropped workspace's placement is: the id's next creation, by any server, lands there and
      // counts nothing more (tested), and its database's count is one higher meanwhile, no more
      // than that call's ensure_workspace would have made it.
      database = await place(this.home.db, projectId, this.perDatabase);
    }
    if (database !== undefined) this.#placed.set(projectId, database);
    return database;
  }

  /** `create`: made first when the PostgreSQL server does not have it (not for a read). */
  #member(database: string, { create = true } = {}): Promise<Ready> {
    let member = this.#members.get(database);
    if (!member) {
      member = (create ? ensureMemberDatabase(this.home.db, database) : Promise.resolve()).then(() => this.open(database));
      this.#members.set(database, member);
      // A failed open (the server down, no CREATEDB) is tried again by the next call.
      member.catch(() => this.#members.delete(database));
    }
    return member;
  }

  /**
   * The member databases this server opened that are gone from the PostgreSQL server (an
   * operator's DROP DATABASE, a restore of the cluster from before them): each is forgotten and
   * made again at once, installed, as the engine installs a registry gone from the home database
   * again. Made again rather than refused: it is what a restart does (a placement's database is
   * created on first use), so refusing would only hold every workspace placed there until one;
   * their data went with the database either way, and their ids still belong there.
   */
  async remakeGone(): Promise<string[]> {
    const opened = new Map(this.#members);
    if (opened.size === 0) return [];
    const gone = await this.home.db.query<{ name: string }>(
      'SELECT name FROM unnest($1::text[]) AS name WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = name)',
      [[...opened.keys()]],
    );
    for (const { name } of gone) this.#openAgain(name, opened.get(name));
    return gone.map((g) => g.name);
  }

  /**
   * True when this server's install is gone from the member database `database` (its registry
   * dropped there, or the database restored from before it): it is then installed again, as the
   * engine installs the home database's, so that the calls after the failing one work.
   */
  async reinstallIfGone(database: string): Promise<boolean> {
    const opened = this.#members.get(database);
    const ready = await opened?.catch(() => undefined);
    if (!ready || !(await readInstallState(ready.db).then((state) => state === undefined, () => false))) return false;
    this.#openAgain(database, opened);
    return true;
  }

  /** Forgets the services `opened` of `database` and opens it again (made, installed); only the first call to see them fail does. */
  #openAgain(database: string, opened: Promise<Ready> | undefined): void {
    // A later call finds the new one in the making.
    if (this.#members.get(database) !== opened) return;
    this.#members.delete(database);
    void opened?.then(closeServices).catch(() => undefined);
    this.#member(database).catch(() => undefined);
  }

  /** Closes every member database's services (the engine closes the home database's). */
  async close(): Promise<void> {
    const members = await Promise.allSettled(this.#members.values());
    this.#members.clear();
    for (const member of members) if (member.status === 'fulfilled') await closeServices(member.value);
  }
}

async function closeServices(ready: Ready): Promise<void> {
  await ready.search.close();
  await ready.db.close();
}
