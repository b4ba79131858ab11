//! `[console]`: the admin console the registry serves under `/console`.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console under `/console` (on by default).
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// The console's OpenID Connect client id in ZITADEL (a web application with PKCE, no
    /// secret). Without it, and with ZITADEL tokens on, the console cannot sign anyone in.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Where browsers reach the registry (`https://registry.example.com`): the redirect URI is
    /// `{public_url}/console/callback`. By default the listen address.
    #[serde(default)]
    pub public_url: Option<String>,
    /// A session ends after this long without a request.
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, however busy.
    #[serde(default = "default_lifetime", with = "humantime_serde")]
    pub session_lifetime: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            client_id: None,
            public_url: None,
            idle_timeout: default_idle(),
            session_lifetime: default_lifetime(),
        }
    }
}

fn default_enabled() -> bool {
    true
}

fn default_idle() -> Duration {
    Duration::from_secs(30 * 60)
}

fn default_lifetime() -> Duration {
    Duration::from_secs(12 * 3600)
}
