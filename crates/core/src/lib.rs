//! Vocabulary shared by every crate of the control plane: typed identifiers validated once at the
//! edge, tenant and operation states, tiers, the registry API's request and response types, and
//! the error codes every HTTP surface answers with. Nothing here does I/O.

mod ids;
mod integral;
mod model;
mod present;
mod problem;
mod quota;
mod settings;
mod slug;
mod tls;

pub use ids::{
    DbName, Email, FeatureName, IdError, IdempotencyKey, OrgId, PasswordEnv, PersonName, PgName,
    QuotaName, Region, RoleName, SERVER_PASSWORD_PREFIX, ServerHost, ServerId, SettingKey, Slug,
    TenantName, Tier,
};
pub use model::{
    AddServer, Backup, BackupKind, BackupPage, BackupState, ChangeFeed, ConnectionInfo, CreateOrg,
    CreateTenant, Lane, MoveMode, MoveTenant, Operation, OperationKind, OperationState, OrgAdmin,
    ProvisionPath, RestoreFromBackup, RestoreInto, RestoreSource, RestoreTenant, RestoreToMoment,
    RestoreWindow, Server, ServerState, Step, SuspendedBy, Tenant, TenantChange, TenantHealth,
    TenantKind, TenantMove, TenantPlace, TenantSelector, TenantStatus, TenantUsage, UnknownVariant,
    UpdateTenant, UsageSample, WalStatus,
};
pub use problem::{ErrorCode, PROBLEM_CONTENT_TYPE, Problem};
pub use quota::{
    MAX_USAGE_AMOUNT, PeriodWindow, QuotaCheck, QuotaCheckRequest, QuotaPeriod, QuotaStatus,
    UsageCounted, UsageIncrement, UsageLogEntry, UsageLogPage, usage_amount,
};
pub use settings::{
    EffectiveFeatures, FEATURE_PREFIX, MAX_SETTING_BYTES, PutSetting, Setting, SettingType,
};
pub use slug::slug_from_name;
pub use tls::{SslMode, is_loopback_host};
