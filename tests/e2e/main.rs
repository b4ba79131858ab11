//! End-to-end: the real registry binary, driven over HTTP.

mod backups;
mod clients;
mod contract;
mod crash;
mod deploy;
mod http;
mod input;
mod layout;
mod lifecycle;
mod modules;
mod openapi;
mod point_in_time;
mod quotas;
mod servers;
mod tour;
mod warm_pool;
