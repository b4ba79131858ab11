//! Engine tests against real PostgreSQL clusters from the test kit. One test binary, one module
//! per concern.

mod helpers;

mod agencies;
mod backups;
mod crash;
mod credentials;
mod feed;
mod isolation;
mod lifecycle;
mod moves;
mod onboarding;
mod placement;
mod point_in_time;
mod reconcile;
mod settings;
mod storage;
mod tiers;
mod tls;
mod validation;
mod warm_pool;
mod workers;
