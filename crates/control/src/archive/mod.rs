//! The WAL archive of database servers, for point-in-time restores of one tenant on a shared
//! server: the keeper ([`keeper`]) streams each archived server's WAL and takes its base
//! backups into the backup store, encrypted to the server's archive key; a restore to a moment
//! recovers a scratch instance from them ([`scratch`]) and dumps the tenant's database out of
//! it.

pub mod keeper;
pub mod scratch;
pub mod wal;
