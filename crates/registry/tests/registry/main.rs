//! The registry in-process, over HTTP: authorization, organization events, and ZITADEL's
//! management API (the stand-in). One test binary, one module per concern.

mod api;
mod browser;
mod common;
mod console;
mod scale;
mod zitadel;
