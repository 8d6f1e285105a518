//! cachegate as a library: the binary in `main.rs` is a thin shell over these modules, and
//! the fuzz targets and benchmarks reach the same code paths the CLI runs.

pub mod archive;
pub mod backend;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod ensure;
pub mod entry;
pub mod env_vars;
pub mod exit;
pub mod explain;
pub mod generate;
pub mod install;
pub mod job;
pub mod key;
pub mod lease;
pub mod ls;
pub mod namespace;
pub mod output;
pub mod pipe;
pub mod plan;
pub mod preset;
pub mod progress;
pub mod prune;
pub mod redact;
pub mod report;
pub mod runner;
pub mod scope;
pub mod secrets;
pub mod sign;
pub mod store;
pub mod usage;
pub mod warm;
