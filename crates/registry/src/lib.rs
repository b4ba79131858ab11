//! The registry service: the HTTP API over the engine (`tenancy-control`). `main.rs` only parses
//! settings and calls [`Application`].

pub mod auth;
pub mod error;
pub mod extract;
pub mod identity;
pub mod metrics;
pub mod orgs;
pub mod routes;
pub mod serve;
pub mod settings;
pub mod startup;
pub mod telemetry;
mod visible;

pub use settings::Settings;
pub use startup::{AppState, Application};
