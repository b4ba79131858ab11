//! The WAL archive's catalog: each archived server's sealed key (`wal_archive_keys`), its base
//! backups (`wal_base_backups`), segments (`wal_segments`) and marks (`wal_marks`). A base
//! backup's row is written before its object; objects are deleted before their rows.

use chrono::{DateTime, Utc};
use tenancy_core::ServerId;
use uuid::Uuid;

use super::Store;
use crate::archive::wal::Lsn;
use crate::error::ControlError;
use crate::secrets::SealedSetting;

/// A completed base backup, as a recovery reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BaseBackup {
    pub id: Uuid,
    pub timeline: i32,
    pub start_segno: i64,
    pub object_key: String,
    pub size_bytes: i64,
    pub stored_bytes: i64,
    pub sha256: String,
    /// The server's databases when it began: `[{"name", "oid", "bytes"}]`.
    pub databases: serde_json::Value,
}

/// One archived segment.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ArchivedSegment {
    pub segno: i64,
    pub object_key: String,
    pub stored_bytes: i64,
    pub sha256: String,
}

/// What a server's archive reaches now, and how it stands.
#[derive(Debug, Clone, Default)]
pub struct ArchiveState {
    pub timeline: Option<i32>,
    /// The newest archived segment, and when.
    pub last: Option<(i64, DateTime<Utc>)>,
    /// Where the newest archived segment ends.
    pub archived_to: Option<Lsn>,
    pub segments: i64,
    pub gaps: i64,
    /// The first segment of the newest unbroken run.
    pub unbroken_from: Option<i64>,
    pub base_backups: i64,
    pub last_base_backup_at: Option<DateTime<Utc>>,
    pub earliest: Option<DateTime<Utc>>,
    pub latest: Option<DateTime<Utc>>,
}

/// The newest timeline, its newest segment (number, when, where it ends), how many segments
/// and gaps, and where the newest unbroken run starts.
type ChainRow = (
    Option<i32>,
    Option<i64>,
    Option<DateTime<Utc>>,
    Option<String>,
    i64,
    i64,
    Option<i64>,
);

/// What a retention round found past the window.
pub struct Expired {
    pub base_backups: Vec<(Uuid, String)>,
    pub segments: Vec<(i32, i64, String)>,
}

impl Store {
    /// The servers the tenant was on, newest first, each with when it came there (made, or
    /// moved there: the move history).
    pub(crate) async fn placements(
        &self,
        tenant: &tenancy_core::Tenant,
    ) -> Result<Vec<(ServerId, DateTime<Utc>)>, ControlError> {
        let Some(current) = &tenant.server_id else {
            return Ok(Vec::new());
        };
        let moves = self.switched_moves(&tenant.org_id).await?;
        let mut placements = vec![(
            current.clone(),
            moves.last().map_or(tenant.created_at, |(_, _, at)| *at),
        )];
        for (i, (from, _, _)) in moves.iter().enumerate().rev() {
            let since = if i == 0 {
                tenant.created_at
            } else {
                moves[i - 1].2
            };
            placements.push((from.clone(), since));
        }
        Ok(placements)
    }

    /// The server the tenant's database was on at `moment`.
    pub(crate) async fn server_at(
        &self,
        tenant: &tenancy_core::Tenant,
        moment: DateTime<Utc>,
    ) -> Result<Option<ServerId>, ControlError> {
        Ok(self
            .placements(tenant)
            .await?
            .into_iter()
            .find(|(_, since)| *since <= moment)
            .map(|(server, _)| server))
    }

    /// The tenant's finished moves, oldest first: from, to, when it switched.
    async fn switched_moves(
        &self,
        org_id: &tenancy_core::OrgId,
    ) -> Result<Vec<(ServerId, ServerId, DateTime<Utc>)>, ControlError> {
        self.run("switched_moves", async {
            let rows: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
                "SELECT source_server_id, target_server_id, switched_at FROM tenant_moves
                 WHERE org_id = $1 AND switched_at IS NOT NULL ORDER BY switched_at",
            )
            .bind(org_id.as_str())
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|(from, to, at)| {
                    Ok((
                        from.parse().map_err(ControlError::corrupt)?,
                        to.parse().map_err(ControlError::corrupt)?,
                        at,
                    ))
                })
                .collect()
        })
        .await
    }

    /// The databases of the tenants on `server` other than `org_id`'s (what a recovery leaves
    /// out).
    pub(crate) async fn other_tenant_databases(
        &self,
        server: &ServerId,
        org_id: &tenancy_core::OrgId,
    ) -> Result<std::collections::BTreeSet<String>, ControlError> {
        self.run("other_tenant_databases", async {
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT db_name FROM tenants WHERE server_id = $1 AND org_id <> $2",
            )
            .bind(server.as_str())
            .bind(org_id.as_str())
            .fetch_all(&self.pool)
            .await?;
            Ok(names.into_iter().collect())
        })
        .await
    }

    pub(crate) async fn archive_key(
        &self,
        server: &ServerId,
    ) -> Result<Option<(SealedSetting, String)>, ControlError> {
        self.run("archive_key", async {
            let row: Option<(String, Vec<u8>, String)> = sqlx::query_as(
                "SELECT key_id, sealed, recipient FROM wal_archive_keys WHERE server_id = $1",
            )
            .bind(server.as_str())
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.map(|(key_id, bytes, recipient)| (SealedSetting { key_id, bytes }, recipient)))
        })
        .await
    }

    /// Archive keys sealed under another master key than `key_id`.
    pub(crate) async fn archive_keys_to_reseal(
        &self,
        key_id: &str,
    ) -> Result<Vec<(ServerId, SealedSetting)>, ControlError> {
        self.run("archive_keys_to_reseal", async {
            let rows: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
                "SELECT server_id, key_id, sealed FROM wal_archive_keys WHERE key_id <> $1",
            )
            .bind(key_id)
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|(server, key_id, bytes)| {
                    Ok((
                        server.parse().map_err(ControlError::corrupt)?,
                        SealedSetting { key_id, bytes },
                    ))
                })
                .collect()
        })
        .await
    }

    /// Replaces an archive key's sealing (same key, sealed under another master key).
    pub(crate) async fn reseal_archive_key(
        &self,
        server: &ServerId,
        before: &str,
        sealed: &SealedSetting,
    ) -> Result<(), ControlError> {
        self.run("reseal_archive_key", async {
            sqlx::query(
                "UPDATE wal_archive_keys SET key_id = $3, sealed = $4
                 WHERE server_id = $1 AND key_id = $2",
            )
            .bind(server.as_str())
            .bind(before)
            .bind(&sealed.key_id)
            .bind(&sealed.bytes)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    /// Stores the server's archive key unless it has one already; returns the one it has.
    pub(crate) async fn insert_archive_key(
        &self,
        server: &ServerId,
        sealed: &SealedSetting,
        recipient: &str,
    ) -> Result<String, ControlError> {
        self.run("insert_archive_key", async {
            sqlx::query(
                "INSERT INTO wal_archive_keys (server_id, key_id, sealed, recipient)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (server_id) DO NOTHING",
            )
            .bind(server.as_str())
            .bind(&sealed.key_id)
            .bind(&sealed.bytes)
            .bind(recipient)
            .execute(&self.pool)
            .await?;
            let recipient: String =
                sqlx::query_scalar("SELECT recipient FROM wal_archive_keys WHERE server_id = $1")
                    .bind(server.as_str())
                    .fetch_one(&self.pool)
                    .await?;
            Ok(recipient)
        })
        .await
    }

    /// Every object the archive's catalog records, and whether it counts as stored (a base
    /// backup once completed; a segment always: its row is written once it is stored).
    pub(crate) async fn archive_objects(&self) -> Result<Vec<(String, bool)>, ControlError> {
        self.run("archive_objects", async {
            Ok(sqlx::query_as(
                "SELECT object_key, state = 'completed' FROM wal_base_backups
                 UNION ALL SELECT object_key, true FROM wal_segments",
            )
            .fetch_all(&self.pool)
            .await?)
        })
        .await
    }

    /// The newest archived segment of `timeline`.
    pub(crate) async fn last_segment(
        &self,
        server: &ServerId,
        timeline: i32,
    ) -> Result<Option<i64>, ControlError> {
        self.run("last_segment", async {
            Ok(sqlx::query_scalar(
                "SELECT max(segno) FROM wal_segments WHERE server_id = $1 AND timeline = $2",
            )
            .bind(server.as_str())
            .bind(timeline)
            .fetch_one(&self.pool)
            .await?)
        })
        .await
    }

    /// Records a stored segment (once: a second keeper storing it again changes nothing).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn segment_archived(
        &self,
        server: &ServerId,
        timeline: i32,
        segno: i64,
        end: Lsn,
        object_key: &str,
        stored: (u64, &str),
        by: &str,
    ) -> Result<(), ControlError> {
        self.run("segment_archived", async {
            sqlx::query(
                "INSERT INTO wal_segments
                     (server_id, timeline, segno, end_lsn, object_key, stored_bytes, sha256,
                      archived_by)
                 VALUES ($1, $2, $3, $4::pg_lsn, $5, $6, $7, $8)
                 ON CONFLICT DO NOTHING",
            )
            .bind(server.as_str())
            .bind(timeline)
            .bind(segno)
            .bind(end.to_string())
            .bind(object_key)
            .bind(i64::try_from(stored.0).map_err(ControlError::corrupt)?)
            .bind(stored.1)
            .bind(by)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn insert_mark(
        &self,
        server: &ServerId,
        at: DateTime<Utc>,
        lsn: Lsn,
    ) -> Result<(), ControlError> {
        self.run("insert_mark", async {
            sqlx::query(
                "INSERT INTO wal_marks (server_id, at, lsn) VALUES ($1, $2, $3::pg_lsn)
                 ON CONFLICT DO NOTHING",
            )
            .bind(server.as_str())
            .bind(at)
            .bind(lsn.to_string())
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    /// Writes a base backup's row before its object is stored.
    pub(crate) async fn base_backup_started(
        &self,
        server: &ServerId,
        timeline: i32,
        start_segno: i64,
        databases: &serde_json::Value,
    ) -> Result<(Uuid, String), ControlError> {
        self.run("base_backup_started", async {
            let id = Uuid::new_v4();
            let key = crate::archive::wal::base_backup_key(server, id);
            sqlx::query(
                "INSERT INTO wal_base_backups
                     (id, server_id, timeline, start_segno, object_key, state, databases)
                 VALUES ($1, $2, $3, $4, $5, 'running', $6)",
            )
            .bind(id)
            .bind(server.as_str())
            .bind(timeline)
            .bind(start_segno)
            .bind(&key)
            .bind(databases)
            .execute(&self.pool)
            .await?;
            Ok((id, key))
        })
        .await
    }

    pub(crate) async fn base_backup_ended(
        &self,
        id: Uuid,
        outcome: Result<(u64, u64, &str), &str>,
    ) -> Result<(), ControlError> {
        self.run("base_backup_ended", async {
            match outcome {
                Ok((size, stored, sha256)) => {
                    sqlx::query(
                        "UPDATE wal_base_backups SET state = 'completed', size_bytes = $2,
                             stored_bytes = $3, sha256 = $4, completed_at = now()
                         WHERE id = $1",
                    )
                    .bind(id)
                    .bind(i64::try_from(size).map_err(ControlError::corrupt)?)
                    .bind(i64::try_from(stored).map_err(ControlError::corrupt)?)
                    .bind(sha256)
                    .execute(&self.pool)
                    .await?;
                }
                Err(error) => {
                    sqlx::query(
                        "UPDATE wal_base_backups SET state = 'failed', error = $2 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(error)
                    .execute(&self.pool)
                    .await?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Base backups a keeper that died left running: failed, their objects to delete.
    pub(crate) async fn abandoned_base_backups(
        &self,
        server: &ServerId,
    ) -> Result<Vec<(Uuid, String)>, ControlError> {
        self.run("abandoned_base_backups", async {
            Ok(sqlx::query_as(
                "UPDATE wal_base_backups SET state = 'failed', error = 'its keeper stopped'
                 WHERE server_id = $1 AND state = 'running' RETURNING id, object_key",
            )
            .bind(server.as_str())
            .fetch_all(&self.pool)
            .await?)
        })
        .await
    }

    /// The newest completed base backup of `timeline` that ended at or before `moment`, taken
    /// after `from_segno` (the start of the archive's unbroken WAL).
    pub(crate) async fn base_backup_before(
        &self,
        server: &ServerId,
        timeline: i32,
        from_segno: i64,
        moment: DateTime<Utc>,
    ) -> Result<Option<BaseBackup>, ControlError> {
        self.run("base_backup_before", async {
            Ok(sqlx::query_as(
                "SELECT id, timeline, start_segno, object_key, size_bytes, stored_bytes, sha256,
                        databases
                 FROM wal_base_backups
                 WHERE server_id = $1 AND timeline = $2 AND state = 'completed'
                   AND start_segno >= $3 AND completed_at <= $4
                 ORDER BY completed_at DESC LIMIT 1",
            )
            .bind(server.as_str())
            .bind(timeline)
            .bind(from_segno)
            .bind(moment)
            .fetch_optional(&self.pool)
            .await?)
        })
        .await
    }

    /// Archived segments `from..=to` of `timeline`, in order.
    pub(crate) async fn archived_segments(
        &self,
        server: &ServerId,
        timeline: i32,
        from: i64,
        to: i64,
    ) -> Result<Vec<ArchivedSegment>, ControlError> {
        self.run("archived_segments", async {
            Ok(sqlx::query_as(
                "SELECT segno, object_key, stored_bytes, sha256 FROM wal_segments
                 WHERE server_id = $1 AND timeline = $2 AND segno BETWEEN $3 AND $4
                 ORDER BY segno",
            )
            .bind(server.as_str())
            .bind(timeline)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?)
        })
        .await
    }

    /// Where the first mark after `moment` lies, once archived: a recovery to `moment` needs
    /// WAL up to there.
    pub(crate) async fn mark_after(
        &self,
        server: &ServerId,
        moment: DateTime<Utc>,
    ) -> Result<Option<Lsn>, ControlError> {
        self.run("mark_after", async {
            let lsn: Option<String> = sqlx::query_scalar(
                "SELECT lsn::text FROM wal_marks WHERE server_id = $1 AND at > $2
                 ORDER BY at LIMIT 1",
            )
            .bind(server.as_str())
            .bind(moment)
            .fetch_optional(&self.pool)
            .await?;
            lsn.map(|l| l.parse()).transpose()
        })
        .await
    }

    /// The archive of `server`: its newest timeline's unbroken run of segments (the last gap
    /// ends the window's past), the base backups inside it, and the marks it holds.
    pub(crate) async fn archive_state(
        &self,
        server: &ServerId,
    ) -> Result<ArchiveState, ControlError> {
        self.run("archive_state", async {
            let row: ChainRow = sqlx::query_as(
                "WITH tl AS (SELECT max(timeline) AS timeline FROM wal_segments
                             WHERE server_id = $1),
                      seg AS (SELECT segno, end_lsn, archived_at FROM wal_segments, tl
                              WHERE server_id = $1 AND wal_segments.timeline = tl.timeline),
                      starts AS (SELECT s.segno FROM seg s
                                 WHERE NOT EXISTS (SELECT 1 FROM seg p WHERE p.segno = s.segno - 1)),
                      last AS (SELECT segno, end_lsn, archived_at FROM seg
                               ORDER BY segno DESC LIMIT 1)
                 SELECT (SELECT timeline FROM tl), (SELECT segno FROM last),
                        (SELECT archived_at FROM last), (SELECT end_lsn::text FROM last),
                        (SELECT count(*) FROM seg),
                        greatest((SELECT count(*) FROM starts) - 1, 0),
                        (SELECT max(segno) FROM starts)",
            )
            .bind(server.as_str())
            .fetch_one(&self.pool)
            .await?;
            let (timeline, last, last_at, end, segments, gaps, chain_start) = row;
            let (base_backups, last_base_backup_at): (i64, Option<DateTime<Utc>>) =
                sqlx::query_as(
                    "SELECT count(*), max(completed_at) FROM wal_base_backups
                     WHERE server_id = $1 AND state = 'completed'",
                )
                .bind(server.as_str())
                .fetch_one(&self.pool)
                .await?;
            let mut state = ArchiveState {
                timeline,
                last: last.zip(last_at),
                archived_to: end.map(|e| e.parse()).transpose()?,
                segments,
                gaps,
                unbroken_from: chain_start,
                base_backups,
                last_base_backup_at,
                ..ArchiveState::default()
            };
            let (Some(timeline), Some(chain_start), Some(end)) =
                (timeline, chain_start, state.archived_to)
            else {
                return Ok(state);
            };
            let earliest: Option<DateTime<Utc>> = sqlx::query_scalar(
                "SELECT min(completed_at) FROM wal_base_backups
                 WHERE server_id = $1 AND timeline = $2 AND state = 'completed'
                   AND start_segno >= $3 AND start_segno <= $4",
            )
            .bind(server.as_str())
            .bind(timeline)
            .bind(chain_start)
            .bind(last)
            .fetch_one(&self.pool)
            .await?;
            let latest: Option<DateTime<Utc>> = sqlx::query_scalar(
                "SELECT max(at) FROM wal_marks WHERE server_id = $1 AND lsn <= $2::pg_lsn",
            )
            .bind(server.as_str())
            .bind(end.to_string())
            .fetch_one(&self.pool)
            .await?;
            // A moment after `latest` is still reached (the restore forces a WAL switch):
            // `latest` only says what needs no switch.
            state.earliest = earliest;
            state.latest = latest.filter(|l| earliest.is_some_and(|e| e < *l));
            Ok(state)
        })
        .await
    }

    /// What lies before the window kept: base backups older than the newest one that ended
    /// before `keep_since`, and the segments and marks before it.
    pub(crate) async fn expired_archive(
        &self,
        server: &ServerId,
        keep_since: DateTime<Utc>,
    ) -> Result<Expired, ControlError> {
        self.run("expired_archive", async {
            let cutoff: Option<(i32, i64, DateTime<Utc>)> = sqlx::query_as(
                "SELECT timeline, start_segno, completed_at FROM wal_base_backups
                 WHERE server_id = $1 AND state = 'completed' AND completed_at < $2
                 ORDER BY completed_at DESC LIMIT 1",
            )
            .bind(server.as_str())
            .bind(keep_since)
            .fetch_optional(&self.pool)
            .await?;
            let Some((timeline, start, completed)) = cutoff else {
                return Ok(Expired {
                    base_backups: Vec::new(),
                    segments: Vec::new(),
                });
            };
            let base_backups = sqlx::query_as(
                "SELECT id, object_key FROM wal_base_backups
                 WHERE server_id = $1 AND state <> 'running' AND coalesce(completed_at, started_at) < $2",
            )
            .bind(server.as_str())
            .bind(completed)
            .fetch_all(&self.pool)
            .await?;
            let segments = sqlx::query_as(
                "SELECT timeline, segno, object_key FROM wal_segments
                 WHERE server_id = $1 AND (timeline < $2 OR (timeline = $2 AND segno < $3))",
            )
            .bind(server.as_str())
            .bind(timeline)
            .bind(start)
            .fetch_all(&self.pool)
            .await?;
            sqlx::query("DELETE FROM wal_marks WHERE server_id = $1 AND at < $2")
                .bind(server.as_str())
                .bind(completed)
                .execute(&self.pool)
                .await?;
            Ok(Expired {
                base_backups,
                segments,
            })
        })
        .await
    }

    /// Forgets what [`Store::expired_archive`] found, once its objects are deleted.
    pub(crate) async fn forget_expired(
        &self,
        server: &ServerId,
        expired: &Expired,
    ) -> Result<(), ControlError> {
        self.run("forget_expired", async {
            let ids: Vec<Uuid> = expired.base_backups.iter().map(|(id, _)| *id).collect();
            sqlx::query("DELETE FROM wal_base_backups WHERE id = ANY($1)")
                .bind(&ids)
                .execute(&self.pool)
                .await?;
            for (timeline, segno, _) in &expired.segments {
                sqlx::query(
                    "DELETE FROM wal_segments WHERE server_id = $1 AND timeline = $2 AND segno = $3",
                )
                .bind(server.as_str())
                .bind(timeline)
                .bind(segno)
                .execute(&self.pool)
                .await?;
            }
            Ok(())
        })
        .await
    }
}
