-- Grants of instances that fetch their own bootstrap (garm providers):
-- only the SHA-256 of the instance token is kept, and the bootstrap is
-- sealed with a key derived from the token. used lists the single-use
-- pieces given, one per line, between newlines.
CREATE TABLE instance_grants (
	hash        bytea       PRIMARY KEY,
	instance_id text        NOT NULL,
	sealed      bytea       NOT NULL,
	fetch_by    timestamptz NOT NULL,
	call_by     timestamptz NOT NULL,
	used        text        NOT NULL
);
CREATE INDEX instance_grants_instance ON instance_grants (instance_id);
CREATE INDEX instance_grants_call_by ON instance_grants (call_by);
