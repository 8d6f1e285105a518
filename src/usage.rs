//! Last use of an entry, for `ls` and for `prune --unused-for` and LRU eviction. A hit
//! records it after the restore, in a small object beside the manifest, written at most
//! once a day per entry: the hit itself stays read-only, and the write can never fail or
//! hold up the job (it runs on its own thread with a short bound).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, StoreError, StoreResult};

const DAY: u64 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Seconds since the Unix epoch, to within a day.
    pub last_used: u64,
    /// Days on which the entry was restored (a hit counts once a day: the price of a
    /// write-free hit path).
    pub hit_days: u64,
}

pub fn read(backend: &dyn Backend, name: &str) -> StoreResult<Option<Usage>> {
    match backend.get_small(name) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Record a use at `now`; whether it wrote (at most once a day).
pub fn record(backend: &dyn Backend, name: &str, now: u64) -> StoreResult<bool> {
    let prev = read(backend, name)?;
    if prev.is_some_and(|u| now.saturating_sub(u.last_used) < DAY) {
        return Ok(false);
    }
    let next = Usage {
        last_used: now,
        hit_days: prev.map_or(0, |u| u.hit_days) + 1,
    };
    let body = serde_json::to_vec(&next).expect("usage serializes");
    backend.put_small(name, &body)?;
    Ok(true)
}

/// Record a use without holding the job up for more than `bound`: the write runs on its
/// own thread, which the process may leave behind when it exits; a write cut short leaves
/// the old record (uploads become visible only when finished).
pub fn record_in_background(backend: Arc<dyn Backend>, name: String, bound: Duration) {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = record(backend.as_ref(), &name, crate::report::unix_now());
        let _ = done.send(());
    });
    let _ = finished.recv_timeout(bound);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::dir::DirBackend;

    #[test]
    fn at_most_one_write_a_day() {
        let d = tempfile::tempdir().unwrap();
        let b = DirBackend::new(d.path().to_path_buf());
        let name =
            crate::entry::EntryName::new("ns", crate::scope::Scope::Local, "pip", "k").usage();
        let t = 1_000_000;
        assert!(record(&b, &name, t).unwrap());
        assert!(!record(&b, &name, t + 10).unwrap());
        assert!(!record(&b, &name, t + DAY - 1).unwrap());
        assert!(record(&b, &name, t + DAY).unwrap());
        assert_eq!(
            read(&b, &name).unwrap(),
            Some(Usage {
                last_used: t + DAY,
                hit_days: 2
            })
        );
    }
}
