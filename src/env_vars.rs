//! Every environment variable cachegate reads, in one place: the `CACHEGATE_<OPTION>` twins
//! of the flags (`cli.rs` names them with `env =`), cachegate's own secrets, and what it reads
//! from CI, the shell and AWS.

// Twins of flags: a flag wins over its variable.
pub const CACHEGATE_ABANDONED_AFTER: &str = "CACHEGATE_ABANDONED_AFTER";
pub const CACHEGATE_BACKEND: &str = "CACHEGATE_BACKEND";
pub const CACHEGATE_CHUNK_SIZE: &str = "CACHEGATE_CHUNK_SIZE";
pub const CACHEGATE_COMPRESSION_LEVEL: &str = "CACHEGATE_COMPRESSION_LEVEL";
pub const CACHEGATE_CONCURRENCY: &str = "CACHEGATE_CONCURRENCY";
pub const CACHEGATE_CONNECT_TIMEOUT: &str = "CACHEGATE_CONNECT_TIMEOUT";
pub const CACHEGATE_DIR: &str = "CACHEGATE_DIR";
pub const CACHEGATE_DOTENV: &str = "CACHEGATE_DOTENV";
pub const CACHEGATE_DRY_RUN: &str = "CACHEGATE_DRY_RUN";
pub const CACHEGATE_EXPLAIN: &str = "CACHEGATE_EXPLAIN";
pub const CACHEGATE_FALLBACK: &str = "CACHEGATE_FALLBACK";
pub const CACHEGATE_JSON: &str = "CACHEGATE_JSON";
pub const CACHEGATE_JSON_FILE: &str = "CACHEGATE_JSON_FILE";
pub const CACHEGATE_KEEP: &str = "CACHEGATE_KEEP";
pub const CACHEGATE_KEY_CMD: &str = "CACHEGATE_KEY_CMD";
pub const CACHEGATE_KEY_ENV: &str = "CACHEGATE_KEY_ENV";
pub const CACHEGATE_LEASE: &str = "CACHEGATE_LEASE";
pub const CACHEGATE_LOCAL_TIER: &str = "CACHEGATE_LOCAL_TIER";
pub const CACHEGATE_LOCAL_TIER_MAX_SIZE: &str = "CACHEGATE_LOCAL_TIER_MAX_SIZE";
pub const CACHEGATE_LOCK: &str = "CACHEGATE_LOCK";
pub const CACHEGATE_MAX_ARCHIVE_SIZE: &str = "CACHEGATE_MAX_ARCHIVE_SIZE";
pub const CACHEGATE_MAX_ENTRIES: &str = "CACHEGATE_MAX_ENTRIES";
pub const CACHEGATE_MAX_PATH_LENGTH: &str = "CACHEGATE_MAX_PATH_LENGTH";
pub const CACHEGATE_MAX_RATIO: &str = "CACHEGATE_MAX_RATIO";
pub const CACHEGATE_MAX_SIZE: &str = "CACHEGATE_MAX_SIZE";
pub const CACHEGATE_MAX_UNPACKED_SIZE: &str = "CACHEGATE_MAX_UNPACKED_SIZE";
pub const CACHEGATE_METRICS: &str = "CACHEGATE_METRICS";
pub const CACHEGATE_NAME: &str = "CACHEGATE_NAME";
pub const CACHEGATE_NAMESPACE: &str = "CACHEGATE_NAMESPACE";
pub const CACHEGATE_OLDER_THAN: &str = "CACHEGATE_OLDER_THAN";
pub const CACHEGATE_PATH: &str = "CACHEGATE_PATH";
pub const CACHEGATE_POLICY: &str = "CACHEGATE_POLICY";
pub const CACHEGATE_POLL: &str = "CACHEGATE_POLL";
pub const CACHEGATE_PRUNE_SCOPE: &str = "CACHEGATE_PRUNE_SCOPE";
pub const CACHEGATE_REFUSE_SECRETS: &str = "CACHEGATE_REFUSE_SECRETS";
pub const CACHEGATE_REPLACE: &str = "CACHEGATE_REPLACE";
pub const CACHEGATE_RETRIES: &str = "CACHEGATE_RETRIES";
pub const CACHEGATE_SINCE: &str = "CACHEGATE_SINCE";
pub const CACHEGATE_STATS_BY: &str = "CACHEGATE_STATS_BY";
pub const CACHEGATE_SVG: &str = "CACHEGATE_SVG";
pub const CACHEGATE_SALT: &str = "CACHEGATE_SALT";
pub const CACHEGATE_SAVE_ON_FAILURE: &str = "CACHEGATE_SAVE_ON_FAILURE";
pub const CACHEGATE_SCOPE: &str = "CACHEGATE_SCOPE";
pub const CACHEGATE_STALL_TIMEOUT: &str = "CACHEGATE_STALL_TIMEOUT";
pub const CACHEGATE_STRICT: &str = "CACHEGATE_STRICT";
pub const CACHEGATE_TIMEOUT: &str = "CACHEGATE_TIMEOUT";
pub const CACHEGATE_UNUSED_FOR: &str = "CACHEGATE_UNUSED_FOR";
pub const CACHEGATE_VERBOSE: &str = "CACHEGATE_VERBOSE";
pub const CACHEGATE_WAIT: &str = "CACHEGATE_WAIT";
pub const CACHEGATE_ZSTD_WINDOW_LOG: &str = "CACHEGATE_ZSTD_WINDOW_LOG";
pub const CACHEGATE_ALLOW_OUTSIDE_PATH: &str = "CACHEGATE_ALLOW_OUTSIDE_PATH";

// cachegate's own secrets and the credentials of its stores.
/// The secret ed25519 key that signs manifests (a protected, masked CI variable).
pub const CACHEGATE_SIGNING_KEY: &str = "CACHEGATE_SIGNING_KEY";
/// Public keys whose signatures protected entries need.
pub const CACHEGATE_TRUSTED_KEYS: &str = "CACHEGATE_TRUSTED_KEYS";
pub const CACHEGATE_HTTP_TOKEN: &str = "CACHEGATE_HTTP_TOKEN";
pub const CACHEGATE_HTTP_USER: &str = "CACHEGATE_HTTP_USER";
pub const CACHEGATE_HTTP_PASSWORD: &str = "CACHEGATE_HTTP_PASSWORD";
pub const CACHEGATE_GITLAB_TOKEN: &str = "CACHEGATE_GITLAB_TOKEN";

// From GitLab CI.
pub const GITLAB_CI: &str = "GITLAB_CI";
pub const CI_API_V4_URL: &str = "CI_API_V4_URL";
pub const CI_COMMIT_REF_PROTECTED: &str = "CI_COMMIT_REF_PROTECTED";
pub const CI_JOB_ID: &str = "CI_JOB_ID";
pub const CI_JOB_IMAGE: &str = "CI_JOB_IMAGE";
pub const CI_JOB_TOKEN: &str = "CI_JOB_TOKEN";
pub const CI_JOB_URL: &str = "CI_JOB_URL";
pub const CI_PROJECT_ID: &str = "CI_PROJECT_ID";
pub const CI_PROJECT_PATH: &str = "CI_PROJECT_PATH";

// From the shell.
pub const HOME: &str = "HOME";
pub const USER: &str = "USER";
pub const XDG_CACHE_HOME: &str = "XDG_CACHE_HOME";
/// Where cachegate notes the directories outside the project it created (outside.rs).
pub const XDG_STATE_HOME: &str = "XDG_STATE_HOME";

/// Variables naming a tool's own cache or install directory: a `--path` under one of them is
/// the user's tool cache, cacheable without `--allow-outside-path` wherever it points.
pub const TOOL_CACHE_VARS: &[&str] = &[
    "CARGO_HOME",
    "RUSTUP_HOME",
    "GOPATH",
    "GOMODCACHE",
    "GOCACHE",
    "npm_config_cache",
    "NPM_CONFIG_CACHE",
    "YARN_CACHE_FOLDER",
    "npm_config_store_dir",
    "PNPM_HOME",
    "BUN_INSTALL_CACHE_DIR",
    "DENO_DIR",
    "PIP_CACHE_DIR",
    "UV_CACHE_DIR",
    "UV_PROJECT_ENVIRONMENT",
    "POETRY_CACHE_DIR",
    "POETRY_VIRTUALENVS_PATH",
    "PIPENV_CACHE_DIR",
    "WORKON_HOME",
    "VIRTUAL_ENV",
    "CONDA_PKGS_DIRS",
    "BUNDLE_PATH",
    "GEM_HOME",
    "COMPOSER_HOME",
    "COMPOSER_CACHE_DIR",
    "GRADLE_USER_HOME",
    "NUGET_PACKAGES",
    "MIX_HOME",
    "HEX_HOME",
    "XDG_CACHE_HOME",
];

// The progress bar (progress.rs).
/// Set by most CI systems: no progress bar is drawn when it (or GITLAB_CI) is set, and
/// single-flight waits by default.
pub const CI: &str = "CI";
/// Hidden (not a flag): seconds a restore or save runs before its bar shows (default 1; the
/// terminal tests set 0 or a large value).
pub const CACHEGATE_PROGRESS_DELAY: &str = "CACHEGATE_PROGRESS_DELAY";
/// Hidden (not a flag): seconds between two plain progress lines when no bar is drawn
/// (default 10; the tests set less).
pub const CACHEGATE_PROGRESS_INTERVAL: &str = "CACHEGATE_PROGRESS_INTERVAL";

// The S3 store's credential chain reads the standard AWS variables (and profiles); these are
// the ones cachegate itself registers for redaction or checks.
pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
pub const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
pub const AWS_ROLE_ARN: &str = "AWS_ROLE_ARN";
pub const AWS_REGION: &str = "AWS_REGION";
pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
pub const AWS_WEB_IDENTITY_TOKEN_FILE: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
/// A GitLab `id_tokens` token itself; cachegate writes it to a private file for the chain.
pub const CACHEGATE_S3_WEB_IDENTITY_TOKEN: &str = "CACHEGATE_S3_WEB_IDENTITY_TOKEN";
