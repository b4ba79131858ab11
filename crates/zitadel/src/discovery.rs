//! OIDC discovery: every endpoint is read from `{issuer}/.well-known/openid-configuration`, once.

use serde::Deserialize;
use tokio::sync::OnceCell;

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Endpoints {
    pub jwks_uri: String,
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
}

/// The issuer's endpoints, fetched on first use and kept; a failed fetch is retried next time.
pub(crate) struct Discovery {
    issuer: String,
    endpoints: OnceCell<Endpoints>,
}

impl Discovery {
    pub fn new(issuer: &str) -> Self {
        Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            endpoints: OnceCell::new(),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The endpoints, or why they could not be read.
    pub async fn endpoints(&self, http: &reqwest::Client) -> Result<&Endpoints, String> {
        self.endpoints
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/openid-configuration", self.issuer);
                let response = http.get(&url).send().await.map_err(|e| e.to_string())?;
                if !response.status().is_success() {
                    return Err(format!("discovery answered {}", response.status()));
                }
                response
                    .json::<Endpoints>()
                    .await
                    .map_err(|e| format!("discovery document: {e}"))
            })
            .await
    }
}
