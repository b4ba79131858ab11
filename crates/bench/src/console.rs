//! What the admin console costs API requests: `GET /v1/tenants/{org_id}` on a registry that
//! serves the console beside the same request on one that does not (`[console] enabled =
//! false`), in alternating rounds so both see the same machine.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use tenancy_registry::testing::{DEV_TOKEN, InProcessRegistry, dev_settings};

use crate::measure::{fmt_us, percentiles};

pub(crate) async fn console(requests: usize) -> Result<()> {
    let with = InProcessRegistry::start_with(dev_settings(), Vec::new(), |_| {}).await?;
    let without = InProcessRegistry::start_with(dev_settings(), Vec::new(), |config| {
        config.console.enabled = false;
    })
    .await?;
    with.onboard("1", "Console on").await?;
    without.onboard("1", "Console off").await?;
    let http = reqwest::Client::new();
    let served = http
        .get(format!("{}/console/signin", with.base))
        .send()
        .await?;
    let absent = http
        .get(format!("{}/console/signin", without.base))
        .send()
        .await?;
    ensure!(
        served.status().is_success() && absent.status() == 404,
        "console on and off"
    );

    let (mut on, mut off) = (Vec::new(), Vec::new());
    const ROUND: usize = 200;
    for _ in 0..requests.div_ceil(ROUND) {
        for (base, samples) in [(&with.base, &mut on), (&without.base, &mut off)] {
            for _ in 0..ROUND {
                let started = Instant::now();
                let response = http
                    .get(format!("{base}/v1/tenants/1"))
                    .bearer_auth(DEV_TOKEN)
                    .send()
                    .await?;
                ensure!(
                    response.status().is_success(),
                    "GET answered {}",
                    response.status()
                );
                response.bytes().await?;
                samples.push(started.elapsed());
            }
        }
    }
    let (on50, on99) = percentiles(&mut on);
    let (off50, off99) = percentiles(&mut off);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "console: GET /v1/tenants/{{org_id}} x{} each: with the console p50 {} p99 {}, without p50 {} p99 {} (p50 ratio {:.2}x)",
        on.len(),
        fmt_us(on50),
        fmt_us(on99),
        fmt_us(off50),
        fmt_us(off99),
        ratio(on50, off50),
    );
    Ok(())
}
