//! How connections to a database server are encrypted, with libpq's `sslmode` names.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// libpq's `sslmode`, less `allow` and `prefer` (which fall back to plain text silently).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plain text.
    Disable,
    /// Encrypted; the server's certificate is not checked.
    Require,
    /// Encrypted; the certificate is signed by the CA, whatever host it names.
    VerifyCa,
    /// Encrypted; the certificate is signed by the CA and names the host.
    VerifyFull,
}

/// Whether a host name or address (`localhost`, `127.0.0.1`, `[::1]`) is this machine.
pub fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl SslMode {
    /// The default for a host: plain text on loopback, `verify-full` everywhere else.
    pub fn default_for(host: &str) -> Self {
        if is_loopback_host(host) {
            SslMode::Disable
        } else {
            SslMode::VerifyFull
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the connection is encrypted at all.
    pub fn encrypts(self) -> bool {
        self != SslMode::Disable
    }
}

impl FromStr for SslMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "disable" => Ok(SslMode::Disable),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(format!(
                "unknown sslmode {other:?}: disable, require, verify-ca or verify-full"
            )),
        }
    }
}

impl TryFrom<String> for SslMode {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        value.parse()
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_may_stay_plain_and_everything_else_is_verified() {
        for host in ["127.0.0.1", "::1", "[::1]", "localhost", "127.1.2.3"] {
            assert_eq!(SslMode::default_for(host), SslMode::Disable, "{host}");
        }
        for host in ["db.example.com", "10.0.0.12", "fe80::1"] {
            assert_eq!(SslMode::default_for(host), SslMode::VerifyFull, "{host}");
        }
        assert_eq!(
            serde_json::to_value(SslMode::VerifyFull).unwrap(),
            "verify-full"
        );
        assert_eq!("verify-ca".parse::<SslMode>().unwrap(), SslMode::VerifyCa);
    }
}
