-- Operational state of a pool set through the API (paused, draining); a
-- pool without a row is active. Kept apart from the pool's configuration
-- row, so that a reload or an apply of the config does not undo it.
CREATE TABLE pool_states (
	pool_id    text        PRIMARY KEY,
	state      text        NOT NULL,
	updated_at timestamptz NOT NULL
);
