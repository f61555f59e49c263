-- Targets paused through the API: a paused target takes no new job (its
-- jobs wait). A target without a row takes jobs. Kept apart from the
-- target's configuration row, so that a reload or an apply of the config
-- does not undo it.
CREATE TABLE target_states (
	target_id  text        PRIMARY KEY,
	state      text        NOT NULL,
	updated_at timestamptz NOT NULL
);
