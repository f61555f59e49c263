-- Every term of a lease, and the fenced writes committed in it: counted in
-- the same transaction as each write (CheckFence), so the database itself
-- shows whether a stale term ever committed anything after a take-over.
CREATE TABLE lease_terms (
	name       TEXT    NOT NULL,
	term       INTEGER NOT NULL,
	holder     TEXT    NOT NULL,
	started_at INTEGER NOT NULL,
	writes     INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (name, term)
) STRICT;
INSERT INTO lease_terms (name, term, holder, started_at)
	SELECT name, token, holder, CAST(unixepoch('subsec') * 1000000 AS INTEGER) FROM leases WHERE token > 0;
