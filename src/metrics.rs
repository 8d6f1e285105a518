//! `--metrics FILE`: the run as OpenMetrics text, for GitLab's `artifacts: reports: metrics`,
//! whose merge request widget shows how each value changed against the target branch. Every
//! metric is written on every run (0 where it does not apply), so the widget compares like
//! with like; the cache name is a label, so several caches' files can be told apart.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::report::Report;

/// The file's text: one gauge family per value, then `# EOF`.
pub fn text(r: &Report) -> String {
    let secs = |v: Option<f64>| v.unwrap_or(0.0);
    let families: [(&str, &str, f64); 8] = [
        (
            "cachegate_hit",
            "1 when the job restored the cache, 0 when it ran the install.",
            if r.hit { 1.0 } else { 0.0 },
        ),
        (
            "cachegate_saved_seconds",
            "Install time a hit saved: the entry's recorded install minus this restore.",
            secs(r.saved_seconds),
        ),
        (
            "cachegate_restore_seconds",
            "Time the restore took (download, verify, unpack).",
            secs(r.restore_seconds),
        ),
        (
            "cachegate_install_seconds",
            "Time the install command ran on a miss.",
            secs(r.install_seconds),
        ),
        (
            "cachegate_save_seconds",
            "Time the archive and upload took on a miss.",
            secs(r.save_seconds),
        ),
        (
            "cachegate_wait_seconds",
            "Time spent waiting for another job's install (--wait).",
            secs(r.waited_seconds),
        ),
        (
            "cachegate_archive_bytes",
            "Compressed bytes restored or saved.",
            r.archive_bytes.unwrap_or(0) as f64,
        ),
        (
            "cachegate_files",
            "Files restored or saved.",
            r.files.unwrap_or(0) as f64,
        ),
    ];
    let name = r.name.replace('\\', "\\\\").replace('"', "\\\"");
    let mut o = String::new();
    for (metric, help, value) in families {
        let _ = writeln!(o, "# TYPE {metric} gauge");
        let _ = writeln!(o, "# HELP {metric} {help}");
        // Milliseconds and whole bytes: no float noise in the widget.
        let value = (value * 1000.0).round() / 1000.0;
        let _ = writeln!(o, "{metric}{{name=\"{name}\"}} {value}");
    }
    o.push_str("# EOF\n");
    o
}

pub fn write(r: &Report, path: &Path) -> Result<()> {
    std::fs::write(path, text(r))
        .with_context(|| format!("cannot write --metrics {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_writes_every_family_once_and_ends_in_eof() {
        let r = Report {
            hit: true,
            name: "pip".into(),
            saved_seconds: Some(41.5),
            restore_seconds: Some(1.9),
            ..Report::default()
        };
        let t = text(&r);
        assert!(t.contains("cachegate_hit{name=\"pip\"} 1\n"), "{t}");
        assert!(
            t.contains("cachegate_saved_seconds{name=\"pip\"} 41.5\n"),
            "{t}"
        );
        assert!(
            t.contains("cachegate_install_seconds{name=\"pip\"} 0\n"),
            "{t}"
        );
        assert_eq!(t.matches("# TYPE ").count(), 8);
        assert!(t.ends_with("# EOF\n"));
    }
}
