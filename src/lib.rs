//! cachegate as a library: the binary in `main.rs` is a thin shell over these modules, and
//! the fuzz targets and benchmarks reach the same code paths the CLI runs.

// Long functions make a reader jump: kept under clippy's 100 lines in the crate (the test
// scenarios, which read top to bottom, are exempt).
#![warn(clippy::too_many_lines)]

pub mod archive;
pub mod backend;
pub mod cached;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod echo;
pub mod ensure;
pub mod entries;
pub mod entry;
pub mod env_vars;
pub mod exit;
pub mod explain;
pub mod fit;
pub mod generate;
pub mod inputs;
pub mod install;
pub mod job;
pub mod key;
pub mod lease;
pub mod ls;
pub mod metrics;
pub mod namespace;
pub mod output;
pub mod outside;
pub mod paths;
pub mod pipe;
pub mod plan;
pub mod preset;
pub mod preset_paths;
pub mod progress;
pub mod prune;
pub mod records;
pub mod redact;
pub mod relocate;
pub mod report;
pub mod runtime;
pub mod scope;
pub mod secrets;
pub mod show_key;
pub mod sign;
pub mod stats;
pub mod store;
pub mod summary;
pub mod usage;
pub mod warm;
