//! Token verification against the ZITADEL stand-in (discovery, JWKS with rotation, introspection).

use std::time::Duration;

use secrecy::SecretString;
use tenancy_testkit::{TokenClaims, ZitadelStandIn};
use tenancy_zitadel::{IntrospectionClient, KeyFile, Verifier, VerifierConfig, VerifyError, roles};

fn verifier(zitadel: &ZitadelStandIn, jwks_min_refresh: Duration) -> Verifier {
    let mut config = VerifierConfig::new(&zitadel.issuer, zitadel.project_id());
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

    let mut admin = TokenClaims::new("ops", "100", roles::PLATFORM_ADMIN);
    admin
        .roles
        .push((roles::TENANT_ROUTER.into(), "100".into()));
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
    let token = zitadel.opaque(&TokenClaims::new("machine-1", "42", roles::TENANT_ROUTER));
    let caller = verifier.verify(&token).await.unwrap();
    assert!(caller.can_route());
    assert_eq!(caller.org_id.unwrap().as_str(), "42");

    let mut expired = TokenClaims::new("machine-1", "42", roles::TENANT_ROUTER);
    expired.expires_in = -1;
    assert!(matches!(
        verifier
            .verify(&zitadel.opaque(&expired))
            .await
            .unwrap_err(),
        VerifyError::Inactive
    ));
    assert!(matches!(
        verifier.verify("never-issued").await.unwrap_err(),
        VerifyError::Inactive
    ));

    let mut wrong_audience = TokenClaims::new("machine-1", "42", roles::TENANT_ROUTER);
    wrong_audience.audience = vec!["other-project".into()];
    assert!(
        verifier
            .verify(&zitadel.opaque(&wrong_audience))
            .await
            .is_err()
    );

    // Wrong client credentials: ZITADEL answers 401, we refuse the token.
    let mut config = VerifierConfig::new(&zitadel.issuer, zitadel.project_id());
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
    let token = zitadel.opaque(&TokenClaims::new("machine-1", "42", roles::TENANT_ROUTER));
    let mut config = VerifierConfig::new(&zitadel.issuer, zitadel.project_id());
    let key = KeyFile::from_json(&zitadel.application_key()).unwrap();
    config.introspection = Some(IntrospectionClient::PrivateKeyJwt(key));
    let caller = Verifier::new(config).verify(&token).await.unwrap();
    assert_eq!(caller.subject, "machine-1");
    assert!(caller.can_route());

    // A key file of the wrong kind (a service account's) cannot authenticate the application.
    let mut config = VerifierConfig::new(&zitadel.issuer, zitadel.project_id());
    let key = KeyFile::from_json(&zitadel.service_account_key()).unwrap();
    config.introspection = Some(IntrospectionClient::PrivateKeyJwt(key));
    assert!(matches!(
        Verifier::new(config).verify(&token).await.unwrap_err(),
        VerifyError::Unavailable(_)
    ));
}
