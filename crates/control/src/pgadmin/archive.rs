//! What the WAL keeper and a point-in-time restore ask of a database server: its WAL geometry
//! and position, the archive's replication slot, marks and WAL switches.

use chrono::{DateTime, Utc};
use sqlx::{Connection, Row};
use tracing::instrument;

use super::ServerAdmin;
use crate::archive::wal::{Lsn, Segments};
use crate::error::ControlError;

/// Where a server's WAL stands.
#[derive(Debug, Clone, Copy)]
pub struct WalFacts {
    pub timeline: u32,
    pub segments: Segments,
    /// Where the next WAL record goes.
    pub insert: Lsn,
}

impl ServerAdmin {
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn wal_facts(&self) -> Result<WalFacts, ControlError> {
        let row = sqlx::query(
            "SELECT (SELECT timeline_id FROM pg_control_checkpoint())::bigint AS timeline,
                    (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')
                        AS segment_bytes,
                    pg_current_wal_insert_lsn()::text AS insert,
                    current_setting('wal_level') AS wal_level",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(self.err())?;
        let wal_level: String = row.get("wal_level");
        if wal_level == "minimal" {
            return Err(ControlError::Config(format!(
                "server {}: wal_level is minimal; archiving needs replica or logical",
                self.id
            )));
        }
        let timeline: i64 = row.get("timeline");
        let bytes: i64 = row.get("segment_bytes");
        Ok(WalFacts {
            timeline: u32::try_from(timeline).map_err(ControlError::corrupt)?,
            segments: Segments::new(u64::try_from(bytes).map_err(ControlError::corrupt)?)?,
            insert: row.get::<String, _>("insert").parse()?,
        })
    }

    /// Makes the archive's physical slot (reserving WAL from now) unless it exists; returns
    /// where it holds WAL from.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn ensure_archive_slot(&self, slot: &str) -> Result<Lsn, ControlError> {
        sqlx::query(
            "SELECT pg_create_physical_replication_slot($1, true)
             WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
        )
        .bind(slot)
        .execute(&self.pool)
        .await
        .map_err(self.err())?;
        let restart: Option<String> = sqlx::query_scalar(
            "SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
        )
        .bind(slot)
        .fetch_one(&self.pool)
        .await
        .map_err(self.err())?;
        restart
            .ok_or_else(|| {
                ControlError::Corrupt(format!(
                    "server {}: slot {slot} holds no WAL (restart_lsn is null)",
                    self.id
                ))
            })?
            .parse()
    }

    /// Ends the WAL streams of `application_name` (a keeper's `pg_receivewal` that outlived its
    /// process, killed without a chance to stop it); returns how many.
    pub async fn end_wal_streams(&self, application_name: &str) -> Result<i64, ControlError> {
        sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_replication
             WHERE application_name = $1",
        )
        .bind(application_name)
        .fetch_one(&self.pool)
        .await
        .map_err(self.err())
    }

    /// Lets the server recycle WAL before `to` (stored in the archive).
    pub async fn advance_archive_slot(&self, slot: &str, to: Lsn) -> Result<(), ControlError> {
        sqlx::query(
            "SELECT pg_replication_slot_advance(slot_name, $2::pg_lsn) FROM pg_replication_slots
             WHERE slot_name = $1 AND restart_lsn < $2::pg_lsn",
        )
        .bind(slot)
        .bind(to.to_string())
        .execute(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(())
    }

    /// A mark: a commit (a transaction with an id) made after `at`, which ends before the
    /// returned position. Once WAL to there is archived, a recovery to any moment before `at`
    /// finds a commit after its target and stops.
    pub async fn wal_mark(&self) -> Result<(DateTime<Utc>, Lsn), ControlError> {
        let mut connection = self.pool.acquire().await.map_err(self.err())?;
        let mut tx = connection.begin().await.map_err(self.err())?;
        let at: DateTime<Utc> =
            sqlx::query_scalar("SELECT clock_timestamp() FROM (SELECT pg_current_xact_id()) x")
                .fetch_one(&mut *tx)
                .await
                .map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        let lsn: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
            .fetch_one(&mut *connection)
            .await
            .map_err(self.err())?;
        Ok((at, lsn.parse()?))
    }

    /// Closes the current WAL segment so that it is archived now.
    pub async fn switch_wal(&self) -> Result<(), ControlError> {
        sqlx::query("SELECT pg_switch_wal()")
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    /// Every database with its oid and size (`[{"name", "oid", "bytes"}]`).
    pub async fn database_sizes(&self) -> Result<serde_json::Value, ControlError> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT datname::text, oid::bigint,
                    CASE WHEN has_database_privilege(oid, 'CONNECT')
                         THEN pg_database_size(oid) ELSE 0 END
             FROM pg_database ORDER BY oid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(serde_json::Value::Array(
            rows.into_iter()
                .map(|(name, oid, bytes)| serde_json::json!({"name": name, "oid": oid, "bytes": bytes}))
                .collect(),
        ))
    }
}
