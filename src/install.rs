//! Running the wrapped install command: inherited stdio, the preset's variables, and its
//! exit status as a shell would report it.

use std::process::Command;
use std::time::Instant;

use crate::plan::Plan;
use crate::report::Report;

/// How the install went.
pub(crate) struct Installed {
    /// Its exit status as a shell would report it.
    pub status: i32,
    pub seconds: f64,
}

/// Run the install and record its status and duration in the report.
pub(crate) fn run_install(plan: &Plan, cmd: &[String], report: &mut Report) -> Installed {
    let start = Instant::now();
    let status = run_command(plan, cmd);
    let seconds = start.elapsed().as_secs_f64();
    report.command_status = Some(status);
    report.install_seconds = Some(seconds);
    Installed { status, seconds }
}

/// Run the install with inherited stdio and the preset's variables; its exit status as a
/// shell would report it.
fn run_command(plan: &Plan, cmd: &[String]) -> i32 {
    for d in &plan.create_dirs {
        // The tool reports a directory it cannot use; the install goes on without it.
        if let Err(e) = std::fs::create_dir_all(d) {
            eprintln!("cachegate: cannot make {}: {e}", d.display());
        }
    }
    let mut c = Command::new(&cmd[0]);
    c.args(&cmd[1..]).current_dir(&plan.dir);
    for v in plan.command_env.iter().filter(|v| v.ours) {
        c.env(&v.name, &v.value);
    }
    match c.status() {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(1)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "cachegate: command not found: {}",
                crate::echo::value(&cmd[0])
            );
            127
        }
        Err(e) => {
            eprintln!("cachegate: cannot run {}: {e}", crate::echo::value(&cmd[0]));
            126
        }
    }
}
