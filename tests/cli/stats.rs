//! What the cache is worth: job records counted by `stats` after parallel jobs and after
//! `prune` (run on every store from `peers.rs`), the `--metrics` file read by
//! prometheus_client's OpenMetrics parser, the `--svg` chart rendered by headless
//! Chromium, and the summary section at the end of `ensure` in a gitlab-ci-local pipeline.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use crate::common::dist::gitlab_ci_local;
use crate::common::{Project, listed, require, stderr, stdout};
use crate::peers::{ensure_in, job_dir, run, spawn};

fn stats(p: &Project, args: &[&str]) -> serde_json::Value {
    let o = p.test().args(["stats", "--json"]).args(args).run();
    serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
}

fn n(v: &serde_json::Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {v:#}"))
}

/// Two keys saved, then four jobs hitting the first one at once: every job counts (each
/// writes its own record), the time saved adds up, and `prune` takes an entry's records
/// with it.
pub fn stats_count_parallel_jobs_and_prune(p: &Project) {
    let first = job_dir(p, "first");
    ensure_in(p, &first, &[], &[("SLEEP", "1")]).run();
    let other = job_dir(p, "other");
    fs::write(other.join("app.lock"), "v2").unwrap();
    ensure_in(p, &other, &[], &[]).run();
    // The hits must be the newest use, to the second, for `--keep 1` below.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let jobs: Vec<_> = (0..4)
        .map(|i| {
            let d = job_dir(p, &format!("hit{i}"));
            spawn(ensure_in(p, &d, &[], &[]))
        })
        .collect();
    for j in jobs {
        let o = j.wait_with_output().unwrap();
        assert!(stderr(&o).contains("cachegate: hit out"), "{}", stderr(&o));
    }
    let s = stats(p, &[]);
    let t = &s["total"];
    assert_eq!(
        (n(t, "jobs"), n(t, "hits"), n(t, "installs")),
        (6, 4, 2),
        "{s:#}"
    );
    assert!((t["hit_rate"].as_f64().unwrap() - 4.0 / 6.0).abs() < 1e-9);
    // Each hit saved the first install's second or so, less its restore.
    let saved = t["saved_seconds"].as_f64().unwrap();
    assert!((2.0..6.0).contains(&saved), "{s:#}");
    assert!(t["restore_seconds"].as_f64().unwrap() > 0.0, "{s:#}");
    assert_eq!(n(t, "entries"), 2, "{s:#}");
    let entries = listed(p);
    let stored: u64 = entries
        .iter()
        .map(|e| e["archive_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(n(t, "stored_bytes"), stored);
    let first_entry = entries
        .iter()
        .find(|e| e["install_seconds"].as_f64().unwrap() >= 1.0)
        .unwrap();
    let archive = first_entry["archive_bytes"].as_u64().unwrap();
    assert_eq!(n(t, "bytes_down"), 4 * archive, "{s:#}");
    assert_eq!(first_entry["hit_days"], 1, "{first_entry:#}");
    let rows = s["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{s:#}");
    assert_eq!(
        (rows[0]["by"].as_str(), n(&rows[0], "jobs")),
        (Some("out"), 6)
    );
    assert_eq!(n(&s["least_used"][0], "hits"), 0, "{s:#}");
    assert_eq!(n(&s["biggest"][0], "hits") + n(&s["biggest"][1], "hits"), 4);
    for (by, label) in [
        ("day", None),
        ("scope", None),
        ("project", Some("team/app")),
    ] {
        let rows = stats(p, &["--by", by])["rows"].clone();
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 1, "--by {by}: {rows:#?}");
        assert_eq!(n(&rows[0], "jobs"), 6, "--by {by}");
        if let Some(l) = label {
            assert_eq!(rows[0]["by"], l);
        }
    }
    // The report fits an 80-column terminal.
    let text = stdout(
        &p.test()
            .arg("stats")
            .stdout_contains("6 jobs: 4 hits (67%)")
            .run(),
    );
    for l in text.lines() {
        assert!(
            l.chars().count() <= 80,
            "{} columns: {l}",
            l.chars().count()
        );
    }

    // The other entry goes, and its save record with it; the four hits stay.
    p.test().args(["prune", "--keep", "1"]).run();
    let t = stats(p, &[])["total"].clone();
    assert_eq!(
        (n(&t, "jobs"), n(&t, "hits"), n(&t, "entries")),
        (5, 4, 1),
        "{t:#}"
    );
    p.test().args(["prune", "--older-than", "0"]).run();
    let t = stats(p, &[])["total"].clone();
    assert_eq!((n(&t, "jobs"), n(&t, "entries")), (0, 0), "{t:#}");
    if p.remote.is_none() {
        let left = p.store_files();
        assert!(left.is_empty(), "{left:?}");
    }
}

/// The Python of the tools venv `.ci/run` makes, with prometheus_client in it.
fn prometheus_python() -> Option<PathBuf> {
    let py = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/cachegate-ci/py/bin/python"))?;
    let found = py.exists()
        && StdCommand::new(&py)
            .args(["-c", "import prometheus_client.openmetrics.parser"])
            .output()
            .is_ok_and(|o| o.status.success());
    require(
        found,
        "prometheus_client in ~/.cache/cachegate-ci/py",
        "bash .ci/run (pip install prometheus_client==0.21.1 into the tools venv)",
    )
    .then_some(py)
}

/// Parse a metrics file with prometheus_client's OpenMetrics parser (it refuses anything
/// that is not OpenMetrics, a missing `# EOF` included): sample name -> (labels, value).
fn parse_openmetrics(py: &Path, file: &Path) -> serde_json::Value {
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    assert family.type == "gauge", family
    for s in family.samples:
        out[s.name] = {"labels": s.labels, "value": s.value}
print(json.dumps(out))
"#;
    let o = StdCommand::new(py)
        .args(["-c", script])
        .arg(file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

#[test]
fn the_metrics_file_is_openmetrics_that_prometheus_client_parses() {
    let Some(py) = prometheus_python() else {
        return;
    };
    let p = Project::new();
    let d = job_dir(&p, "m");
    let (miss, hit) = (d.join("miss.txt"), d.join("hit.txt"));
    let metrics = |f: &Path| vec!["--metrics".to_string(), f.display().to_string()];
    let m = metrics(&miss);
    let m: Vec<&str> = m.iter().map(String::as_str).collect();
    ensure_in(&p, &d, &m, &[("SLEEP", "1")]).run();
    fs::remove_dir_all(d.join("out")).unwrap();
    let h = metrics(&hit);
    let h: Vec<&str> = h.iter().map(String::as_str).collect();
    let o = run(ensure_in(&p, &d, &h, &[]));
    assert!(stderr(&o).contains("cachegate: hit out"), "{}", stderr(&o));
    let (miss, hit) = (parse_openmetrics(&py, &miss), parse_openmetrics(&py, &hit));
    let v = |m: &serde_json::Value, name: &str| {
        m[name]["value"]
            .as_f64()
            .unwrap_or_else(|| panic!("{name} in {m:#}"))
    };
    assert_eq!(v(&miss, "cachegate_hit"), 0.0);
    assert!(v(&miss, "cachegate_install_seconds") >= 1.0, "{miss:#}");
    assert!(v(&miss, "cachegate_archive_bytes") > 0.0, "{miss:#}");
    assert_eq!(v(&miss, "cachegate_saved_seconds"), 0.0);
    assert_eq!(v(&hit, "cachegate_hit"), 1.0);
    let (saved, restore) = (
        v(&hit, "cachegate_saved_seconds"),
        v(&hit, "cachegate_restore_seconds"),
    );
    assert!(restore > 0.0, "{hit:#}");
    assert!(
        (saved + restore - v(&miss, "cachegate_install_seconds")).abs() < 0.01,
        "{hit:#}"
    );
    assert_eq!(
        v(&hit, "cachegate_archive_bytes"),
        v(&miss, "cachegate_archive_bytes")
    );
    assert_eq!(hit["cachegate_hit"]["labels"]["name"], "out");
    // The dotenv report keeps its variables alongside.
    let env = d.join("e.env");
    fs::remove_dir_all(d.join("out")).unwrap();
    let e = ["--dotenv", env.to_str().unwrap()];
    ensure_in(&p, &d, &e, &[]).run();
    let env = fs::read_to_string(env).unwrap();
    assert!(env.contains("CACHEGATE_HIT=true"), "{env}");
}

/// Chromium from Debian, headless, as root in a container.
fn chromium() -> Option<PathBuf> {
    let found = crate::common::which("chromium");
    require(
        found.is_some(),
        "chromium",
        "apt-get install -y chromium (bash .ci/run does)",
    );
    found
}

/// Render `file` in headless Chromium and return the screenshot's pixels as RGB, its width
/// and height.
fn screenshot(chromium: &Path, file: &Path, w: u32, h: u32) -> (Vec<u8>, u32, u32) {
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("shot.png");
    let o = StdCommand::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!(
            "--user-data-dir={}",
            tmp.path().join("profile").display()
        ))
        .arg(format!("--window-size={w},{h}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", file.display()))
        .env("HOME", tmp.path())
        .output()
        .unwrap();
    assert!(png.exists(), "no screenshot: {}", stderr(&o));
    let decoder = png::Decoder::new(std::io::BufReader::new(fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "{info:?}");
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("a screenshot in {other:?}"),
    };
    buf.truncate(info.buffer_size());
    let rgb = buf.chunks(channels).flat_map(|p| p[..3].to_vec()).collect();
    (rgb, info.width, info.height)
}

/// Pixels within a small distance of `hex` (`#rrggbb`) in rows `rows` of the image.
fn count_colour(px: &[u8], width: u32, rows: std::ops::Range<u32>, hex: &str) -> usize {
    let c: Vec<i32> = (0..3)
        .map(|i| i32::from_str_radix(&hex[1 + 2 * i..3 + 2 * i], 16).unwrap())
        .collect();
    px.chunks(3)
        .enumerate()
        .filter(|(i, _)| rows.contains(&((*i as u32) / width)))
        .filter(|(_, p)| (0..3).all(|k| (i32::from(p[k]) - c[k]).abs() <= 24))
        .count()
}

/// Write one job's record for the entry `manifest` names, `days_ago` back, as a job then
/// would have: the chart needs a history of days.
fn backdate_record(p: &Project, manifest: &str, days_ago: u64, kind: char, i: u64) {
    let key = manifest.strip_suffix(".json").unwrap();
    let t = crate::common::unix_now() - days_ago * 86_400 + i;
    let name = format!("{key}.rec.{t}.{kind}.40000.1500.2000000.b{days_ago}x{i}");
    fs::write(p.store.join(name), "{}").unwrap();
}

/// A directory store with one saved entry, and its manifest's object name.
fn one_saved_entry() -> (Project, String) {
    let p = Project::new();
    let d = job_dir(&p, "saved");
    ensure_in(&p, &d, &[], &[]).run();
    let manifest = p
        .store_files()
        .into_iter()
        .find(|f| f.ends_with(".json"))
        .unwrap();
    (p, manifest)
}

/// A fortnight of jobs, charted: Chromium draws the hit-rate bars, the time-saved bars
/// and the store-size area where the SVG says, in their colours, on a white page.
#[test]
fn the_stats_chart_renders_in_headless_chromium() {
    let Some(chromium) = chromium() else { return };
    let (p, manifest) = one_saved_entry();
    // Every day of the last fortnight: days_ago % 4 jobs hit, one missed.
    for days_ago in 1..=14u64 {
        for i in 0..days_ago % 4 {
            backdate_record(&p, &manifest, days_ago, 'h', i);
        }
        backdate_record(&p, &manifest, days_ago, 'm', 9);
    }
    let svg = p.tmp.path().join("chart.svg");
    p.test()
        .args(["stats", "--since", "14", "--svg"])
        .arg(&svg)
        .run();
    let text = fs::read_to_string(&svg).unwrap();
    let (w, h) = {
        let num = |attr: &str| -> u32 {
            let at = text.find(&format!("{attr}=\"")).unwrap() + attr.len() + 2;
            text[at..]
                .split('"')
                .next()
                .unwrap()
                .parse::<f64>()
                .unwrap() as u32
        };
        (num("width"), num("height"))
    };
    // 14 days with hit bars, 14 with a miss only on days_ago % 4 == 0 (no bar height but
    // the 1 px floor), one bar per day with time saved.
    assert_eq!(text.matches("class=\"hit\"").count(), 15, "{text}");
    assert_eq!(text.matches("class=\"saved\"").count(), 11, "{text}");
    let (px, pw, ph) = screenshot(&chromium, &svg, w, h);
    assert_eq!((pw, ph), (w, h));
    assert_eq!(&px[..3], &[255, 255, 255], "the page is not white");
    // The panels, top to bottom: hit rate, time saved, size (rows 80-220, 280-420 and
    // 480-620 in `stats::svg`).
    let (hit_rows, saved_rows, size_rows) = (0..250, 250..450, 450..h);
    let hit = count_colour(&px, w, hit_rows.clone(), "#2e7d32");
    let saved = count_colour(&px, w, saved_rows, "#1565c0");
    let size = count_colour(&px, w, size_rows, "#ef6c00");
    assert!(hit > 2_000, "hit-rate bars: {hit} px");
    assert!(saved > 1_000, "time-saved bars: {saved} px");
    assert!(size > 500, "store size: {size} px");
    // Each colour only in its own panel.
    assert_eq!(count_colour(&px, w, 250..h, "#2e7d32"), 0);
    assert_eq!(count_colour(&px, w, hit_rows, "#ef6c00"), 0);
}

/// A pipeline of two jobs in gitlab-ci-local, through the component: the first installs
/// and saves, the second restores; each ends with one collapsed summary section naming the
/// key's parts, what was restored or saved, and the time saved, and the component's
/// `metrics` input has each write its OpenMetrics report.
#[test]
fn gitlab_ci_local_shows_one_summary_section_at_the_end_of_ensure() {
    let Some(gcl) = gitlab_ci_local() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (proj, home, store) = (
        tmp.path().join("proj"),
        tmp.path().join("home"),
        tmp.path().join("store"),
    );
    for d in [&proj, &home, &store] {
        fs::create_dir_all(d).unwrap();
    }
    let bin = assert_cmd::cargo::cargo_bin("cachegate");
    fs::write(proj.join("app.lock"), "v1").unwrap();
    fs::write(proj.join(".gitignore"), "out/\n").unwrap();
    // The component from templates/, with the binary under test already on its install
    // dir (so it installs nothing) and its metrics input on.
    fs::create_dir_all(proj.join("templates")).unwrap();
    fs::copy(
        crate::common::dist::repo_root().join("templates/cachegate.yml"),
        proj.join("templates/cachegate.yml"),
    )
    .unwrap();
    let ensure = "cachegate ensure --lock app.lock --path out -- sh -c 'sleep 1; mkdir -p out; echo built > out/a'";
    let ci = format!(
        "include:
  - local: templates/cachegate.yml
    inputs:
      backend: {store}
      install_dir: {bin_dir}
      metrics: cachegate-metrics.txt
stages: [one, two]
install:
  extends: .cachegate
  stage: one
  script:
    - {ensure:?}
  artifacts:
    reports:
      metrics: cachegate-metrics.txt
restore:
  extends: .cachegate
  stage: two
  script:
    - rm -rf out
    - {ensure:?}
    - cat out/a
  artifacts:
    reports:
      metrics: cachegate-metrics.txt
",
        store = store.display(),
        bin_dir = bin.parent().unwrap().display(),
    );
    fs::write(proj.join(".gitlab-ci.yml"), ci).unwrap();
    crate::dist::git_project(&proj);
    let mut c = StdCommand::new(&gcl);
    c.current_dir(&proj)
        .env("HOME", &home)
        .args(["--force-shell-executor", "--no-color"])
        .args(["--variable", "GITLAB_CI=true"])
        .args(["--variable", "CI_COMMIT_REF_PROTECTED=true"]);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CACHEGATE_")) {
        c.env_remove(k);
    }
    let o = c.output().unwrap();
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(o.status.success(), "gitlab-ci-local failed:\n{text}");
    // gitlab-ci-local reads the section markers as GitLab does: a section it names by id.
    assert_eq!(
        text.matches("cachegate_summary_started").count(),
        2,
        "{text}"
    );
    assert_eq!(text.matches("cachegate_summary took").count(), 2, "{text}");
    assert_eq!(
        text.matches("_started").count(),
        2,
        "one section per ensure:\n{text}"
    );
    for part in [
        "lock     app.lock",
        "scopes   write protected",
        "saved    out: 1 file",
        "restored out from the protected scope: 1 file",
        // The time saved is the install's second less a restore that a loaded machine
        // can stretch: the phrase, not the number.
        ": install ",
    ] {
        assert!(text.contains(part), "{part:?} missing:\n{text}");
    }
    // gitlab-ci-local shows a section by its id; the raw markers, as GitLab folds them,
    // carry the title too: one start, collapsed, and one end.
    fs::remove_dir_all(proj.join("out")).unwrap();
    let o = StdCommand::new(&bin)
        .current_dir(&proj)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", &home)
        .envs([("GITLAB_CI", "true"), ("CI_COMMIT_REF_PROTECTED", "true")])
        .env("CI_PROJECT_PATH", "group/proj")
        .env("CACHEGATE_BACKEND", &store)
        .args([
            "ensure", "--lock", "app.lock", "--path", "out", "--", "sh", "-c",
        ])
        .arg("sleep 1; mkdir -p out; echo built > out/a")
        .output()
        .unwrap();
    let raw = stderr(&o);
    assert!(o.status.success(), "{raw}");
    let starts: Vec<&str> = raw
        .lines()
        .filter(|l| l.contains("section_start:"))
        .collect();
    assert_eq!(starts.len(), 1, "{raw}");
    assert!(
        starts[0]
            .contains(":cachegate_summary[collapsed=true]\r\x1b[0Kcachegate: summary: hit out "),
        "{raw:?}"
    );
    assert!(
        starts[0].contains(" · saved ~") || starts[0].contains(" · no time saved"),
        "{raw:?}"
    );
    assert_eq!(raw.matches("section_end:").count(), 1, "{raw}");
    assert!(text.contains("built"), "{text}");
    // The metrics input made the last job (the hit) write its report.
    let metrics = fs::read_to_string(proj.join("cachegate-metrics.txt")).unwrap();
    assert!(
        metrics.contains("cachegate_hit{name=\"out\"} 1\n"),
        "{metrics}"
    );
}

/// A busy entry does not collect records forever: `prune` deletes those over a month old
/// (the entry stays), and keeps the newest hit's, which holds the entry's last use.
#[test]
fn prune_deletes_job_records_over_a_month_old_and_keeps_the_newest_hit() {
    let (p, manifest) = one_saved_entry();
    backdate_record(&p, &manifest, 45, 'h', 1);
    backdate_record(&p, &manifest, 40, 'm', 2);
    backdate_record(&p, &manifest, 3, 'h', 3);
    let records = || -> Vec<String> {
        p.store_files()
            .into_iter()
            .filter(|f| f.contains(".rec."))
            .collect()
    };
    // The save's own record and the three above.
    assert_eq!(records().len(), 4, "{:?}", records());
    p.test().args(["prune", "--older-than", "365"]).run();
    let left = records();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left.iter().all(|r| !r.contains("x1") && !r.contains("x2")),
        "{left:?}"
    );
    assert_eq!(listed(&p).len(), 1);
    // With only old hits, the newest one stays: the entry's last use.
    for r in &left {
        fs::remove_file(p.store.join(r)).unwrap();
    }
    backdate_record(&p, &manifest, 50, 'h', 4);
    backdate_record(&p, &manifest, 45, 'h', 5);
    p.test().args(["prune", "--older-than", "365"]).run();
    let left = records();
    assert!(left.len() == 1 && left[0].ends_with("b45x5"), "{left:?}");
    let used = listed(&p)[0]["last_used"].as_u64().unwrap();
    assert!(crate::common::unix_now() - used >= 44 * 86_400, "{used}");
}
