//! cachegate as a library: the binary in `main.rs` is a thin shell over these modules, and
//! the fuzz targets and benchmarks reach the same code paths the CLI runs.

pub mod archive;
pub mod backend;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod entry;
pub mod env_vars;
pub mod key;
pub mod lease;
pub mod namespace;
pub mod preset;
pub mod redact;
pub mod report;
pub mod run;
pub mod runner;
pub mod scope;
pub mod secrets;
pub mod sign;
pub mod usage;
