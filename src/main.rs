//! cachegate: restore a dependency cache keyed by lock files, or run the install and save
//! it. `main` parses, dispatches, prints the cause chain of an error and picks the exit code.

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use cachegate::cli::{Cli, Command};
use cachegate::job::Job;
use cachegate::{config, doctor, ensure, explain, ls, plan, prune, redact, runner};

/// Usage and configuration errors.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("cachegate: error: {}", redact::redact(&format!("{e:#}")));
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn dispatch(cli: Cli) -> Result<i32> {
    let v = cli.verbose;
    Ok(match cli.command {
        Command::Ensure {
            key,
            store,
            report,
            save_on_failure,
            cmd,
        } => {
            let plan = plan::plan(&key, &cmd)?;
            if runner::selected(&store)? {
                return Ok(runner::ensure(
                    &plan,
                    &cmd,
                    &store,
                    &report,
                    save_on_failure,
                ));
            }
            ensure::ensure(
                Job::new("ensure", plan, &store, Some(report), v)?,
                &cmd,
                save_on_failure,
            )
        }
        Command::Restore {
            key,
            store,
            report,
            cmd,
        } => {
            let plan = plan::plan(&key, &cmd)?;
            if runner::selected(&store)? {
                return Ok(runner::check("restore", &plan, &store, &report));
            }
            ensure::restore(Job::new("restore", plan, &store, Some(report), v)?)
        }
        Command::Save {
            key,
            store,
            report,
            cmd,
        } => {
            let plan = plan::plan(&key, &cmd)?;
            if runner::selected(&store)? {
                return Ok(runner::save(&plan, &store, &report));
            }
            ensure::save(Job::new("save", plan, &store, Some(report), v)?)
        }
        Command::Check {
            key,
            store,
            report,
            cmd,
        } => {
            let plan = plan::plan(&key, &cmd)?;
            if runner::selected(&store)? {
                return Ok(runner::check("check", &plan, &store, &report));
            }
            ensure::check(Job::new("check", plan, &store, Some(report), v)?)
        }
        Command::Explain { key, store, cmd } => {
            let plan = plan::plan(&key, &cmd)?;
            if runner::selected(&store)? {
                return Ok(runner::explain(&plan));
            }
            explain::explain(Job::new("explain", plan, &store, None, v)?)
        }
        Command::Ls {
            backend,
            transfer,
            json,
        } => {
            let store = config::backend_spec(backend.as_deref())?.open(&transfer.transfer())?;
            ls::ls(store.as_ref(), json, transfer.transfer().concurrency)?
        }
        Command::Prune {
            backend,
            transfer,
            older_than,
            keep,
            max_size,
            abandoned_after,
            dry_run,
        } => {
            if older_than.is_none() && keep.is_none() && max_size.is_none() {
                anyhow::bail!(
                    "prune needs a rule: --older-than DAYS, --keep N or --max-size BYTES"
                );
            }
            let store = config::backend_spec(backend.as_deref())?.open(&transfer.transfer())?;
            let rules = prune::PruneRules {
                older_than_days: older_than,
                keep,
                max_size,
                abandoned_after_secs: abandoned_after * 3600,
                dry_run,
                concurrency: transfer.transfer().concurrency,
            };
            prune::prune(store.as_ref(), &rules)?
        }
        Command::Keygen => {
            let (public, secret) = cachegate::sign::keygen()?;
            println!("{public}");
            println!("{secret}");
            eprintln!(
                "cachegate: line 1 is the public key: set it as CACHEGATE_TRUSTED_KEYS (a normal variable)\n\
                 cachegate: line 2 is the secret key: set it as CACHEGATE_SIGNING_KEY (protected and masked), nowhere else"
            );
            0
        }
        Command::Doctor { backend, transfer } => {
            let spec = config::backend_spec(backend.as_deref())?;
            doctor::run(&spec, &transfer.transfer())?
        }
        Command::Key {
            key,
            explain,
            json,
            cmd,
        } => {
            let plan = plan::plan(&key, &cmd)?;
            if json {
                let value = serde_json::json!({
                    "key": plan.key,
                    "components": plan.components,
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else if explain {
                print!("{}", plan.components.explain());
            } else {
                println!("{}", plan.key);
            }
            0
        }
    })
}
