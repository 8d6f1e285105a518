//! The entry archive: tar, compressed with zstd, streamed in both directions.

mod journal;
mod pack;
mod unpack;

pub use pack::{PackStats, pack};
pub use unpack::{
    Expected, FitCheck, Limits, UnpackError, UnpackStats, recover_interrupted, unpack,
    unpack_checked,
};
