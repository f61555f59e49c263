-- Each instance records the provider instance that makes and deletes it,
-- and the providers table keeps every provider instance declared (its type
-- and settings; secrets by reference only), so that a provider removed
-- from the config can still be opened to delete what it made.
ALTER TABLE instances ADD COLUMN provider TEXT NOT NULL DEFAULT '';

CREATE TABLE providers (
	name       TEXT PRIMARY KEY,
	type       TEXT NOT NULL,
	settings   TEXT NOT NULL,
	updated_at INTEGER
) STRICT;
