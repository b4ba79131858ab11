//! Per-tenant settings: secrets sealed at rest, shown only to whom may see them, re-sealed by a
//! master-key rotation; features resolved from the tier and the tenant's overrides.

use secrecy::SecretString;
use serde_json::json;
use sqlx::Row;
use tenancy_control::{Authority, ControlError, Engine, Secrets};
use tenancy_core::{CreateTenant, ErrorCode, PutSetting, SettingKey, SettingType};
use tenancy_testkit::{MASTER_KEY, TestFleet};

use crate::helpers::*;

const SECRET: &str = "hunter2-smtp-password-never-in-clear";

fn key(text: &str) -> SettingKey {
    text.parse().unwrap()
}

fn put(kind: SettingType, value: serde_json::Value) -> PutSetting {
    PutSetting { kind, value }
}

/// Sets a JSON setting and reads it back from the registry.
async fn put_json_and_read(
    engine: &Engine,
    tenant: &tenancy_core::OrgId,
    name: &str,
    value: serde_json::Value,
) -> Option<serde_json::Value> {
    engine
        .put_setting(
            tenant,
            &key(name),
            put(SettingType::Json, value),
            Authority::Platform,
            &actor(),
        )
        .await
        .unwrap();
    engine
        .setting(tenant, &key(name), Secrets::Reveal)
        .await
        .unwrap()
        .value
}

async fn change_seq(fleet: &TestFleet, org_id: &str) -> i64 {
    sqlx::query_scalar("SELECT change_seq FROM tenants WHERE org_id = $1")
        .bind(org_id)
        .fetch_one(&mut registry(fleet).await)
        .await
        .unwrap()
}

#[tokio::test]
async fn secrets_are_sealed_at_rest_redacted_for_tenants_and_survive_a_master_key_rotation() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine(&fleet).await;
    let mut professional: CreateTenant = request("7101", "Settings Co");
    professional.tier = Some("professional".parse().unwrap());
    engine.onboard(professional, &actor()).await.unwrap();
    let acme = org("7101");

    let before = change_seq(&fleet, "7101").await;
    let shown = engine
        .put_setting(
            &acme,
            &key("smtp.password"),
            put(SettingType::Secret, json!(SECRET)),
            Authority::Platform,
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(shown.value, None, "a secret is not repeated");
    assert!(
        change_seq(&fleet, "7101").await > before,
        "routers hear of it"
    );
    engine
        .put_setting(
            &acme,
            &key("smtp.host"),
            put(SettingType::String, json!("mail.example")),
            Authority::Platform,
            &actor(),
        )
        .await
        .unwrap();

    // Nowhere in the registry database in plain text: not the settings, not the audit log.
    let mut db = registry(&fleet).await;
    for table in ["tenant_settings", "audit_events"] {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT t::text AS row FROM {table} t"
        )))
        .fetch_all(&mut db)
        .await
        .unwrap();
        assert!(!rows.is_empty());
        for row in rows {
            let text: String = row.get("row");
            assert!(!text.contains(SECRET), "{table}: {text}");
            assert!(!text.contains(&hex(SECRET)), "{table}: {text}");
        }
    }
    let audited: serde_json::Value = sqlx::query_scalar(
        "SELECT after FROM audit_events WHERE action = 'setting.put' ORDER BY id LIMIT 1",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(audited["value"], "[redacted]");

    let redacted = engine
        .setting(&acme, &key("smtp.password"), Secrets::Redact)
        .await
        .unwrap();
    assert_eq!((redacted.kind, redacted.value), (SettingType::Secret, None));
    let revealed = engine
        .setting(&acme, &key("smtp.password"), Secrets::Reveal)
        .await
        .unwrap();
    assert_eq!(revealed.value, Some(json!(SECRET)));

    // Rotate the master key: re-sealed, readable under the new key alone.
    let new_key = "another-master-key-for-settings-0123456789";
    let mut rotating = config(&fleet);
    rotating.engine.master_key = Some(SecretString::from(new_key));
    rotating.engine.previous_master_key = Some(SecretString::from(MASTER_KEY));
    let rotating = Engine::start(rotating).await.unwrap();
    assert_eq!(rotating.reseal_settings().await.unwrap(), 1);
    assert_eq!(rotating.reseal_settings().await.unwrap(), 0, "nothing left");
    let mut rotated = config(&fleet);
    rotated.engine.master_key = Some(SecretString::from(new_key));
    let rotated = Engine::start(rotated).await.unwrap();
    let revealed = rotated
        .setting(&acme, &key("smtp.password"), Secrets::Reveal)
        .await
        .unwrap();
    assert_eq!(revealed.value, Some(json!(SECRET)));
    // The old key alone no longer opens it: it really was re-sealed.
    let err = engine
        .setting(&acme, &key("smtp.password"), Secrets::Reveal)
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::Config(_)), "{err}");
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn features_are_the_tiers_with_the_tenants_overrides_and_bad_values_change_nothing() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine(&fleet).await;
    let mut business: CreateTenant = request("7201", "Featured");
    business.tier = Some("business".parse().unwrap());
    engine.onboard(business, &actor()).await.unwrap();
    let tenant = org("7201");

    let names = |f: &tenancy_core::EffectiveFeatures| {
        f.enabled.iter().map(|n| n.to_string()).collect::<Vec<_>>()
    };
    let features = engine.features(&tenant).await.unwrap();
    assert_eq!(names(&features), ["api_access", "audit_export", "sso"]);
    for (name, on) in [("features.sso", false), ("features.beta_reports", true)] {
        engine
            .put_setting(
                &tenant,
                &key(name),
                put(SettingType::Bool, json!(on)),
                Authority::Platform,
                &actor(),
            )
            .await
            .unwrap();
    }
    let features = engine.features(&tenant).await.unwrap();
    assert_eq!(
        names(&features),
        ["api_access", "audit_export", "beta_reports"]
    );

    for (name, bad) in [
        ("features.sso", put(SettingType::String, json!("on"))),
        ("limits.max", put(SettingType::Number, json!("12"))),
        ("notes", put(SettingType::Json, serde_json::Value::Null)),
        (
            "notes",
            put(SettingType::String, json!("x".repeat(16 * 1024 + 1))),
        ),
    ] {
        let err = engine
            .put_setting(&tenant, &key(name), bad, Authority::Platform, &actor())
            .await
            .unwrap_err();
        assert!(matches!(err, ControlError::Validation(_)), "{name}: {err}");
    }
    assert_eq!(
        engine
            .settings(&tenant, Secrets::Reveal)
            .await
            .unwrap()
            .len(),
        2
    );

    // Any JSON is kept as given, U+0000 included (which jsonb refuses; found by the fuzzer).
    let odd = json!({"a\0b": ["x\0y", 1.5, null, {"deep": "\0"}]});
    let read = put_json_and_read(&engine, &tenant, "odd.value", odd.clone()).await;
    assert_eq!(read, Some(odd));
    engine
        .delete_setting(&tenant, &key("odd.value"), Authority::Platform, &actor())
        .await
        .unwrap();
    engine
        .delete_setting(&tenant, &key("features.sso"), Authority::Platform, &actor())
        .await
        .unwrap();
    let err = engine
        .delete_setting(&tenant, &key("features.sso"), Authority::Platform, &actor())
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::NotFound { .. }), "{err}");
    assert!(engine.features(&tenant).await.unwrap().is_enabled("sso"));

    // A tenant admin turns off only what the tier grants, and never undoes the platform.
    let as_tenant = |name: &str, on: bool| {
        let (engine, tenant) = (&engine, &tenant);
        let (key, put) = (key(name), put(SettingType::Bool, json!(on)));
        async move {
            engine
                .put_setting(tenant, &key, put, Authority::Tenant, &actor())
                .await
        }
    };
    fn code<T: std::fmt::Debug>(r: Result<T, ControlError>) -> ErrorCode {
        r.unwrap_err().code()
    }
    assert_eq!(
        code(as_tenant("features.client_management", true).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(as_tenant("features.custom_domains", false).await),
        ErrorCode::Forbidden
    );
    as_tenant("features.sso", false).await.unwrap();
    assert!(!engine.features(&tenant).await.unwrap().is_enabled("sso"));
    engine
        .delete_setting(&tenant, &key("features.sso"), Authority::Tenant, &actor())
        .await
        .unwrap();
    engine
        .put_setting(
            &tenant,
            &key("features.api_access"),
            put(SettingType::Bool, json!(false)),
            Authority::Platform,
            &actor(),
        )
        .await
        .unwrap();
    let removed = engine
        .delete_setting(
            &tenant,
            &key("features.api_access"),
            Authority::Tenant,
            &actor(),
        )
        .await;
    assert_eq!(
        code(removed),
        ErrorCode::Forbidden,
        "the platform's penalty stays"
    );
    assert_eq!(
        code(as_tenant("features.api_access", false).await),
        ErrorCode::Forbidden
    );
    assert!(
        !engine
            .features(&tenant)
            .await
            .unwrap()
            .is_enabled("api_access")
    );
}

/// Any JSON number a setting may hold reads back as it was written, from the settings and from
/// the audit log: PostgreSQL prints jsonb numbers in full (f64::MAX as 309 digits), which
/// serde_json's default parsing rounded past f64::MAX and refused (an API fuzzer's 500).
#[tokio::test]
async fn extreme_numbers_read_back_as_written() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine(&fleet).await;
    engine
        .onboard(request("7103", "Extreme Numbers"), &actor())
        .await
        .unwrap();
    let tenant = org("7103");
    let written = json!([
        f64::MAX,
        -f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        0.1,
        u64::MAX,
        i64::MIN
    ]);
    let read = put_json_and_read(&engine, &tenant, "limits.extremes", written.clone()).await;
    assert_eq!(read, Some(written.clone()));
    let events = engine.tenant_audit_events(&tenant, 10).await.unwrap();
    let audited = events
        .iter()
        .find_map(|e| e.after.as_ref().filter(|a| a["key"] == "limits.extremes"))
        .expect("the change is audited");
    assert_eq!(audited["value"], written);
}

/// A tenant cannot fill the registry (security review 2, N9): its settings are capped in count
/// and bytes, under racing writes from two engines too; its admins' writes are rate-limited
/// (a platform admin's are not); and a large value is audited as a digest, not copied.
#[tokio::test]
async fn settings_are_capped_rate_limited_and_large_values_audited_as_digests() {
    let fleet = TestFleet::single().unwrap();
    let mut config = config(&fleet);
    config.settings.per_tenant = 5;
    config.settings.bytes_per_tenant = bytesize::ByteSize::b(4096);
    config.settings.tenant_writes_per_minute = 3;
    let engine = Engine::start(config.clone()).await.unwrap();
    std::mem::forget(engine.run_workers());
    let other = Engine::start(config).await.unwrap();
    let tenant = onboard(&engine, request("8901", "Hoarder")).await;
    let org = tenant.org_id.clone();

    // Twenty racing writes of new keys, from two engines: five land.
    let writes = (0..20).map(|i| {
        let (engine, org) = (if i % 2 == 0 { &engine } else { &other }, &org);
        async move {
            engine
                .put_setting(
                    org,
                    &key(&format!("app.k{i}")),
                    put(SettingType::String, json!("v")),
                    Authority::Platform,
                    &actor(),
                )
                .await
        }
    });
    let results = futures::future::join_all(writes).await;
    let landed = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(landed, 5, "{results:?}");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(refused.code(), ErrorCode::SettingsLimit, "{refused}");
    }
    assert_eq!(
        engine.settings(&org, Secrets::Redact).await.unwrap().len(),
        5
    );
    // Replacing one is no new setting; too many bytes are refused.
    let first = results.iter().position(Result::is_ok).unwrap();
    let replaced = key(&format!("app.k{first}"));
    let big = put(SettingType::String, json!("x".repeat(2000)));
    engine
        .put_setting(&org, &replaced, big.clone(), Authority::Platform, &actor())
        .await
        .unwrap();
    let refused = engine
        .put_setting(
            &org,
            &replaced,
            put(SettingType::String, json!("x".repeat(5000))),
            Authority::Platform,
            &actor(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), ErrorCode::SettingsLimit, "{refused}");

    // The 2,000-byte value is in the audit log as a digest only.
    let after: serde_json::Value = sqlx::query_scalar(
        "SELECT after FROM audit_events WHERE action = 'setting.put' AND org_id = $1
         ORDER BY id DESC LIMIT 1",
    )
    .bind(org.as_str())
    .fetch_one(&mut registry(&fleet).await)
    .await
    .unwrap();
    assert!(after.get("value").is_none(), "{after}");
    assert_eq!(after["value_bytes"], 2002);
    assert_eq!(after["value_sha256"].as_str().unwrap().len(), 64);

    // A tenant admin's writes: three a minute here.
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        outcomes.push(
            engine
                .put_setting(
                    &org,
                    &replaced,
                    put(SettingType::String, json!("mine")),
                    Authority::Tenant,
                    &actor(),
                )
                .await
                .map_err(|e: ControlError| e.code()),
        );
    }
    assert!(outcomes[..3].iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(outcomes[3].clone().unwrap_err(), ErrorCode::RateLimited);
    engine
        .put_setting(
            &org,
            &replaced,
            put(SettingType::String, json!("platform")),
            Authority::Platform,
            &actor(),
        )
        .await
        .expect("a platform admin is not limited");
}
