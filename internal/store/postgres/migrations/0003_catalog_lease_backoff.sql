-- The catalog version (one row), bumped by every change of tenants, targets
-- or pools; the lease's fencing token; pools resting after failures.
CREATE TABLE catalog_version (
	id      integer PRIMARY KEY CHECK (id = 1),
	version bigint  NOT NULL
);
INSERT INTO catalog_version (id, version) VALUES (1, 0);

ALTER TABLE leases ADD COLUMN token bigint NOT NULL DEFAULT 0;

CREATE TABLE backoffs (
	pool_id    text        NOT NULL,
	kind       text        NOT NULL,
	failures   integer     NOT NULL,
	until      timestamptz NOT NULL,
	last_error text        NOT NULL,
	PRIMARY KEY (pool_id, kind)
);
