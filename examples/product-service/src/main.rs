//! Runs the example service:
//!
//! ```sh
//! source .local/registry.env   # REGISTRY_URL and REGISTRY_TOKEN (a token with tenant_router)
//! ZITADEL_ISSUER=https://acme-xyz.zitadel.cloud ZITADEL_PROJECT_ID=263014839178313999 \
//!   cargo run -p tenancy-example-product-service
//! ```

use std::sync::Arc;

use anyhow::Context;
use tenancy_router::{RegistryResolver, RouterConfig, TenantRouter};
use tenancy_zitadel::{Verifier, VerifierConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let env = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
    let resolver = RegistryResolver::new(env("REGISTRY_URL")?, env("REGISTRY_TOKEN")?);
    let router = TenantRouter::new(Arc::new(resolver), RouterConfig::default());
    let verifier = Verifier::new(VerifierConfig::new(
        env("ZITADEL_ISSUER")?,
        env("ZITADEL_PROJECT_ID")?,
    ));
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8090".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    tracing::info!(%listen, "product service listening");
    axum::serve(
        listener,
        tenancy_example_product_service::app(router, Arc::new(verifier)),
    )
    .await?;
    Ok(())
}
