import { parse } from 'libpg-query';
import { quoteIdent, quoteLiteral } from '../db/identifiers.js';

/** The access methods of vector indexes ingest may defer (pgvector's). */
export const VECTOR_INDEX_METHODS: readonly string[] = ['hnsw', 'ivfflat'];

export class IndexDefinitionError extends Error {
  override name = 'IndexDefinitionError';
}

interface StringNode {
  String?: { sval: string };
  Integer?: { ival?: number };
  Float?: { fval: string };
}

interface IndexElem {
  name?: string;
  expr?: unknown;
  opclass?: StringNode[];
  opclassopts?: unknown[];
  collation?: unknown[];
  ordering?: string;
  nulls_ordering?: string;
}

interface IndexStmt {
  idxname?: string;
  relation?: { relname?: string; inh?: boolean };
  accessMethod?: string;
  indexParams?: Array<{ IndexElem?: IndexElem }>;
  indexIncludingParams?: unknown[];
  options?: Array<{ DefElem?: { defname: string; defnamespace?: string; arg?: StringNode } }>;
  whereClause?: unknown;
  unique?: boolean;
  concurrent?: boolean;
  nulls_not_distinct?: boolean;
}

/**
 * A deferred index's recorded definition (pg_get_indexdef when it was dropped) as the statement
 * that creates it again in `schemaName`: parsed with PostgreSQL's own parser, accepted only as a
 * plain vector index (hnsw or ivfflat) named `indexName` on columns of `tableName`, with an operator
 * class and storage parameters at most, then written anew from those parts, every name quoted and
 * every value a literal. The registry row may be stale or damaged: nothing of its text is run as it
 * is, and the statement runs as the workspace's role (defence in depth, not the wall).
 */
export async function recreateStatement(definition: string, expected: { schemaName: string; tableName: string; indexName: string }): Promise<string> {
  const refuse = (why: string) => new IndexDefinitionError(`The recorded definition of index ${expected.indexName} ${why}: ${definition.slice(0, 300)}`);
  let tree: { stmts?: Array<{ stmt?: { IndexStmt?: IndexStmt } }> };
  try {
    tree = (await parse(definition)) as typeof tree;
  } catch (error) {
    throw refuse(`does not parse (${(error as Error).message})`);
  }
  const index = tree.stmts?.length === 1 ? tree.stmts[0]?.stmt?.IndexStmt : undefined;
  if (!index) throw refuse('is not one CREATE INDEX statement');
  if (index.idxname !== expected.indexName) throw refuse('names another index');
  if (index.relation?.relname !== expected.tableName || index.relation.inh !== true) throw refuse(`is not on table ${expected.tableName}`);
  if (!index.accessMethod || !VECTOR_INDEX_METHODS.includes(index.accessMethod)) throw refuse(`uses ${index.accessMethod ?? 'no'} access method, not ${VECTOR_INDEX_METHODS.join(' or ')}`);
  if (index.unique || index.concurrent || index.nulls_not_distinct || index.whereClause || (index.indexIncludingParams?.length ?? 0) > 0) {
    throw refuse('is not a plain index (UNIQUE, CONCURRENTLY, a WHERE clause or INCLUDE columns)');
  }
  const columns = (index.indexParams ?? []).map(({ IndexElem: elem }) => {
    if (!elem?.name || elem.expr || (elem.opclassopts?.length ?? 0) > 0 || (elem.collation?.length ?? 0) > 0) throw refuse('indexes something other than columns');
    if ((elem.ordering ?? 'SORTBY_DEFAULT') !== 'SORTBY_DEFAULT' || (elem.nulls_ordering ?? 'SORTBY_NULLS_DEFAULT') !== 'SORTBY_NULLS_DEFAULT') throw refuse('orders its columns');
    const opclass = (elem.opclass ?? []).map((part) => {
      if (part.String?.sval === undefined) throw refuse('has an operator class that is not a name');
      return quoteIdent(part.String.sval);
    });
    return `${quoteIdent(elem.name)}${opclass.length > 0 ? ` ${opclass.join('.')}` : ''}`;
  });
  if (columns.length === 0) throw refuse('indexes no column');
  const options = (index.options ?? []).map(({ DefElem: option }) => {
    const value = option?.arg?.String?.sval ?? option?.arg?.Float?.fval ?? (option?.arg?.Integer ? String(option.arg.Integer.ival ?? 0) : undefined);
    if (!option || option.defnamespace || value === undefined) throw refuse('has a storage parameter that is not a plain value');
    return `${quoteIdent(option.defname)} = ${quoteLiteral(value)}`;
  });
  return (
    `CREATE INDEX IF NOT EXISTS ${quoteIdent(expected.indexName)} ON ${quoteIdent(expected.schemaName)}.${quoteIdent(expected.tableName)} ` +
    `USING ${quoteIdent(index.accessMethod)} (${columns.join(', ')})${options.length > 0 ? ` WITH (${options.join(', ')})` : ''}`
  );
}
