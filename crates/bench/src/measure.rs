//! Measuring helpers every benchmark shares: percentiles, formatting, a settled server, a raw
//! clone (the baseline of onboarding).

use std::time::{Duration, Instant};

use anyhow::Result;
use sqlx::{Connection, PgConnection};
use tenancy_testkit::PgCluster;

pub(crate) fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

pub(crate) fn fmt(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub(crate) fn fmt_us(d: Duration) -> String {
    format!("{:.0} us", d.as_secs_f64() * 1e6)
}

/// Waits (untimed) until the server has written out what earlier clones left in its buffers: a
/// `CHECKPOINT`. A single sign-up on a quiet server is what the onboarding figures are about.
pub(crate) async fn settle(admin: &mut PgConnection) -> Result<()> {
    sqlx::raw_sql("CHECKPOINT").execute(admin).await?;
    Ok(())
}

/// `CREATE DATABASE ... TEMPLATE tenant_template`, then a first connection to it: how long
/// until it answered, and how long the clone alone took.
pub(crate) async fn raw_clone(
    admin: &mut PgConnection,
    cluster: &PgCluster,
    name: &str,
) -> Result<(Duration, Duration)> {
    let started = Instant::now();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {name} TEMPLATE tenant_template"
    )))
    .execute(&mut *admin)
    .await?;
    let cloned = started.elapsed();
    let mut conn = PgConnection::connect(&cluster.url(name)).await?;
    sqlx::query("SELECT 1").execute(&mut conn).await?;
    let took = started.elapsed();
    conn.close().await?;
    Ok((took, cloned))
}
