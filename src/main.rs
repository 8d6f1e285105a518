//! cachegate: restore a dependency cache keyed by lock files, or run the install and save
//! it. `main` parses, dispatches each command to its module, prints the cause chain of an
//! error and leaves the exit code to `exit`.

#![warn(clippy::too_many_lines)]

use std::process::ExitCode;

use anyhow::Result;
use cachegate::cli::{Cli, Command, StoreLocation};
use cachegate::exit::Ending;
use cachegate::job::Job;
use cachegate::store::{Gated, Store};
use cachegate::{doctor, ensure, exit, explain, generate, ls, prune, redact, show_key, sign};

fn main() -> ExitCode {
    cachegate::output::guard_std_fds();
    let cli = cachegate::cli::parse();
    cachegate::backend::retry_log::show_all(cli.verbose > 0);
    let result = dispatch(cli);
    cachegate::backend::retry_log::summarize();
    let code = match result {
        Ok(ending) => exit::code(ending),
        Err(e) => {
            let msg = redact::redact(&format!("{e:#}"));
            eprintln!("cachegate: error: {}", cachegate::echo::line(&msg));
            exit::for_error(&e)
        }
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn dispatch(cli: Cli) -> Result<Ending> {
    let v = cli.verbose;
    match cli.command {
        Command::Ensure { job, cmd } => {
            let (save_on_failure, flight) = (job.save_on_failure, job.flight.clone());
            Ok(ensure::ensure(
                Job::open("ensure", job, &cmd, v)?,
                &cmd,
                save_on_failure,
                &flight,
            ))
        }
        Command::Restore { job, cmd } => Ok(ensure::restore(Job::open("restore", job, &cmd, v)?)),
        Command::Save { job, cmd } => {
            let replace = job.replace;
            Ok(ensure::save(Job::open("save", job, &cmd, v)?, replace))
        }
        Command::Check { job, cmd } => Ok(ensure::check(Job::open("check", job, &cmd, v)?)),
        Command::Explain { job, cmd } => Ok(explain::explain(Job::open("explain", job, &cmd, v)?)),
        Command::Presets { json } => presets(json),
        Command::Key {
            job,
            explain,
            json,
            json_file,
            cmd,
        } => show_key::run(
            &job,
            explain,
            json.as_deref(),
            json_file.as_deref(),
            &cmd,
            v,
        ),
        Command::Ls { store, json } => {
            ls::ls(&managed(&store)?, json, store.transfer.concurrency.into())
        }
        Command::Prune { store, rules } => prune::prune(
            &managed(&store)?,
            &rules.rules(store.transfer.concurrency.into())?,
        ),
        Command::Stats { store, stats } => cachegate::stats::run(
            &managed(&store)?,
            stats.since,
            stats.by,
            stats.json,
            stats.svg.as_deref(),
            store.transfer.concurrency.into(),
        ),
        Command::Doctor { store } => {
            doctor::run(store.backend.as_deref(), &store.transfer.transfer())
        }
        Command::Keygen => sign::keygen_command(),
        Command::Completions { shell } => generate::completions_command(shell),
        Command::Man { page, out_dir } => {
            generate::man_command(page.as_deref(), out_dir.as_deref())
        }
    }
}

/// The object store a management command (`ls`, `prune`, `stats`) works on.
fn managed(at: &StoreLocation) -> Result<Gated> {
    Store::managed(at.backend.as_deref(), &at.transfer.transfer())
}

/// `cachegate presets`: the table, or the presets as JSON.
fn presets(json: bool) -> Result<Ending> {
    if json {
        cachegate::outln!(
            "{}",
            serde_json::to_string_pretty(cachegate::preset::PRESETS)?
        );
    } else {
        cachegate::out!("{}", cachegate::preset::text_table());
    }
    Ok(Ending::Done)
}
