-- How connections to each server are encrypted: libpq's sslmode (NULL: verify-full, or plain
-- text on a loopback host) and the CA that signs the server's certificate (PEM; NULL: the
-- public web roots). A CA certificate is public: it is kept here rather than as a file path, so
-- nothing a caller supplies names a file the registry would read.
ALTER TABLE database_servers
    ADD COLUMN sslmode text CHECK (sslmode IN ('disable', 'require', 'verify-ca', 'verify-full')),
    ADD COLUMN ca_pem text;
