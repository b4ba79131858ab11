//! ZITADEL Actions v2 webhooks: signature checks and the event body.
//!
//! Each request carries `ZITADEL-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
//! `"<t>.<raw body>"`, keyed with the target's signing key. Several `v1=` values may be present
//! (key rotation); older ZITADEL comments name the header `X-ZITADEL-Signature`.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

/// Header names ZITADEL uses for the signature.
pub const SIGNATURE_HEADERS: [&str; 2] = ["zitadel-signature", "x-zitadel-signature"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("malformed signature header")]
    MalformedSignature,
    #[error("signature timestamp is {0} s away from now")]
    Stale(i64),
    #[error("signature does not match")]
    BadSignature,
    #[error("malformed event: {0}")]
    MalformedEvent(String),
}

/// The most `v1=` signatures one header may carry (a few keys during a rotation).
pub const MAX_SIGNATURES: usize = 5;
/// The longest signature header accepted.
pub const MAX_HEADER_LEN: usize = 1024;

/// Checks a signature header against the raw body with any of `keys`, refusing timestamps more
/// than `tolerance_secs` away from `now` (unix seconds). Comparison is constant-time. Any
/// header, however hostile, is refused rather than crashing (no arithmetic overflows).
pub fn verify_signature(
    header: &str,
    body: &[u8],
    keys: &[SecretString],
    now: i64,
    tolerance_secs: u64,
) -> Result<(), WebhookError> {
    if header.len() > MAX_HEADER_LEN {
        return Err(WebhookError::MalformedSignature);
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => {
                timestamp = Some(
                    t.parse::<i64>()
                        .map_err(|_| WebhookError::MalformedSignature)?,
                )
            }
            Some(("v1", sig)) => {
                if signatures.len() == MAX_SIGNATURES {
                    return Err(WebhookError::MalformedSignature);
                }
                signatures.push(hex::decode(sig).map_err(|_| WebhookError::MalformedSignature)?)
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::MalformedSignature)?;
    if signatures.is_empty() {
        return Err(WebhookError::MalformedSignature);
    }
    if now.abs_diff(timestamp) > tolerance_secs {
        return Err(WebhookError::Stale(now.saturating_sub(timestamp)));
    }
    for key in keys {
        for signature in &signatures {
            let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
                .expect("any key length");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            if mac.verify_slice(signature).is_ok() {
                return Ok(());
            }
        }
    }
    Err(WebhookError::BadSignature)
}

/// The signature header value ZITADEL would send (tests, and tools that replay events).
pub fn sign(body: &[u8], key: &str, timestamp: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// An organization event as ZITADEL posts it.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgEvent {
    pub org_id: String,
    pub event_type: String,
    pub sequence: i64,
    /// `event_payload`, decoded (a JSON object now; a base64 JSON string in older versions).
    pub payload: Value,
}

impl OrgEvent {
    pub fn parse(body: &[u8]) -> Result<Self, WebhookError> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(rename = "aggregateID")]
            aggregate_id: String,
            #[serde(rename = "aggregateType", default)]
            aggregate_type: String,
            event_type: String,
            sequence: Value,
            #[serde(default)]
            event_payload: Value,
        }
        let raw: Raw = serde_json::from_slice(body)
            .map_err(|e| WebhookError::MalformedEvent(e.to_string()))?;
        if !raw.aggregate_type.is_empty() && raw.aggregate_type != "org" {
            return Err(WebhookError::MalformedEvent(format!(
                "aggregate type {} is not org",
                raw.aggregate_type
            )));
        }
        // Integer-like fields may come as JSON strings.
        let sequence = match &raw.sequence {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| WebhookError::MalformedEvent("sequence is not an integer".into()))?;
        let payload = match raw.event_payload {
            Value::String(encoded) => base64::engine::general_purpose::STANDARD
                .decode(encoded.as_bytes())
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .unwrap_or(Value::Null),
            other => other,
        };
        Ok(Self {
            org_id: raw.aggregate_id,
            event_type: raw.event_type,
            sequence,
            payload,
        })
    }

    /// The organization's name, when the event carries one.
    pub fn name(&self) -> Option<&str> {
        self.payload.get("name").and_then(Value::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_with_any_current_key_and_refuse_everything_else() {
        let body = br#"{"aggregateID":"1","event_type":"org.added","sequence":3}"#;
        let header = sign(body, "key-2", 1_000);
        let keys = [SecretString::from("key-1"), SecretString::from("key-2")];
        assert_eq!(verify_signature(&header, body, &keys, 1_010, 300), Ok(()));
        assert_eq!(
            verify_signature(&header, body, &keys, 2_000, 300),
            Err(WebhookError::Stale(1_000))
        );
        assert_eq!(
            verify_signature(&header, b"{}", &keys, 1_010, 300),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_signature(&header, body, &keys[..1], 1_010, 300),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_signature("v1=00", body, &keys, 1_010, 300),
            Err(WebhookError::MalformedSignature)
        );
        let two = format!(
            "{},v1={}",
            sign(body, "old", 1_000),
            header.split("v1=").nth(1).unwrap()
        );
        assert_eq!(verify_signature(&two, body, &keys, 1_000, 300), Ok(()));
    }

    #[test]
    fn hostile_headers_are_refused_without_panicking() {
        let keys = [SecretString::from("key")];
        let now = 1_700_000_000;
        for header in [
            format!("t={},v1=00", i64::MIN),
            format!("t={},v1=00", i64::MAX),
            "t=-1,v1=00".to_owned(),
            format!("t={now},{}", "v1=00,".repeat(6)),
            format!("t={now},v1={}", "0".repeat(2000)),
        ] {
            assert!(
                verify_signature(&header, b"{}", &keys, now, 300).is_err(),
                "{header}"
            );
        }
        assert!(verify_signature("t=1,v1=00", b"{}", &keys, i64::MIN, 300).is_err());
    }

    #[test]
    fn events_parse_in_both_payload_forms() {
        let object = br#"{"aggregateID":"263","aggregateType":"org","event_type":"org.added","sequence":"7","event_payload":{"name":"Acme"}}"#;
        let event = OrgEvent::parse(object).unwrap();
        assert_eq!((event.sequence, event.name()), (7, Some("Acme")));
        let encoded = base64::engine::general_purpose::STANDARD.encode(br#"{"name":"Old Acme"}"#);
        let legacy = format!(
            r#"{{"aggregateID":"263","event_type":"org.changed","sequence":8,"event_payload":"{encoded}"}}"#
        );
        assert_eq!(
            OrgEvent::parse(legacy.as_bytes()).unwrap().name(),
            Some("Old Acme")
        );
        assert!(
            OrgEvent::parse(
                br#"{"aggregateID":"1","aggregateType":"user","event_type":"x","sequence":1}"#
            )
            .is_err()
        );
    }
}
