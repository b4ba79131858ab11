//! `console_sessions`: the admin console's sessions. Rows are found by the SHA-256 of the
//! cookie's id; a session ends at its absolute expiry or after `idle` without a request.

use std::time::Duration;

use serde_json::Value;

use super::Store;
use crate::error::ControlError;

/// A live session: who signed in, and their ID token (for signing out of ZITADEL too).
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub caller: Value,
    pub id_token: Option<String>,
}

impl Store {
    /// Starts a session (and drops every expired one).
    pub async fn start_console_session(
        &self,
        id_hash: &[u8],
        caller: &Value,
        id_token: Option<&str>,
        lifetime: Duration,
    ) -> Result<(), ControlError> {
        self.run("start_console_session", async {
            sqlx::query("DELETE FROM console_sessions WHERE expires_at < now()")
                .execute(self.pool())
                .await?;
            sqlx::query(
                "INSERT INTO console_sessions (id_hash, caller, id_token, expires_at)
                 VALUES ($1, $2, $3, now() + $4 * interval '1 second')",
            )
            .bind(id_hash)
            .bind(caller)
            .bind(id_token)
            .bind(lifetime.as_secs_f64())
            .execute(self.pool())
            .await?;
            Ok(())
        })
        .await
    }

    /// The session, if it is neither expired nor idle for longer than `idle`; marks it seen.
    pub async fn touch_console_session(
        &self,
        id_hash: &[u8],
        idle: Duration,
    ) -> Result<Option<ConsoleSession>, ControlError> {
        self.run("touch_console_session", async {
            let row: Option<(Value, Option<String>)> = sqlx::query_as(
                "UPDATE console_sessions SET last_seen = now()
                 WHERE id_hash = $1 AND expires_at > now()
                   AND last_seen > now() - $2 * interval '1 second'
                 RETURNING caller, id_token",
            )
            .bind(id_hash)
            .bind(idle.as_secs_f64())
            .fetch_optional(self.pool())
            .await?;
            Ok(row.map(|(caller, id_token)| ConsoleSession { caller, id_token }))
        })
        .await
    }

    /// Ends the session; its ID token, if it had one, for signing out of ZITADEL.
    pub async fn end_console_session(
        &self,
        id_hash: &[u8],
    ) -> Result<Option<Option<String>>, ControlError> {
        self.run("end_console_session", async {
            let row: Option<(Option<String>,)> = sqlx::query_as(
                "DELETE FROM console_sessions WHERE id_hash = $1 RETURNING id_token",
            )
            .bind(id_hash)
            .fetch_optional(self.pool())
            .await?;
            Ok(row.map(|(token,)| token))
        })
        .await
    }
}
