//! `tenantctl`: parses the command line and hands it to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tenantctl::init_logging();
    tenantctl::run(tenantctl::Cli::parse()).await.into()
}
