-- Keeps a chunk's embedding inline in its row (issue 23, ingest throughput). A 768-dimension
-- vector is about 3 KB, past the 2 KB at which PostgreSQL moves a row's largest values out to
-- its TOAST table, so each row written cost a TOAST insert (and its index entry) and each read of
-- the vector a TOAST fetch; vectors barely compress, so there is nothing to gain from trying.
-- Raising the row size PostgreSQL aims for to the most a page takes moves values out only for
-- rows that would not fit a page otherwise (a long content). A reloption, not SET STORAGE:
-- Citus propagates it to a distributed table's shards, and refuses ALTER COLUMN ... SET STORAGE.
-- Rows already stored keep their TOASTed vectors until they are written again.
ALTER TABLE chunks SET (toast_tuple_target = 8160);
