-- The catalog version (one row), bumped by every change of tenants, targets
-- or pools; the lease's fencing token; pools resting after failures.
CREATE TABLE catalog_version (
	id      INTEGER PRIMARY KEY CHECK (id = 1),
	version INTEGER NOT NULL
) STRICT;
INSERT INTO catalog_version (id, version) VALUES (1, 0);

ALTER TABLE leases ADD COLUMN token INTEGER NOT NULL DEFAULT 0;

CREATE TABLE backoffs (
	pool_id    TEXT    NOT NULL,
	kind       TEXT    NOT NULL,
	failures   INTEGER NOT NULL,
	until      INTEGER NOT NULL,
	last_error TEXT    NOT NULL,
	PRIMARY KEY (pool_id, kind)
) STRICT;
