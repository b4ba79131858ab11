//! Tenant backups: where they are stored ([`BackupStore`]) and how they are encrypted
//! ([`crypt`]). The backup and restore operations (`operations::backup`,
//! `operations::restore`) stream `pg_dump` through encryption into the store and back.

pub mod crypt;
mod storage;

pub use storage::{BackupStore, Hashing, Upload};
