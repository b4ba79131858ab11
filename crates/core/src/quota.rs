//! Product quotas: what a tier allows of things only the product counts (users, devices, API
//! calls), the periods they reset by, and the registry API's bodies for counting against them.

use std::num::NonZeroU32;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{IdempotencyKey, QuotaName};

/// How often a quota's usage starts again from zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum QuotaPeriod {
    /// Never: a count of things that exist (users, devices).
    None,
    /// Every calendar month, in UTC.
    Month,
}

/// The period a moment falls in: when it started (the key usage is counted under) and when it
/// ends (`None` for a quota that never resets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodWindow {
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
}

/// As in JSON: `none`, `month`.
impl std::fmt::Display for QuotaPeriod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QuotaPeriod::None => "none",
            QuotaPeriod::Month => "month",
        })
    }
}

impl QuotaPeriod {
    pub fn window(self, at: DateTime<Utc>) -> PeriodWindow {
        match self {
            QuotaPeriod::None => PeriodWindow {
                start: DateTime::UNIX_EPOCH,
                end: None,
            },
            QuotaPeriod::Month => {
                let start = month_start(at.year(), at.month());
                let (year, month) = if at.month() == 12 {
                    (at.year() + 1, 1)
                } else {
                    (at.year(), at.month() + 1)
                };
                PeriodWindow {
                    start,
                    end: Some(month_start(year, month)),
                }
            }
        }
    }
}

fn month_start(year: i32, month: u32) -> DateTime<Utc> {
    let day = NaiveDate::from_ymd_opt(year, month, 1).expect("a valid month");
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"))
}

/// Most one increment or check may count: larger amounts are refused (422), so a hostile
/// amount cannot overflow a counter.
pub const MAX_USAGE_AMOUNT: u32 = 1_000_000_000;

/// An amount one increment or check may count: 1 to [`MAX_USAGE_AMOUNT`].
pub fn usage_amount(value: u64) -> Option<NonZeroU32> {
    u32::try_from(value)
        .ok()
        .filter(|v| *v <= MAX_USAGE_AMOUNT)
        .and_then(NonZeroU32::new)
}

/// `POST /v1/tenants/{org_id}/usage/{resource}`: count `amount` against the quota, all or
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UsageIncrement {
    #[serde(deserialize_with = "amount")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = u32, minimum = 1, maximum = 1_000_000_000)
    )]
    pub amount: NonZeroU32,
    /// The same key again (for this tenant and resource) counts nothing and answers the first
    /// outcome, with `replayed: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<IdempotencyKey>,
}

/// `POST /v1/tenants/{org_id}/quotas/check`: whether `amount` more would fit, counting nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct QuotaCheckRequest {
    pub resource: QuotaName,
    #[serde(deserialize_with = "amount")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = u32, minimum = 1, maximum = 1_000_000_000)
    )]
    pub amount: NonZeroU32,
}

/// One quota of a tenant now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaStatus {
    pub resource: QuotaName,
    pub limit: i64,
    pub used: i64,
    pub remaining: i64,
    pub period: QuotaPeriod,
    /// When the current period started; absent for a quota that never resets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_start: Option<DateTime<Utc>>,
    /// When usage starts again from zero; absent for a quota that never resets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<DateTime<Utc>>,
    /// Set on an agency's cap on the sum over its clients: that agency. A client's increment
    /// must fit both its own quota and this cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency_org_id: Option<crate::OrgId>,
}

impl QuotaStatus {
    pub fn new(
        resource: QuotaName,
        limit: i64,
        used: i64,
        period: QuotaPeriod,
        window: PeriodWindow,
    ) -> Self {
        Self {
            resource,
            limit,
            used,
            remaining: (limit - used).max(0),
            period,
            period_start: window.end.map(|_| window.start),
            resets_at: window.end,
            agency_org_id: None,
        }
    }

    /// The same figures, as `agency`'s cap on the sum over its clients.
    pub fn of_agency(self, agency: crate::OrgId) -> Self {
        Self {
            agency_org_id: Some(agency),
            ..self
        }
    }
}

/// The answer to a counted increment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageCounted {
    pub amount: u32,
    /// Whether this idempotency key had counted before (nothing was counted now).
    pub replayed: bool,
    #[serde(flatten)]
    pub quota: QuotaStatus,
}

/// The answer to a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaCheck {
    /// Whether the amount fits in what remains.
    pub allowed: bool,
    #[serde(flatten)]
    pub quota: QuotaStatus,
}

/// One counted increment, as the usage log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageLogEntry {
    /// Increasing; the cursor of the next page.
    pub id: i64,
    pub resource: QuotaName,
    pub amount: i64,
    /// Usage of the period after this increment.
    pub used_after: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<IdempotencyKey>,
    /// The caller's subject.
    pub actor: String,
    pub recorded_at: DateTime<Utc>,
}

/// `GET /v1/tenants/{org_id}/usage-log`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageLogPage {
    pub entries: Vec<UsageLogEntry>,
    /// Pass as `cursor` for older entries; `null` on the last page, as in every list.
    #[serde(default)]
    pub next_cursor: Option<i64>,
}

/// An amount from 1 to [`MAX_USAGE_AMOUNT`], as an integer or an integral float.
fn amount<'de, D: serde::Deserializer<'de>>(d: D) -> Result<NonZeroU32, D::Error> {
    use serde::de::{Error, Unexpected};
    let value: u64 = crate::integral::number(d)?;
    usage_amount(value).ok_or_else(|| {
        D::Error::invalid_value(
            Unexpected::Unsigned(value),
            &"an amount from 1 to 1000000000",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monthly_periods_are_calendar_months_in_utc() {
        let at = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
        let window = QuotaPeriod::Month.window(at);
        assert_eq!(
            window.start,
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            window.end,
            Some(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap())
        );
        let never = QuotaPeriod::None.window(at);
        assert_eq!((never.start, never.end), (DateTime::UNIX_EPOCH, None));
    }

    #[test]
    fn amounts_are_bounded_and_integral() {
        let parse = |body: &str| serde_json::from_str::<UsageIncrement>(body);
        assert_eq!(parse(r#"{"amount": 3}"#).unwrap().amount.get(), 3);
        assert_eq!(parse(r#"{"amount": 3.0}"#).unwrap().amount.get(), 3);
        for hostile in [
            r#"{"amount": 0}"#,
            r#"{"amount": -1}"#,
            r#"{"amount": 1.5}"#,
            r#"{"amount": 1000000001}"#,
            r#"{"amount": 18446744073709551615}"#,
            r#"{"amount": "1"}"#,
            r#"{"amount": 1, "idempotency_key": "has space"}"#,
            r#"{"amount": 1, "extra": true}"#,
        ] {
            assert!(parse(hostile).is_err(), "{hostile}");
        }
    }
}
