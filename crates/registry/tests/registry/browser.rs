//! The admin console in a real browser: Debian's Chromium, headless, driven through ChromeDriver
//! (WebDriver, with fantoccini). A platform admin signs in through the stand-in's authorization
//! endpoint and login page, finds a tenant, suspends it, watches the operation finish and signs
//! out; a tenant admin sees only their tenant. Screenshots of the pages are taken on the way
//! (into `TENANCY_SCREENSHOTS`, `docs/images` by `scripts/console-screenshots.sh`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tenancy_testkit::{TokenClaims, ZitadelStandIn, eventually};
use tenancy_zitadel::roles;

use crate::console::{onboard, with_zitadel};

/// ChromeDriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> (Self, Client) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; `make test` installs it)");
        let profile = tempfile::tempdir().unwrap();
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _profile: profile,
        };
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                         format!("--user-data-dir={}", driver._profile.path().display())],
            }),
        );
        let url = driver.url.clone();
        let client = eventually(Duration::from_secs(20), "ChromeDriver answers", || {
            let capabilities = capabilities.clone();
            let url = url.clone();
            async move {
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&url)
                    .await
                    .ok()
            }
        })
        .await;
        (driver, client)
    }
}

/// Where screenshots go: `TENANCY_SCREENSHOTS`, or a directory that lives as long as the test.
fn screenshots() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("TENANCY_SCREENSHOTS") {
        Some(dir) => (PathBuf::from(dir), None),
        None => {
            let dir = tempfile::tempdir().unwrap();
            (dir.path().to_owned(), Some(dir))
        }
    }
}

async fn shot(browser: &Client, dir: &std::path::Path, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(format!("console-{name}.png")), png).unwrap();
}

/// The page's text. A page that reloads itself (one following an operation) can replace the
/// body between finding and reading it: then read the new one.
async fn text(browser: &Client) -> String {
    for _ in 0..20 {
        if let Ok(body) = browser.find(Locator::Css("body")).await
            && let Ok(text) = body.text().await
        {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the page's body could not be read");
}

/// Signs `login` in: the console's sign-in page, ZITADEL's (the stand-in's) login form, back.
async fn sign_in(browser: &Client, base: &str, login: &str) {
    browser.goto(&format!("{base}/console")).await.unwrap();
    browser
        .find(Locator::Id("signin-zitadel"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::Id("loginName"))
        .await
        .unwrap()
        .send_keys(login)
        .await
        .unwrap();
    browser
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("secret")
        .await
        .unwrap();
    browser
        .find(Locator::Id("submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::Id("signout"))
        .await
        .unwrap();
}

#[tokio::test]
async fn in_chromium_a_platform_admin_suspends_a_tenant_and_a_tenant_admin_sees_only_theirs() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let app = with_zitadel(&zitadel, Duration::from_secs(600)).await;
    zitadel.add_person(
        "ada",
        "secret",
        TokenClaims::platform("263014839179200031", roles::PLATFORM_ADMIN),
    );
    zitadel.add_person(
        "jane",
        "secret",
        TokenClaims::new(
            "263014839179200032",
            "263014839179300032",
            roles::TENANT_ADMIN,
        ),
    );
    onboard(&app, "263014839179300031", "Acme Corp").await;
    onboard(&app, "263014839179300032", "Globex").await;
    let base = app.base().to_owned();
    let (dir, _keep) = screenshots();
    let (_driver, browser) = Driver::start().await;

    sign_in(&browser, &base, "ada").await;
    assert!(text(&browser).await.contains("Fleet"));
    shot(&browser, &dir, "overview").await;
    browser
        .goto(&format!("{base}/console/tenants"))
        .await
        .unwrap();
    let list = text(&browser).await;
    assert!(
        list.contains("Acme Corp") && list.contains("Globex"),
        "{list}"
    );
    shot(&browser, &dir, "tenants").await;
    // Search by a part of the name, any case.
    browser
        .find(Locator::Css("input[name=q]"))
        .await
        .unwrap()
        .send_keys("ACME")
        .await
        .unwrap();
    browser
        .find(Locator::Css("form.filter button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::Css("input[name=q][value=ACME]"))
        .await
        .unwrap();
    let found = text(&browser).await;
    assert!(
        found.contains("Acme Corp") && !found.contains("Globex"),
        "{found}"
    );
    browser
        .find(Locator::LinkText("263014839179300031"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::Id("confirm-suspend"))
        .await
        .unwrap()
        .send_keys("263014839179300031")
        .await
        .unwrap();
    browser
        .find(Locator::Id("action-suspend"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The page reloads itself until the operation ends.
    eventually(
        Duration::from_secs(30),
        "the page shows the tenant suspended",
        || {
            let browser = browser.clone();
            async move {
                let status = browser.find(Locator::Id("status")).await.ok()?;
                let status = status.text().await.ok()?;
                let page = text(&browser).await;
                (status.starts_with("suspended") && !page.contains("under way")).then_some(())
            }
        },
    )
    .await;
    shot(&browser, &dir, "tenant").await;
    browser
        .goto(&format!("{base}/console/operations?kind=suspend"))
        .await
        .unwrap();
    let operations = text(&browser).await;
    assert!(
        operations.contains("263014839179300031") && operations.contains("succeeded"),
        "{operations}"
    );
    shot(&browser, &dir, "operations").await;
    browser
        .goto(&format!("{base}/console/migrations"))
        .await
        .unwrap();
    assert!(text(&browser).await.contains("Schema versions"));
    shot(&browser, &dir, "migrations").await;
    browser
        .find(Locator::Id("signout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::Id("signin-zitadel"))
        .await
        .unwrap();
    assert!(zitadel.signed_out("263014839179200031"));
    browser.goto(&format!("{base}/console")).await.unwrap();
    assert!(
        browser
            .current_url()
            .await
            .unwrap()
            .path()
            .starts_with("/console/signin"),
        "signed out"
    );

    sign_in(&browser, &base, "jane").await;
    let mine = text(&browser).await;
    assert!(
        mine.contains("263014839179300032") && !mine.contains("263014839179300031"),
        "{mine}"
    );
    browser
        .goto(&format!("{base}/console/tenants/263014839179300031"))
        .await
        .unwrap();
    let other = text(&browser).await;
    assert!(
        other.contains("Forbidden") && !other.contains("Acme Corp"),
        "{other}"
    );
    browser.close().await.unwrap();
}
