//! Optional fields the OpenAPI document gives as non-nullable: absent is `None`, an explicit
//! `null` is refused like any other value of the wrong type (serde takes it for `None`).

use serde::{Deserialize, Deserializer};

/// With `#[serde(default, deserialize_with = "present")]` on an `Option<T>` field.
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use crate::MoveTenant;

    #[test]
    fn absent_is_none_and_null_is_refused() {
        let absent: MoveTenant = serde_json::from_str("{}").unwrap();
        assert_eq!(absent, MoveTenant::default());
        let given: MoveTenant = serde_json::from_str(r#"{"mode": "offline"}"#).unwrap();
        assert!(given.mode.is_some());
        let error = serde_json::from_str::<MoveTenant>(r#"{"mode": null}"#).unwrap_err();
        assert!(error.is_data() || error.is_syntax(), "{error}");
        let given: MoveTenant = serde_json::from_str(r#"{"server_id": "pg-2"}"#).unwrap();
        assert!(given.server_id.is_some());
        assert!(serde_json::from_str::<MoveTenant>(r#"{"server_id": null}"#).is_err());
    }
}
