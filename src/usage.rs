//! Last use of an entry as cachegate before job records (`records.rs`) wrote it: a small
//! `<key>.used` object, at most one write a day. Nothing writes it any more; `ls` and
//! `prune` still read it, so the last uses it holds count until its entry goes.

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, StoreError, StoreResult};
use crate::entry::ObjectName;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Seconds since the Unix epoch, to within a day.
    pub last_used: u64,
    /// Days on which the entry was restored (a hit counts once a day: the price of a
    /// write-free hit path).
    pub hit_days: u64,
}

pub fn read(backend: &dyn Backend, name: &ObjectName) -> StoreResult<Option<Usage>> {
    match backend.get_small(name) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}
