-- Grants of instances that fetch their own bootstrap (garm providers):
-- only the SHA-256 of the instance token is kept, and the bootstrap is
-- sealed with a key derived from the token. used lists the single-use
-- pieces given, one per line, between newlines.
CREATE TABLE instance_grants (
	hash        BLOB    PRIMARY KEY,
	instance_id TEXT    NOT NULL,
	sealed      BLOB    NOT NULL,
	fetch_by    INTEGER NOT NULL,
	call_by     INTEGER NOT NULL,
	used        TEXT    NOT NULL
) STRICT;
CREATE INDEX instance_grants_instance ON instance_grants (instance_id);
CREATE INDEX instance_grants_call_by ON instance_grants (call_by);
