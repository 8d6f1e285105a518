//! Single-flight: parallel jobs that miss the same key wait for one install instead of all
//! installing. The first misser creates a lease object beside the entry (create-if-absent,
//! the same atomic primitive that makes the manifest the commit point, so it works on every
//! store) and renews it while its command runs; the others poll it, one small read per poll
//! with backoff, until it says the entry is saved, then restore.
//!
//! Leases come in generations, `<key>.lease.<n>`: when a leader's command fails or it dies
//! (its lease stops changing for longer than its TTL, judged on the waiter's own clock, so
//! clock skew between runners does not matter), waiters race to create generation `n + 1`,
//! and create-if-absent lets exactly one of them take over. Nothing is ever overwritten
//! except by its owner, so no conditional delete or compare-and-swap is needed.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, StoreError, StoreResult};
use crate::entry::EntryName;

/// How long to wait, how long a lease lives unrenewed, and the longest pause between polls.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub wait: Duration,
    pub ttl: Duration,
    pub poll: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The owner is installing (or saving).
    Running,
    /// The owner saved the entry: waiters restore it.
    Done,
    /// The owner's command failed or it saved nothing: a waiter takes over.
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    /// The job URL in CI, else user@host: who the others are waiting for.
    owner: String,
    /// Unique per attempt: two jobs of one owner never write the same record.
    token: String,
    /// Tells renewals apart, so an unchanged record means an owner that stopped renewing.
    renewal: u64,
    ttl_seconds: u64,
    /// The owner's clock: a hint only, for a waiter that arrives after the owner died.
    expires: u64,
    state: State,
}

fn now() -> u64 {
    crate::report::unix_now()
}

/// Why this job is the one installing after others had the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Takeover {
    Expired(String),
    Failed(String),
}

impl Takeover {
    pub fn describe(&self) -> String {
        match self {
            Takeover::Expired(o) => format!("took over from {o} (its lease expired)"),
            Takeover::Failed(o) => format!("took over from {o} (it saved nothing)"),
        }
    }
}

pub enum Flight<'a> {
    /// This job installs, holding the lease.
    Leader(Lease<'a>),
    /// Another job saved the entry while this one waited.
    Ready { waited: Duration, leader: String },
    /// No single flight after all (waited too long, or the store refused the lease): this
    /// job installs without one.
    Alone { waited: Duration, why: String },
}

pub struct Lease<'a> {
    backend: &'a dyn Backend,
    name: String,
    record: Record,
    /// Whom this job took over from, if anyone.
    pub takeover: Option<Takeover>,
    pub waited: Duration,
}

impl Record {
    fn new(settings: &Settings, owner: &str) -> Record {
        Record {
            owner: owner.to_string(),
            token: crate::entry::upload_id(),
            renewal: 0,
            ttl_seconds: settings.ttl.as_secs().max(1),
            expires: now() + settings.ttl.as_secs().max(1),
            state: State::Running,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("lease record serializes")
    }
}

/// Take the lease for `entry`, or wait for whoever has it. `ready` says whether the entry
/// exists now (one small request).
pub fn acquire<'a>(
    backend: &'a dyn Backend,
    entry: &EntryName,
    owner: &str,
    settings: &Settings,
    ready: &mut dyn FnMut() -> StoreResult<bool>,
) -> Flight<'a> {
    let mut waiting = Waiting::new(settings);
    let mut generation = 0u32;
    let mut takeover: Option<Takeover> = None;
    loop {
        let record = Record::new(settings, owner);
        let name = entry.lease(generation);
        match backend.create_if_absent(&name, &record.bytes()) {
            Ok(()) => match confirm(backend, &name, &record, settings) {
                Ok(true) => {
                    return Flight::Leader(Lease {
                        backend,
                        name,
                        record,
                        takeover,
                        waited: waiting.start.elapsed(),
                    });
                }
                Ok(false) => {}
                Err(e) => {
                    return waiting.alone(format!("cannot read the single-flight lease back: {e}"));
                }
            },
            Err(StoreError::Exists) => {}
            Err(e) => return waiting.alone(format!("cannot take the single-flight lease: {e}")),
        }
        // Generation `generation` is someone else's: watch it.
        match waiting.watch(backend, &name, settings, ready) {
            Watched::Over(flight) => return flight,
            Watched::Next(why) => {
                if why.is_some() {
                    takeover = why;
                }
                generation += 1;
            }
            Watched::Again => {}
        }
    }
}

/// What watching another job's generation of the lease came to.
enum Watched<'a> {
    /// The wait is over: the entry is there, or this job installs alone.
    Over(Flight<'a>),
    /// That generation is dead: take the next one, taking over (`Some`) from its leader, or
    /// (`None`, a record not ours to read) keeping what was known before.
    Next(Option<Takeover>),
    /// The lease is gone and the entry is not there: try the same generation again.
    Again,
}

/// A wait for the lease: since when, the next pause, and the leader last seen.
struct Waiting {
    start: Instant,
    delay: Duration,
    max_delay: Duration,
    leader: String,
}

impl Waiting {
    fn new(settings: &Settings) -> Waiting {
        Waiting {
            start: Instant::now(),
            delay: Duration::from_millis(200),
            max_delay: settings
                .poll
                .min(settings.ttl / 3)
                .max(Duration::from_millis(50)),
            leader: String::new(),
        }
    }

    fn alone<'a>(&self, why: String) -> Flight<'a> {
        Flight::Alone {
            waited: self.start.elapsed(),
            why,
        }
    }

    fn ready<'a>(&self) -> Flight<'a> {
        Flight::Ready {
            waited: self.start.elapsed(),
            leader: self.leader.clone(),
        }
    }

    /// Watch lease `name`, another job's, until it is done, dead or gone, or `--wait` is up.
    fn watch<'a>(
        &mut self,
        backend: &dyn Backend,
        name: &str,
        settings: &Settings,
        ready: &mut dyn FnMut() -> StoreResult<bool>,
    ) -> Watched<'a> {
        let mut seen: Option<(Vec<u8>, Instant)> = None;
        loop {
            match backend.get_small(name) {
                Ok(bytes) => {
                    let Ok(rec) = serde_json::from_slice::<Record>(&bytes) else {
                        // Not ours to read: a later generation is the way past it.
                        return Watched::Next(None);
                    };
                    self.leader = rec.owner.clone();
                    match rec.state {
                        State::Done => match ready() {
                            Ok(true) => return Watched::Over(self.ready()),
                            // Saved and gone again (pruned): nobody is installing.
                            Ok(false) => {
                                return Watched::Next(Some(Takeover::Failed(self.leader.clone())));
                            }
                            Err(e) => {
                                return Watched::Over(
                                    self.alone(format!("cannot look for the entry: {e}")),
                                );
                            }
                        },
                        State::Failed => {
                            return Watched::Next(Some(Takeover::Failed(self.leader.clone())));
                        }
                        State::Running => {
                            if abandoned(&rec, bytes, &mut seen) {
                                return Watched::Next(Some(Takeover::Expired(self.leader.clone())));
                            }
                        }
                    }
                }
                // The owner cleaned up after saving, or prune did: the entry may be there.
                Err(StoreError::NotFound) => match ready() {
                    Ok(true) => return Watched::Over(self.ready()),
                    Ok(false) => return Watched::Again,
                    Err(e) => {
                        return Watched::Over(
                            self.alone(format!("cannot look for the entry: {e}")),
                        );
                    }
                },
                Err(e) => {
                    return Watched::Over(
                        self.alone(format!("cannot read the single-flight lease: {e}")),
                    );
                }
            }
            if self.start.elapsed() + self.delay > settings.wait {
                return Watched::Over(self.alone(format!(
                    "waited {} for {} (--wait {}); installing here",
                    crate::report::secs(self.start.elapsed().as_secs_f64()),
                    self.leader,
                    settings.wait.as_secs()
                )));
            }
            std::thread::sleep(self.delay);
            self.delay = (self.delay * 3 / 2).min(self.max_delay);
        }
    }
}

/// Whether a running lease's leader is gone: its record (`bytes`) has not changed for a
/// whole TTL of this job's watching (`seen` is when it was first seen as it is), or its own
/// clock put its expiry more than a TTL ago.
fn abandoned(rec: &Record, bytes: Vec<u8>, seen: &mut Option<(Vec<u8>, Instant)>) -> bool {
    let ttl = Duration::from_secs(rec.ttl_seconds.max(1));
    let stale = match seen {
        Some((b, since)) if *b == bytes => since.elapsed() > ttl,
        _ => {
            *seen = Some((bytes, Instant::now()));
            false
        }
    };
    // The owner's clock says so too, with a whole TTL of slack.
    let long_gone = now() > rec.expires.saturating_add(rec.ttl_seconds);
    stale || long_gone
}

/// Some S3 stores ignore `If-None-Match` (Garage 2.5 does), so their create-if-absent is a
/// check, then a write, then a read-back, and writers racing within one request's time may
/// all succeed. The last write is the one that stands: after a pause longer than such a
/// race, each reads the lease again and only the one whose record is there leads.
fn confirm(
    backend: &dyn Backend,
    name: &str,
    ours: &Record,
    settings: &Settings,
) -> StoreResult<bool> {
    std::thread::sleep((settings.ttl / 4).min(Duration::from_secs(1)));
    let back = backend.get_small(name)?;
    Ok(serde_json::from_slice::<Record>(&back).is_ok_and(|r| r.token == ours.token))
}

impl Lease<'_> {
    /// Run `work` while renewing the lease every third of its TTL, so waiters see a live
    /// owner however long the install and upload take.
    pub fn hold<T>(&mut self, work: impl FnOnce() -> T) -> T {
        let (stop, stopped) = mpsc::channel::<()>();
        let every = Duration::from_secs(self.record.ttl_seconds.max(1)) / 3;
        let backend = self.backend;
        let name = self.name.clone();
        let mut record = self.record.clone();
        std::thread::scope(|s| {
            s.spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    record.renewal += 1;
                    record.expires = now() + record.ttl_seconds;
                    // A failed renewal is retried at the next tick; if it keeps failing the
                    // lease expires and a waiter installs too, which is only slower.
                    let _ = backend.put_small(&name, &record.bytes());
                }
            });
            let out = work();
            drop(stop);
            out
        })
    }

    /// Tell the waiters how it ended: `Done` when the entry is saved (they restore it),
    /// `Failed` otherwise (one of them takes over). A finished lease is then removed.
    pub fn release(mut self, state: State) {
        self.record.state = state;
        self.record.renewal += 1;
        let _ = self.backend.put_small(&self.name, &self.record.bytes());
        if state == State::Done {
            // Waiters that read the lease after this find the entry instead.
            let _ = self.backend.delete(&self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::dir::DirBackend;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn settings(wait_ms: u64, ttl_ms: u64) -> Settings {
        Settings {
            wait: Duration::from_millis(wait_ms),
            ttl: Duration::from_millis(ttl_ms),
            poll: Duration::from_millis(50),
        }
    }

    fn entry() -> EntryName {
        EntryName::new("ns", crate::scope::Scope::Local, "pip", "k")
    }

    #[test]
    fn first_takes_the_lease_second_waits_for_the_entry() {
        let d = tempfile::tempdir().unwrap();
        let b = DirBackend::new(d.path().to_path_buf());
        let s = Settings {
            wait: Duration::from_secs(10),
            ttl: Duration::from_secs(3),
            poll: Duration::from_millis(50),
        };
        let saved = AtomicBool::new(false);
        let Flight::Leader(mut lease) = acquire(&b, &entry(), "leader", &s, &mut || Ok(false))
        else {
            panic!("the first job must lead");
        };
        std::thread::scope(|sc| {
            let waiter = sc.spawn(|| {
                acquire(&b, &entry(), "waiter", &s, &mut || {
                    Ok(saved.load(Ordering::SeqCst))
                })
            });
            lease.hold(|| std::thread::sleep(Duration::from_millis(300)));
            saved.store(true, Ordering::SeqCst);
            lease.release(State::Done);
            match waiter.join().unwrap() {
                Flight::Ready { leader, waited } => {
                    assert_eq!(leader, "leader");
                    assert!(waited >= Duration::from_millis(250), "{waited:?}");
                }
                _ => panic!("the waiter must restore the leader's entry"),
            }
        });
        assert!(matches!(
            b.stat(&entry().lease(0)),
            Err(StoreError::NotFound)
        ));
    }

    #[test]
    fn a_failed_leader_hands_over_to_one_waiter() {
        let d = tempfile::tempdir().unwrap();
        let b = DirBackend::new(d.path().to_path_buf());
        let s = settings(10_000, 3_000);
        let Flight::Leader(lease) = acquire(&b, &entry(), "first", &s, &mut || Ok(false)) else {
            panic!()
        };
        lease.release(State::Failed);
        let Flight::Leader(next) = acquire(&b, &entry(), "second", &s, &mut || Ok(false)) else {
            panic!("a waiter takes over from a failed leader")
        };
        assert_eq!(next.takeover, Some(Takeover::Failed("first".into())));
        assert_eq!(next.name, entry().lease(1));
    }

    #[test]
    fn a_dead_leader_is_taken_over_after_its_ttl() {
        let d = tempfile::tempdir().unwrap();
        let b = DirBackend::new(d.path().to_path_buf());
        let s = settings(10_000, 1_000);
        // Taken and never renewed nor released: the owner died.
        let Flight::Leader(_dead) = acquire(&b, &entry(), "dead", &s, &mut || Ok(false)) else {
            panic!()
        };
        let start = Instant::now();
        let Flight::Leader(next) = acquire(&b, &entry(), "heir", &s, &mut || Ok(false)) else {
            panic!("a waiter takes over from a dead leader")
        };
        assert!(start.elapsed() >= Duration::from_secs(1));
        assert_eq!(next.takeover, Some(Takeover::Expired("dead".into())));
    }

    #[test]
    fn a_renewed_lease_is_not_taken_over_and_waiting_is_bounded() {
        let d = tempfile::tempdir().unwrap();
        let b = DirBackend::new(d.path().to_path_buf());
        let s = settings(1_500, 600);
        let Flight::Leader(mut lease) = acquire(&b, &entry(), "alive", &s, &mut || Ok(false))
        else {
            panic!()
        };
        std::thread::scope(|sc| {
            let waiter = sc.spawn(|| acquire(&b, &entry(), "w", &s, &mut || Ok(false)));
            lease.hold(|| std::thread::sleep(Duration::from_millis(2_000)));
            match waiter.join().unwrap() {
                Flight::Alone { why, .. } => assert!(why.contains("alive"), "{why}"),
                _ => panic!("a live leader keeps its lease; the waiter gives up at --wait"),
            }
        });
    }
}
