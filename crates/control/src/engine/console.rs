//! The admin console's sessions, for the registry's console (which has no database of its own).

use std::time::Duration;

use serde_json::Value;

use super::Engine;
use crate::error::ControlError;
use crate::store::ConsoleSession;

impl Engine {
    /// Starts a session known by the SHA-256 of its cookie id, for `lifetime` at most.
    pub async fn start_console_session(
        &self,
        id_hash: &[u8],
        caller: &Value,
        id_token: Option<&str>,
    ) -> Result<(), ControlError> {
        let lifetime = self.config().console.session_lifetime;
        self.store()
            .start_console_session(id_hash, caller, id_token, lifetime)
            .await
    }

    /// The live session with this id hash (marked seen), or none: unknown, expired or idle.
    pub async fn console_session(
        &self,
        id_hash: &[u8],
    ) -> Result<Option<ConsoleSession>, ControlError> {
        let idle: Duration = self.config().console.idle_timeout;
        self.store().touch_console_session(id_hash, idle).await
    }

    /// Ends a session; its ID token, when it was live and had one.
    pub async fn end_console_session(
        &self,
        id_hash: &[u8],
    ) -> Result<Option<Option<String>>, ControlError> {
        self.store().end_console_session(id_hash).await
    }
}
