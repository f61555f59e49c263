-- API bearer tokens: only the SHA-256 of a token's secret is kept.
CREATE TABLE tokens (
	id         TEXT    PRIMARY KEY,
	name       TEXT    NOT NULL,
	scope      TEXT    NOT NULL,
	tenant_id  TEXT    NOT NULL,
	hash       BLOB    NOT NULL UNIQUE,
	created_at INTEGER NOT NULL,
	expires_at INTEGER,
	revoked_at INTEGER,
	last_used  INTEGER
) STRICT;
