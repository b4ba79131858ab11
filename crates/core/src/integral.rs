//! JSON Schema counts `8.0` as an integer, and so do clients whose numbers are all floats:
//! wherever the OpenAPI document says `integer`, an integral number is accepted in either form.
use std::num::NonZeroU16;

use serde::de::{Error, Unexpected};
use serde::{Deserialize, Deserializer};

/// Largest integer a float holds exactly (2^53).
const EXACT_IN_FLOAT: f64 = 9_007_199_254_740_992.0;

pub fn number<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
    let number = serde_json::Number::deserialize(d)?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // range checked
    let value = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..EXACT_IN_FLOAT).contains(f))
            .map(|f| f as u64)
    });
    value.and_then(|v| T::try_from(v).ok()).ok_or_else(|| {
        D::Error::invalid_value(
            Unexpected::Other(&number.to_string()),
            &"an integer in range",
        )
    })
}

pub fn port<'de, D: Deserializer<'de>>(d: D) -> Result<NonZeroU16, D::Error> {
    let port: u16 = number(d)?;
    NonZeroU16::new(port)
        .ok_or_else(|| D::Error::invalid_value(Unexpected::Unsigned(0), &"a port from 1"))
}
