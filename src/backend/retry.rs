//! The one retry policy of every store: HTTP requests (`transport`), the ranges of a
//! parallel download (`ranged`) and OpenDAL's own requests (`s3`) wait the same way, so
//! `--retries` means the same thing whatever the backend. Waits start at `FIRST_WAIT`,
//! double, carry jitter so jobs that failed together do not come back together, and never
//! exceed `MAX_WAIT`. A server that asks (`Retry-After`) for longer than `MAX_WAIT` will not
//! be back within a job's patience, so that ends the retrying rather than hold the job.

use std::sync::Mutex;
use std::time::Duration;

use backon::{BackoffBuilder as _, BlockingRetryable as _, ExponentialBackoff, ExponentialBuilder};

/// First wait before a retry; it doubles with each attempt.
pub const FIRST_WAIT: Duration = Duration::from_millis(200);
/// Longest single wait between retries; a longer `Retry-After` ends the retrying.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// How often to try again, and how long to wait in between.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Further attempts after the first (`--retries`).
    pub retries: u32,
}

/// What a failed attempt is worth.
pub enum Verdict {
    /// Nothing another attempt could change.
    Final,
    /// Try again after the policy's wait.
    Retry,
    /// Try again after the wait the server asked for (`Retry-After`).
    RetryAfter(Duration),
}

impl Policy {
    pub fn new(retries: u32) -> Policy {
        Policy { retries }
    }

    fn builder(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(FIRST_WAIT)
            .with_max_delay(MAX_WAIT)
            .with_max_times(self.retries as usize)
            .with_jitter()
    }

    /// OpenDAL's retry layer with the same waits; the caller adds its `with_notify`.
    pub fn opendal_layer(&self) -> opendal::layers::RetryLayer {
        opendal::layers::RetryLayer::new()
            .with_max_times(self.retries as usize)
            .with_jitter()
            .with_min_delay(FIRST_WAIT)
            .with_max_delay(MAX_WAIT)
    }

    /// Run `once` until it succeeds, `verdict` calls an error final, or the policy is spent.
    /// `fits` is asked about each wait before it is slept (a deadline it would cross ends
    /// the retrying); `notify` hears of each retry about to happen. The last error is
    /// returned as it came.
    pub fn run<T, E>(
        &self,
        once: impl FnMut() -> Result<T, E>,
        mut verdict: impl FnMut(&E) -> Verdict,
        fits: impl Fn(Duration) -> bool + Sync,
        notify: impl FnMut(&E, Duration),
    ) -> Result<T, E> {
        let asked = Mutex::new(None);
        let waits = Waits {
            backoff: self.builder().build(),
            asked: &asked,
            fits: &fits,
        };
        once.retry(waits)
            .when(|e| match verdict(e) {
                Verdict::Final => false,
                Verdict::Retry => true,
                Verdict::RetryAfter(wait) => {
                    *asked.lock().unwrap_or_else(|e| e.into_inner()) = Some(wait);
                    true
                }
            })
            .notify(notify)
            .call()
    }
}

/// The policy's waits, with a wait the server asked for taking the place of the next one.
struct Waits<'a, F> {
    backoff: ExponentialBackoff,
    asked: &'a Mutex<Option<Duration>>,
    fits: &'a F,
}

impl<F: Fn(Duration) -> bool + Sync> Iterator for Waits<'_, F> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        // Taken first, so the attempts are counted whoever chose the wait.
        let ours = self.backoff.next()?.min(MAX_WAIT);
        let asked = self.asked.lock().unwrap_or_else(|e| e.into_inner()).take();
        let wait = asked.unwrap_or(ours);
        (wait <= MAX_WAIT && (self.fits)(wait)).then_some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attempts made and waits slept when every attempt fails with `verdict`.
    fn attempts(retries: u32, verdict: impl Fn() -> Verdict) -> (u32, Vec<Duration>) {
        let mut tries = 0;
        let mut waits = Vec::new();
        let _ = Policy::new(retries).run(
            || -> Result<(), ()> {
                tries += 1;
                Err(())
            },
            |_| verdict(),
            |_| true,
            |_, wait| waits.push(wait),
        );
        (tries, waits)
    }

    #[test]
    fn waits_grow_with_jitter_and_stay_within_the_longest_wait() {
        let p = Policy::new(12);
        let waits: Vec<_> = Waits {
            backoff: p.builder().build(),
            asked: &Mutex::new(None),
            fits: &|_| true,
        }
        .collect();
        assert_eq!(waits.len(), 12);
        for (i, w) in waits.iter().enumerate() {
            let base = (FIRST_WAIT * 2u32.pow(i as u32)).min(MAX_WAIT);
            assert!(*w >= base && *w <= MAX_WAIT, "{i} {w:?}");
        }
    }

    #[test]
    fn retries_are_bounded_and_a_final_error_is_not_retried() {
        assert_eq!(attempts(0, || Verdict::Retry).0, 1);
        assert_eq!(attempts(2, || Verdict::Final).0, 1);
    }

    #[test]
    fn a_retry_after_is_honoured_and_one_longer_than_the_longest_wait_ends_the_retrying() {
        let (tries, waits) = attempts(2, || Verdict::RetryAfter(Duration::ZERO));
        assert_eq!((tries, waits), (3, vec![Duration::ZERO; 2]));
        let (tries, waits) = attempts(2, || Verdict::RetryAfter(MAX_WAIT + Duration::from_secs(1)));
        assert_eq!((tries, waits.len()), (1, 0));
    }

    #[test]
    fn a_wait_that_does_not_fit_ends_the_retrying() {
        let mut tries = 0;
        let _ = Policy::new(3).run(
            || -> Result<(), ()> {
                tries += 1;
                Err(())
            },
            |_| Verdict::Retry,
            |_| false,
            |_, _| {},
        );
        assert_eq!(tries, 1);
    }
}
