-- A server's tenant count (placement on every onboarding, the servers list, gauges) counts
-- every status: the partial index of V1 cannot answer it, so at fleet size it read every tenant.
CREATE INDEX tenants_by_server ON tenants (server_id);
DROP INDEX tenants_server;
