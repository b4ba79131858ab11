//! End-to-end: the real registry binary, driven over HTTP.

mod crash;
mod http;
mod input;
mod layout;
mod lifecycle;
mod openapi;
mod servers;
