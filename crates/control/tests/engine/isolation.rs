use crate::helpers::*;
use tenancy_testkit::TestFleet;

#[tokio::test]
async fn a_tenant_role_reaches_only_its_own_database_and_cannot_escalate() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let a = onboard(&engine, request("4001", "Alpha")).await;
    let b = onboard(&engine, request("4002", "Beta")).await;
    let cluster = fleet.cluster("pg-1");
    let (a_db, b_db) = (a.db_name.as_str(), b.db_name.as_str());

    for other in [b_db, "tenant_template", "postgres", "tenancy_registry"] {
        let err = connect_as(&engine, cluster, a_db, other).await.unwrap_err();
        assert!(
            err.to_string().contains("permission denied for database"),
            "{other}: {err}"
        );
    }

    let mut conn = connect_as(&engine, cluster, a_db, a_db).await.unwrap();
    for (sql, expected) in [
        (
            "CREATE DATABASE evil",
            "permission denied to create database",
        ),
        ("CREATE ROLE evil", "permission denied to create role"),
        ("DROP DATABASE tenant_alpha", "must be owner of database"),
        ("ALTER ROLE tenant_alpha SUPERUSER", "must be superuser"),
        (
            "ALTER DATABASE tenant_alpha CONNECTION LIMIT 1000",
            "must be owner of database",
        ),
        (
            "GRANT CONNECT ON DATABASE tenant_beta TO tenant_alpha",
            "permission denied",
        ),
    ] {
        let err = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(expected), "{sql}: {err}");
    }
    // Still a normal tenant inside its own database.
    sqlx::raw_sql("INSERT INTO teams (name) VALUES ('ops')")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(cluster.psql("postgres", "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = 'tenant_alpha'").unwrap(), "f|f|f");
    assert_eq!(
        cluster
            .psql(
                "postgres",
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'tenant_alpha'"
            )
            .unwrap(),
        "postgres"
    );
}
