//! What every metric the engine records means, for the `# HELP` line of an exporter. The
//! registry calls [`describe_metrics`] once its recorder is installed.

/// Describes the engine's metrics to the installed `metrics` recorder.
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "tenancy_operations_total",
        "Operations that ended, by kind and outcome"
    );
    describe_counter!(
        "tenancy_operation_retries_total",
        "Operation steps that failed and were queued again, by kind"
    );
    describe_histogram!(
        "tenancy_step_duration_seconds",
        Unit::Seconds,
        "Time one operation step took, by kind and step"
    );
    describe_histogram!(
        "tenancy_store_seconds",
        Unit::Seconds,
        "Time one registry query or transaction took, by its name"
    );
    describe_counter!(
        "tenancy_store_errors_total",
        "Registry queries or transactions that failed, by name"
    );
    describe_counter!(
        "tenancy_provision_template_catch_ups_total",
        "Provisionings that migrated their database because the template moved on meanwhile"
    );
    describe_counter!(
        "tenancy_warm_pool_claims_total",
        "Provisionings, by path: warm (a spare claimed) or cold (a clone)"
    );
    describe_histogram!(
        "tenancy_warm_pool_refill_seconds",
        Unit::Seconds,
        "Time one spare took to clone"
    );
    describe_counter!(
        "tenancy_warm_pool_refill_deferred_total",
        "Refills put off (a fleet migration or a cold clone under way), by reason"
    );
    describe_counter!("tenancy_moves_total", "Moves, by mode and outcome");
    describe_counter!(
        "tenancy_move_bytes_total",
        Unit::Bytes,
        "Bytes copied by moves, by mode"
    );
    describe_histogram!(
        "tenancy_move_downtime_seconds",
        Unit::Seconds,
        "How long a moved tenant could not write, by mode"
    );
    describe_histogram!(
        "tenancy_move_cutover_lag_bytes",
        Unit::Bytes,
        "How far an online move's target was behind when its cutover began"
    );
    describe_counter!(
        "tenancy_backups_total",
        "Backups (and restores' safeguard backups) by outcome: completed, failed"
    );
    describe_counter!(
        "tenancy_backup_bytes_total",
        Unit::Bytes,
        "Bytes stored by backups (encrypted)"
    );
    describe_histogram!(
        "tenancy_backup_duration_seconds",
        Unit::Seconds,
        "Time one backup's dump and upload took"
    );
    describe_counter!(
        "tenancy_backup_downloads_total",
        "Backups downloaded as exports"
    );
    describe_counter!(
        "tenancy_backups_expired_total",
        "Backups deleted past their tier's retention"
    );
    describe_gauge!(
        "tenancy_tenants_past_backup_interval",
        "Active and suspended tenants with no completed backup within their tier's interval, by tier"
    );
    describe_gauge!(
        "tenancy_backup_oldest_age_seconds",
        Unit::Seconds,
        "Age of the oldest newest completed backup among a tier's tenants, by tier"
    );
    describe_counter!(
        "tenancy_backup_verifications_total",
        "Backups restored into a scratch database and compared, by outcome: whole, damaged"
    );
    describe_counter!(
        "tenancy_restores_total",
        "Restores by outcome: swapped, abandoned"
    );
    describe_histogram!(
        "tenancy_restore_duration_seconds",
        Unit::Seconds,
        "Time one restore's download, decryption and pg_restore took"
    );
    describe_gauge!(
        "tenancy_wal_archive_lag_bytes",
        Unit::Bytes,
        "WAL a server wrote that its archive does not hold yet, by server"
    );
    describe_gauge!(
        "tenancy_wal_window_seconds",
        Unit::Seconds,
        "How far back a point-in-time restore reaches on a server's archive, by server"
    );
    describe_gauge!(
        "tenancy_wal_last_base_backup_timestamp_seconds",
        Unit::Seconds,
        "When a server's newest base backup ended (Unix time), by server"
    );
    describe_counter!(
        "tenancy_wal_segments_archived_total",
        "WAL segments stored in the archive, by server"
    );
    describe_counter!(
        "tenancy_wal_base_backups_total",
        "Base backups stored in the archive, by server"
    );
    describe_counter!(
        "tenancy_wal_gaps_total",
        "Gaps found between archived WAL segments, by server"
    );
    describe_counter!(
        "tenancy_point_in_time_recoveries_total",
        "Scratch instances recovered to a moment for a point-in-time restore"
    );
    describe_histogram!(
        "tenancy_tenant_migration_seconds",
        Unit::Seconds,
        "Time one tenant database's migration took in a fleet migration"
    );
    describe_gauge!(
        "tenancy_drift_items",
        "Differences between the registry and the servers at the last reconciliation, by kind"
    );
    describe_gauge!(
        "tenancy_tenants_missing_database",
        "Active or suspended tenants whose database is missing on their server"
    );
    describe_histogram!(
        "tenancy_usage_round_seconds",
        Unit::Seconds,
        "Time one usage-sampling round took"
    );
    describe_counter!(
        "tenancy_usage_counted_total",
        "Product usage counted, by resource"
    );
    describe_counter!(
        "tenancy_usage_enforcement_failures_total",
        "Tenants whose storage quota could not be enforced in a sampling round (tried again next round)"
    );
    describe_counter!(
        "tenancy_quota_refusals_total",
        "Usage increments refused for a quota, by resource"
    );
    describe_counter!(
        "tenancy_quota_warnings_total",
        "Storage-quota warnings sent, by level"
    );
    describe_counter!(
        "tenancy_webhook_deliveries_total",
        "Storage-warning webhook deliveries, by outcome"
    );
}
