-- The console's operations page and overview read operations across tenants by state, newest
-- first (failed ones, say, among many succeeded).
CREATE INDEX operations_by_state ON operations (state, created_at DESC, id DESC);
