//! The registry service: the HTTP API over the engine (`tenancy-control`). `main.rs` only parses
//! settings and calls [`Application`].

pub mod auth;
pub mod console;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod oidc;
pub mod routes;
pub mod serve;
pub mod settings;
pub mod startup;
pub mod state;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
mod visible;
pub mod zitadel;

pub use settings::Settings;
pub use startup::Application;
pub use state::AppState;
