//! `stats`: what the cache was worth over a window of days, from the job records beside
//! the entries (`records.rs`) and the manifests `ls` reads: hit rate, installs avoided,
//! time saved and spent restoring, bytes stored and moved, per cache name (or project,
//! scope, day) and in total; the biggest and the least used entries; and `--svg`, a chart
//! of hit rate and time saved per day and the store's size over time.
//!
//! The store's size over time is that of the entries still stored, by the day each was
//! saved: what `prune` deleted is gone with its records.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::backend::{Backend, ObjectMeta};
use crate::cli::StatsBy;
use crate::key;
use crate::ls::{Group, Listed, age, for_each_group};
use crate::records::{DAY, Kind, Record};
use crate::report;

/// What the jobs of one row came to.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Tally {
    pub jobs: u64,
    /// Restores: each one an install avoided.
    pub hits: u64,
    /// Misses that ran the install.
    pub installs: u64,
    pub hit_rate: Option<f64>,
    pub saved_seconds: f64,
    pub restore_seconds: f64,
    pub install_seconds: f64,
    pub bytes_down: u64,
    pub bytes_up: u64,
    /// Entries stored now (a day row: at the end of that day), and their archives' size.
    pub entries: u64,
    pub stored_bytes: u64,
}

impl Tally {
    fn add(&mut self, r: &Record) {
        self.jobs += 1;
        match r.kind {
            Kind::Hit => {
                self.hits += 1;
                self.saved_seconds += r.saved_seconds();
                self.restore_seconds += r.transfer_ms as f64 / 1000.0;
                self.bytes_down += r.bytes;
            }
            Kind::Saved | Kind::Missed => {
                self.installs += 1;
                self.install_seconds += r.install_ms as f64 / 1000.0;
                self.bytes_up += r.bytes;
            }
        }
        self.hit_rate = Some(self.hits as f64 / self.jobs as f64);
    }

    fn store(&mut self, archive_bytes: u64) {
        self.entries += 1;
        self.stored_bytes += archive_bytes;
    }
}

/// One entry, as the biggest and least used lists show it.
#[derive(Debug, Clone, Serialize)]
pub struct EntryStats {
    pub namespace: String,
    pub scope: String,
    pub name: String,
    pub key: String,
    pub archive_bytes: u64,
    pub created: u64,
    pub last_use: u64,
    /// Restores in the window, by jobs of any scope.
    pub hits: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub by: String,
    #[serde(flatten)]
    pub tally: Tally,
}

#[derive(Debug, Clone, Serialize)]
pub struct Day {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    #[serde(flatten)]
    pub tally: Tally,
}

#[derive(Debug, Serialize)]
pub struct Stats {
    pub backend: String,
    pub since_seconds: u64,
    pub from: String,
    pub to: String,
    pub by: &'static str,
    pub total: Tally,
    pub rows: Vec<Row>,
    pub days: Vec<Day>,
    pub biggest: Vec<EntryStats>,
    pub least_used: Vec<EntryStats>,
}

const SHOWN: usize = 5;

/// `YYYY-MM-DD` of a Unix day number.
fn date(day: u64) -> String {
    jiff::Timestamp::from_second((day * DAY) as i64)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| day.to_string())
}

impl StatsBy {
    fn as_str(self) -> &'static str {
        match self {
            StatsBy::Name => "name",
            StatsBy::Project => "project",
            StatsBy::Scope => "scope",
            StatsBy::Day => "day",
        }
    }
}

/// An entry's identity across its manifest and its job records: project segment, cache
/// name, key.
type EntryId = (String, String, String);

/// The sums `gather` builds as the store's listing streams past.
struct Gathering {
    by: StatsBy,
    /// Records older than this are outside the window.
    start: u64,
    total: Tally,
    rows: BTreeMap<String, Tally>,
    per_day: BTreeMap<u64, Tally>,
    /// Stored bytes and entries by the day they were saved, for the size over time.
    saved_on: BTreeMap<u64, (u64, u64)>,
    entries: HashMap<EntryId, EntryStats>,
    hits_of: HashMap<EntryId, u64>,
    /// The project's full name, by its path segment (records only know the segment).
    projects: HashMap<String, String>,
}

impl Gathering {
    fn new(by: StatsBy, start: u64) -> Gathering {
        Gathering {
            by,
            start,
            total: Tally::default(),
            rows: BTreeMap::new(),
            per_day: BTreeMap::new(),
            saved_on: BTreeMap::new(),
            entries: HashMap::new(),
            hits_of: HashMap::new(),
            projects: HashMap::new(),
        }
    }

    /// An entry in the store: its size, in its row and in the store's size over time.
    fn entry(&mut self, e: &Listed) {
        let by = self.by;
        let ns = e.manifest.entry().map(|n| n.ns.clone()).unwrap_or_default();
        self.projects.insert(ns.clone(), e.namespace.clone());
        let label = match by {
            StatsBy::Name => e.name.clone(),
            StatsBy::Project => e.namespace.clone(),
            StatsBy::Scope => e.scope.clone(),
            StatsBy::Day => date(e.created / DAY),
        };
        if by != StatsBy::Day {
            self.rows.entry(label).or_default().store(e.archive_bytes);
        }
        self.total.store(e.archive_bytes);
        let s = self.saved_on.entry(e.created / DAY).or_default();
        s.0 += 1;
        s.1 += e.archive_bytes;
        self.entries.insert(
            (ns, e.name.clone(), e.key.clone()),
            EntryStats {
                namespace: e.namespace.clone(),
                scope: e.scope.clone(),
                name: e.name.clone(),
                key: e.key.clone(),
                archive_bytes: e.archive_bytes,
                created: e.created,
                last_use: e.last_use(),
                hits: 0,
            },
        );
    }

    /// An object of the store: a job record within the window counts; anything else not.
    fn object(&mut self, o: &ObjectMeta) {
        let by = self.by;
        let Some((at, r)) = o.object().and_then(|n| Record::from_object(&n)) else {
            return;
        };
        if r.time < self.start {
            return;
        }
        let label = match by {
            StatsBy::Name => at.name.clone(),
            StatsBy::Project => self.projects.get(&at.ns).cloned().unwrap_or(at.ns.clone()),
            StatsBy::Scope => at.scope.as_str().to_string(),
            StatsBy::Day => date(r.day()),
        };
        self.rows.entry(label).or_default().add(&r);
        self.per_day.entry(r.day()).or_default().add(&r);
        self.total.add(&r);
        if r.kind == Kind::Hit {
            *self.hits_of.entry((at.ns, at.name, at.key)).or_default() += 1;
        }
    }

    /// Every day from `first_day` to `today`, each with the store's entries and bytes saved
    /// up to its end.
    fn days(&mut self, first_day: u64, today: u64) -> Vec<Day> {
        let mut days = Vec::new();
        let (mut count, mut bytes) = self
            .saved_on
            .range(..first_day)
            .fold((0, 0), |(c, b), (_, (n, s))| (c + n, b + s));
        for d in first_day..=today {
            let mut tally = self.per_day.remove(&d).unwrap_or_default();
            if let Some((n, s)) = self.saved_on.get(&d) {
                count += n;
                bytes += s;
            }
            tally.entries = count;
            tally.stored_bytes = bytes;
            days.push(Day {
                day: date(d),
                tally,
            });
        }
        days
    }
}

/// Walk the store once and add it all up.
pub fn gather(backend: &dyn Backend, since: u64, by: StatsBy, threads: usize) -> Result<Stats> {
    let now = report::unix_now();
    let start = now.saturating_sub(since);
    let (first_day, today) = (start / DAY, now / DAY);
    let mut sums = Gathering::new(by, start);
    for_each_group(backend, threads, false, &|_| true, &mut |g: Group| {
        for e in &g.entries {
            sums.entry(e);
        }
        for o in &g.objects {
            sums.object(o);
        }
        Ok(())
    })?;
    let days = sums.days(first_day, today);
    let Gathering {
        total,
        rows,
        mut entries,
        hits_of,
        ..
    } = sums;
    for (k, n) in hits_of {
        if let Some(e) = entries.get_mut(&k) {
            e.hits += n;
        }
    }
    let rows: Vec<Row> = if by == StatsBy::Day {
        days.iter()
            .filter(|d| d.tally.jobs > 0)
            .map(|d| Row {
                by: d.day.clone(),
                tally: d.tally.clone(),
            })
            .collect()
    } else {
        rows.into_iter()
            .map(|(by, tally)| Row { by, tally })
            .collect()
    };
    let mut all: Vec<EntryStats> = entries.into_values().collect();
    all.sort_by(|a, b| (b.archive_bytes, &a.name, &a.key).cmp(&(a.archive_bytes, &b.name, &b.key)));
    let biggest = all.iter().take(SHOWN).cloned().collect();
    all.sort_by(|a, b| (a.hits, a.last_use, &a.key).cmp(&(b.hits, b.last_use, &b.key)));
    let least_used = all.into_iter().take(SHOWN).collect();
    Ok(Stats {
        backend: backend.describe(),
        since_seconds: since,
        from: date(first_day),
        to: date(today),
        by: by.as_str(),
        total,
        rows,
        days,
        biggest,
        least_used,
    })
}

/// `2h 14m`, `26m 10s`, `41s`: a duration in the two largest units.
pub fn dur(secs: f64) -> String {
    let sign = if secs < 0.0 { "-" } else { "" };
    let s = secs.abs().round() as u64;
    let body = match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
    };
    format!("{sign}{body}")
}

fn rate(t: &Tally) -> String {
    t.hit_rate
        .map_or("-".into(), |r| format!("{:.0}%", r * 100.0))
}

/// At most `n` characters: longer text keeps its start and ends in `~`.
fn fit(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('~');
        t
    }
}

const WIDTH: usize = 80;

/// The report for people: at most 80 columns.
pub fn text(s: &Stats) -> String {
    let t = &s.total;
    let mut o = String::new();
    let head = format!("cachegate stats: {} to {} (UTC) · ", s.from, s.to);
    let room = WIDTH.saturating_sub(head.chars().count()).max(10);
    let _ = writeln!(o, "{head}{}", fit(&s.backend, room));
    let _ = writeln!(
        o,
        "{}: {} ({}), {} · {} avoided",
        report::counted(t.jobs, "job", "jobs"),
        report::counted(t.hits, "hit", "hits"),
        rate(t),
        report::counted(t.installs, "install run", "installs run"),
        report::counted(t.hits, "install", "installs"),
    );
    let _ = writeln!(
        o,
        "time saved ~{} · restoring {} · installing {}",
        dur(t.saved_seconds),
        dur(t.restore_seconds),
        dur(t.install_seconds)
    );
    let _ = writeln!(
        o,
        "stored {} in {} · moved {} ({} down, {} up)",
        report::bytes(t.stored_bytes),
        report::counted(t.entries, "entry", "entries"),
        report::bytes(t.bytes_down + t.bytes_up),
        report::bytes(t.bytes_down),
        report::bytes(t.bytes_up),
    );
    let _ = writeln!(o);
    let line = |o: &mut String, label: &str, t: &Tally| {
        let _ = writeln!(
            o,
            "{:<16} {:>6} {:>6} {:>5} {:>8} {:>8} {:>8} {:>8} {:>5}",
            fit(label, 16),
            report::count(t.jobs),
            report::count(t.hits),
            rate(t),
            dur(t.saved_seconds),
            dur(t.restore_seconds),
            report::bytes(t.bytes_down + t.bytes_up),
            report::bytes(t.stored_bytes),
            report::count(t.entries),
        );
    };
    let _ = writeln!(
        o,
        "{:<16} {:>6} {:>6} {:>5} {:>8} {:>8} {:>8} {:>8} {:>5}",
        s.by, "jobs", "hits", "rate", "saved", "restore", "moved", "stored", "keys"
    );
    for r in &s.rows {
        line(&mut o, &r.by, &r.tally);
    }
    line(&mut o, "total", t);
    let entry =
        |e: &EntryStats| format!("{} {} ({})", fit(&e.name, 16), key::short(&e.key), e.scope);
    if !s.biggest.is_empty() {
        let _ = writeln!(o, "\nbiggest entries");
        for e in &s.biggest {
            let l = format!(
                "  {:>8}  {} · {}, last used {} ago",
                report::bytes(e.archive_bytes),
                entry(e),
                report::counted(e.hits, "hit", "hits"),
                age(e.last_use)
            );
            let _ = writeln!(o, "{}", fit(&l, WIDTH));
        }
        let _ = writeln!(o, "\nleast used entries (hits since {})", s.from);
        for e in &s.least_used {
            let l = format!(
                "  {:>8}  {} · {}, saved {} ago, last used {} ago",
                report::counted(e.hits, "hit", "hits"),
                entry(e),
                report::bytes(e.archive_bytes),
                age(e.created),
                age(e.last_use)
            );
            let _ = writeln!(o, "{}", fit(&l, WIDTH));
        }
    }
    o
}

/// Round up to 1, 2 or 5 times a power of ten: a chart axis' top.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|m| *m >= v)
        .unwrap_or(10.0 * p)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub const HIT_COLOUR: &str = "#2e7d32";
pub const SAVED_COLOUR: &str = "#1565c0";
pub const SIZE_COLOUR: &str = "#ef6c00";

/// The chart's geometry: panels stacked over the window's days, one bar slot per day.
struct Chart {
    w: f64,
    h: f64,
    left: f64,
    right: f64,
    panel: f64,
    gap: f64,
    top: f64,
    plot: f64,
    slot: f64,
    bar: f64,
}

impl Chart {
    fn new(days: usize) -> Chart {
        let (w, left, right) = (800.0f64, 70.0f64, 20.0f64);
        let (panel, gap, top) = (140.0f64, 60.0f64, 60.0f64);
        let h = top + 3.0 * panel + 2.0 * gap + 50.0;
        let plot = w - left - right;
        let n = days.max(1) as f64;
        let slot = plot / n;
        let bar = (slot * 0.7).max(1.0);
        Chart {
            w,
            h,
            left,
            right,
            panel,
            gap,
            top,
            plot,
            slot,
            bar,
        }
    }

    /// Where day `i`'s bar starts.
    fn x(&self, i: usize) -> f64 {
        self.left + self.slot * i as f64 + (self.slot - self.bar) / 2.0
    }

    /// The opening tag, background, title line and the store's name.
    fn header(&self, o: &mut String, s: &Stats) {
        let (w, h, left) = (self.w, self.h, self.left);
        let _ = writeln!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">"#
        );
        let _ = writeln!(o, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let t = &s.total;
        let _ = writeln!(
            o,
            r#"<text x="{left}" y="24" font-size="16" font-weight="bold">{}</text>"#,
            esc(&format!(
                "cachegate: {} to {} · {} jobs, {} hit, ~{} saved",
                s.from,
                s.to,
                report::count(t.jobs),
                rate(t),
                dur(t.saved_seconds)
            ))
        );
        let _ = writeln!(
            o,
            r##"<text x="{left}" y="42" fill="#555">{}</text>"##,
            esc(&fit(&s.backend, 100))
        );
    }

    /// One panel at `y0`: its frame, title, axis labels.
    fn frame(&self, o: &mut String, y0: f64, title: &str, top_label: &str) {
        let (left, panel) = (self.left, self.panel);
        let _ = writeln!(
            o,
            r#"<text x="{left}" y="{}" font-weight="bold">{}</text>"#,
            y0 - 8.0,
            esc(title)
        );
        for k in 0..=4 {
            let y = y0 + panel * f64::from(k) / 4.0;
            let _ = writeln!(
                o,
                r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#e0e0e0"/>"##,
                self.w - self.right
            );
        }
        let _ = writeln!(
            o,
            r##"<text x="{}" y="{}" text-anchor="end" fill="#555">{}</text>"##,
            left - 6.0,
            y0 + 4.0,
            esc(top_label)
        );
        let _ = writeln!(
            o,
            r##"<text x="{}" y="{}" text-anchor="end" fill="#555">0</text>"##,
            left - 6.0,
            y0 + panel + 4.0
        );
    }

    fn hit_rate(&self, o: &mut String, s: &Stats, y0: f64) {
        let (panel, bar) = (self.panel, self.bar);
        self.frame(o, y0, "Hit rate per day", "100%");
        for (i, d) in s.days.iter().enumerate() {
            if let Some(r) = d.tally.hit_rate {
                let bh = (panel * r).max(1.0);
                let _ = writeln!(
                    o,
                    r#"<rect class="hit" x="{:.1}" y="{:.1}" width="{bar:.1}" height="{bh:.1}" fill="{HIT_COLOUR}"><title>{}: {} of {} jobs hit ({})</title></rect>"#,
                    self.x(i),
                    y0 + panel - bh,
                    d.day,
                    d.tally.hits,
                    d.tally.jobs,
                    rate(&d.tally)
                );
            }
        }
    }

    /// Time saved, in minutes once a day saves more than two.
    fn time_saved(&self, o: &mut String, s: &Stats, y0: f64) {
        let (panel, bar) = (self.panel, self.bar);
        let most = s
            .days
            .iter()
            .map(|d| d.tally.saved_seconds)
            .fold(0.0, f64::max);
        let (unit, div) = if most > 120.0 {
            ("min", 60.0)
        } else {
            ("s", 1.0)
        };
        let top_value = nice_max(most / div);
        self.frame(
            o,
            y0,
            &format!("Time saved per day ({unit})"),
            &format!("{top_value}"),
        );
        for (i, d) in s.days.iter().enumerate() {
            let v = d.tally.saved_seconds.max(0.0) / div;
            if v > 0.0 {
                let bh = (panel * v / top_value).max(1.0);
                let _ = writeln!(
                    o,
                    r#"<rect class="saved" x="{:.1}" y="{:.1}" width="{bar:.1}" height="{bh:.1}" fill="{SAVED_COLOUR}"><title>{}: ~{} saved by {} hits</title></rect>"#,
                    self.x(i),
                    y0 + panel - bh,
                    d.day,
                    dur(d.tally.saved_seconds),
                    d.tally.hits
                );
            }
        }
    }

    /// Store size: an area under the size at the end of each day.
    fn store_size(&self, o: &mut String, s: &Stats, y0: f64) {
        let (left, panel, slot) = (self.left, self.panel, self.slot);
        let biggest = s
            .days
            .iter()
            .map(|d| d.tally.stored_bytes)
            .max()
            .unwrap_or(0) as f64;
        let top_bytes = nice_max(biggest);
        self.frame(
            o,
            y0,
            "Store size (entries still stored, by the day they were saved)",
            &report::bytes(top_bytes as u64),
        );
        let mut points = vec![format!("{left:.1},{:.1}", y0 + panel)];
        for (i, d) in s.days.iter().enumerate() {
            let y = y0 + panel - panel * d.tally.stored_bytes as f64 / top_bytes;
            points.push(format!("{:.1},{y:.1}", left + slot * i as f64));
            points.push(format!("{:.1},{y:.1}", left + slot * (i + 1) as f64));
        }
        points.push(format!("{:.1},{:.1}", left + self.plot, y0 + panel));
        let _ = writeln!(
            o,
            r#"<polygon class="size" points="{}" fill="{SIZE_COLOUR}"><title>{} stored now</title></polygon>"#,
            points.join(" "),
            report::bytes(s.total.stored_bytes)
        );
    }

    /// Dates under the panel at `y0`, about eight of them.
    fn dates(&self, o: &mut String, s: &Stats, y0: f64) {
        let every = s.days.len().div_ceil(8).max(1);
        for (i, d) in s.days.iter().enumerate().filter(|(i, _)| i % every == 0) {
            let _ = writeln!(
                o,
                r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#555">{}</text>"##,
                self.left + self.slot * (i as f64 + 0.5),
                y0 + self.panel + 18.0,
                &d.day[5..]
            );
        }
    }
}

/// The chart: three panels over the window's days (hit rate, time saved, store size),
/// hand-written SVG a browser opens from a job's artifacts.
pub fn svg(s: &Stats) -> String {
    let c = Chart::new(s.days.len());
    let mut o = String::new();
    c.header(&mut o, s);
    let y0 = c.top + 20.0;
    c.hit_rate(&mut o, s, y0);
    let y0 = y0 + c.panel + c.gap;
    c.time_saved(&mut o, s, y0);
    let y0 = y0 + c.panel + c.gap;
    c.store_size(&mut o, s, y0);
    c.dates(&mut o, s, y0);
    o.push_str("</svg>\n");
    o
}

/// `cachegate stats`.
pub fn run(
    backend: &dyn Backend,
    since: u64,
    by: StatsBy,
    json: bool,
    svg_file: Option<&Path>,
    threads: usize,
) -> Result<crate::exit::Ending> {
    let s = gather(backend, since, by, threads)?;
    if let Some(path) = svg_file {
        std::fs::write(path, svg(&s))
            .with_context(|| format!("cannot write --svg {}", path.display()))?;
        eprintln!("cachegate: wrote the chart to {}", path.display());
    }
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        crate::out!("{}", text(&s));
    }
    Ok(crate::exit::Ending::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_two_units() {
        assert_eq!(dur(41.4), "41s");
        assert_eq!(dur(1570.0), "26m 10s");
        assert_eq!(dur(8040.0), "2h 14m");
        assert_eq!(dur(-3.0), "-3s");
        assert_eq!(dur(90_000.0), "1d 01h");
    }

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.2), 5.0);
        assert_eq!(nice_max(120.0), 200.0);
        assert_eq!(nice_max(1000.0), 1000.0);
    }

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(20_424), "2025-12-02");
    }
}
