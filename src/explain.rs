//! `explain`: why a lookup misses, against the newest entry of the same cache name (runner
//! mode: what the marker says). The entries answer; this prints it and ends the job.

use crate::exit::Ending;
use crate::job::Job;

/// Why a lookup misses: compare this key's components with the newest entry of the same
/// cache name. Prints on stdout (it is the answer asked for); exit 0 on a hit, 1 on a miss.
pub fn explain(mut job: Job) -> Ending {
    let ending = job.explain();
    job.finish(ending)
}
