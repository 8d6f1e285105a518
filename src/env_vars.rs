//! Every environment variable cachegate reads that is not a `CACHEGATE_<OPTION>` twin of a
//! flag (those live next to their flags in `cli.rs`).

pub const GITLAB_CI: &str = "GITLAB_CI";
pub const CI_COMMIT_REF_PROTECTED: &str = "CI_COMMIT_REF_PROTECTED";
pub const CI_JOB_IMAGE: &str = "CI_JOB_IMAGE";
pub const CI_JOB_URL: &str = "CI_JOB_URL";
pub const XDG_CACHE_HOME: &str = "XDG_CACHE_HOME";
/// The secret ed25519 key that signs manifests (a protected, masked CI variable).
pub const CACHEGATE_SIGNING_KEY: &str = "CACHEGATE_SIGNING_KEY";
/// Public keys whose signatures protected entries need.
pub const CACHEGATE_TRUSTED_KEYS: &str = "CACHEGATE_TRUSTED_KEYS";
pub const CACHEGATE_HTTP_TOKEN: &str = "CACHEGATE_HTTP_TOKEN";
pub const CACHEGATE_HTTP_USER: &str = "CACHEGATE_HTTP_USER";
pub const CACHEGATE_HTTP_PASSWORD: &str = "CACHEGATE_HTTP_PASSWORD";
pub const CACHEGATE_GITLAB_TOKEN: &str = "CACHEGATE_GITLAB_TOKEN";
pub const CI_API_V4_URL: &str = "CI_API_V4_URL";
pub const CI_PROJECT_ID: &str = "CI_PROJECT_ID";
pub const CI_JOB_TOKEN: &str = "CI_JOB_TOKEN";
