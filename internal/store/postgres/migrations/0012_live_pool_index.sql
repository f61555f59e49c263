-- instances_pool holds live instances only: a scheduler pass counts the
-- live instances by pool and state (InstanceCounts) from this index,
-- however many deleted rows pile up, and a pool's count for its limit
-- walks its live rows only.
DROP INDEX instances_pool;
CREATE INDEX instances_pool ON instances (pool_id, state) WHERE state <> 'deleted';
