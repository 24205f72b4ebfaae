/**
 * Every statement ingest sends (lists travel as JSON arrays: values are inlined as literals), all run as the workspace's role in its sandbox (the tables, their
 * triggers, rules and defaults are the agent's), but for the staging table's COPY and clean-up,
 * the server's. Unqualified names: the sandbox's search path is the workspace, then the extension
 * schemas (where `vector` lives).
 */

/**
 * What is stored of some files of one repository: $1 the repository path, $2 the file paths.
 * One row per stored file: its hash and its chunks' hashes, and how many of those lack an embedding.
 */
export const STORED_FILES = `
SELECT f.path, f.content_hash, f.metadata,
       coalesce((SELECT pg_catalog.array_agg(c.content_hash ORDER BY c.start_line, c.id) FROM chunks c WHERE c.file_id OPERATOR(pg_catalog.=) f.id), '{}') AS chunk_hashes,
       (SELECT pg_catalog.count(*) FROM chunks c WHERE c.file_id OPERATOR(pg_catalog.=) f.id AND c.embedding IS NULL)::int4 AS unembedded
  FROM files f JOIN repositories r ON r.id OPERATOR(pg_catalog.=) f.repository_id
 WHERE r.path OPERATOR(pg_catalog.=) $1 AND f.path OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT pg_catalog.json_array_elements_text($2::json)))`;

/** Every file of a repository with its hash ($1 the repository path): what a directory run compares against. */
export const REPOSITORY_FILES = `
SELECT f.path, f.content_hash
  FROM files f JOIN repositories r ON r.id OPERATOR(pg_catalog.=) f.repository_id
 WHERE r.path OPERATOR(pg_catalog.=) $1 ORDER BY f.path OFFSET $2 LIMIT $3`;

/** Which of the hashes $1 some chunk of the workspace already has an embedding for. */
export const EMBEDDED_HASHES = `
SELECT coalesce(pg_catalog.array_agg(DISTINCT c.content_hash), '{}') FROM chunks c
 WHERE c.content_hash OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT pg_catalog.json_array_elements_text($1::json))) AND c.embedding IS NOT NULL`;

/**
 * Writing a group of files (or documents) and their chunks: these statements run in this order
 * in one transaction (WorkspaceSandbox.writeAsWorkspace), so the files are replaced whole or not at
 * all. (One statement of data-modifying CTEs did the same, but Citus refuses its correlated
 * subqueries.) $1 the repository path; $2 the files as a JSON array of {path, hash, size,
 * language, metadata}; their chunks are the rows of the staging table (STAGE_CHUNKS), copied in
 * first in the same transaction: content null for a chunk the file keeps, embedding null when
 * there is none to write.
 */
export const WRITE_REPOSITORY = `
INSERT INTO repositories (path, name, indexed_at) VALUES ($1, $2, pg_catalog.now())
ON CONFLICT (path) DO UPDATE SET indexed_at = EXCLUDED.indexed_at`;

/**
 * The repository row, made if missing but not updated: groups written at once would queue for
 * the row's lock behind each other's updates (the files' foreign keys only share-lock it).
 */
export const ENSURE_REPOSITORY = `
INSERT INTO repositories (path, name, indexed_at) VALUES ($1, $2, pg_catalog.now())
ON CONFLICT (path) DO NOTHING`;

export const WRITE_FILES = `
INSERT INTO files (repository_id, path, content_hash, size_bytes, language, metadata, modified_at)
SELECT r.id, x.path, x.hash, x.size, x.language, x.metadata, pg_catalog.now()
  FROM pg_catalog.json_to_recordset($2::json) AS x(path text, hash text, size int4, language text, metadata jsonb), repositories r
 WHERE r.path OPERATOR(pg_catalog.=) $1
ON CONFLICT (repository_id, path) DO UPDATE
   SET content_hash = EXCLUDED.content_hash, size_bytes = EXCLUDED.size_bytes, language = EXCLUDED.language,
       metadata = EXCLUDED.metadata, modified_at = EXCLUDED.modified_at, deleted_at = NULL`;

/** Where a write group's chunks are staged (core's schema.sql): every role may read it, and sees its own transaction's rows only. */
const STAGING_TABLE = 'project_registry_ingest.chunks';
/** The server's binary COPY of a group's chunks into the staging table (encodeCopyBinary, fields in this order). */
export const STAGE_CHUNKS = `COPY ${STAGING_TABLE} (path, content, start_line, end_line, hash, embedding) FROM STDIN (FORMAT binary)`;
/** The server's clean-up of its transaction's staged rows before it commits (other transactions' are invisible to it). */
export const CLEAR_STAGED_CHUNKS = `DELETE FROM ${STAGING_TABLE}`;

const INCOMING = `${STAGING_TABLE} i`;
const FILES_OF_GROUP = `files f JOIN repositories r ON r.id OPERATOR(pg_catalog.=) f.repository_id AND r.path OPERATOR(pg_catalog.=) $1
  JOIN pg_catalog.json_to_recordset($2::json) AS x(path text) ON x.path OPERATOR(pg_catalog.=) f.path`;

/** Chunks of these files whose hash is not among the file's new ones go. */
export const REMOVE_STALE_CHUNKS = `
DELETE FROM chunks WHERE id OPERATOR(pg_catalog.=) ANY (ARRAY(
  SELECT c.id FROM chunks c JOIN ${FILES_OF_GROUP} ON c.file_id OPERATOR(pg_catalog.=) f.id
    LEFT JOIN ${INCOMING} ON i.path OPERATOR(pg_catalog.=) f.path AND i.hash OPERATOR(pg_catalog.=) c.content_hash
   WHERE i.hash IS NULL))`;

/** The ones a file keeps get their new lines, and an embedding if they had none. */
export const UPDATE_KEPT_CHUNKS = `
UPDATE chunks c SET start_line = i.start_line, end_line = i.end_line, embedding = coalesce(c.embedding, i.embedding::vector)
  FROM ${INCOMING}, files f, repositories r
 WHERE c.file_id OPERATOR(pg_catalog.=) f.id AND f.repository_id OPERATOR(pg_catalog.=) r.id AND r.path OPERATOR(pg_catalog.=) $1
   AND f.path OPERATOR(pg_catalog.=) i.path AND c.content_hash OPERATOR(pg_catalog.=) i.hash AND i.content IS NULL`;

/**
 * A group written before its vectors came (chunk-store.ts): its new chunks get them now, from the
 * staged rows (only chunks with a vector are staged); a chunk given one meanwhile keeps it.
 */
export const FILL_EMBEDDINGS = `
UPDATE chunks c SET embedding = i.embedding::vector
  FROM ${INCOMING}, files f, repositories r
 WHERE c.file_id OPERATOR(pg_catalog.=) f.id AND f.repository_id OPERATOR(pg_catalog.=) r.id AND r.path OPERATOR(pg_catalog.=) $1
   AND f.path OPERATOR(pg_catalog.=) i.path AND c.content_hash OPERATOR(pg_catalog.=) i.hash AND c.embedding IS NULL`;

/** New ones take their embedding from the array, else from any chunk of the workspace with the same hash. */
export const INSERT_NEW_CHUNKS = `
INSERT INTO chunks (file_id, content, start_line, end_line, content_hash, embedding)
SELECT f.id, i.content, i.start_line, i.end_line, i.hash, coalesce(i.embedding::vector, e.embedding)
  FROM ${INCOMING}
  JOIN files f ON f.path OPERATOR(pg_catalog.=) i.path
  JOIN repositories r ON r.id OPERATOR(pg_catalog.=) f.repository_id AND r.path OPERATOR(pg_catalog.=) $1
  LEFT JOIN chunks c ON c.file_id OPERATOR(pg_catalog.=) f.id AND c.content_hash OPERATOR(pg_catalog.=) i.hash
  LEFT JOIN LATERAL (SELECT x.embedding FROM chunks x WHERE x.content_hash OPERATOR(pg_catalog.=) i.hash AND x.embedding IS NOT NULL LIMIT 1) e ON true
 WHERE c.id IS NULL AND i.content IS NOT NULL`;

/** Removes files of a repository ($1) by path ($2), their chunks with them (ON DELETE CASCADE). */
export const REMOVE_FILES = `
DELETE FROM files f USING repositories r
 WHERE r.id OPERATOR(pg_catalog.=) f.repository_id AND r.path OPERATOR(pg_catalog.=) $1 AND f.path OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT pg_catalog.json_array_elements_text($2::json)))`;

/** What is stored per repository (index_status): files, chunks, chunks still without an embedding. */
export const REPOSITORY_SUMMARY = `
SELECT r.path, r.indexed_at,
       (SELECT pg_catalog.count(*) FROM files f WHERE f.repository_id OPERATOR(pg_catalog.=) r.id)::int4 AS files,
       (SELECT pg_catalog.count(*) FROM chunks c JOIN files f ON f.id OPERATOR(pg_catalog.=) c.file_id WHERE f.repository_id OPERATOR(pg_catalog.=) r.id)::int4 AS chunks,
       (SELECT pg_catalog.count(*) FROM chunks c JOIN files f ON f.id OPERATOR(pg_catalog.=) c.file_id
         WHERE f.repository_id OPERATOR(pg_catalog.=) r.id AND c.embedding IS NULL)::int4 AS unembedded
  FROM repositories r ORDER BY r.path LIMIT $1`;
