-- A server registered or re-activated by a tool (tenantctl) is placed on only once a registry
-- replica has connected to it itself: the tool records the request, a replica activates it.
ALTER TABLE database_servers ADD COLUMN activation_requested_at timestamptz;
