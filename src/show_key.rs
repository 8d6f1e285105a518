//! `cachegate key`: the key this directory's lock files and command give, printed without
//! touching any store.

use std::path::Path;

use anyhow::{Context as _, Result};

use crate::cli::KeyJobArgs;
use crate::exit::Ending;
use crate::namespace::Namespace;
use crate::plan::Plan;

/// The `key` command: plan, say whose entries these would be (`-v`), print.
pub fn run(
    job: &KeyJobArgs,
    explain: bool,
    json: Option<&Path>,
    json_file: Option<&Path>,
    cmd: &[String],
    verbose: u8,
) -> Result<Ending> {
    let to = crate::cli::json_destination(json, json_file);
    let plan = crate::plan::plan(&(&job.key).into(), cmd)?;
    if verbose > 0 {
        let ns = Namespace::resolve(job.store.namespace.as_deref(), &plan.dir)?;
        eprintln!("cachegate: project {}", ns.describe());
    }
    print(&plan, explain, to.as_deref())
}

/// `cachegate key`: the key on stdout, or every component (`--explain`), or both as JSON
/// (`--json`; `--json-file FILE` writes the JSON there and prints as without it).
pub fn print(plan: &Plan, explain: bool, json: Option<&Path>) -> Result<Ending> {
    let value = || {
        serde_json::to_string_pretty(&serde_json::json!({
            "key": plan.key,
            "components": plan.components,
        }))
    };
    if let Some(p) = json {
        if p.as_os_str() == "-" {
            crate::outln!("{}", value()?);
            return Ok(Ending::Done);
        }
        std::fs::write(p, value()? + "\n")
            .with_context(|| format!("cannot write --json-file {}", p.display()))?;
    }
    if explain {
        crate::out!("{}", plan.components.explain());
    } else {
        crate::outln!("{}", plan.key);
    }
    Ok(Ending::Done)
}
