//! The management API client against the ZITADEL stand-in: both service-account credentials,
//! error bodies, and creates that are safe to repeat.

use secrecy::SecretString;
use tenancy_testkit::{ZITADEL_PAT, ZitadelStandIn};
use tenancy_zitadel::{
    HumanUser, KeyFile, Management, ManagementConfig, ManagementError, Paging, ServiceAccount,
    roles,
};

fn with_pat(zitadel: &ZitadelStandIn) -> Management {
    let account = ServiceAccount::Pat(SecretString::from(ZITADEL_PAT));
    Management::new(ManagementConfig::new(&zitadel.issuer, account)).unwrap()
}

fn with_key_file(zitadel: &ZitadelStandIn) -> Management {
    let key = KeyFile::from_json(&zitadel.service_account_key()).unwrap();
    Management::new(ManagementConfig::new(
        &zitadel.issuer,
        ServiceAccount::KeyFile(key),
    ))
    .unwrap()
}

#[tokio::test]
async fn a_jwt_profile_token_is_obtained_once_and_reused() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let management = with_key_file(&zitadel);
    let acme = zitadel.add_organization("Acme Corp");
    let org = management.organization(&acme).await.unwrap().unwrap();
    assert_eq!(org.name, "Acme Corp");
    assert!(org.is_active());
    assert!(management.organization("404").await.unwrap().is_none());
    assert_eq!(zitadel.token_grants(), 1, "the access token is cached");
}

#[tokio::test]
async fn wrong_credentials_are_not_retried_forever() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let account = ServiceAccount::Pat(SecretString::from("not-a-token"));
    let management = Management::new(ManagementConfig::new(&zitadel.issuer, account)).unwrap();
    let error = management.organizations().await.unwrap_err();
    assert!(
        matches!(error, ManagementError::Api { status: 401, ref message } if message.contains("Errors.Token.Invalid")),
        "{error:?}"
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn organization_creation_is_safe_to_repeat() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let management = with_pat(&zitadel);
    let first = management
        .create_organization("tenancy-acme", "Acme Corp", None)
        .await
        .unwrap();
    let again = management
        .create_organization("tenancy-acme", "Acme Corp", None)
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(zitadel.organizations().len(), 1);

    // The name belongs to an organization that we did not create: a conflict, not a hijack.
    zitadel.add_organization("Globex");
    let error = management
        .create_organization("tenancy-globex", "Globex", None)
        .await
        .unwrap_err();
    assert!(matches!(error, ManagementError::Conflict(_)), "{error:?}");
}

#[tokio::test]
async fn listing_pages_through_every_organization() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    for i in 0..230 {
        zitadel.add_organization(&format!("Org {i}"));
    }
    for paging in [Paging::Query, Paging::Pagination] {
        let mut config = ManagementConfig::new(
            &zitadel.issuer,
            ServiceAccount::Pat(SecretString::from(ZITADEL_PAT)),
        );
        config.paging = paging;
        let all = Management::new(config)
            .unwrap()
            .organizations()
            .await
            .unwrap();
        assert_eq!(all.len(), 230);
        assert_eq!(all[229].name, "Org 229");
    }
}

#[tokio::test]
async fn activating_an_admin_twice_creates_one_user_with_one_grant() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let management = with_key_file(&zitadel);
    let org = zitadel.add_organization("Acme Corp");
    let admin = HumanUser::from_email("jane@acme.example");
    let first = management
        .activate_admin(&org, &admin, zitadel.project_id(), roles::TENANT_ADMIN)
        .await
        .unwrap();
    assert!(first.created);
    let again = management
        .activate_admin(&org, &admin, zitadel.project_id(), roles::TENANT_ADMIN)
        .await
        .unwrap();
    assert_eq!(again.user_id, first.user_id);
    assert!(!again.created);
    let user = zitadel.user(&org, "jane@acme.example").unwrap();
    assert!(user.invited);
    assert_eq!(user.roles, vec![roles::TENANT_ADMIN.to_owned()]);
    assert_eq!(user.given_name, "jane");

    // An outage is a retryable error; afterwards the same call goes through.
    zitadel.set_outage(true);
    let other = HumanUser::from_email("joe@acme.example");
    let error = management
        .activate_admin(&org, &other, zitadel.project_id(), roles::TENANT_ADMIN)
        .await
        .unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    zitadel.set_outage(false);
    management
        .activate_admin(&org, &other, zitadel.project_id(), roles::TENANT_ADMIN)
        .await
        .unwrap();

    // A project that does not exist is a permanent error.
    let error = management
        .activate_admin(&org, &admin, "no-such-project", roles::TENANT_ADMIN)
        .await
        .unwrap_err();
    assert!(!error.is_retryable(), "{error:?}");
}

/// The stand-in is as strict as a standard provider about JWT-profile assertions: no `jti`, no
/// token; a replayed `jti`, no token. The client's own assertions always carry a fresh one.
#[tokio::test]
async fn assertions_without_a_unique_jti_are_refused() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let file: serde_json::Value = serde_json::from_str(&zitadel.service_account_key()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let user = file["userId"].as_str().unwrap();
    let sign = |claims: serde_json::Value| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = file["keyId"].as_str().map(str::to_owned);
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(file["key"].as_str().unwrap().as_bytes())
            .unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let grant = |assertion: String| {
        let url = format!("{}/oauth/v2/token", zitadel.issuer);
        async move {
            reqwest::Client::new()
                .post(url)
                .form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.as_str()),
                    ("scope", "openid"),
                ])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let base = serde_json::json!({"iss": user, "sub": user, "aud": zitadel.issuer,
        "iat": now, "exp": now + 60});
    assert_eq!(grant(sign(base.clone())).await, 400, "no jti");
    let mut with_jti = base;
    with_jti["jti"] = "d5d4a1c2-0c0b-4f6e-9f38-1f0b7e6f0001".into();
    let assertion = sign(with_jti);
    assert_eq!(grant(assertion.clone()).await, 200);
    assert_eq!(grant(assertion).await, 400, "a replayed jti");

    // The client's assertions pass: every management call gets a fresh token when needed.
    let management = with_key_file(&zitadel);
    assert!(management.organizations().await.is_ok());
}
