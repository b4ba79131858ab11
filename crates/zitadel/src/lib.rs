//! ZITADEL integration: token verification, management API client, webhook checks (filled by the ZITADEL issue).
