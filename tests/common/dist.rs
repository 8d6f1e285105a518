//! Harness for the distribution tests: the release files `scripts/release.sh` writes to
//! `dist/`, a throwaway HTTP server for a folder, an empty chroot around the static binary,
//! a PATH holding only chosen tools, and gitlab-ci-local.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{Test, require, which};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The release asset name for this machine, as `install.sh` computes it.
pub fn asset() -> String {
    format!("cachegate-linux-{}", std::env::consts::ARCH)
}

/// `dist/`, when `scripts/release.sh` has written it (fails under CI=true when it has not).
pub fn dist() -> Option<PathBuf> {
    let dist = repo_root().join("dist");
    let ok = [asset(), format!("{}.sha256", asset()), "install.sh".into()]
        .iter()
        .all(|f| dist.join(f).is_file());
    require(ok, "dist/ (the release files)", "scripts/release.sh").then_some(dist)
}

/// gitlab-ci-local: on PATH, or where `.ci/run` installs it.
pub fn gitlab_ci_local() -> Option<PathBuf> {
    let tools = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/cachegate-ci/node_modules/.bin/gitlab-ci-local"));
    let found = tools
        .filter(|p| p.is_file())
        .or_else(|| which("gitlab-ci-local"));
    require(
        found.is_some(),
        "gitlab-ci-local",
        "bash .ci/run (npm install gitlab-ci-local@4.65.0 in ~/.cache/cachegate-ci)",
    );
    found
}

/// A directory holding links to exactly these tools, to use as PATH.
pub fn toolbox(dir: &Path, tools: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for t in tools {
        let target = which(t).unwrap_or_else(|| panic!("{t} is needed to build the test PATH"));
        std::os::unix::fs::symlink(target, dir.join(t)).unwrap();
    }
    dir.to_path_buf()
}

/// `python3 -m http.server` on a free loopback port, serving one folder; stopped on drop.
pub struct FileServer {
    child: Child,
    pub url: String,
}

impl FileServer {
    pub fn start(dir: &Path) -> FileServer {
        // Bind port 0 inside the server and print the port: no race for a free port.
        let script = "import functools, http.server, sys\n\
            h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])\n\
            s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), h)\n\
            print(s.server_address[1], flush=True)\n\
            s.serve_forever()\n";
        let mut child = Command::new("python3")
            .args(["-c", script])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("http.server printed its port");
        FileServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An empty root holding only the static binary (as /bin/cachegate) and the /etc files name
/// resolution reads; `hosts` lines go into its /etc/hosts. Needs root (chroot(2)).
pub struct Chroot {
    pub root: tempfile::TempDir,
}

impl Chroot {
    pub fn new(binary: &Path, hosts: &[&str]) -> Chroot {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in ["bin", "etc", "tmp", "work"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::copy(binary, r.join("bin/cachegate")).unwrap();
        std::fs::write(r.join("etc/hosts"), hosts.join("\n") + "\n").unwrap();
        std::fs::write(r.join("etc/nsswitch.conf"), "hosts: files dns\n").unwrap();
        // No DNS server answers here: a name must come from /etc/hosts.
        std::fs::write(r.join("etc/resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/:/bin/cachegate\n").unwrap();
        Chroot { root }
    }

    /// Every file in the root, relative to it: proves nothing else was there.
    pub fn files(&self) -> Vec<String> {
        super::walk(self.root.path())
    }

    /// A cachegate step inside the root, with an empty environment but HOME (add to it
    /// with `env`).
    pub fn test(&self) -> Test<'static> {
        let chroot = which("chroot").expect("chroot (coreutils) is on PATH");
        Test::new()
            .via([chroot.into_os_string(), self.root.path().into()])
            .binary("/bin/cachegate")
            .isolated()
            .env("HOME", "/tmp")
    }
}
