-- API bearer tokens: only the SHA-256 of a token's secret is kept.
CREATE TABLE tokens (
	id         text        PRIMARY KEY,
	name       text        NOT NULL,
	scope      text        NOT NULL,
	tenant_id  text        NOT NULL,
	hash       bytea       NOT NULL UNIQUE,
	created_at timestamptz NOT NULL,
	expires_at timestamptz,
	revoked_at timestamptz,
	last_used  timestamptz
);
