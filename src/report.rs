//! What people and later jobs read: one summary line on stderr, detail lines (folded into
//! GitLab's collapsible sections when running there), and the `--json` / `--dotenv` files.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::env_vars;

pub fn in_gitlab() -> bool {
    std::env::var(env_vars::GITLAB_CI).is_ok_and(|v| v == "true")
}

pub fn warn(msg: &str) {
    eprintln!(
        "cachegate: warning: {}",
        crate::echo::line(&crate::redact::redact(msg))
    );
}

/// Detail lines: a collapsed section in GitLab, plain lines elsewhere.
pub fn section(id: &str, title: &str, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let mut err = std::io::stderr().lock();
    if in_gitlab() {
        let now = unix_now();
        let _ = writeln!(
            err,
            "\x1b[0Ksection_start:{now}:cachegate_{id}[collapsed=true]\r\x1b[0Kcachegate: {title}"
        );
        for l in lines {
            let _ = writeln!(err, "  {}", crate::echo::line(&crate::redact::redact(l)));
        }
        let _ = writeln!(
            err,
            "\x1b[0Ksection_end:{}:cachegate_{id}\r\x1b[0K",
            unix_now()
        );
    } else {
        for l in lines {
            let _ = writeln!(
                err,
                "cachegate: {}",
                crate::echo::line(&crate::redact::redact(l))
            );
        }
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// 31204 -> "31,204".
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// 1 -> "1 file", 31204 -> "31,204 files".
pub fn files(n: u64) -> String {
    counted(n, "file", "files")
}

/// A count with its noun: `counted(1, "entry", "entries")` -> "1 entry", 2 -> "2 entries".
pub fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// Decimal units, as `du --si` and most dashboards show them, and as sizes are accepted
/// (`parse_size`): one decimal below 10, none above.
pub fn bytes(n: u64) -> String {
    let shown = bytesize::ByteSize(n).display().si();
    let one = format!("{shown:.1}");
    let ten_or_more = one
        .split(' ')
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .is_some_and(|v| v >= 10.0);
    if ten_or_more {
        format!("{shown:.0}")
    } else {
        one
    }
}

pub fn secs(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.0} s")
    }
}

/// What a run came to, as the report's `result` (and `CACHEGATE_RESULT`) spell it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Nothing to report yet, or a save that failed: an empty string, as before.
    #[default]
    #[serde(rename = "")]
    None,
    Hit,
    Miss,
    Saved,
    Exists,
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::None => "",
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Saved => "saved",
            Outcome::Exists => "exists",
            Outcome::Skipped => "skipped",
        }
    }
}

/// Everything a run reports, serialized as the `--json` file.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub command: &'static str,
    pub result: Outcome,
    pub hit: bool,
    pub key: String,
    pub name: String,
    pub scope: String,
    pub backend: String,
    pub files: Option<u64>,
    pub bytes: Option<u64>,
    pub archive_bytes: Option<u64>,
    pub restore_seconds: Option<f64>,
    pub install_seconds: Option<f64>,
    pub save_seconds: Option<f64>,
    pub command_status: Option<i32>,
    /// On a hit: the install time the entry recorded, and that minus this restore.
    pub entry_install_seconds: Option<f64>,
    pub saved_seconds: Option<f64>,
    /// Single-flight: how long this job waited for another one's install, and whose.
    pub waited_seconds: Option<f64>,
    pub waited_for: Option<String>,
    /// The entry a warm start restored before the command ran.
    pub warm: Option<WarmReport>,
    /// The project namespace the entries live under.
    pub namespace: String,
    pub saved: bool,
    pub warnings: Vec<String>,
    pub components: Option<crate::key::Components>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WarmReport {
    pub key: String,
    pub scope: String,
    pub creator: String,
    pub created: u64,
    /// The components that differ from this job's key (lock files, command).
    pub differs: Vec<String>,
    pub restore_seconds: f64,
}

/// What a hit saved: ` · saved ~41 s: install 43.2 s, restore 1.9 s`, or why it did not.
pub fn saved_phrase(install: f64, restore: f64) -> String {
    let saved = install - restore;
    if saved >= 0.0 {
        format!(
            "saved ~{:.0} s: install {install:.1} s, restore {restore:.1} s",
            saved
        )
    } else {
        format!("no time saved: install {install:.1} s, restore {restore:.1} s")
    }
}

impl Report {
    pub fn warn(&mut self, msg: String) {
        warn(&msg);
        self.warnings.push(crate::redact::redact(&msg));
    }

    pub fn write_files(&self, json: Option<&Path>, dotenv: Option<&Path>) -> Result<()> {
        if let Some(path) = json {
            let text = serde_json::to_string_pretty(self)?;
            if path.as_os_str() == "-" {
                crate::outln!("{text}");
            } else {
                std::fs::write(path, text + "\n")
                    .with_context(|| format!("cannot write --json-file {}", path.display()))?;
            }
        }
        if let Some(path) = dotenv {
            let lines = [
                format!("CACHEGATE_HIT={}", self.hit),
                format!("CACHEGATE_RESULT={}", self.result.as_str()),
                format!("CACHEGATE_KEY={}", self.key),
                format!("CACHEGATE_NAME={}", self.name),
                format!("CACHEGATE_SCOPE={}", self.scope),
                format!(
                    "CACHEGATE_SAVED_SECONDS={:.1}",
                    self.saved_seconds.unwrap_or(0.0)
                ),
                format!("CACHEGATE_WARM={}", self.warm.is_some()),
            ];
            std::fs::write(path, lines.join("\n") + "\n")
                .with_context(|| format!("cannot write --dotenv {}", path.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(31204), "31,204");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(files(1), "1 file");
        assert_eq!(files(0), "0 files");
        assert_eq!(files(1234), "1,234 files");
        assert_eq!(bytes(412_000_000), "412 MB");
        assert_eq!(bytes(1_500), "1.5 kB");
        assert_eq!(bytes(12), "12 B");
        assert_eq!(secs(3.21), "3.2 s");
    }

    #[test]
    fn time_saved_reads_as_the_product_page_shows_it() {
        assert_eq!(
            saved_phrase(43.2, 1.9),
            "saved ~41 s: install 43.2 s, restore 1.9 s"
        );
        assert_eq!(
            saved_phrase(0.4, 1.2),
            "no time saved: install 0.4 s, restore 1.2 s"
        );
    }

    #[test]
    fn outcomes_serialize_to_the_strings_reports_always_had() {
        for o in [
            Outcome::None,
            Outcome::Hit,
            Outcome::Miss,
            Outcome::Saved,
            Outcome::Exists,
            Outcome::Skipped,
        ] {
            assert_eq!(
                serde_json::to_value(o).unwrap(),
                serde_json::Value::from(o.as_str())
            );
        }
    }
}
