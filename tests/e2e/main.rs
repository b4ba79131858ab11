//! End-to-end: the real registry binary, driven over HTTP.

mod crash;
mod input;
mod lifecycle;
mod openapi;
