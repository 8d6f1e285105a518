//! Command-line definitions. Doc comments are the help text; every option can also be set
//! through a `CACHEGATE_<OPTION>` variable (named in `env_vars.rs`), and a flag wins over the
//! variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::env_vars;
pub use crate::store::Policy;

#[derive(Parser, Debug)]
#[command(
    name = "cachegate",
    version,
    about = "Restore a dependency cache keyed by lock files, or run the install and save it",
    after_help = "Example:\n  cachegate ensure --lock poetry.lock -- poetry install"
)]
pub struct Cli {
    /// More detail on stderr (repeat for more)
    #[arg(short, long, global = true, help_heading = "Output", action = clap::ArgAction::Count, env = env_vars::CACHEGATE_VERBOSE)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// Parse the command line. A list's variable (`CACHEGATE_PATH=a,b`) is split at its commas;
/// a flag never is, so `--path 'a,b'` is one directory whose name has a comma, and
/// `--lock '{a,b}.lock'` one glob.
/// The process's arguments are parsed through `command`, which shows each command's own options.
pub fn parse() -> Cli {
    use clap::FromArgMatches;
    let matches = command().get_matches();
    // Not `_mut`: that takes the values out, and their sources with them.
    let mut cli = Cli::from_arg_matches(&matches)
        .map_err(|e| e.format(&mut command()))
        .unwrap_or_else(|e| e.exit());
    if let (Some((_, sub)), Some(key)) = (matches.subcommand(), cli.command.key_args_mut()) {
        split_if_from_env(sub, "locks", &mut key.locks);
        split_if_from_env(sub, "paths", &mut key.paths);
    }
    cli
}

fn split_if_from_env(matches: &clap::ArgMatches, id: &str, values: &mut Vec<String>) {
    if matches.value_source(id) == Some(clap::parser::ValueSource::EnvVariable) {
        *values = split_list(values);
    }
}

/// A variable's comma-separated list, blanks dropped.
fn split_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
        .collect()
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Restore the cache on a hit; on a miss run CMD and save what it produced
    Ensure {
        #[command(flatten)]
        job: JobArgs,
        /// The install command, after `--`
        #[arg(last = true, required = true, value_name = "CMD", help_heading = None::<&str>)]
        cmd: Vec<String>,
    },
    /// Restore the cache; exit 0 on a hit, 1 on a miss
    Restore {
        #[command(flatten)]
        job: JobArgs,
        /// The install command, after `--` (part of the key, not run)
        #[arg(last = true, value_name = "CMD", help_heading = None::<&str>)]
        cmd: Vec<String>,
    },
    /// Archive the cached paths and upload them under the computed key
    Save {
        #[command(flatten)]
        job: JobArgs,
        /// The install command, after `--` (part of the key, not run)
        #[arg(last = true, value_name = "CMD", help_heading = None::<&str>)]
        cmd: Vec<String>,
    },
    /// Look the key up without downloading; exit 0 on a hit, 1 on a miss
    Check {
        #[command(flatten)]
        job: JobArgs,
        /// The install command, after `--` (part of the key, not run)
        #[arg(last = true, value_name = "CMD", help_heading = None::<&str>)]
        cmd: Vec<String>,
    },
    /// Explain a miss: what differs from the newest entry of the same cache name
    Explain {
        #[command(flatten)]
        job: JobArgs,
        /// The install command, after `--` (part of the key, not run)
        #[arg(last = true, value_name = "CMD", help_heading = None::<&str>)]
        cmd: Vec<String>,
    },
    /// List the entries in the store (stdout) by cache name, most recently used first within each
    Ls {
        #[command(flatten)]
        store: StoreLocation,
        /// Print JSON instead of a table
        #[arg(long, help_heading = None::<&str>)]
        json: bool,
    },
    /// Delete entries by age, time unused, count per cache name, or total size
    Prune {
        #[command(flatten)]
        store: StoreLocation,
        #[command(flatten, next_help_heading = None::<&str>)]
        rules: PruneArgs,
    },
    /// What the cache was worth: hit rate, installs avoided, time saved, bytes (stdout)
    Stats {
        #[command(flatten)]
        store: StoreLocation,
        #[command(flatten, next_help_heading = None::<&str>)]
        stats: StatsArgs,
    },
    /// Print a new signing key pair on stdout: the public key, then the secret key
    Keygen,
    /// Check the store: reachable, credentials accepted, can write, read and delete
    Doctor {
        #[command(flatten)]
        store: StoreLocation,
    },
    /// List the presets: lock files, cached paths, variables, runtime probe, consistency inputs
    Presets {
        /// Print them as JSON
        #[arg(long)]
        json: bool,
    },
    /// Print the key on stdout (takes every option ensure takes; only the key options count)
    Key {
        #[command(flatten)]
        job: KeyJobArgs,
        /// Print every component that went into the key
        #[arg(long, env = env_vars::CACHEGATE_EXPLAIN, help_heading = None::<&str>, value_parser = clap::builder::BoolishValueParser::new())]
        explain: bool,
        /// Print the key and its components as JSON instead of the key
        ///
        /// `--json FILE`, the old form, still writes FILE for one release.
        #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-",
              conflicts_with = "json_file", help_heading = None::<&str>)]
        json: Option<PathBuf>,
        /// Write the key and its components as JSON to FILE (- for stdout)
        ///
        /// What is printed stays what is printed without it; `--json-file -` is the same as
        /// `--json`.
        #[arg(long, value_name = "FILE", help_heading = None::<&str>)]
        json_file: Option<PathBuf>,
        /// The install command, after `--` (part of the key, not run)
        #[arg(last = true, value_name = "CMD", help_heading = None::<&str>)]
        cmd: Vec<String>,
    },
    /// Print a shell completion script on stdout, e.g. `source <(cachegate completions bash)`
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print the man page (roff) on stdout, e.g. `cachegate man | man -l -`, or one
    /// command's: `cachegate man ensure`
    Man {
        /// The command whose page to print (cachegate-COMMAND(1))
        #[arg(value_name = "COMMAND", conflicts_with = "out_dir")]
        page: Option<String>,
        /// Write cachegate.1 and a page per command into DIR instead
        ///
        /// Each command's page is cachegate-<command>.1.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

/// Options only some of the commands that flatten them use: the others still accept them (a
/// job's line and its `CACHEGATE_*` variables work with any command), but do not show them.
const ENSURE_ONLY: &[&str] = &["save_on_failure", "fallback", "wait", "lease", "poll"];
const SAVES: &[&str] = &["compression_level", "refuse_secrets"];
const RESTORES: &[&str] = &[
    "max_archive_size",
    "max_unpacked_size",
    "max_entries",
    "max_path_length",
    "max_ratio",
    "zstd_window_log",
];

/// What each command hides of the options it flattens in.
fn hidden(command: &str) -> Vec<&'static str> {
    let mut h: Vec<&'static str> = Vec::new();
    match command {
        "ensure" => h.push("replace"),
        "save" => {
            h.extend(ENSURE_ONLY);
            h.extend(RESTORES);
        }
        "restore" | "check" | "explain" => {
            h.extend(ENSURE_ONLY);
            h.extend(SAVES);
            h.push("replace");
            if command != "restore" {
                h.extend(RESTORES);
            }
        }
        // Small objects only: no ranges, no multipart parts.
        "ls" | "prune" => h.push("chunk_size"),
        "doctor" => h.extend(["chunk_size", "concurrency"]),
        _ => {}
    }
    h
}

/// The command line as parsed, with each command's help, completions and man page showing
/// only the options that command uses. `key` takes a whole ensure line but uses only the
/// key options: it shows those.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let key_options: Vec<String> = KeyArgs::augment_args(clap::Command::new("key"))
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    let mut cmd = Cli::command();
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(&name, |mut sub| {
            let ids: Vec<String> = sub
                .get_arguments()
                .map(|a| a.get_id().to_string())
                .filter(|id| {
                    if name == "key" {
                        let own = ["explain", "json", "json_file", "cmd", "verbose", "help"];
                        !key_options.contains(id) && !own.contains(&id.as_str())
                    } else {
                        hidden(&name).contains(&id.as_str())
                    }
                })
                .collect();
            for id in ids {
                sub = sub.mut_arg(id, |a| a.hide(true));
            }
            sub
        });
    }
    cmd
}

impl Command {
    /// The key options of a command that computes a key.
    fn key_args_mut(&mut self) -> Option<&mut KeyArgs> {
        match self {
            Command::Ensure { job, .. }
            | Command::Restore { job, .. }
            | Command::Save { job, .. }
            | Command::Check { job, .. }
            | Command::Explain { job, .. } => Some(&mut job.key),
            Command::Key { job, .. } => Some(&mut job.key),
            _ => None,
        }
    }
}

/// Shells `cachegate completions` writes a script for.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// What a cache job takes: the key, the store, the reports.
#[derive(Args, Debug, Clone)]
pub struct JobArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub flight: FlightArgs,
    /// Save even when the command fails (ensure)
    #[arg(long, help_heading = None::<&str>, env = env_vars::CACHEGATE_SAVE_ON_FAILURE, value_parser = clap::builder::BoolishValueParser::new())]
    pub save_on_failure: bool,
    /// Replace an existing entry of this key atomically (save; --policy push does it too)
    #[arg(long, help_heading = None::<&str>, env = env_vars::CACHEGATE_REPLACE, value_parser = clap::builder::BoolishValueParser::new())]
    pub replace: bool,
}

/// `key` takes the same line as `ensure`, so a job's line can be checked by swapping the
/// command; only the key options change the key. Its own `--json` prints.
#[derive(Args, Debug, Clone)]
pub struct KeyJobArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Accepted so an ensure line works unchanged; key writes no dotenv file
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub dotenv: Option<PathBuf>,
    /// Accepted so an ensure line works unchanged; key runs nothing
    #[arg(long, help_heading = None::<&str>, value_parser = clap::builder::BoolishValueParser::new())]
    pub save_on_failure: bool,
    #[command(flatten)]
    pub flight: FlightArgs,
    /// Accepted so a save line works unchanged; key saves nothing
    #[arg(long, help_heading = None::<&str>, value_parser = clap::builder::BoolishValueParser::new())]
    pub replace: bool,
}

/// Which store a management command (`ls`, `prune`, `doctor`) works on.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Store")]
pub struct StoreLocation {
    /// Cache store: a directory, an S3 bucket, an HTTP server, gitlab or runner
    ///
    /// /abs/path, file:///abs/path, s3://bucket/prefix?endpoint=URL&region=R,
    /// http(s)://host/prefix, gitlab (GitLab's generic packages) or runner (the runner's own
    /// cache).
    #[arg(long, value_name = "URL", env = env_vars::CACHEGATE_BACKEND)]
    pub backend: Option<String>,
    #[command(flatten)]
    pub transfer: TransferArgs,
}

/// `stats`' window, rows and outputs.
#[derive(Args, Debug, Clone)]
pub struct StatsArgs {
    /// The jobs of the last AGE: days (30), or a duration such as 36h or 2w
    #[arg(long, value_name = "AGE", default_value = "30", env = env_vars::CACHEGATE_SINCE, value_parser = parse_age)]
    pub since: u64,
    /// One row per cache name, project, scope or day
    #[arg(long, value_enum, default_value_t = StatsBy::Name, env = env_vars::CACHEGATE_STATS_BY)]
    pub by: StatsBy,
    /// Print JSON instead of the report
    #[arg(long)]
    pub json: bool,
    /// Also draw the report into FILE (SVG)
    ///
    /// Hit rate and time saved per day, and the store's size.
    #[arg(long, value_name = "FILE", env = env_vars::CACHEGATE_SVG)]
    pub svg: Option<PathBuf>,
}

/// What `stats` puts in a row.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsBy {
    Name,
    Project,
    Scope,
    Day,
}

/// `prune`'s rules.
#[derive(Args, Debug, Clone)]
pub struct PruneArgs {
    /// Delete entries saved longer ago than AGE
    ///
    /// AGE is days (30), or a duration such as 36h or 2w.
    #[arg(long, value_name = "AGE", env = env_vars::CACHEGATE_OLDER_THAN, value_parser = parse_age)]
    pub older_than: Option<u64>,
    /// Delete entries not restored for AGE
    ///
    /// An entry never restored counts from when it was saved. AGE is days (7), or a duration
    /// such as 36h or 2w.
    #[arg(long, value_name = "AGE", env = env_vars::CACHEGATE_UNUSED_FOR, value_parser = parse_age)]
    pub unused_for: Option<u64>,
    /// Apply the rules to the entries of one scope only
    ///
    /// For example, keep protected entries longer than feature-branch ones.
    #[arg(long, value_enum, value_name = "SCOPE", env = env_vars::CACHEGATE_PRUNE_SCOPE)]
    pub scope: Option<crate::scope::Scope>,
    /// Age after which an unfinished upload is abandoned and removed
    ///
    /// An unfinished upload is an archive no manifest names, or an incomplete S3 multipart
    /// upload. AGE is hours (24), or a duration such as 30m, 36h or 2d; 24 when not given
    /// (younger ones may be uploads in flight; 0 removes those too). Given alone, it is the
    /// only rule: entries stay
    #[arg(long, value_name = "AGE", env = env_vars::CACHEGATE_ABANDONED_AFTER,
          value_parser = parse_abandoned_after)]
    pub abandoned_after: Option<u64>,
    /// Keep only the N most recently used entries of each cache name
    ///
    /// Counted per project and scope.
    #[arg(long, value_name = "N", env = env_vars::CACHEGATE_KEEP)]
    pub keep: Option<usize>,
    /// Delete the least recently used entries until the store holds at most SIZE
    ///
    /// Used is to the second. SIZE is bytes, or with a unit: 100MB, 100M, 2GiB.
    #[arg(long, value_name = "SIZE", env = env_vars::CACHEGATE_MAX_SIZE, value_parser = parse_size)]
    pub max_size: Option<u64>,
    /// Say what would be deleted, delete nothing
    #[arg(long, env = env_vars::CACHEGATE_DRY_RUN, value_parser = clap::builder::BoolishValueParser::new())]
    pub dry_run: bool,
}

/// Everything that goes into the key.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Key")]
pub struct KeyArgs {
    /// Lock file, glob or directory to fingerprint (repeatable)
    ///
    /// The variable takes a comma-separated list.
    #[arg(long = "lock", value_name = "PATTERN", env = env_vars::CACHEGATE_LOCK)]
    pub locks: Vec<String>,

    /// Path to cache (repeatable); inferred from the lock file's name when not given
    ///
    /// The variable takes a comma-separated list.
    #[arg(help_heading = "Paths", long = "path", value_name = "PATH", env = env_vars::CACHEGATE_PATH)]
    pub paths: Vec<String>,

    /// Cache a --path outside the project and your own tool caches
    ///
    /// A system directory such as /opt/venv. A restore still never replaces a directory there
    /// that cachegate did not create.
    #[arg(help_heading = "Paths", long, env = env_vars::CACHEGATE_ALLOW_OUTSIDE_PATH, value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_outside_path: bool,

    /// Cache name; defaults to the preset's name (poetry, npm, ...)
    #[arg(long, env = env_vars::CACHEGATE_NAME)]
    pub name: Option<String>,

    /// Environment variable whose value is part of the key (repeatable)
    #[arg(
        long = "key-env",
        value_name = "VAR",
        env = env_vars::CACHEGATE_KEY_ENV,
        value_delimiter = ','
    )]
    pub key_env: Vec<String>,

    /// Shell command whose output is part of the key (repeatable)
    ///
    /// For example, 'python3 --version'.
    #[arg(long = "key-cmd", value_name = "CMD", env = env_vars::CACHEGATE_KEY_CMD)]
    pub key_cmd: Vec<String>,

    /// Project directory: lock files and relative paths are resolved from here
    #[arg(help_heading = "Paths", long = "dir", value_name = "DIR", env = env_vars::CACHEGATE_DIR)]
    pub dir: Option<PathBuf>,

    /// Leave the runtime (Python interpreter, Node ABI, Ruby) out of the key
    #[arg(long, env = "CACHEGATE_NO_RUNTIME_KEY", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_runtime_key: bool,
    /// Extra text in the key: change it to start this cache afresh
    ///
    /// Set it from a CI variable; nothing is deleted, the old entries just no longer match.
    #[arg(long, value_name = "TEXT", env = env_vars::CACHEGATE_SALT)]
    pub salt: Option<String>,
}

impl From<&KeyArgs> for crate::plan::Request {
    fn from(a: &KeyArgs) -> Self {
        crate::plan::Request {
            locks: a.locks.clone(),
            paths: a.paths.clone(),
            allow_outside_path: a.allow_outside_path,
            name: a.name.clone(),
            key_env: a.key_env.clone(),
            key_cmd: a.key_cmd.clone(),
            dir: a.dir.clone(),
            no_runtime_key: a.no_runtime_key,
            salt: a.salt.clone(),
        }
    }
}

/// Where entries are stored and how.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Store")]
pub struct StoreArgs {
    /// Cache store: a directory, an S3 bucket, an HTTP server, gitlab or runner
    ///
    /// /abs/path, file:///abs/path, s3://bucket/prefix?endpoint=URL&region=R,
    /// http(s)://host/prefix, gitlab (GitLab's generic packages) or runner (the runner's own
    /// cache).
    #[arg(long, value_name = "URL", env = env_vars::CACHEGATE_BACKEND)]
    pub backend: Option<String>,

    /// Restore only, save only, or both
    #[arg(long, value_enum, default_value_t = Policy::PullPush, env = env_vars::CACHEGATE_POLICY)]
    pub policy: Policy,

    /// The project whose entries to use
    ///
    /// CI_PROJECT_PATH in GitLab CI, else the git origin's path, else the directory's name;
    /// name another project's to share its cache (a fork reading its parent's).
    #[arg(long, value_name = "NAME", env = env_vars::CACHEGATE_NAMESPACE)]
    pub namespace: Option<String>,

    /// Fail with exit code 3 on cache trouble instead of treating it as a miss
    #[arg(long, env = env_vars::CACHEGATE_STRICT, value_parser = clap::builder::BoolishValueParser::new())]
    pub strict: bool,

    /// zstd level for new entries (1-19)
    #[arg(long, value_name = "N", default_value_t = 3, env = env_vars::CACHEGATE_COMPRESSION_LEVEL,
          value_parser = clap::value_parser!(i32).range(1..=19))]
    pub compression_level: i32,

    /// Directory on this machine in front of the remote store
    ///
    /// Hits come from it when it has the entry; remote hits and saves are copied into it.
    #[arg(long, value_name = "DIR", env = env_vars::CACHEGATE_LOCAL_TIER, value_parser = parse_local_tier)]
    pub local_tier: Option<PathBuf>,

    /// Largest the local tier may grow; least recently used files go first
    ///
    /// SIZE is bytes, or with a unit: K, M, G, T.
    #[arg(long, value_name = "SIZE", env = env_vars::CACHEGATE_LOCAL_TIER_MAX_SIZE, value_parser = parse_size,
          requires = "local_tier")]
    pub local_tier_max_size: Option<u64>,

    #[command(flatten)]
    pub transfer: TransferArgs,

    #[command(flatten)]
    pub trust: TrustArgs,

    #[command(flatten)]
    pub limits: LimitArgs,
}

/// What `ensure` does on a miss before installing from scratch.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Single-flight and warm start")]
pub struct FlightArgs {
    /// On a miss, run the command on top of the newest entry of this cache (a warm start)
    ///
    /// The newest entry whose platform and runtime match: only lock files, their
    /// package.json/pyproject.toml dependency fields or the command differ.
    #[arg(long, env = env_vars::CACHEGATE_FALLBACK, value_parser = clap::builder::BoolishValueParser::new())]
    pub fallback: bool,

    /// Seconds to wait for another job installing the same key (single-flight)
    ///
    /// Then restore its entry; 0 turns it off. Default: 600 inside CI, 0 elsewhere
    #[arg(long, value_name = "SECS", env = env_vars::CACHEGATE_WAIT,
          value_parser = clap::value_parser!(u64).range(0..=86400))]
    pub wait: Option<u64>,

    /// Seconds a single-flight lease lives without renewal
    ///
    /// A leader that dies is taken over this long after its last renewal.
    #[arg(long, value_name = "SECS", default_value_t = 60, env = env_vars::CACHEGATE_LEASE,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lease: u64,

    /// Longest pause in seconds between two looks at the lease while waiting
    #[arg(long, value_name = "SECS", default_value_t = 10, env = env_vars::CACHEGATE_POLL,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub poll: u64,
}

impl FlightArgs {
    /// The single-flight settings, or `None` when it is off.
    pub fn settings(&self) -> Option<crate::lease::Settings> {
        let in_ci = [env_vars::CI, env_vars::GITLAB_CI]
            .iter()
            .any(|k| std::env::var(k).is_ok_and(|v| v == "true"));
        let wait = self.wait.unwrap_or(if in_ci { 600 } else { 0 });
        (wait > 0).then(|| crate::lease::Settings {
            wait: std::time::Duration::from_secs(wait),
            ttl: std::time::Duration::from_secs(self.lease),
            poll: std::time::Duration::from_secs(self.poll),
        })
    }
}

/// Which entries a job may read and write, and what it refuses to save.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Trust")]
pub struct TrustArgs {
    /// Widen the trust scopes deliberately
    ///
    /// The log says so whenever they are widened.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = crate::scope::ScopeMode::Auto,
          env = env_vars::CACHEGATE_SCOPE)]
    pub scope: crate::scope::ScopeMode,

    /// Do not save when a cached path holds credential files
    ///
    /// Such as .npmrc tokens and .netrc.
    #[arg(long, env = env_vars::CACHEGATE_REFUSE_SECRETS, value_parser = clap::builder::BoolishValueParser::new())]
    pub refuse_secrets: bool,
}

/// Bounds on what a restore may unpack; an archive past any of them is rejected whole.
/// They are part of what a job trusts an archive with, so they show under Trust.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Trust")]
pub struct LimitArgs {
    /// Largest archive to download
    ///
    /// SIZE is bytes, or with a unit: 32GB, 32G, 30GiB.
    #[arg(long, value_name = "SIZE", default_value = "32G", env = env_vars::CACHEGATE_MAX_ARCHIVE_SIZE,
          value_parser = parse_size)]
    pub max_archive_size: u64,

    /// Largest unpacked size of an archive
    ///
    /// SIZE is bytes, or with a unit: 64GB, 64G, 60GiB.
    #[arg(long, value_name = "SIZE", default_value = "64G", env = env_vars::CACHEGATE_MAX_UNPACKED_SIZE,
          value_parser = parse_size)]
    pub max_unpacked_size: u64,

    /// Most files, directories and links one archive may hold
    #[arg(long, value_name = "N", default_value_t = 5_000_000, env = env_vars::CACHEGATE_MAX_ENTRIES,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_entries: u64,

    /// Longest path inside an archive, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = 4096, env = env_vars::CACHEGATE_MAX_PATH_LENGTH,
          value_parser = clap::value_parser!(u64).range(16..=65536))]
    pub max_path_length: u64,

    /// Most an archive over 1 MiB may expand, as unpacked bytes per archive byte
    #[arg(long, value_name = "N", default_value_t = 1000, env = env_vars::CACHEGATE_MAX_RATIO,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_ratio: u64,

    /// Largest zstd window an archive may need, as a power of two
    ///
    /// 27 is 128 MiB of memory.
    #[arg(long, value_name = "LOG", default_value_t = 27, env = env_vars::CACHEGATE_ZSTD_WINDOW_LOG,
          value_parser = clap::value_parser!(u32).range(10..=31))]
    pub zstd_window_log: u32,
}

impl LimitArgs {
    pub fn limits(&self) -> crate::archive::Limits {
        crate::archive::Limits {
            max_archive: self.max_archive_size,
            max_entries: self.max_entries,
            max_bytes: self.max_unpacked_size,
            max_path: self.max_path_length as usize,
            max_ratio: self.max_ratio,
            window_log_max: self.zstd_window_log,
        }
    }
}

/// A size, as every size option takes it: bytes, or a number with a unit, `100MB` or `100M`
/// (powers of 1000, as sizes are shown) or `100MiB` (powers of 1024), parsed by `bytesize`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{s:?} is not a size; use bytes or a number with a unit: kB, MB, GB, TB (powers of 1000; K, M, G, T too) or KiB, MiB, GiB, TiB, e.g. 512MB"
        )
    };
    match s.trim().parse::<bytesize::ByteSize>() {
        // bytesize saturates on overflow: a size that does not fit is no size.
        Ok(b) if b.as_u64() > 0 && b.as_u64() < u64::MAX => Ok(b.as_u64()),
        _ => Err(bad()),
    }
}

/// An age, as `--older-than` takes it: days as a plain number (`30`), or a duration in
/// jiff's friendly form (`36h`, `2w`, `1d 12h`). Seconds.
pub fn parse_age(s: &str) -> Result<u64, String> {
    let secs = parse_duration(s, 86_400, "days (30)")?;
    // A bare 0 is a deliberate "everything"; a zero duration (0h) is more likely a slip.
    if secs == 0 && s.trim().parse::<u64>().is_err() {
        return Err(age_error(s, "it must be positive", "days (30)"));
    }
    Ok(secs)
}

/// An `--abandoned-after`: hours as a plain number (`24`), or a duration (`30m`, `2d`).
/// Seconds; 0 is allowed, it means every upload started before now.
pub fn parse_abandoned_after(s: &str) -> Result<u64, String> {
    parse_duration(s, 3600, "hours (24)")
}

/// A plain number in units of `bare` seconds, or a jiff friendly duration. Seconds, never
/// negative.
fn parse_duration(s: &str, bare: u64, plain: &str) -> Result<u64, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return n
            .checked_mul(bare)
            .ok_or_else(|| age_error(s, "it is too long", plain));
    }
    let span: jiff::Span = t
        .parse()
        .map_err(|e: jiff::Error| age_error(s, &e.to_string(), plain))?;
    let secs = span
        .total((
            jiff::Unit::Second,
            jiff::SpanRelativeTo::days_are_24_hours(),
        ))
        .map_err(|e| age_error(s, &e.to_string(), plain))?;
    if secs < 0.0 {
        return Err(age_error(s, "it must not be negative", plain));
    }
    Ok(secs as u64)
}

fn age_error(s: &str, why: &str, plain: &str) -> String {
    format!("{s:?} is not an age ({why}); use {plain} or a duration such as 36h, 2w, 1d 12h")
}

/// How long a remote store may take before cachegate gives up and treats it as a miss.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Transfer")]
pub struct TransferArgs {
    /// Seconds to wait for a connection to the store
    #[arg(long, value_name = "SECS", default_value_t = 10, env = env_vars::CACHEGATE_CONNECT_TIMEOUT,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub connect_timeout: u64,

    /// Seconds a transfer may go without moving a byte before it is cut
    #[arg(long, value_name = "SECS", default_value_t = 60, env = env_vars::CACHEGATE_STALL_TIMEOUT,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub stall_timeout: u64,

    /// Seconds one whole upload or download may take
    #[arg(long, value_name = "SECS", default_value_t = 1800, env = env_vars::CACHEGATE_TIMEOUT,
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub timeout: u64,

    /// Retries of a failed request (connection errors, 5xx, 429), with jittered backoff
    #[arg(long, value_name = "N", default_value_t = 3, env = env_vars::CACHEGATE_RETRIES,
          value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retries: u32,

    /// Requests in flight for one transfer
    ///
    /// Ranged requests for one large download, multipart parts held for one upload, and
    /// manifest reads and deletes for `ls` and `prune`.
    #[arg(long, value_name = "N", default_value_t = 8, env = env_vars::CACHEGATE_CONCURRENCY,
          value_parser = clap::value_parser!(u16).range(1..=crate::backend::MAX_CONCURRENCY as i64))]
    pub concurrency: u16,

    /// Bytes per ranged request or multipart part (1MB to 256MiB)
    ///
    /// A transfer holds at most this times --concurrency in memory.
    #[arg(long, value_name = "SIZE", default_value = "4MiB", env = env_vars::CACHEGATE_CHUNK_SIZE,
          value_parser = parse_chunk_size)]
    pub chunk_size: u64,
}

/// A `--local-tier`: an absolute directory, so it means the same from every job directory.
pub fn parse_local_tier(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s.trim());
    if !p.is_absolute() {
        return Err(format!(
            "{s:?} is not an absolute path; give the tier's directory as /abs/path, e.g. /var/cache/cachegate"
        ));
    }
    Ok(p)
}

/// A `--chunk-size`: a size within the bounds that keep memory and request counts sane.
pub fn parse_chunk_size(s: &str) -> Result<u64, String> {
    use crate::backend::{MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};
    let n = parse_size(s)?;
    if !(MIN_CHUNK_SIZE as u64..=MAX_CHUNK_SIZE as u64).contains(&n) {
        return Err(format!(
            "{s:?} is out of range; a chunk is 1MB to 256MiB (e.g. 4MiB)"
        ));
    }
    Ok(n)
}

impl TransferArgs {
    pub fn transfer(&self) -> crate::backend::Transfer {
        use std::time::Duration;
        crate::backend::Transfer {
            connect: Duration::from_secs(self.connect_timeout),
            stall: Duration::from_secs(self.stall_timeout),
            overall: Duration::from_secs(self.timeout),
            retries: self.retries,
            concurrency: usize::from(self.concurrency),
            chunk_size: self.chunk_size as usize,
        }
    }
}

/// Machine-readable reports.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Output")]
pub struct ReportArgs {
    /// Print a JSON report of this run on stdout, after the command's own output
    ///
    /// `--json FILE`, the old form, still writes FILE for one release.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-",
          env = env_vars::CACHEGATE_JSON, conflicts_with = "json_file")]
    pub json: Option<PathBuf>,

    /// Write the JSON report of this run to FILE (- for stdout)
    #[arg(long, value_name = "FILE", env = env_vars::CACHEGATE_JSON_FILE)]
    pub json_file: Option<PathBuf>,

    /// Write CACHEGATE_HIT=true|false and friends to FILE (a dotenv report)
    ///
    /// For `artifacts: reports: dotenv`.
    #[arg(long, value_name = "FILE", env = env_vars::CACHEGATE_DOTENV)]
    pub dotenv: Option<PathBuf>,

    /// Write cachegate_hit and friends to FILE as OpenMetrics text
    ///
    /// cachegate_hit, cachegate_saved_seconds and the rest, for
    /// `artifacts: reports: metrics`.
    #[arg(long, value_name = "FILE", env = env_vars::CACHEGATE_METRICS)]
    pub metrics: Option<PathBuf>,
}

impl ReportArgs {
    /// The one place `--json` and `--json-file` become where the JSON goes.
    pub fn json_destination(&self) -> Option<PathBuf> {
        json_destination(self.json.as_deref(), self.json_file.as_deref())
    }
}

/// Where JSON goes, `-` being stdout, by the convention cargo and uv keep: `--json` prints
/// it, `--json-file FILE` writes it. `--json FILE` (and `CACHEGATE_JSON=FILE`), the old
/// form, still writes FILE for one release and says so.
pub fn json_destination(
    json: Option<&std::path::Path>,
    json_file: Option<&std::path::Path>,
) -> Option<PathBuf> {
    if let Some(f) = json_file {
        return Some(f.to_path_buf());
    }
    let v = json?;
    let flag_like = ["-", "true", "1", "yes"]
        .iter()
        .any(|t| v.as_os_str().eq_ignore_ascii_case(t));
    if flag_like {
        return Some(PathBuf::from("-"));
    }
    eprintln!(
        "cachegate: deprecated: --json {0} writes {0} this release only; use --json-file {0} (--json alone prints the JSON on stdout)",
        v.display()
    );
    Some(v.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn chunk_sizes_are_bounded_naming_the_bad_value() {
        assert_eq!(parse_chunk_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_chunk_size("1M"), Ok(1_000_000));
        for bad in ["512K", "1G", "lots"] {
            assert!(
                parse_chunk_size(bad)
                    .unwrap_err()
                    .contains(&format!("{bad:?}")),
                "{bad}"
            );
        }
    }

    #[test]
    fn sizes_parse_in_the_units_they_are_shown_in() {
        assert_eq!(parse_size("123"), Ok(123));
        // M and MB are what `report::bytes` shows (powers of 1000); MiB is 2^20.
        assert_eq!(parse_size("64M"), Ok(64_000_000));
        assert_eq!(parse_size("64MB"), Ok(64_000_000));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1kb"), Ok(1000));
        assert_eq!(parse_size("100 MB"), Ok(100_000_000));
        assert_eq!(crate::report::bytes(parse_size("412MB").unwrap()), "412 MB");
        for bad in ["", "M", "12X", "0", "-1", "99999999999T"] {
            assert!(
                parse_size(bad).unwrap_err().contains(&format!("{bad:?}")),
                "{bad}"
            );
        }
    }

    #[test]
    fn ages_are_days_or_durations() {
        assert_eq!(parse_age("30"), Ok(30 * 86_400));
        assert_eq!(parse_age("36h"), Ok(36 * 3600));
        assert_eq!(parse_age("2w"), Ok(14 * 86_400));
        assert_eq!(parse_age("1d 12h"), Ok(36 * 3600));
        for bad in ["", "soon", "-3d", "0h"] {
            assert!(
                parse_age(bad).unwrap_err().contains(&format!("{bad:?}")),
                "{bad}"
            );
        }
    }

    #[test]
    fn abandoned_after_is_hours_or_a_duration() {
        assert_eq!(parse_abandoned_after("24"), Ok(24 * 3600));
        assert_eq!(parse_abandoned_after("30m"), Ok(30 * 60));
        assert_eq!(parse_abandoned_after("36h"), Ok(36 * 3600));
        assert_eq!(parse_abandoned_after("2d"), Ok(2 * 86_400));
        assert_eq!(parse_abandoned_after("0"), Ok(0));
        for bad in ["", "soon", "-3h", "1.5", "99999999999999999999"] {
            let e = parse_abandoned_after(bad).unwrap_err();
            assert!(
                e.contains(&format!("{bad:?}")) && e.contains("hours (24)"),
                "{e}"
            );
        }
    }
}
