-- Substring search over users without scanning them: an FTS5 trigram index of the three
-- searched columns. It only narrows the candidates; the list query still applies its LIKE
-- filters to the user rows, so what matches is exactly what matched before.
-- Rows are found by user_id (indexed too, matched only with a column filter), not by the users
-- rowid, which VACUUM may renumber.
CREATE VIRTUAL TABLE users_search USING fts5 (user_id, username, email, full_name, tokenize = 'trigram');

INSERT INTO users_search (user_id, username, email, full_name)
SELECT id, username, email, full_name FROM users;

CREATE TRIGGER users_search_insert AFTER INSERT ON users BEGIN
    INSERT INTO users_search (user_id, username, email, full_name)
    VALUES (new.id, new.username, new.email, new.full_name);
END;

CREATE TRIGGER users_search_update AFTER UPDATE OF id, username, email, full_name ON users BEGIN
    DELETE FROM users_search WHERE rowid IN
        (SELECT rowid FROM users_search WHERE users_search MATCH 'user_id : "' || replace(old.id, '"', '""') || '"' AND user_id = old.id);
    INSERT INTO users_search (user_id, username, email, full_name)
    VALUES (new.id, new.username, new.email, new.full_name);
END;

CREATE TRIGGER users_search_delete AFTER DELETE ON users BEGIN
    DELETE FROM users_search WHERE rowid IN
        (SELECT rowid FROM users_search WHERE users_search MATCH 'user_id : "' || replace(old.id, '"', '""') || '"' AND user_id = old.id);
END;
