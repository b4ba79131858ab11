use tenancy_core::{ErrorCode, IdError, OrgId, QuotaStatus, Region, ServerId, UnknownVariant};

use crate::activator::ActivationError;

/// Everything the engine can fail with. [`ControlError::code`] says which stable error code a
/// failure is; the registry turns that into HTTP in one place.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    InvalidId(#[from] IdError),
    #[error(transparent)]
    InvalidValue(#[from] UnknownVariant),
    #[error("invalid request: {0}")]
    Validation(String),
    #[error("tenant {0} not found")]
    TenantNotFound(OrgId),
    #[error("{what} not found")]
    NotFound { what: String },
    /// A request that contradicts what already exists.
    #[error("{detail}")]
    Conflict { code: ErrorCode, detail: String },
    /// A usage increment that would pass the quota; nothing was counted.
    #[error("{amount} more {resource} would pass {whose} of {limit} ({used} used)", resource = quota.resource, limit = quota.limit, used = quota.used, whose = whose_quota(quota))]
    QuotaExceeded {
        amount: u32,
        quota: Box<QuotaStatus>,
    },
    /// A point-in-time restore to a moment the archive cannot reach; what it reaches now.
    #[error("{detail}")]
    OutsideRestoreWindow {
        detail: String,
        window: Box<tenancy_core::RestoreWindow>,
    },
    /// Some of an agency's clients had an operation under way: the cascade is tried again.
    #[error(
        "{count} client(s) of agency {agency} have an operation under way; the cascade is tried again"
    )]
    ClientsBusy { agency: OrgId, count: usize },
    #[error("no active server with free capacity in region {region}")]
    NoCapacity { region: Region },
    /// A server this process cannot open admin connections to (no password here for it): other
    /// processes may; placement here skips it, and a provisioning placed on it is placed again.
    #[error("server {server} cannot be reached from this process: {why}")]
    UnknownServer { server: ServerId, why: String },
    /// A tenant provisioned from an older template than the server's, which a fleet migration
    /// moved on meanwhile: provisioning migrates its database before activating it.
    #[error(
        "the template of server {server} is at version {version}, newer than the tenant's database"
    )]
    TemplateAhead { server: ServerId, version: i32 },
    /// `CREATE DATABASE ... TEMPLATE` refuses while anyone is connected to the template.
    #[error("template database on server {server} is in use by another session; retrying")]
    TemplateBusy { server: ServerId },
    #[error("registry database: {0}")]
    Registry(#[source] sqlx::Error),
    #[error("database server {server}: {source}")]
    Server {
        server: ServerId,
        #[source]
        source: sqlx::Error,
    },
    /// `pg_dump` or `pg_restore` failed (a move's copy); the step is tried again.
    #[error("copy: {0}")]
    Copy(String),
    /// The backup store failed a request; the step is tried again.
    #[error("backup store: {0}")]
    BackupStore(String),
    /// A stored backup that does not decrypt and authenticate.
    #[error("backup {0}")]
    BackupUnreadable(String),
    /// The server runs as many backups and restores as `[backups] per_server` allows: the step
    /// waits for one to end.
    #[error("server {0} runs as many backups as it may at once; waiting")]
    BackupSlotsBusy(ServerId),
    /// A copy into a new tenant waits for the tenant's provisioning to end.
    #[error("tenant {0} is still being provisioned; the copy waits for it")]
    TargetProvisioning(OrgId),
    /// A purge waits for the tenant's backup under way to end before it erases backups.
    #[error("backup operation {0} is under way; waiting for it to end")]
    BackupUnderWay(uuid::Uuid),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    /// Another worker took over this operation (our lease expired).
    #[error("lease on operation lost")]
    LeaseLost,
    /// A fault injected by a test, standing for the process dying at that point.
    #[cfg(feature = "testing")]
    #[error("injected crash")]
    InjectedCrash,
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The identity provider refused or failed an admin activation.
    #[error("admin activation: {0}")]
    Activation(#[from] ActivationError),
}

impl ControlError {
    /// The stable code this error is answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ControlError::InvalidId(_) | ControlError::InvalidValue(_) => ErrorCode::InvalidRequest,
            ControlError::Validation(_) => ErrorCode::ValidationFailed,
            ControlError::TenantNotFound(_) | ControlError::NotFound { .. } => ErrorCode::NotFound,
            ControlError::Conflict { code, .. } => *code,
            ControlError::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            ControlError::OutsideRestoreWindow { .. } => ErrorCode::OutsideRestoreWindow,
            ControlError::ClientsBusy { .. }
            | ControlError::BackupSlotsBusy(_)
            | ControlError::BackupUnderWay(_)
            | ControlError::TargetProvisioning(_) => ErrorCode::OperationInProgress,
            ControlError::BackupStore(_) => ErrorCode::BackupStoreUnavailable,
            ControlError::BackupUnreadable(_) => ErrorCode::BackupUnreadable,
            ControlError::NoCapacity { .. } => ErrorCode::NoCapacity,
            ControlError::TemplateBusy { .. } => ErrorCode::TemplateBusy,
            ControlError::Registry(source) if is_unavailable(source) => ErrorCode::Unavailable,
            ControlError::Server { .. }
            | ControlError::UnknownServer { .. }
            | ControlError::Copy(_) => ErrorCode::ServerUnavailable,
            ControlError::Timeout(_) => ErrorCode::Timeout,
            ControlError::Activation(_) => ErrorCode::ZitadelError,
            ControlError::Registry(_)
            | ControlError::Migration(_)
            | ControlError::Config(_)
            | ControlError::Corrupt(_)
            | ControlError::TemplateAhead { .. }
            | ControlError::LeaseLost => ErrorCode::Internal,
            #[cfg(feature = "testing")]
            ControlError::InjectedCrash => ErrorCode::Internal,
        }
    }

    /// Whether an operation step failing with this error should be tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            ControlError::InvalidId(_)
            | ControlError::InvalidValue(_)
            | ControlError::Validation(_)
            | ControlError::TenantNotFound(_)
            | ControlError::NotFound { .. }
            | ControlError::Conflict { .. }
            | ControlError::QuotaExceeded { .. }
            | ControlError::OutsideRestoreWindow { .. }
            | ControlError::Config(_)
            | ControlError::Corrupt(_)
            | ControlError::BackupUnreadable(_)
            | ControlError::LeaseLost => false,
            #[cfg(feature = "testing")]
            ControlError::InjectedCrash => false,
            ControlError::Server { source, .. } => !is_permission_error(source),
            ControlError::Activation(e) => e.retryable,
            ControlError::NoCapacity { .. }
            | ControlError::UnknownServer { .. }
            | ControlError::TemplateBusy { .. }
            | ControlError::TemplateAhead { .. }
            | ControlError::ClientsBusy { .. }
            | ControlError::BackupSlotsBusy(_)
            | ControlError::BackupUnderWay(_)
            | ControlError::TargetProvisioning(_)
            | ControlError::BackupStore(_)
            | ControlError::Registry(_)
            | ControlError::Migration(_)
            | ControlError::Copy(_)
            | ControlError::Timeout(_) => true,
        }
    }

    /// Whether the step waits for other work to end rather than failed: it is tried again
    /// without spending an attempt.
    pub(crate) fn is_waiting(&self) -> bool {
        matches!(
            self,
            ControlError::ClientsBusy { .. }
                | ControlError::BackupSlotsBusy(_)
                | ControlError::BackupUnderWay(_)
                | ControlError::TargetProvisioning(_)
        )
    }

    pub(crate) fn conflict(code: ErrorCode, detail: impl Into<String>) -> Self {
        ControlError::Conflict {
            code,
            detail: detail.into(),
        }
    }

    /// A move that cannot run as asked (`move_unsupported`).
    pub(crate) fn move_unsupported(detail: String) -> Self {
        Self::conflict(ErrorCode::MoveUnsupported, detail)
    }

    /// Whether a server refused a statement with this SQLSTATE.
    pub(crate) fn is_server_sqlstate(&self, code: &str) -> bool {
        matches!(self, ControlError::Server { source, .. } if sqlstate(source).as_deref() == Some(code))
    }

    pub(crate) fn corrupt(e: impl std::fmt::Display) -> Self {
        ControlError::Corrupt(e.to_string())
    }

    /// Maps an error of a server's admin connection, telling a busy template apart.
    pub(crate) fn server(server: &ServerId) -> impl FnOnce(sqlx::Error) -> ControlError + '_ {
        move |source| {
            if sqlstate(&source).as_deref() == Some("55006") {
                ControlError::TemplateBusy {
                    server: server.clone(),
                }
            } else {
                ControlError::Server {
                    server: server.clone(),
                    source,
                }
            }
        }
    }
}

impl From<sqlx::Error> for ControlError {
    fn from(error: sqlx::Error) -> Self {
        ControlError::Registry(error)
    }
}

/// The SQLSTATE of a database error, if it is one.
pub(crate) fn sqlstate(error: &sqlx::Error) -> Option<String> {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
}

fn is_permission_error(error: &sqlx::Error) -> bool {
    sqlstate(error).is_some_and(|code| code == "42501")
}

/// Registry errors that the same request, tried again, gets past: the registry out of reach, or
/// a transaction it ended for a conflict with another (a deadlock, a serialization failure).
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(e) => matches!(e.code().as_deref(), Some("40001" | "40P01")),
        _ => false,
    }
}

/// Which quota refused: the tenant's own, or its agency's cap on the sum over its clients.
fn whose_quota(quota: &QuotaStatus) -> String {
    match &quota.agency_org_id {
        Some(agency) => format!("agency {agency}'s cap on its clients' sum"),
        None => "the quota".to_owned(),
    }
}
