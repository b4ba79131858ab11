//! Tenant role passwords, derived from the master key so that no password is stored anywhere:
//! the engine and the connection-info endpoint compute the same one on demand.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use tenancy_core::RoleName;

/// `base64url(HMAC-SHA256(master_key, "tenancy/role-password/v1/" + role))`: 43 characters.
pub fn tenant_password(master_key: &SecretString, role: &RoleName) -> SecretString {
    let mut mac = Hmac::<Sha256>::new_from_slice(master_key.expose_secret().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(b"tenancy/role-password/v1/");
    mac.update(role.as_str().as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()).into()
}

/// The SCRAM-SHA-256 verifier of a password, so that `CREATE ROLE` never carries the plain text
/// (and it never shows in the server's logs or `pg_stat_statements`).
pub fn scram_verifier(password: &SecretString) -> String {
    postgres_protocol::password::scram_sha_256(password.expose_secret().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_stable_and_distinct() {
        let key: SecretString = "k".into();
        let a: RoleName = "tenant_a".parse().unwrap();
        let b: RoleName = "tenant_b".parse().unwrap();
        let pa = tenant_password(&key, &a);
        assert_eq!(
            pa.expose_secret(),
            tenant_password(&key, &a).expose_secret()
        );
        assert_ne!(
            pa.expose_secret(),
            tenant_password(&key, &b).expose_secret()
        );
        assert_eq!(pa.expose_secret().len(), 43);
        assert!(scram_verifier(&pa).starts_with("SCRAM-SHA-256$4096:"));
    }
}
