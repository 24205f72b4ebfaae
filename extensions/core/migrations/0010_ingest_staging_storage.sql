-- The staging table's rows stay in its heap, uncompressed (src/search/chunk-store.ts): a staged
-- embedding (768 floats, 3 KB) otherwise went through pglz, which cannot shrink random floats and
-- spent a tenth of PostgreSQL's time of an ingest trying, then to the TOAST table. EXTERNAL: never
-- compressed; toast_tuple_target: a row moves out of line only past a page's worth.
ALTER TABLE project_registry_ingest.chunks ALTER COLUMN embedding SET STORAGE EXTERNAL, SET (toast_tuple_target = 8160);
