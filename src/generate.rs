//! Shell completions and the man page, generated from the clap definitions in `cli.rs` so
//! they always match `--help` (as ripgrep and just do).

use std::path::Path;

use crate::cli::{CompletionShell, command};
use anyhow::{Context, Result};

/// The completion script for `shell`.
pub fn completions(shell: CompletionShell) -> Vec<u8> {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command(), "cachegate", &mut out);
    out
}

/// Variables that are no option's twin: credentials and keys, read from the environment only.
const SECRET_VARS: &[(&str, &str)] = &[
    (
        crate::env_vars::CACHEGATE_SIGNING_KEY,
        "the secret ed25519 key that signs protected entries (a protected, masked CI variable)",
    ),
    (
        crate::env_vars::CACHEGATE_TRUSTED_KEYS,
        "public keys whose signature protected entries need (comma-separated)",
    ),
    (
        crate::env_vars::CACHEGATE_HTTP_TOKEN,
        "bearer token for an http(s):// store",
    ),
    (
        crate::env_vars::CACHEGATE_HTTP_USER,
        "basic-auth user for an http(s):// store (with CACHEGATE_HTTP_PASSWORD)",
    ),
    (
        crate::env_vars::CACHEGATE_HTTP_PASSWORD,
        "basic-auth password for an http(s):// store",
    ),
    (
        crate::env_vars::CACHEGATE_GITLAB_TOKEN,
        "a token for the gitlab store instead of CI_JOB_TOKEN",
    ),
    (
        crate::env_vars::CACHEGATE_S3_WEB_IDENTITY_TOKEN,
        "a GitLab id_tokens token for S3 web identity (with AWS_ROLE_ARN)",
    ),
];

/// Examples per page, as a user types them.
fn examples(page: &str) -> &'static [(&'static str, &'static str)] {
    match page {
        "ensure" | "cachegate" => &[
            (
                "cachegate ensure --lock poetry.lock -- poetry install",
                "Restore .venv on a hit; on a miss run poetry install and save .venv.",
            ),
            (
                "cachegate ensure --lock package-lock.json --backend s3://ci-cache/cg?region=eu-west-1 -- npm ci",
                "The same against an S3 bucket.",
            ),
            (
                "cachegate ensure --lock Cargo.lock --path ~/.cargo/registry -- cargo fetch",
                "Cache a tool cache under $HOME.",
            ),
        ],
        "restore" => &[(
            "cachegate restore --lock uv.lock -- uv sync --frozen || uv sync --frozen",
            "Restore only; exit 1 on a miss.",
        )],
        "save" => &[(
            "cachegate save --replace --lock uv.lock -- uv sync --frozen",
            "Upload the paths under the key, replacing an existing entry.",
        )],
        "check" => &[(
            "cachegate check --lock yarn.lock -- yarn install --immutable",
            "Exit 0 when the entry is there, 1 when not; downloads nothing.",
        )],
        "key" => &[(
            "cachegate key --explain --lock poetry.lock -- poetry install",
            "Print every component of the key, as CI computes it.",
        )],
        "explain" => &[(
            "cachegate explain --lock poetry.lock -- poetry install",
            "Why the key misses: what differs from the newest entry of the cache.",
        )],
        "ls" => &[(
            "cachegate ls --json --backend /srv/cachegate",
            "Every entry of the store as JSON.",
        )],
        "prune" => &[(
            "cachegate prune --unused-for 14 --max-size 50GB --dry-run",
            "Say what would go: entries unused for two weeks, then the least recently used past 50 GB.",
        )],
        "doctor" => &[(
            "cachegate doctor --backend s3://ci-cache/cg?region=eu-west-1",
            "Check that the store answers, accepts the credentials and can write, read and delete.",
        )],
        "presets" => &[("cachegate presets --json", "The presets as JSON.")],
        "keygen" => &[(
            "cachegate keygen",
            "A key pair: the public key for CACHEGATE_TRUSTED_KEYS, the secret one for CACHEGATE_SIGNING_KEY.",
        )],
        "completions" => &[(
            "source <(cachegate completions bash)",
            "Completions for the running bash.",
        )],
        "man" => &[
            ("cachegate man | man -l -", "Read this page."),
            (
                "cachegate man ensure | man -l -",
                "The page of one command.",
            ),
        ],
        _ => &[],
    }
}

/// The option twins of `cmd`'s shown options, with their help's first sentence.
fn option_vars(cmd: &clap::Command, out: &mut Vec<(String, String)>) {
    for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let Some(var) = a.get_env().and_then(|v| v.to_str()) else {
            continue;
        };
        if out.iter().any(|(v, _)| v == var) {
            continue;
        }
        let flag = a.get_long().map_or(String::new(), |l| format!("--{l}: "));
        let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
        out.push((var.to_string(), format!("{flag}{help}")));
    }
}

/// EXIT STATUS, ENVIRONMENT and EXAMPLES, which clap_mangen has no source for.
fn extra_sections(cmd: &clap::Command, page: &str, roff: &mut roff::Roff) {
    use roff::{bold, roman};
    roff.control("SH", ["EXIT STATUS"]);
    let codes: &[(&str, &str)] = &[
        ("0", "success, or a hit"),
        (
            "1",
            "a miss, where the miss is the answer (check, restore, explain)",
        ),
        (
            "2",
            "a usage or configuration error, named in the message; ensure does not run the install",
        ),
        (
            "3",
            "cache trouble under --strict; a store that fails or does not exist for ls, prune, doctor",
        ),
        (
            "other",
            "ensure: the install command's own status when it failed (127: not found)",
        ),
    ];
    for (code, what) in codes {
        roff.control("TP", []);
        roff.text([bold(*code)]);
        roff.text([roman(*what)]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman(
        "Every option reads a CACHEGATE_<OPTION> variable; a flag wins over it. Booleans take true/false, 1/0, yes/no.",
    )]);
    let mut vars = Vec::new();
    option_vars(cmd, &mut vars);
    for sub in cmd.get_subcommands() {
        option_vars(sub, &mut vars);
    }
    vars.sort();
    // Credentials matter where a store is opened.
    let opens_store = page == "cachegate" || cmd.get_arguments().any(|a| a.get_id() == "backend");
    let secrets = SECRET_VARS.iter().filter(|_| opens_store);
    let all = vars
        .iter()
        .map(|(v, h)| (v.as_str(), h.as_str()))
        .chain(secrets.map(|(v, h)| (*v, *h)));
    for (var, help) in all {
        roff.control("TP", []);
        roff.text([bold(var)]);
        roff.text([roman(help)]);
    }
    let examples = examples(page);
    if !examples.is_empty() {
        roff.control("SH", ["EXAMPLES"]);
        for (line, what) in examples {
            roff.control("TP", []);
            roff.text([bold(*line)]);
            roff.text([roman(*what)]);
        }
    }
}

/// One page in roff: clap_mangen's sections, then the extra ones.
fn render_page(cmd: clap::Command, page: &str) -> Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    let render = |out: &mut Vec<u8>| -> std::io::Result<()> {
        man.render_title(out)?;
        man.render_name_section(out)?;
        man.render_synopsis_section(out)?;
        man.render_description_section(out)?;
        if cmd.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(out)?;
        }
        if cmd.has_subcommands() {
            man.render_subcommands_section(out)?;
        }
        let mut roff = roff::Roff::default();
        extra_sections(&cmd, page, &mut roff);
        roff.to_writer(out)?;
        if cmd.get_version().is_some() {
            man.render_version_section(out)?;
        }
        Ok(())
    };
    render(&mut out).context("cannot render the man page")?;
    Ok(out)
}

/// The whole command tree as the pages see it: subcommands named `cachegate-<command>`.
fn built() -> clap::Command {
    let mut cmd = command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// The man page, cachegate(1), or with `page` one command's, cachegate-<page>(1), in roff.
pub fn man_page(page: Option<&str>) -> Result<Vec<u8>> {
    let cmd = built();
    let Some(name) = page else {
        return render_page(cmd, "cachegate");
    };
    let names: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
    let Some(sub) = cmd.find_subcommand(name) else {
        anyhow::bail!(
            "no man page for {name:?}; the commands are {}",
            names.join(", ")
        );
    };
    render_page(sub.clone(), name)
}

/// cachegate(1) and one page per command (cachegate-ensure(1), ...) into `dir`.
pub fn man_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cmd = built();
    let mut pages = vec![("cachegate".to_string(), man_page(None)?)];
    for sub in cmd.get_subcommands() {
        let name = sub.get_name();
        pages.push((format!("cachegate-{name}"), man_page(Some(name))?));
    }
    for (file, body) in pages {
        let path = dir.join(format!("{file}.1"));
        std::fs::write(&path, body).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// `cachegate completions SHELL`.
pub fn completions_command(shell: CompletionShell) -> Result<crate::exit::Ending> {
    crate::output::write_bytes(&completions(shell));
    Ok(crate::exit::Ending::Done)
}

/// `cachegate man [COMMAND] [--out-dir DIR]`.
pub fn man_command(page: Option<&str>, out_dir: Option<&Path>) -> Result<crate::exit::Ending> {
    match out_dir {
        Some(dir) => man_pages(dir)?,
        None => crate::output::write_bytes(&man_page(page)?),
    }
    Ok(crate::exit::Ending::Done)
}
