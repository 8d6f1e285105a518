//! Shell completions and the man page, generated from the clap definitions in `cli.rs` so
//! they always match `--help` (as ripgrep and just do).

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, CompletionShell};

/// The completion script for `shell`.
pub fn completions(shell: CompletionShell) -> Vec<u8> {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "cachegate", &mut out);
    out
}

/// The man page, cachegate(1), in roff.
pub fn man_page() -> Result<Vec<u8>> {
    // As `generate_to` builds it, so the printed page is the one written into a directory.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .context("cannot render the man page")?;
    Ok(out)
}

/// cachegate(1) and one page per command (cachegate-ensure(1), ...) into `dir`.
pub fn man_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))
}

/// `cachegate completions SHELL`.
pub fn completions_command(shell: CompletionShell) -> Result<i32> {
    crate::output::write_bytes(&completions(shell));
    Ok(0)
}

/// `cachegate man [--out-dir DIR]`.
pub fn man_command(out_dir: Option<&Path>) -> Result<i32> {
    match out_dir {
        Some(dir) => man_pages(dir)?,
        None => crate::output::write_bytes(&man_page()?),
    }
    Ok(0)
}
