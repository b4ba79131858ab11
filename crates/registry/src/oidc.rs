//! The admin console's sign-in settings and its OpenID Connect client of ZITADEL (the
//! console's handlers are in `console`; this is what the application state holds).

use axum::http::HeaderValue;
use openidconnect::core::CoreClient;
use openidconnect::{ClientId, IssuerUrl, ProviderMetadataWithLogout, RedirectUrl, reqwest};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// How this registry's console signs people in.
pub struct Console {
    /// Sign-in through ZITADEL, when `[console] client_id` and the ZITADEL issuer are set.
    pub oidc: Option<Oidc>,
    /// The development token as a sign-in (no ZITADEL, loopback only).
    pub dev_sign_in: bool,
    /// Cookies are `Secure` (the console is served over TLS, or its public URL is https).
    pub secure: bool,
    /// The origin state-changing requests must come from (`https://host:port`).
    pub origin: String,
    /// The registry's ZITADEL project, whose roles the console asks for at sign-in.
    pub project_id: String,
    /// The Content-Security-Policy: no script at all; forms post here, or (signing out) lead
    /// to ZITADEL.
    pub csp: HeaderValue,
}

impl Console {
    /// The console of a registry with these settings, reached at `[console] public_url` (by
    /// default the address it listens on).
    pub fn new(
        settings: &crate::settings::Settings,
        config: &tenancy_control::ConsoleConfig,
        local: std::net::SocketAddr,
        tls: bool,
    ) -> anyhow::Result<Self> {
        let scheme = if tls { "https" } else { "http" };
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{local}"))
            .trim_end_matches('/')
            .to_owned();
        let parsed = url::Url::parse(&public_url)
            .map_err(|e| anyhow::anyhow!("[console] public_url {public_url:?}: {e}"))?;
        if parsed.path() != "/" || parsed.query().is_some() {
            anyhow::bail!(
                "[console] public_url must be an origin (scheme, host, port), not {public_url:?}"
            );
        }
        let origin = parsed.origin().ascii_serialization();
        let issuer = settings.zitadel.issuer.as_deref();
        let oidc = match (issuer, &config.client_id) {
            (Some(issuer), Some(client_id)) => Some(Oidc::new(issuer, client_id, &origin)?),
            _ => None,
        };
        let issuer_origin = issuer
            .and_then(|i| url::Url::parse(i).ok())
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        let csp = format!(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; \
             form-action 'self' {issuer_origin}; frame-ancestors 'none'; base-uri 'none'"
        );
        Ok(Self {
            oidc,
            dev_sign_in: settings.dev_token.is_some(),
            secure: parsed.scheme() == "https",
            origin,
            project_id: settings.zitadel.project_id.clone().unwrap_or_default(),
            csp: HeaderValue::from_str(&csp)?,
        })
    }
}

/// How long discovery (and the keys it lists) is reused: ZITADEL's keys may be cached about
/// five minutes.
const METADATA_TTL: Duration = Duration::from_secs(300);

/// The console's OpenID Connect client of ZITADEL.
pub struct Oidc {
    issuer: String,
    pub(crate) client_id: String,
    redirect_uri: String,
    pub(crate) post_logout_uri: String,
    pub(crate) http: reqwest::Client,
    /// Discovery and its keys, refetched when older than [`METADATA_TTL`] (keys rotate).
    metadata: Mutex<Option<(Instant, Arc<ProviderMetadataWithLogout>)>>,
}

impl Oidc {
    pub fn new(issuer: &str, client_id: &str, public_url: &str) -> anyhow::Result<Self> {
        let http = reqwest::ClientBuilder::new()
            // An identity provider's redirect must never be followed by the server (SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        Ok(Self {
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            redirect_uri: format!("{public_url}/console/callback"),
            post_logout_uri: format!("{public_url}/console/signin"),
            http,
            metadata: Mutex::new(None),
        })
    }

    /// The provider's metadata and keys; `fresh` refetches them (an ID token signed with a key
    /// not seen yet).
    pub(crate) async fn metadata(
        &self,
        fresh: bool,
    ) -> anyhow::Result<Arc<ProviderMetadataWithLogout>> {
        let mut cached = self.metadata.lock().await;
        if let Some((at, metadata)) = cached.as_ref()
            && !fresh
            && at.elapsed() < METADATA_TTL
        {
            return Ok(metadata.clone());
        }
        let issuer = IssuerUrl::new(self.issuer.clone())?;
        let metadata =
            Arc::new(ProviderMetadataWithLogout::discover_async(issuer, &self.http).await?);
        *cached = Some((Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    pub(crate) async fn client(
        &self,
        fresh: bool,
    ) -> anyhow::Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
    > {
        let metadata = (*self.metadata(fresh).await?).clone();
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.client_id.clone()),
            None,
        )
        .set_redirect_uri(RedirectUrl::new(self.redirect_uri.clone())?))
    }
}
