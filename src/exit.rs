//! The one exit policy: every command ends in an `Ending` (or an error), and only here does
//! that become a process exit code. 0 done or hit, 1 a miss where a miss is the answer
//! (`restore`, `check`, `explain`), the wrapped command's own status for `ensure`, 2 a usage
//! or configuration error, 3 cache trouble under `--strict` or a store that failed a command
//! that has no other answer (`ls`, `prune`, `doctor`).

use crate::backend::StoreError;

pub const MISS: i32 = 1;
pub const USAGE: i32 = 2;
pub const TROUBLE: i32 = 3;

/// How a command ended, before `--strict` has its say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It did what was asked (a hit, a save, a listing).
    Done,
    /// A miss, where the miss is the answer.
    Miss,
    /// The wrapped install ran and exited with this status.
    Command(i32),
    /// Cache trouble that ends the command by itself (`--strict` before the install runs,
    /// a store `doctor` finds unusable).
    Trouble,
}

/// How a job ended once `--strict` had its say: `strict_trouble` is cache trouble under
/// `--strict`, which wins over any ending that would hide it (success, or a miss), never
/// over the command's own failure.
pub fn under_strict(ending: Ending, strict_trouble: bool) -> Ending {
    match ending {
        Ending::Done | Ending::Miss | Ending::Command(0) if strict_trouble => Ending::Trouble,
        e => e,
    }
}

/// The exit code for `ending`: the only place one is chosen for a command that did not fail.
pub fn code(ending: Ending) -> i32 {
    match ending {
        Ending::Trouble => TROUBLE,
        Ending::Done => 0,
        Ending::Miss => MISS,
        Ending::Command(c) => c,
    }
}

/// The exit code for an error that ended a command: a store that failed is cache trouble,
/// everything else (bad flags, bad values, bad configuration) a usage error.
pub fn for_error(e: &anyhow::Error) -> i32 {
    if e.chain().any(|c| c.is::<StoreError>()) {
        TROUBLE
    } else {
        USAGE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_trouble_shows_unless_the_command_failed() {
        let code = |e, strict| code(under_strict(e, strict));
        assert_eq!(code(Ending::Done, false), 0);
        assert_eq!(code(Ending::Miss, false), MISS);
        assert_eq!(code(Ending::Command(1), false), 1);
        assert_eq!(code(Ending::Done, true), TROUBLE);
        assert_eq!(code(Ending::Miss, true), TROUBLE);
        assert_eq!(code(Ending::Command(0), true), TROUBLE);
        // The install's own failure is the job's answer, trouble or not.
        assert_eq!(code(Ending::Command(1), true), 1);
        assert_eq!(code(Ending::Trouble, false), TROUBLE);
    }

    #[test]
    fn store_failures_are_trouble_and_the_rest_usage() {
        let store = anyhow::Error::from(StoreError::Other(anyhow::anyhow!("down")));
        assert_eq!(for_error(&store.context("cannot list")), TROUBLE);
        assert_eq!(for_error(&anyhow::anyhow!("--keep needs a number")), USAGE);
    }
}
