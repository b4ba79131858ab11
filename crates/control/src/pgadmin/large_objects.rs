//! A tenant's large objects, which neither logical replication nor a schema-only dump carries,
//! and which a dump restored with `--no-owner` hands to the admin (the tenant then reads them
//! no more). A move copies them itself, while the tenant is blocked: content in chunks, the
//! owner (the tenant's role, or the admin), and the grants to the tenant's role and `PUBLIC`.
//! Grants to other roles are not carried: a tenant's role can name roles of its server only,
//! and the target's roles of those names are other tenants'.

use sqlx::{Connection, PgConnection};
use tenancy_core::{DbName, RoleName};
use tracing::instrument;

use super::ServerAdmin;
use crate::error::ControlError;
use crate::sql::{ddl, ident};

/// Bytes read and written at once: large enough to keep round trips few, small enough to keep
/// the engine's memory flat whatever an object's size.
const CHUNK: i32 = 1 << 20;

/// The privileges a large object can grant.
const PRIVILEGES: [&str; 2] = ["SELECT", "UPDATE"];

/// One large object of the source, as copied.
#[derive(sqlx::FromRow)]
struct LargeObject {
    oid: i64,
    /// Owned by the tenant's role (else by the admin).
    tenant_owned: bool,
    /// The privileges granted, each `grantee=privilege` with `PUBLIC` for everyone; only
    /// grants to the tenant's role and `PUBLIC` (see the module's comment).
    grants: Vec<String>,
}

/// The large objects of the database, with who owns each and what it grants. The tenant's role
/// is `$1`; `current_user` (the admin) stands for the admin on either server.
const LARGE_OBJECTS: &str = "
    SELECT m.oid::int8 AS oid, pg_get_userbyid(m.lomowner) = $1 AS tenant_owned,
           coalesce(array(
               SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END
                      || '=' || a.privilege_type
               FROM aclexplode(m.lomacl) a
               WHERE a.grantee = 0 OR pg_get_userbyid(a.grantee) = $1
               ORDER BY 1), '{}') AS grants
    FROM pg_largeobject_metadata m ORDER BY m.oid";

impl ServerAdmin {
    /// How many large objects the database holds, and a digest of each one's id, owner, grants
    /// (as [`LargeObject`] sees them) and content: what a move's verification compares. An
    /// object larger than 1 GB cannot be read whole, and fails the verification.
    pub async fn large_object_digest(
        &self,
        db: &DbName,
        role: &RoleName,
    ) -> Result<(i64, String), ControlError> {
        let mut conn = self.connect_to(db.as_str()).await?;
        let digest = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*), coalesce(sum(hashtextextended(
                    l.oid || ':' || l.tenant_owned || ':' || array_to_string(l.grants, ',') || ':'
                    || md5(lo_get(l.oid::oid)), 0)), 0)::text
             FROM ({LARGE_OBJECTS}) l"
        )))
        .bind(role.as_str())
        .fetch_one(&mut conn)
        .await
        .map_err(self.err());
        let _ = conn.close().await;
        digest
    }

    /// Copies the database's large objects to the same database on `target`, replacing any
    /// there (a run after a crash starts over), in one transaction there. Returns the bytes
    /// copied.
    #[instrument(skip(self, target), fields(server_id = %self.id, target = %target.id))]
    pub async fn copy_large_objects(
        &self,
        db: &DbName,
        role: &RoleName,
        target: &ServerAdmin,
    ) -> Result<u64, ControlError> {
        let mut from = self.connect_to(db.as_str()).await?;
        let mut to = target.connect_to(db.as_str()).await?;
        let copied = copy_all(&mut from, &mut to, role)
            .await
            .map_err(ControlError::server(&target.id));
        let _ = from.close().await;
        let _ = to.close().await;
        copied
    }
}

async fn copy_all(
    from: &mut PgConnection,
    to: &mut PgConnection,
    role: &RoleName,
) -> Result<u64, sqlx::Error> {
    let objects: Vec<LargeObject> = sqlx::query_as(LARGE_OBJECTS)
        .bind(role.as_str())
        .fetch_all(&mut *from)
        .await?;
    let mut tx = to.begin().await?;
    sqlx::query("SELECT lo_unlink(oid) FROM pg_largeobject_metadata")
        .execute(&mut *tx)
        .await?;
    let mut bytes = 0u64;
    for object in &objects {
        sqlx::query("SELECT lo_create($1::int8::oid)")
            .bind(object.oid)
            .execute(&mut *tx)
            .await?;
        let mut offset = 0i64;
        loop {
            let chunk: Vec<u8> = sqlx::query_scalar("SELECT lo_get($1::int8::oid, $2, $3)")
                .bind(object.oid)
                .bind(offset)
                .bind(CHUNK)
                .fetch_one(&mut *from)
                .await?;
            if chunk.is_empty() {
                break;
            }
            sqlx::query("SELECT lo_put($1::int8::oid, $2, $3)")
                .bind(object.oid)
                .bind(offset)
                .bind(&chunk)
                .execute(&mut *tx)
                .await?;
            offset += chunk.len() as i64;
            bytes += chunk.len() as u64;
        }
        // The oid is a number from the catalog, and the privilege one of a fixed set.
        if object.tenant_owned {
            sqlx::query(ddl(format!(
                "ALTER LARGE OBJECT {} OWNER TO {}",
                object.oid,
                ident(role.as_str())
            )))
            .execute(&mut *tx)
            .await?;
        }
        for grant in &object.grants {
            let Some((grantee, privilege)) = grant.rsplit_once('=') else {
                continue;
            };
            let Some(privilege) = PRIVILEGES.iter().find(|p| **p == privilege) else {
                continue;
            };
            let grantee = if grantee == "PUBLIC" {
                "PUBLIC".to_owned()
            } else {
                ident(role.as_str())
            };
            sqlx::query(ddl(format!(
                "GRANT {privilege} ON LARGE OBJECT {} TO {grantee}",
                object.oid
            )))
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(bytes)
}
