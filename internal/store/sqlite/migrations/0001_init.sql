-- Times are INTEGER microseconds since the Unix epoch (UTC); NULL is the
-- zero time.Time. Lists (labels, routes, pool targets) are JSON text.

CREATE TABLE tenants (
	id            TEXT PRIMARY KEY,
	max_instances INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Secrets (webhook secret, token) are never stored.
CREATE TABLE targets (
	id        TEXT PRIMARY KEY,
	tenant_id TEXT NOT NULL,
	data      TEXT NOT NULL
) STRICT;

CREATE TABLE pools (
	id        TEXT PRIMARY KEY,
	tenant_id TEXT NOT NULL,
	data      TEXT NOT NULL
) STRICT;

CREATE TABLE jobs (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	target_id    TEXT    NOT NULL,
	tenant_id    TEXT    NOT NULL,
	forge_job_id INTEGER NOT NULL,
	run_id       INTEGER NOT NULL,
	run_attempt  INTEGER NOT NULL,
	repo         TEXT    NOT NULL,
	name         TEXT    NOT NULL,
	labels       TEXT    NOT NULL,
	state        TEXT    NOT NULL,
	conclusion   TEXT    NOT NULL,
	routes       TEXT    NOT NULL,
	reason       TEXT    NOT NULL,
	pool_id      TEXT    NOT NULL,
	instance_id  TEXT    NOT NULL,
	runner_name  TEXT    NOT NULL,
	created_at   INTEGER,
	queued_at    INTEGER,
	started_at   INTEGER,
	completed_at INTEGER,
	updated_at   INTEGER,
	UNIQUE (target_id, forge_job_id)
) STRICT;
CREATE INDEX jobs_state ON jobs (state, id);
CREATE INDEX jobs_open ON jobs (id) WHERE state <> 'completed';
CREATE INDEX jobs_pool ON jobs (pool_id, id);

CREATE TABLE events (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	at          INTEGER,
	kind        TEXT    NOT NULL,
	instance_id TEXT    NOT NULL,
	detail      TEXT    NOT NULL
) STRICT;
CREATE INDEX events_job ON events (job_id, at, id);

-- name is NULL until the instance has one, so unnamed rows do not collide.
CREATE TABLE instances (
	id          TEXT PRIMARY KEY,
	name        TEXT UNIQUE,
	pool_id     TEXT    NOT NULL,
	tenant_id   TEXT    NOT NULL,
	target_id   TEXT    NOT NULL,
	state       TEXT    NOT NULL,
	labels      TEXT    NOT NULL,
	cpu         INTEGER NOT NULL,
	memory_mb   INTEGER NOT NULL,
	disk_mb     INTEGER NOT NULL,
	arch        TEXT    NOT NULL,
	job_id      INTEGER NOT NULL,
	provider_id TEXT    NOT NULL,
	runner_id   INTEGER NOT NULL,
	attempts    INTEGER NOT NULL,
	last_error  TEXT    NOT NULL,
	reason      TEXT    NOT NULL,
	created_at  INTEGER,
	started_at  INTEGER,
	online_at   INTEGER,
	busy_at     INTEGER,
	drain_at    INTEGER,
	deleted_at  INTEGER,
	expires_at  INTEGER,
	updated_at  INTEGER
) STRICT;
CREATE INDEX instances_state ON instances (state, id);
-- Live rows in id order: the reconciler's listing walks it without a sort
-- and without touching the deleted rows that pile up.
CREATE INDEX instances_live ON instances (id) WHERE state <> 'deleted';
CREATE INDEX instances_pool ON instances (pool_id, state);
CREATE INDEX instances_tenant ON instances (tenant_id, state);
CREATE INDEX instances_job ON instances (job_id);

CREATE TABLE deliveries (
	target_id   TEXT    NOT NULL,
	delivery_id TEXT    NOT NULL,
	at          INTEGER NOT NULL,
	PRIMARY KEY (target_id, delivery_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX deliveries_at ON deliveries (at);

CREATE TABLE leases (
	name       TEXT PRIMARY KEY,
	holder     TEXT    NOT NULL,
	expires_at INTEGER NOT NULL
) STRICT;
