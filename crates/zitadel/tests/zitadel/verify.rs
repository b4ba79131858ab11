//! Token verification against the ZITADEL stand-in (discovery, JWKS with rotation, introspection).

use std::time::Duration;

use secrecy::SecretString;
use tenancy_testkit::{PLATFORM_ORG_ID, TokenClaims, ZitadelStandIn};
use tenancy_zitadel::{IntrospectionClient, KeyFile, Verifier, VerifierConfig, VerifyError, roles};

fn config(zitadel: &ZitadelStandIn) -> VerifierConfig {
    let mut config = VerifierConfig::new(&zitadel.issuer, zitadel.project_id());
    config.platform_org_id = Some(PLATFORM_ORG_ID.parse().unwrap());
    config
}

fn verifier(zitadel: &ZitadelStandIn, jwks_min_refresh: Duration) -> Verifier {
    let mut config = config(zitadel);
    let (id, secret) = zitadel.client();
    config.introspection = Some(IntrospectionClient::Secret {
        client_id: id.into(),
        client_secret: SecretString::from(secret),
    });
    config.jwks_min_refresh = jwks_min_refresh;
    Verifier::new(config)
}

#[tokio::test]
async fn a_valid_jwt_becomes_a_caller_with_its_roles_and_org() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let verifier = verifier(&zitadel, Duration::from_secs(30));
    let token = zitadel.jwt(&TokenClaims::new(
        "user-1",
        "263014839178313731",
        roles::TENANT_ADMIN,
    ));
    let caller = verifier.verify(&token).await.unwrap();
    assert_eq!(caller.subject, "user-1");
    assert_eq!(
        caller.org_id.as_ref().unwrap().as_str(),
        "263014839178313731"
    );
    assert!(caller.can_read_tenant(&"263014839178313731".parse().unwrap()));
    assert!(
        !caller.can_read_tenant(&"999".parse().unwrap()),
        "a tenant admin of one org is refused on another"
    );
    assert!(!caller.is_platform_admin());

    let mut admin = TokenClaims::platform("ops", roles::PLATFORM_ADMIN);
    admin
        .roles
        .push((roles::TENANT_ROUTER.into(), PLATFORM_ORG_ID.into()));
    let caller = verifier.verify(&zitadel.jwt(&admin)).await.unwrap();
    assert!(caller.is_platform_admin() && caller.can_route());
}

#[tokio::test]
async fn bad_jwts_are_refused() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let verifier = verifier(&zitadel, Duration::from_secs(30));
    let good = TokenClaims::new("user-1", "1", roles::TENANT_ADMIN);

    let mut expired = good.clone();
    expired.expires_in = -600;
    let mut wrong_audience = good.clone();
    wrong_audience.audience = vec!["someone-else".into()];
    let mut wrong_issuer = good.clone();
    wrong_issuer.issuer = Some("https://evil.example".into());
    for (what, claims) in [
        ("expired", expired),
        ("wrong audience", wrong_audience),
        ("wrong issuer", wrong_issuer),
    ] {
        let err = verifier.verify(&zitadel.jwt(&claims)).await.unwrap_err();
        assert!(matches!(err, VerifyError::Invalid(_)), "{what}: {err}");
    }

    // Tampered payload: same header and signature, other claims.
    let token = zitadel.jwt(&good);
    let parts: Vec<&str> = token.split('.').collect();
    let other = zitadel.jwt(&TokenClaims::new("user-1", "1", roles::PLATFORM_ADMIN));
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        other.split('.').nth(1).unwrap(),
        parts[2]
    );
    assert!(matches!(
        verifier.verify(&forged).await.unwrap_err(),
        VerifyError::Invalid(_)
    ));

    // Unsigned (`alg: none`) and HMAC signed with the public key are never accepted.
    use base64::Engine as _;
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let kid = serde_json::from_slice::<serde_json::Value>(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[0])
            .unwrap(),
    )
    .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let none = format!(
        "{}.{}.",
        b64(&format!(r#"{{"alg":"none","kid":"{kid}"}}"#)),
        parts[1]
    );
    assert!(verifier.verify(&none).await.is_err());
    let hs = format!(
        "{}.{}.{}",
        b64(&format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#)),
        parts[1],
        parts[2]
    );
    assert!(matches!(
        verifier.verify(&hs).await.unwrap_err(),
        VerifyError::AlgorithmNotAllowed(_)
    ));

    assert!(verifier.verify("a.b.c").await.is_err());
    assert!(verifier.verify("").await.is_err());
}

#[tokio::test]
async fn rotated_keys_are_fetched_once_and_unknown_kids_do_not_hammer_the_issuer() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let verifier = verifier(&zitadel, Duration::from_millis(300));
    let claims = TokenClaims::new("user-1", "1", roles::TENANT_ADMIN);
    let old = zitadel.jwt(&claims);
    verifier.verify(&old).await.unwrap();
    assert_eq!(zitadel.jwks_fetches(), 1);

    zitadel.rotate_keys();
    tokio::time::sleep(Duration::from_millis(350)).await;
    let new = zitadel.jwt(&claims);
    verifier.verify(&new).await.unwrap();
    assert_eq!(
        zitadel.jwks_fetches(),
        2,
        "the new kid triggered one refresh"
    );
    verifier.verify(&old).await.unwrap();
    assert_eq!(
        zitadel.jwks_fetches(),
        2,
        "the previous key is still listed and cached"
    );

    // A burst of tokens with unknown kids costs at most one fetch per interval.
    let parts: Vec<&str> = new.split('.').collect();
    use base64::Engine as _;
    for i in 0..20 {
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!(r#"{{"alg":"RS256","kid":"forged-{i}"}}"#));
        let forged = format!("{header}.{}.{}", parts[1], parts[2]);
        assert!(matches!(
            verifier.verify(&forged).await.unwrap_err(),
            VerifyError::UnknownKey(_)
        ));
    }
    assert!(
        zitadel.jwks_fetches() <= 3,
        "{} fetches",
        zitadel.jwks_fetches()
    );
}

#[tokio::test]
async fn opaque_tokens_are_introspected_and_cached() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let verifier = verifier(&zitadel, Duration::from_secs(30));
    let token = zitadel.opaque(&TokenClaims::platform("machine-1", roles::TENANT_ROUTER));
    let caller = verifier.verify(&token).await.unwrap();
    assert!(caller.can_route());
    assert_eq!(caller.org_id.unwrap().as_str(), PLATFORM_ORG_ID);

    let mut expired = TokenClaims::platform("machine-1", roles::TENANT_ROUTER);
    expired.expires_in = -1;
    assert!(matches!(
        verifier
            .verify(&zitadel.opaque(&expired))
            .await
            .unwrap_err(),
        VerifyError::Inactive
    ));
    assert!(matches!(
        verifier
            .verify("never-issued-but-plausible-0001")
            .await
            .unwrap_err(),
        VerifyError::Inactive
    ));
    // Too short to be anything ZITADEL issues: refused without an introspection.
    assert!(matches!(
        verifier.verify("never-issued").await.unwrap_err(),
        VerifyError::Malformed(_)
    ));

    let mut wrong_audience = TokenClaims::platform("machine-1", roles::TENANT_ROUTER);
    wrong_audience.audience = vec!["other-project".into()];
    assert!(
        verifier
            .verify(&zitadel.opaque(&wrong_audience))
            .await
            .is_err()
    );

    // Wrong client credentials: ZITADEL answers 401, we refuse the token.
    let mut config = config(&zitadel);
    config.introspection = Some(IntrospectionClient::Secret {
        client_id: "x".into(),
        client_secret: SecretString::from("wrong"),
    });
    assert!(matches!(
        Verifier::new(config).verify(&token).await.unwrap_err(),
        VerifyError::Unavailable(_)
    ));
}

#[tokio::test]
async fn introspection_authenticates_with_a_private_key_jwt() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let token = zitadel.opaque(&TokenClaims::platform("machine-1", roles::TENANT_ROUTER));
    let mut config = config(&zitadel);
    let key = KeyFile::from_json(&zitadel.application_key()).unwrap();
    config.introspection = Some(IntrospectionClient::PrivateKeyJwt(key));
    let caller = Verifier::new(config).verify(&token).await.unwrap();
    assert_eq!(caller.subject, "machine-1");
    assert!(caller.can_route());

    // A key file of the wrong kind (a service account's) cannot authenticate the application.
    let mut config = self::config(&zitadel);
    let key = KeyFile::from_json(&zitadel.service_account_key()).unwrap();
    config.introspection = Some(IntrospectionClient::PrivateKeyJwt(key));
    assert!(matches!(
        Verifier::new(config).verify(&token).await.unwrap_err(),
        VerifyError::Unavailable(_)
    ));
}

/// Anyone who owns another project in the same instance can put our project in `aud` and their
/// own roles in the token: those roles never count here. Platform roles count only in the
/// platform organization.
#[tokio::test]
async fn roles_of_another_project_or_another_organization_grant_nothing() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let verifier = verifier(&zitadel, Duration::from_secs(30));

    let mut foreign = TokenClaims::platform("mallory", roles::PLATFORM_ADMIN);
    foreign.project = "263014839178399999".into();
    let caller = verifier.verify(&zitadel.jwt(&foreign)).await.unwrap();
    assert!(caller.roles.is_empty(), "{caller:?}");
    assert!(!caller.is_platform_admin() && !caller.can_route());

    let elsewhere = TokenClaims::new("mallory", "263014839178355555", roles::PLATFORM_ADMIN);
    let caller = verifier.verify(&zitadel.jwt(&elsewhere)).await.unwrap();
    assert!(
        !caller.is_platform_admin(),
        "platform_admin held in a tenant's org"
    );
    let router_elsewhere = TokenClaims::new("svc", "263014839178355555", roles::TENANT_ROUTER);
    let caller = verifier
        .verify(&zitadel.jwt(&router_elsewhere))
        .await
        .unwrap();
    assert!(!caller.can_route());

    let admin = zitadel.jwt(&TokenClaims::platform("ops", roles::PLATFORM_ADMIN));
    assert!(verifier.verify(&admin).await.unwrap().is_platform_admin());
}

/// Keys expire: once the JWKS no longer lists a key, tokens it signed stop verifying.
#[tokio::test]
async fn a_key_the_issuer_no_longer_publishes_stops_verifying() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let mut config = config(&zitadel);
    config.jwks_min_refresh = Duration::from_millis(50);
    config.jwks_max_age = Duration::from_millis(300);
    let verifier = Verifier::new(config);
    let claims = TokenClaims::new("user-1", "1", roles::TENANT_ADMIN);
    let old = zitadel.jwt(&claims);
    verifier.verify(&old).await.unwrap();

    zitadel.rotate_keys();
    zitadel.retire_previous_key();
    // Within the keys' age the cached key still verifies; after it, the JWKS is read again.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(matches!(
        verifier.verify(&old).await.unwrap_err(),
        VerifyError::UnknownKey(_)
    ));
    verifier.verify(&zitadel.jwt(&claims)).await.unwrap();
}

/// During an identity-provider outage, tokens with forged `kid`s neither stall tokens signed
/// with known keys nor multiply fetches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_kids_during_an_outage_never_stall_valid_tokens() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let verifier = std::sync::Arc::new(verifier(&zitadel, Duration::from_secs(30)));
    let valid = zitadel.jwt(&TokenClaims::new("user-1", "1", roles::TENANT_ADMIN));
    verifier.verify(&valid).await.unwrap();
    let fetches = zitadel.jwks_fetches();

    zitadel.set_jwks_down(Some(Duration::from_secs(2)));
    let parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
    use base64::Engine as _;
    let forged: Vec<_> = (0..30)
        .map(|i| {
            let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(format!(r#"{{"alg":"RS256","kid":"forged-{i}"}}"#));
            let token = format!("{header}.{}.{}", parts[1], parts[2]);
            let verifier = verifier.clone();
            tokio::spawn(async move { verifier.verify(&token).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    verifier.verify(&valid).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "a valid token waited {:?} behind forged ones",
        started.elapsed()
    );
    for task in forged {
        assert!(task.await.unwrap().is_err());
    }
    assert!(
        zitadel.jwks_fetches() <= fetches + 1,
        "{} fetches for 30 forged kids",
        zitadel.jwks_fetches() - fetches
    );
}

/// Unknown opaque tokens cannot make the verifier call introspection without bound: refusals
/// are cached, and calls are rate-limited. Answers are reused no longer than the token lives.
#[tokio::test]
async fn introspection_is_cached_until_expiry_and_rate_limited() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let mut config = config(&zitadel);
    let (id, secret) = zitadel.client();
    config.introspection = Some(IntrospectionClient::Secret {
        client_id: id.into(),
        client_secret: SecretString::from(secret),
    });
    config.introspection_rate = std::num::NonZeroU32::new(5).unwrap();
    let verifier = Verifier::new(config);

    for _ in 0..10 {
        assert!(matches!(
            verifier
                .verify("garbage-token-000000000")
                .await
                .unwrap_err(),
            VerifyError::Inactive
        ));
    }
    assert_eq!(zitadel.introspections(), 1, "a refusal is remembered");

    let mut limited = 0;
    for i in 0..100 {
        if let Err(VerifyError::RateLimited) =
            verifier.verify(&format!("garbage-token-{i:09}")).await
        {
            limited += 1;
        }
    }
    assert!(
        zitadel.introspections() <= 7,
        "{} calls",
        zitadel.introspections()
    );
    assert!(limited >= 90, "{limited} turned away");

    // Wait out the rate limit, then a short-lived token: reused while it lives, not after.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut short = TokenClaims::platform("machine-1", roles::TENANT_ROUTER);
    short.expires_in = 2;
    let token = zitadel.opaque(&short);
    verifier.verify(&token).await.unwrap();
    let calls = zitadel.introspections();
    verifier.verify(&token).await.unwrap();
    assert_eq!(zitadel.introspections(), calls, "cached while it lives");
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert!(matches!(
        verifier.verify(&token).await.unwrap_err(),
        VerifyError::Inactive
    ));
    assert_eq!(zitadel.introspections(), calls + 1);
}

/// Junk opaque tokens cannot lock real ones out (security review 2, N8): what cannot be a
/// ZITADEL token is refused without an introspection; one client address spends its own
/// budget, not everyone's; a token seen valid before has a budget of its own; and while the
/// budgets are spent, a positive answer is served past its cache time.
#[tokio::test]
async fn junk_opaque_tokens_do_not_lock_out_real_ones() {
    use std::net::IpAddr;

    let zitadel = ZitadelStandIn::start().await.unwrap();
    let mut config = config(&zitadel);
    let (id, secret) = zitadel.client();
    config.introspection = Some(IntrospectionClient::Secret {
        client_id: id.into(),
        client_secret: SecretString::from(secret),
    });
    config.introspection_rate = std::num::NonZeroU32::new(5).unwrap();
    config.introspection_rate_per_client = std::num::NonZeroU32::new(2).unwrap();
    config.introspection_cache = Duration::from_millis(500);
    let verifier = Verifier::new(config);
    let attacker: Option<IpAddr> = Some("192.0.2.66".parse().unwrap());
    let router: Option<IpAddr> = Some("10.1.2.3".parse().unwrap());
    let pat = zitadel.opaque(&TokenClaims::platform("router-1", roles::TENANT_ROUTER));
    verifier.verify_from(&pat, router).await.unwrap();
    let calls = zitadel.introspections();

    // Not a token at all: refused, nothing asked.
    for junk in ["junk12345", "x", &"ä".repeat(30), &"a".repeat(5000)] {
        assert!(matches!(
            verifier.verify_from(junk, attacker).await.unwrap_err(),
            VerifyError::Malformed(_)
        ));
    }
    assert_eq!(zitadel.introspections(), calls);

    // A flood of plausible junk from one address spends that address's budget only.
    for i in 0..200 {
        let _ = verifier
            .verify_from(&format!("plausible-junk-{i:012}"), attacker)
            .await;
    }
    assert!(
        zitadel.introspections() <= calls + 3,
        "{} calls",
        zitadel.introspections() - calls
    );
    let newcomer = zitadel.opaque(&TokenClaims::platform("router-2", roles::TENANT_ROUTER));
    verifier
        .verify_from(&newcomer, router)
        .await
        .expect("another client's token is introspected");

    // Junk from many addresses spends the shared budget; a token seen valid before is still
    // introspected again once its cache time passed (its own budget)...
    tokio::time::sleep(Duration::from_millis(600)).await;
    for i in 0..200u32 {
        let from: IpAddr = format!("198.51.100.{}", i % 250).parse().unwrap();
        let _ = verifier
            .verify_from(&format!("plausible-junk-{i:012}-b"), Some(from))
            .await;
    }
    let before = zitadel.introspections();
    verifier.verify_from(&pat, router).await.unwrap();
    assert_eq!(zitadel.introspections(), before + 1, "asked again");
    // And while its own budget is spent too, its last answer serves past its cache time.
    let mut config = self::config(&zitadel);
    config.introspection = Some(IntrospectionClient::Secret {
        client_id: id.into(),
        client_secret: SecretString::from(zitadel.client().1),
    });
    config.introspection_rate = std::num::NonZeroU32::new(1).unwrap();
    config.introspection_cache = Duration::from_millis(200);
    let slow = Verifier::new(config);
    slow.verify_from(&pat, router).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    slow.verify_from(&pat, router).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let before = zitadel.introspections();
    slow.verify_from(&pat, router)
        .await
        .expect("served from its last answer while its budget is spent");
    assert_eq!(zitadel.introspections(), before, "not asked");
}
