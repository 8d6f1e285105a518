//! Job records: what one job did with one entry (a hit, or a miss that ran the install),
//! for `stats`, for `ls`'s hits and last use, and so for `prune --unused-for` and LRU.
//!
//! Each job writes its own record object, `<key>.rec.<time>.<kind>.<install ms>.<transfer
//! ms>.<bytes>.<id>`, beside the entry's manifest. The fields are in the name, so a listing
//! is all `ls`, `prune` and `stats` need (no read per record), and every job's object is
//! its own: concurrent jobs never overwrite each other's counts, and no read-modify-write
//! can lose one. A hit writes it instead of reading the old last-use record (`usage.rs`),
//! after the restore, on its own thread bounded to 2 s: the hit still waits on its
//! manifest and archive requests only, and makes no more requests than before. A job loses
//! its own count only when that write fails or is cut off by the bound (the job never
//! fails for it). Records are written only where the job may write (its scope, never under
//! `--policy pull`).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::backend::Backend;
use crate::entry::{EntryName, ObjectName};

pub const DAY: u64 = 86_400;

/// Records are kept this long for `stats`, then pruned: so an entry restored a thousand
/// times a day holds a month of records, not all of them. A kept entry keeps its newest
/// hit's record past that (its last use); records whose entry is gone (or never was in their
/// scope: an unprotected job's hit on a protected entry) go at the same age.
pub const KEEP: u64 = 31 * DAY;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Restored the entry: an install avoided.
    Hit,
    /// Missed, ran the install and saved this key.
    Saved,
    /// Missed and ran the install, but another job had saved the key first.
    Missed,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::Hit => 'h',
            Kind::Saved => 's',
            Kind::Missed => 'm',
        }
    }

    fn from_letter(s: &str) -> Option<Kind> {
        Some(match s {
            "h" => Kind::Hit,
            "s" => Kind::Saved,
            "m" => Kind::Missed,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Seconds since the Unix epoch.
    pub time: u64,
    pub kind: Kind,
    /// The install time: the one the entry recorded (a hit), or this job's (a miss); 0 when
    /// unknown (`cachegate save` alone).
    pub install_ms: u64,
    /// Restoring (a hit) or saving (a save).
    pub transfer_ms: u64,
    /// Archive bytes downloaded (a hit) or uploaded (a save).
    pub bytes: u64,
    /// Keeps two jobs in the same second apart.
    pub id: String,
}

impl Record {
    pub fn new(
        kind: Kind,
        install_seconds: Option<f64>,
        transfer_seconds: f64,
        bytes: u64,
    ) -> Self {
        let ms = |s: f64| (s.max(0.0) * 1000.0).round() as u64;
        Record {
            time: crate::report::unix_now(),
            kind,
            install_ms: install_seconds.map_or(0, ms),
            transfer_ms: ms(transfer_seconds),
            bytes,
            id: crate::entry::upload_id(),
        }
    }

    /// The part of the object name after `.rec.`.
    pub fn fields(&self) -> String {
        format!(
            "{}.{}.{}.{}.{}.{}",
            self.time,
            self.kind.letter(),
            self.install_ms,
            self.transfer_ms,
            self.bytes,
            self.id
        )
    }

    pub fn parse(fields: &str) -> Option<Record> {
        let [time, kind, install, transfer, bytes, id] = fields.split('.').collect::<Vec<_>>()[..]
        else {
            return None;
        };
        let num = |s: &str| s.parse::<u64>().ok().filter(|n| n.to_string() == s);
        let id_ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric());
        Some(Record {
            time: num(time)?,
            kind: Kind::from_letter(kind)?,
            install_ms: num(install)?,
            transfer_ms: num(transfer)?,
            bytes: num(bytes)?,
            id: id_ok.then(|| id.to_string())?,
        })
    }

    /// A record and its entry from a listed object name; `None` for any other object.
    pub fn from_object(name: &ObjectName) -> Option<(EntryName, Record)> {
        match name {
            ObjectName::Record(e, fields) => Some((e.clone(), Record::parse(fields)?)),
            _ => None,
        }
    }

    pub fn day(&self) -> u64 {
        self.time / DAY
    }

    /// What a hit saved: the entry's install time minus this restore (negative when the
    /// restore took longer); nothing for a miss, or a hit on an entry that never said.
    pub fn saved_seconds(&self) -> f64 {
        if self.kind == Kind::Hit && self.install_ms > 0 {
            (self.install_ms as f64 - self.transfer_ms as f64) / 1000.0
        } else {
            0.0
        }
    }
}

/// The newest use and the number of days with a hit, from an entry's records.
pub fn usage_of<'a>(records: impl IntoIterator<Item = &'a Record>) -> (Option<u64>, u64) {
    let mut days = std::collections::BTreeSet::new();
    let mut last = None;
    for r in records.into_iter().filter(|r| r.kind == Kind::Hit) {
        days.insert(r.day());
        last = last.max(Some(r.time));
    }
    (last, days.len() as u64)
}

/// The records of a kept entry that `prune` deletes: older than `KEEP`, except the newest
/// hit, which holds the entry's last use.
pub fn expired(names: &[ObjectName], now: u64) -> Vec<ObjectName> {
    let parsed: Vec<(&ObjectName, Record)> = names
        .iter()
        .filter_map(|n| Some((n, Record::from_object(n)?.1)))
        .collect();
    let newest_hit = parsed
        .iter()
        .filter(|(_, r)| r.kind == Kind::Hit)
        .max_by_key(|(_, r)| r.time)
        .map(|(n, _)| *n);
    parsed
        .iter()
        .filter(|(n, r)| now.saturating_sub(r.time) >= KEEP && Some(*n) != newest_hit)
        .map(|(n, _)| (*n).clone())
        .collect()
}

/// Write `record` for `entry` without holding the job up for more than `bound`: the write
/// runs on its own thread, which the process may leave behind when it exits (uploads
/// become visible only when finished, so a write cut short leaves nothing). Never an error.
pub fn write_in_background(
    backend: Arc<dyn Backend>,
    entry: &EntryName,
    record: &Record,
    bound: Duration,
) {
    let name = entry.record(&record.fields());
    let body = serde_json::to_vec(record).expect("a record serializes");
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = backend.put_small(&name, &body);
        let _ = done.send(());
    });
    let _ = finished.recv_timeout(bound);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Scope;

    #[test]
    fn a_record_round_trips_through_its_object_name() {
        let e = EntryName::new(
            "team-app-1a2b3c4d",
            Scope::Protected,
            "pip",
            &"c".repeat(64),
        );
        let r = Record::new(Kind::Hit, Some(43.2), 1.9, 5_000_000);
        let name = e.record(&r.fields());
        assert_eq!(Record::from_object(&name), Some((e, r.clone())));
        assert!((r.saved_seconds() - 41.3).abs() < 1e-9);
        for bad in [
            "1.h.1.1.1",
            "1.x.1.1.1.ab",
            "01.h.1.1.1.ab",
            "1.h.1.1.-1.ab",
            "1.h.1.1.1.a-b",
            "1.h.1.1.1.ab.c",
        ] {
            assert_eq!(Record::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_month_of_records_is_kept_and_the_newest_hit_always() {
        let e = EntryName::new("p-1a2b3c4d", Scope::Local, "pip", &"a".repeat(64));
        let now = 100 * DAY;
        let at = |days_ago: u64, kind, id: &str| {
            let r = Record {
                time: now - days_ago * DAY,
                kind,
                install_ms: 1,
                transfer_ms: 1,
                bytes: 1,
                id: id.into(),
            };
            e.record(&r.fields())
        };
        let names = [
            at(40, Kind::Saved, "a"),
            at(35, Kind::Hit, "b"),
            at(33, Kind::Hit, "c"),
            at(2, Kind::Missed, "d"),
        ];
        // The newest hit is 33 days old: it stays, as the entry's last use.
        assert_eq!(expired(&names, now), [names[0].clone(), names[1].clone()]);
        assert_eq!(expired(&names[..1], now), [names[0].clone()]);
        assert!(expired(&names[3..], now).is_empty());
    }

    #[test]
    fn usage_counts_days_with_hits_and_the_newest_hit() {
        let at = |time, kind| Record {
            time,
            kind,
            install_ms: 0,
            transfer_ms: 0,
            bytes: 0,
            id: "a".into(),
        };
        let rs = [
            at(DAY * 10 + 5, Kind::Hit),
            at(DAY * 10 + 50, Kind::Hit),
            at(DAY * 12, Kind::Hit),
            at(DAY * 13, Kind::Saved),
        ];
        assert_eq!(usage_of(&rs), (Some(DAY * 12), 2));
        assert_eq!(usage_of(&rs[3..]), (None, 0));
    }
}
