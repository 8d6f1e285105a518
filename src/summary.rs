//! The end of `ensure` in GitLab CI: one collapsed log section with all a person asks of a
//! run — the key's parts and where its entries live, what was restored or installed and
//! saved, and the time saved.

use crate::plan::Plan;
use crate::report::{self, Outcome, Report};

/// The section, from the job's report, its plan and its key's lines (`key_lines`).
pub(crate) fn print(r: &Report, plan: &Plan, mut lines: Vec<String>) {
    let paths: Vec<&str> = plan.paths.iter().map(|c| c.declared.as_str()).collect();
    let paths = paths.join(", ");
    let sizes = || {
        format!(
            "{}, {} ({} compressed)",
            report::files(r.files.unwrap_or(0)),
            report::bytes(r.bytes.unwrap_or(0)),
            report::bytes(r.archive_bytes.unwrap_or(0))
        )
    };
    let mut title = format!(
        "summary: {} {} {}",
        if r.hit { "hit" } else { "miss" },
        plan.components.name,
        plan.short_key()
    );
    if r.hit && r.restore_seconds.is_none() {
        lines.push(format!(
            "restored {paths}: GitLab's own cache put them in place (runner mode; the marker matches this key)"
        ));
    } else if r.hit {
        lines.push(format!(
            "restored {paths} from the {} scope: {} in {}",
            r.scope,
            sizes(),
            report::secs(r.restore_seconds.unwrap_or(0.0))
        ));
        match (r.entry_install_seconds, r.restore_seconds) {
            (Some(install), Some(restore)) => {
                let phrase = report::saved_phrase(install, restore);
                title.push_str(&format!(" · {}", phrase.split(':').next().unwrap_or("")));
                lines.push(format!("time     {phrase}"));
            }
            _ => lines.push(
                "time     the entry recorded no install time (saved by `cachegate save`), so the time saved is unknown"
                    .into(),
            ),
        }
    } else {
        let install = r.install_seconds.map_or("-".into(), report::secs);
        match r.command_status {
            Some(status) => lines.push(format!(
                "installed: the command exited {status} after {install}"
            )),
            None => lines.push("installed: nothing ran".into()),
        }
        if let Some(w) = &r.warm {
            lines.push(format!(
                "warm start from {} ({}) in {}",
                crate::key::short(&w.key),
                w.scope,
                report::secs(w.restore_seconds)
            ));
        }
        let saved = match r.result {
            _ if r.saved && r.archive_bytes.is_none() => format!(
                "saved    {paths}: marked; GitLab's own cache uploads them after the job (runner mode)"
            ),
            _ if r.saved => format!(
                "saved    {paths}: {} in {} to the {} scope",
                sizes(),
                report::secs(r.save_seconds.unwrap_or(0.0)),
                r.scope
            ),
            Outcome::Exists => "saved    nothing: another job saved this key first".into(),
            _ => "saved    nothing (see the warnings above)".into(),
        };
        lines.push(saved);
        lines.push(format!(
            "time     none saved on a miss; a hit of this key will save about {install} less its restore"
        ));
        title.push_str(&format!(" · installed in {install}"));
    }
    if let Some(w) = r.waited_seconds {
        lines.push(format!(
            "waited   {} for {}",
            report::secs(w),
            r.waited_for.as_deref().unwrap_or("another job")
        ));
    }
    if !r.warnings.is_empty() {
        lines.push(format!(
            "warnings {}",
            report::counted(r.warnings.len() as u64, "warning", "warnings")
        ));
        lines.extend(r.warnings.iter().map(|w| format!("  {w}")));
    }
    report::section("summary", &title, &lines);
}
