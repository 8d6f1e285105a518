//! The one integration test binary: the real cachegate against real package managers and
//! real stores on loopback, offline. Each module holds one concern; `regression` pins the
//! defects found, one test per defect, named after it.

#[path = "../common/mod.rs"]
mod common;

mod core_loop;
mod dist;
mod doctor;
mod ecosystems;
mod faults;
mod gitlab;
mod hostile;
mod house;
mod http;
mod newuser;
mod peers;
mod presets;
mod ranged;
mod regression;
mod runner;
mod s3;
mod scopes;
mod signing;
mod stats;
mod terminal;
mod tier;
