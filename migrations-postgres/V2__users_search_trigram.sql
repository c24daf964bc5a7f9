-- Substring search over users without scanning them (the twin of SQLite's FTS5 trigram table
-- users_search): pg_trgm GIN indexes of the three searched columns, on the ASCII-folded text
-- that the list query searches (`nocase(col) LIKE '%' || needle || '%'`, the needle folded the
-- same way and its %, _ and \ escaped). The index only narrows the candidates; PostgreSQL
-- rechecks LIKE on every row it returns, so what matches is what matches without it.
-- pg_trgm ships with PostgreSQL (contrib) and is a trusted extension: the database owner may
-- create it without being a superuser.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE INDEX users_search_username ON users USING gin (nocase(username) gin_trgm_ops);
CREATE INDEX users_search_email ON users USING gin (nocase(email) gin_trgm_ops);
CREATE INDEX users_search_full_name ON users USING gin (nocase(full_name) gin_trgm_ops);
