-- Every term of a lease, and the fenced writes committed in it: counted in
-- the same transaction as each write (CheckFence), so the database itself
-- shows whether a stale term ever committed anything after a take-over.
CREATE TABLE lease_terms (
	name       text        NOT NULL,
	term       bigint      NOT NULL,
	holder     text        NOT NULL,
	started_at timestamptz NOT NULL,
	writes     bigint      NOT NULL DEFAULT 0,
	PRIMARY KEY (name, term)
);
INSERT INTO lease_terms (name, term, holder, started_at)
	SELECT name, token, holder, now() FROM leases WHERE token > 0;
