//! One cachegate run as a fluent step (after just's `tests/test.rs`): the step names what it
//! runs and the status and output it expects, and a wrong expectation fails at the test's own
//! line with the whole of what cachegate printed.
//!
//! ```ignore
//! p.test().ensure(&ARGS, &tree_cmd("true")).status(0).stderr_contains("miss").installs(1).run();
//! Test::new().args(["prune"]).status(2).stderr_contains("--keep").run();
//! Test::new().binary(&release).isolated().env("HOME", "/tmp").arg("--version").run();
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;

use super::scenarios::installs;
use super::{Project, assert_no_secrets, stderr, stdout, warnings};

enum Owner<'p> {
    Owned(Box<Project>),
    Borrowed(&'p Project),
}

#[derive(Clone, Copy, PartialEq)]
enum Stream {
    Stdout,
    Stderr,
}

/// A cachegate run and what it must show. Unless told otherwise a step expects status 0.
#[must_use = "a step does nothing until .run()"]
pub struct Test<'p> {
    project: Owner<'p>,
    dir: Option<PathBuf>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    status: Option<i32>,
    stdout_is: Option<String>,
    // (stream, text, whether it must be there)
    texts: Vec<(Stream, String, bool)>,
    installs: Option<usize>,
    warnings: Option<usize>,
    // Another cachegate than the debug build (the release binary, an installed one).
    binary: Option<PathBuf>,
    // A program and its arguments that run `binary` (chroot ROOT).
    via: Vec<OsString>,
    // The run sees only the step's own variables: no PATH, no HOME, no store.
    isolated: bool,
    secrets: Vec<String>,
}

impl Test<'static> {
    /// A step in a fresh project of its own (directory store), for one-shot runs.
    pub fn new() -> Test<'static> {
        Test::with(Owner::Owned(Box::new(Project::new())))
    }
}

impl<'p> Test<'p> {
    /// A step in `project`, which outlives it so later steps and checks see its files.
    pub fn on(project: &'p Project) -> Test<'p> {
        Test::with(Owner::Borrowed(project))
    }

    fn with(project: Owner<'p>) -> Test<'p> {
        Test {
            project,
            dir: None,
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            status: Some(0),
            stdout_is: None,
            texts: Vec::new(),
            installs: None,
            warnings: None,
            binary: None,
            via: Vec::new(),
            isolated: false,
            secrets: Vec::new(),
        }
    }

    pub fn project(&self) -> &Project {
        match &self.project {
            Owner::Owned(p) => p,
            Owner::Borrowed(p) => p,
        }
    }

    /// Write a file into the project before the run.
    pub fn write(self, rel: &str, content: &str) -> Self {
        self.project().write(rel, content);
        self
    }

    /// Run in `dir` instead of the project root; a relative path is taken from the root.
    pub fn dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.dir = Some(self.project().dir.join(dir));
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// `cachegate ensure <args> -- <command>`.
    pub fn ensure<S: AsRef<str>>(self, args: &[&str], command: &[S]) -> Self {
        self.verb("ensure", args, command)
    }

    /// `cachegate <verb> <args> -- <command>`.
    pub fn verb<S: AsRef<str>>(self, verb: &str, args: &[&str], command: &[S]) -> Self {
        self.arg(verb)
            .args(args)
            .arg("--")
            .args(command.iter().map(|s| s.as_ref().to_string()))
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env_remove.push(key.into());
        self
    }

    /// Run this cachegate binary (the release build, an installed copy) instead of the debug
    /// build; a path inside a chroot when the step runs `via` one.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Launch the binary through this program and its arguments (`chroot ROOT`).
    pub fn via<I, S>(mut self, launcher: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.via = launcher.into_iter().map(Into::into).collect();
        self
    }

    /// The run gets an empty environment plus the step's `env`: not even PATH, HOME or the
    /// project's store (an empty chroot has nothing to look them up in).
    pub fn isolated(mut self) -> Self {
        self.isolated = true;
        self
    }

    /// Values that must not appear in anything the run prints (besides the store's own).
    pub fn secrets(mut self, secrets: &[String]) -> Self {
        self.secrets.extend_from_slice(secrets);
        self
    }

    /// The exit status the run must end with (0 unless told).
    pub fn status(mut self, code: i32) -> Self {
        self.status = Some(code);
        self
    }

    /// For the rare step whose status is not the point (a race, a kill).
    pub fn any_status(mut self) -> Self {
        self.status = None;
        self
    }

    /// stdout must be exactly this.
    pub fn stdout(mut self, text: &str) -> Self {
        self.stdout_is = Some(text.to_string());
        self
    }

    pub fn stdout_contains(mut self, text: &str) -> Self {
        self.texts.push((Stream::Stdout, text.to_string(), true));
        self
    }

    pub fn stdout_lacks(mut self, text: &str) -> Self {
        self.texts.push((Stream::Stdout, text.to_string(), false));
        self
    }

    pub fn stderr_contains(mut self, text: &str) -> Self {
        self.texts.push((Stream::Stderr, text.to_string(), true));
        self
    }

    pub fn stderr_lacks(mut self, text: &str) -> Self {
        self.texts.push((Stream::Stderr, text.to_string(), false));
        self
    }

    /// How many times the install must have run in this project, counting this step.
    pub fn installs(mut self, n: usize) -> Self {
        self.installs = Some(n);
        self
    }

    /// How many `cachegate: warning` lines the run must print.
    pub fn warnings(mut self, n: usize) -> Self {
        self.warnings = Some(n);
        self
    }

    /// The step as a plain `std::process::Command`, for a test that spawns cachegate and
    /// waits on (or kills) the child itself: nothing of what the step expects is checked.
    pub fn std_command(&self) -> std::process::Command {
        let binary = self
            .binary
            .clone()
            .unwrap_or_else(|| assert_cmd::cargo::cargo_bin("cachegate"));
        let mut c = match self.via.split_first() {
            Some((program, args)) => {
                let mut c = std::process::Command::new(program);
                c.args(args).arg(&binary);
                c
            }
            None => std::process::Command::new(&binary),
        };
        if self.isolated {
            c.env_clear().current_dir(&self.project().dir);
        } else {
            c = self.project().std_cmd_of(c);
        }
        c.args(&self.args);
        for k in &self.env_remove {
            c.env_remove(k);
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        if let Some(d) = &self.dir {
            c.current_dir(d);
        }
        c
    }

    /// Run the step and check every expectation; the output is returned for further checks.
    #[track_caller]
    pub fn run(self) -> Output {
        let p = self.project();
        let out = p.run(&mut assert_cmd::Command::from_std(self.std_command()));
        assert_no_secrets(&out, &self.secrets);
        let (so, se) = (stdout(&out), stderr(&out));
        let what = format!(
            "{} {}",
            self.binary
                .as_ref()
                .map_or("cachegate".into(), |b| b.display().to_string()),
            self.args
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let fail = |why: String| -> ! {
            panic!("{what}: {why}\n--- stdout\n{so}--- stderr\n{se}---");
        };
        if let Some(want) = self.status {
            if out.status.code() != Some(want) {
                fail(format!("status {:?}, expected {want}", out.status.code()));
            }
        }
        if let Some(want) = &self.stdout_is {
            if &so != want {
                fail(format!("stdout is not {want:?}"));
            }
        }
        for (stream, text, present) in &self.texts {
            let (name, hay) = match stream {
                Stream::Stdout => ("stdout", &so),
                Stream::Stderr => ("stderr", &se),
            };
            if hay.contains(text.as_str()) != *present {
                let verb = if *present { "lacks" } else { "has" };
                fail(format!("{name} {verb} {text:?}"));
            }
        }
        if let Some(want) = self.warnings {
            let got = warnings(&out);
            if got != want {
                fail(format!("{got} warnings, expected {want}"));
            }
        }
        if let Some(want) = self.installs {
            let got = installs(p);
            if got != want {
                fail(format!("the install ran {got} times, expected {want}"));
            }
        }
        out
    }
}

impl Project {
    /// A step in this project.
    pub fn test(&self) -> Test<'_> {
        Test::on(self)
    }
}

#[test]
fn a_step_whose_expectation_is_wrong_fails_naming_it() {
    let wrong = std::panic::catch_unwind(|| Test::new().arg("--version").status(3).run());
    let why = *wrong.unwrap_err().downcast::<String>().unwrap();
    assert!(why.contains("status Some(0), expected 3"), "{why}");
    let wrong = std::panic::catch_unwind(|| {
        Test::new()
            .arg("--version")
            .stdout_contains("no such text")
            .run()
    });
    let why = *wrong.unwrap_err().downcast::<String>().unwrap();
    assert!(why.contains("stdout lacks \"no such text\""), "{why}");
    Test::new()
        .arg("--version")
        .stdout_contains("cachegate")
        .stderr_lacks("error")
        .run();
}
