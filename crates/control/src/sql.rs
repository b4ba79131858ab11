//! The one place SQL text is built from names. Values always travel as bind parameters; names
//! (databases, roles) cannot be bound in DDL, so they pass through [`ident`], and the few literals
//! DDL needs (a SCRAM verifier, a setting) through [`literal`]. Both names and literals reaching
//! here were already validated by `tenancy-core` types; quoting is the second line of defence.

use sqlx::AssertSqlSafe;

/// Quotes an SQL identifier: `acme` -> `"acme"`, with embedded quotes doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal (`standard_conforming_strings` is on in every supported version).
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Marks DDL assembled from [`ident`] and [`literal`] output as safe for sqlx.
pub fn ddl(sql: String) -> AssertSqlSafe<String> {
    AssertSqlSafe(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
