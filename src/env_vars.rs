//! Every environment variable cachegate reads that is not a `CACHEGATE_<OPTION>` twin of a
//! flag (those live next to their flags in `cli.rs`).

pub const GITLAB_CI: &str = "GITLAB_CI";
pub const CI_COMMIT_REF_PROTECTED: &str = "CI_COMMIT_REF_PROTECTED";
pub const CI_JOB_IMAGE: &str = "CI_JOB_IMAGE";
pub const CI_JOB_URL: &str = "CI_JOB_URL";
pub const CI_PROJECT_PATH: &str = "CI_PROJECT_PATH";
/// Set to `true` by GitLab, GitHub and most CI systems: single-flight waits by default there.
pub const CI: &str = "CI";
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
