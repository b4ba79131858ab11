-- Provisioning no longer has a `verify` step: the tenant's login is verified while `activate`
-- commits. An operation stored at `verify` (open, or failed and retried later) goes on at
-- `activate`, which does everything `verify` ever did.
UPDATE operations SET step = 'activate' WHERE kind = 'provision' AND step = 'verify';
