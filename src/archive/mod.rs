//! The entry archive: tar, compressed with zstd, streamed in both directions.

mod pack;
mod unpack;

pub use pack::{PackStats, pack};
pub use unpack::{Expected, Limits, UnpackError, UnpackStats, recover_interrupted, unpack};
