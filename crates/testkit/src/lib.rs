//! Test kit: real, throw-away PostgreSQL clusters on free loopback ports, a fleet builder that
//! turns clusters into the configuration the control plane reads, one `eventually` helper, and a
//! ZITADEL stand-in that serves ZITADEL's documented HTTP contract.
//!
//! A [`PgCluster`] is a private `initdb` + `pg_ctl` cluster under the system temp directory. It is
//! stopped and removed when dropped (also while a test unwinds from a panic), and a watchdog process
//! stops it if the test process is killed outright. When the tests run as root, PostgreSQL runs as
//! an unprivileged user (`postgres`, else `nobody`), since initdb refuses to run as root.

mod eventually;
mod fleet;
mod pg;
mod s3;
mod tls;
mod zitadel;

pub use eventually::eventually;
pub use fleet::{FleetBuilder, MASTER_KEY, MASTER_KEY_ENV, TestFleet, TestServer};
pub use pg::{ClusterOptions, PgCluster, pg_bin_dir};
pub use s3::S3Server;
pub use tls::{Issued, TestCa};
pub use zitadel::{
    Org, PAT as ZITADEL_PAT, PLATFORM_ORG_ID, PROJECT_ID, Project as ZitadelProject, TokenClaims,
    User, ZitadelStandIn,
};

/// Prints the code's tracing output during tests when `TEST_LOG=1`; quiet otherwise.
pub fn init_test_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info,sqlx=warn".into()),
            )
            .with_test_writer()
            .try_init();
    }
}
