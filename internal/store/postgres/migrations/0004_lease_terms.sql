-- Every term of a lease, and the fenced writes committed in it: counted in
-- the same transaction as each write (CheckFence), so the database itself
-- shows whether a stale term ever committed anything after a take-over.
-- The count is kept per server process (slot = pg_backend_pid()) and
-- summed when read: one row per term would be updated by every fenced
-- write of the leader, whose transactions would then queue on it until
-- their commits (BenchmarkFencedWrite, docs/benchmarks.md).
CREATE TABLE lease_terms (
	name       text        NOT NULL,
	term       bigint      NOT NULL,
	holder     text        NOT NULL,
	started_at timestamptz NOT NULL,
	PRIMARY KEY (name, term)
);
INSERT INTO lease_terms (name, term, holder, started_at)
	SELECT name, token, holder, now() FROM leases WHERE token > 0;

CREATE TABLE lease_term_writes (
	name   text    NOT NULL,
	term   bigint  NOT NULL,
	slot   integer NOT NULL,
	writes bigint  NOT NULL,
	PRIMARY KEY (name, term, slot)
);
