//! The shape of the source itself: the module imports draw no loop, so every module can be
//! read knowing only the ones below it, and runner mode stays one kind of store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every module of `src/` by its path (`backend::s3`), with its text minus the unit tests.
fn modules() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p: PathBuf = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            // The unit tests may reach anywhere; the drawing is of the code they test.
            let text = match text.find("#[cfg(test)]\nmod tests") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            let code: String = text
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            out.insert(parts.join("::"), code);
        }
    }
    out
}

/// The paths a text names after `crate::`, with `use crate::{a, b::c}` groups opened.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut paths = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let body = &group[..group.find("};").unwrap_or(group.len())];
            for item in body.split(',') {
                let first: String = item.trim().chars().take_while(|&c| ident(c)).collect();
                if !first.is_empty() {
                    paths.push(vec![first]);
                }
            }
            continue;
        }
        let mut segs = Vec::new();
        let mut s = rest;
        loop {
            let seg: String = s.chars().take_while(|&c| ident(c)).collect();
            if seg.is_empty() {
                break;
            }
            s = &s[seg.len()..];
            segs.push(seg);
            match s.strip_prefix("::") {
                Some(next) => s = next,
                None => break,
            }
        }
        if !segs.is_empty() {
            paths.push(segs);
        }
    }
    paths
}

fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    let mut edges = BTreeMap::new();
    for (m, code) in &mods {
        let mut to = BTreeSet::new();
        let mut add = |cand: &str| {
            let nested = m.starts_with(&format!("{cand}::")) || cand.starts_with(&format!("{m}::"));
            if cand != m && !nested {
                to.insert(cand.to_string());
            }
        };
        for segs in crate_paths(code) {
            if let Some(k) = (1..=segs.len())
                .rev()
                .find(|&k| mods.contains_key(&segs[..k].join("::")))
            {
                add(&segs[..k].join("::"));
            }
        }
        if let Some((parent, _)) = m.rsplit_once("::") {
            for (at, _) in code.match_indices("super::") {
                let seg: String = code[at + "super::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let cand = format!("{parent}::{seg}");
                if mods.contains_key(&cand) {
                    add(&cand);
                }
            }
        }
        edges.insert(m.clone(), to);
    }
    edges
}

/// A path from `from` back to `from` through `edges`, if any.
fn loop_through(from: &str, edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_string(), vec![from.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in &edges[&at] {
            if next == from {
                return Some(path.iter().cloned().chain([from.to_string()]).collect());
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

#[test]
fn module_imports_draw_no_loop() {
    let edges = imports();
    assert!(edges.len() > 40, "found only {} modules", edges.len());
    assert!(
        edges["job"].contains("store"),
        "the drawing misses job -> store"
    );
    let loops: Vec<String> = edges
        .keys()
        .filter_map(|m| loop_through(m, &edges))
        .map(|p| p.join(" -> "))
        .collect();
    assert!(loops.is_empty(), "import loops:\n{}", loops.join("\n"));
}

#[test]
fn runner_mode_is_known_only_to_the_store_and_entries() {
    let outside: Vec<String> = modules()
        .iter()
        .filter(|(m, _)| *m != "store" && *m != "entries" && !m.starts_with("entries::"))
        .filter(|(_, code)| code.contains("Marker"))
        .map(|(m, _)| m.clone())
        .collect();
    assert!(outside.is_empty(), "runner mode matched in {outside:?}");
}
