//! Errors as data: every stable error code of every HTTP surface (the registry API and the
//! router's axum rejection), the HTTP status each one answers, and the RFC 9457 problem body.
//!
//! A new code is added here and nowhere else decides its status: `ErrorCode::status` is an
//! exhaustive match, so the compiler points at it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code (`"tenant_exists"`). Clients match on these, never on
/// the human `detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // 400: the request cannot be read.
    /// Malformed JSON, a bad path or query parameter.
    InvalidRequest,
    // 401 and 403.
    /// No credentials, or credentials that do not verify.
    Unauthorized,
    /// Verified, but the caller's roles do not allow this.
    Forbidden,
    // 404.
    /// No such tenant, operation, server or route (also: one the caller may not see).
    NotFound,
    // 405.
    /// The route exists, but not with this method (the `Allow` header lists those it takes).
    MethodNotAllowed,
    // 409: the request contradicts what exists.
    /// A different create request was made for this organization before.
    TenantExists,
    /// An explicit slug another tenant uses.
    SlugTaken,
    /// The tenant has an operation under way that this one cannot run beside.
    OperationInProgress,
    /// The tenant's status does not allow this (suspending a suspended tenant).
    InvalidState,
    /// `retry` on a tenant with no failed operation.
    NothingToRetry,
    /// The tenant has no database yet.
    NotPlaced,
    /// A server with this id is registered already.
    ServerExists,
    /// Another fleet migration is running.
    MigrationRunning,
    /// Another replica is running the organization sync.
    SyncRunning,
    /// An organization of that name exists in ZITADEL and the registry did not create it.
    OrganizationExists,
    /// The tenant is the parent (agency) of other tenants.
    HasClients,
    /// The region has no database server (or none was given and there is no default region).
    UnknownRegion,
    /// `parent_org_id` names no tenant.
    UnknownParent,
    /// `parent_org_id` names a tenant that cannot take clients (not an agency, or not active).
    InvalidParent,
    /// A move's target is the source, draining, disabled, full or in another region.
    InvalidTarget,
    /// The password variable a server registration names is not set in the registry process.
    PasswordEnvUnset,
    /// A server registration that would send a password where it must not: a variable that is
    /// not the server's own (named after its id) or another server's, or a remote host without
    /// verified TLS.
    ServerRefused,
    /// The request needs ZITADEL's management API, which is not configured.
    ZitadelNotConfigured,
    /// The operation was cancelled (a move, by an operator or by a suspension or deletion
    /// that preempted it).
    Cancelled,
    /// A tenant's settings would pass their caps (count or bytes).
    SettingsLimit,
    // 413, 415, 422.
    /// The body is larger than the registry accepts.
    BodyTooLarge,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// JSON that breaks the documented schema (a field's pattern, length or range, a missing
    /// or unknown field), or a value that cannot be used (a CA that is no certificate).
    ValidationFailed,
    /// A ZITADEL event the registry cannot read.
    InvalidEvent,
    /// A move cannot run as asked: `online` without `wal_level = logical` on the source or with
    /// tables logical replication cannot carry, `pg_dump`/`pg_restore` missing or too old, or a
    /// target server older than the source.
    MoveUnsupported,
    /// A move's copy differs from its source (tables, row counts or checksums); the tenant
    /// stayed on the source.
    VerificationFailed,
    /// A stored backup does not decrypt and authenticate (tampered, truncated, or its tenant's
    /// key is gone); nothing was restored from it.
    BackupUnreadable,
    /// A point-in-time restore to a moment the WAL archive cannot reach (before its earliest
    /// moment, in the future, or on a server whose WAL is not archived); `earliest` and
    /// `latest` say what it can reach now.
    OutsideRestoreWindow,
    // 5xx: nothing internal is said.
    /// A bug or an unexpected state; the cause is in the logs.
    Internal,
    /// ZITADEL answered with an error the registry cannot act on.
    ZitadelError,
    /// No active server with free capacity in the region.
    NoCapacity,
    /// The registry database is unavailable, or ended the request's transaction for a conflict
    /// with another (a deadlock, a serialization failure): trying again gets past it.
    Unavailable,
    /// The tenant's database server is unavailable.
    ServerUnavailable,
    /// The backup store cannot be reached or refused the request.
    BackupStoreUnavailable,
    /// The template is in use by another session; onboarding retries.
    TemplateBusy,
    /// ZITADEL is unreachable or overloaded.
    ZitadelUnavailable,
    /// Waiting took longer than allowed.
    Timeout,
    /// Too many requests in flight: the service sheds load.
    Overloaded,
    // 429.
    /// The usage increment would pass the tenant's quota; nothing was counted.
    QuotaExceeded,
    /// Too many changes of this kind lately (a tenant admin's settings writes): try again
    /// later.
    RateLimited,
    // The router's answers to product services' callers.
    /// The caller's organization is not a tenant.
    TenantUnknown,
    /// The tenant is suspended.
    TenantSuspended,
    /// The tenant is deleted.
    TenantDeleted,
    /// The tenant is not ready (provisioning or failed).
    TenantNotReady,
    /// Every connection of the tenant or its server stayed busy.
    PoolTimeout,
    /// The tenant's database cannot be reached.
    DatabaseUnavailable,
    /// The caller's token names no organization.
    NoOrganization,
}

impl ErrorCode {
    /// The HTTP status this code is answered with.
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            InvalidRequest => 400,
            Unauthorized => 401,
            Forbidden | TenantSuspended | NoOrganization => 403,
            NotFound | TenantUnknown => 404,
            MethodNotAllowed => 405,
            TenantExists | SlugTaken | OperationInProgress | InvalidState | NothingToRetry
            | NotPlaced | ServerExists | MigrationRunning | SyncRunning | OrganizationExists
            | HasClients | UnknownRegion | UnknownParent | InvalidParent | PasswordEnvUnset
            | ServerRefused | ZitadelNotConfigured | InvalidTarget | Cancelled | SettingsLimit
            | MoveUnsupported | BackupUnreadable => 409,
            TenantDeleted => 410,
            BodyTooLarge => 413,
            QuotaExceeded | RateLimited => 429,
            UnsupportedMediaType => 415,
            ValidationFailed | InvalidEvent | OutsideRestoreWindow => 422,
            Internal | VerificationFailed => 500,
            ZitadelError => 502,
            NoCapacity
            | Unavailable
            | ServerUnavailable
            | TemplateBusy
            | ZitadelUnavailable
            | BackupStoreUnavailable
            | TenantNotReady
            | PoolTimeout
            | DatabaseUnavailable
            | Overloaded => 503,
            Timeout => 504,
        }
    }

    /// The snake_case name clients see.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidRequest => "invalid_request",
            Unauthorized => "unauthorized",
            Forbidden => "forbidden",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            TenantExists => "tenant_exists",
            SlugTaken => "slug_taken",
            OperationInProgress => "operation_in_progress",
            InvalidState => "invalid_state",
            NothingToRetry => "nothing_to_retry",
            NotPlaced => "not_placed",
            ServerExists => "server_exists",
            MigrationRunning => "migration_running",
            SyncRunning => "sync_running",
            OrganizationExists => "organization_exists",
            HasClients => "has_clients",
            UnknownRegion => "unknown_region",
            UnknownParent => "unknown_parent",
            InvalidParent => "invalid_parent",
            PasswordEnvUnset => "password_env_unset",
            ServerRefused => "server_refused",
            BodyTooLarge => "body_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            ValidationFailed => "validation_failed",
            InvalidEvent => "invalid_event",
            InvalidTarget => "invalid_target",
            MoveUnsupported => "move_unsupported",
            VerificationFailed => "verification_failed",
            BackupUnreadable => "backup_unreadable",
            OutsideRestoreWindow => "outside_restore_window",
            ZitadelNotConfigured => "zitadel_not_configured",
            Cancelled => "cancelled",
            SettingsLimit => "settings_limit",
            RateLimited => "rate_limited",
            Internal => "internal",
            ZitadelError => "zitadel_error",
            NoCapacity => "no_capacity",
            Unavailable => "unavailable",
            ServerUnavailable => "server_unavailable",
            BackupStoreUnavailable => "backup_store_unavailable",
            TemplateBusy => "template_busy",
            ZitadelUnavailable => "zitadel_unavailable",
            Timeout => "timeout",
            Overloaded => "overloaded",
            QuotaExceeded => "quota_exceeded",
            TenantUnknown => "tenant_unknown",
            TenantSuspended => "tenant_suspended",
            TenantDeleted => "tenant_deleted",
            TenantNotReady => "tenant_not_ready",
            PoolTimeout => "pool_timeout",
            DatabaseUnavailable => "database_unavailable",
            NoOrganization => "no_organization",
        }
    }

    /// Whether the answer is a server-side failure (its detail is never the internal cause).
    pub fn is_server_error(self) -> bool {
        self.status() >= 500
    }

    /// What a 5xx answer says instead of its cause.
    pub fn generic_detail(self) -> &'static str {
        use ErrorCode::*;
        match self {
            NoCapacity => "no database server in the region has free capacity; try again later",
            Unavailable => "the registry database is unavailable; try again shortly",
            ServerUnavailable => "the tenant's database server is unavailable; try again shortly",
            TemplateBusy => "the template database is busy; try again shortly",
            ZitadelUnavailable => "ZITADEL is unavailable; try again shortly",
            ZitadelError => "ZITADEL refused the request; see the registry's logs",
            Timeout => "the request took too long",
            Overloaded => "the service is busy; try again shortly",
            TenantNotReady => "the tenant is not ready yet",
            PoolTimeout | DatabaseUnavailable => "the tenant database is unavailable; try again",
            _ => "internal error",
        }
    }

    /// What a tenant's own admins are told of a failure with this code: never a server's name
    /// or PostgreSQL's or ZITADEL's words (the platform team sees those).
    pub fn tenant_visible_detail(self) -> &'static str {
        if self.is_server_error() {
            return self.generic_detail();
        }
        use ErrorCode::*;
        match self {
            InvalidState | OperationInProgress => {
                "the tenant was not in a state that allows this; the platform team can see why"
            }
            _ => "the operation could not complete; the platform team can see why",
        }
    }
}

impl std::str::FromStr for ErrorCode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .map_err(|_| format!("unknown error code {s:?}"))
    }
}

impl TryFrom<String> for ErrorCode {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        value.parse()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An RFC 9457 problem: the body of every error answer, served as `application/problem+json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// `/problems/{code}`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    pub status: u16,
    /// For people; 5xx answers never carry the internal cause.
    pub detail: String,
    pub code: ErrorCode,
    /// `quota_exceeded` only: the quota that refused, its limit and usage, and when its period
    /// resets (absent for a quota that never resets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<crate::QuotaName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `quota_exceeded` only, when the quota that refused is an agency's cap on the sum over
    /// its clients: that agency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency_org_id: Option<crate::OrgId>,
    /// `outside_restore_window` only: the moments a point-in-time restore reaches now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<chrono::DateTime<chrono::Utc>>,
}

/// The media type of a [`Problem`].
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

impl Problem {
    /// A problem for `code`; a server error's detail is replaced by the code's generic one.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        let status = code.status();
        let detail = if code.is_server_error() {
            code.generic_detail().to_owned()
        } else {
            detail.into()
        };
        Self {
            kind: format!("/problems/{code}"),
            title: reason_phrase(status).to_owned(),
            status,
            detail,
            code,
            resource: None,
            limit: None,
            used: None,
            resets_at: None,
            agency_org_id: None,
            earliest: None,
            latest: None,
        }
    }

    /// A 429 `quota_exceeded` carrying the quota's figures.
    pub fn quota_exceeded(detail: impl Into<String>, quota: &crate::QuotaStatus) -> Self {
        Self {
            resource: Some(quota.resource.clone()),
            limit: Some(quota.limit),
            used: Some(quota.used),
            resets_at: quota.resets_at,
            agency_org_id: quota.agency_org_id.clone(),
            ..Self::new(ErrorCode::QuotaExceeded, detail)
        }
    }
}

impl Problem {
    /// `outside_restore_window`, with the window.
    pub fn outside_restore_window(
        detail: impl Into<String>,
        window: &crate::RestoreWindow,
    ) -> Self {
        Self {
            earliest: window.earliest,
            latest: window.latest,
            ..Self::new(ErrorCode::OutsideRestoreWindow, detail)
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_say_nothing_internal() {
        let problem = Problem::new(ErrorCode::Internal, "password authentication failed for x");
        assert_eq!(problem.status, 500);
        assert_eq!(problem.detail, "internal error");
        let json = serde_json::to_value(&problem).unwrap();
        assert_eq!(json["code"], "internal");
        assert_eq!(json["type"], "/problems/internal");
        let conflict = Problem::new(ErrorCode::TenantExists, "tenant 1 exists");
        assert_eq!(
            (conflict.status, conflict.detail.as_str()),
            (409, "tenant 1 exists")
        );
    }

    #[test]
    fn codes_serialize_as_their_names() {
        for code in [
            ErrorCode::SlugTaken,
            ErrorCode::ZitadelNotConfigured,
            ErrorCode::PoolTimeout,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }
}
