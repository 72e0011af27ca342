//! The module graph of `src/` has no cycle: no module reaches, through `crate::`,
//! `super::` or child-module paths, a module that reaches it back (a parent that
//! re-exports a child which imports the parent's items counts). Read from the source
//! text; no build needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`gpu::layer`) of every file under src/, with its code (comments dropped).
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().and_then(|x| x.to_str()) == Some("rs") {
                let rel = p
                    .strip_prefix(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))
                    .unwrap();
                let mut name = rel.with_extension("").to_string_lossy().replace('/', "::");
                if let Some(parent) = name.strip_suffix("::mod") {
                    name = parent.to_string();
                }
                if name == "lib" || name == "main" {
                    continue;
                }
                let code: String = std::fs::read_to_string(&p)
                    .unwrap()
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                out.insert(name, code);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")),
        &mut out,
    );
    out
}

/// Every path written after `crate::`, with `{a, b::c}` groups expanded one level.
fn crate_paths(code: &str) -> Vec<String> {
    paths_after(code, "crate::")
}

/// Every path written after `super::` in module `name`, as a path from the crate root.
fn super_paths(name: &str, code: &str) -> Vec<String> {
    let parent = name.rsplit_once("::").map_or("", |(p, _)| p);
    // Inside a file's `mod tests`, `super::` is the file's own module.
    let code = code.split("mod tests {").next().unwrap_or(code);
    paths_after(code, "super::")
        .into_iter()
        .filter(|_| !parent.is_empty())
        .map(|p| format!("{parent}::{p}"))
        .collect()
}

/// Paths into the child modules `name` declares (`mod run;` then `run::ModelRun`), as
/// paths from the crate root.
fn child_paths(name: &str, code: &str) -> Vec<String> {
    let children = code.lines().filter_map(|l| {
        let l = l.trim().strip_prefix("pub(crate) ").unwrap_or(l.trim());
        let l = l.strip_prefix("pub ").unwrap_or(l);
        l.strip_prefix("mod ")?
            .strip_suffix(';')
            .map(str::to_string)
    });
    let mut out = Vec::new();
    for child in children.collect::<Vec<_>>() {
        let full = if name.is_empty() {
            child.clone()
        } else {
            format!("{name}::{child}")
        };
        for p in paths_after(code, &format!("{child}::")) {
            match p.trim_matches(':') {
                "" => out.push(full.clone()),
                p => out.push(format!("{full}::{p}")),
            }
        }
    }
    out
}

/// Every path written after `prefix`, with `{a, b::c}` groups expanded one level.
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        // Only where the path starts: not `x_super::` nor `crate::a::super::`.
        let word_before = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        rest = &rest[at + prefix.len()..];
        if word_before {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let base = rest[..end].trim_end_matches(':').to_string();
        if rest[end..].starts_with('{') {
            let close = rest[end..].find('}').map_or(rest.len(), |c| end + c);
            for item in rest[end + 1..close].split(',') {
                let item = item.trim().split([' ', '{']).next().unwrap_or("");
                if !item.is_empty() {
                    out.push(format!("{base}::{item}"));
                }
            }
        }
        out.push(base);
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    let resolve = |path: &str| {
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len())
            .rev()
            .map(|i| parts[..i].join("::"))
            .find(|m| mods.contains_key(m))
    };
    mods.iter()
        .map(|(name, code)| {
            let deps = crate_paths(code)
                .into_iter()
                .chain(super_paths(name, code))
                .chain(child_paths(name, code))
                .collect::<Vec<_>>()
                .iter()
                .filter_map(|p| resolve(p))
                .filter(|d| d != name)
                .collect();
            (name.clone(), deps)
        })
        .collect()
}

/// A cycle of `g`, if there is one (depth-first; a module met again on the current
/// path closes it).
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|m| visit(m, g, &mut Vec::new(), &mut done))
}

#[test]
fn the_module_graph_has_no_cycle() {
    let g = graph();
    assert!(g.len() > 20, "only {} modules found", g.len());
    // checkpoint and interop share io, and neither imports the other.
    assert!(g["checkpoint"].contains("io") && g["interop"].contains("io"));
    if let Some(c) = find_cycle(&g) {
        panic!("import cycle: {}", c.join(" -> "));
    }
}

/// The reader and the search see what they should: grouped paths, and a cycle of three.
#[test]
fn paths_and_cycles_are_found() {
    let paths =
        crate_paths("use crate::gpu::{plan, context::GpuContext};\nlet x = crate::io::bad(p);");
    assert_eq!(
        paths,
        ["gpu::plan", "gpu::context::GpuContext", "gpu", "io::bad"]
    );
    let paths = child_paths("train::gpu", "mod run;\nuse run::{ModelRun, Pass};");
    assert_eq!(
        paths,
        [
            "train::gpu::run::ModelRun",
            "train::gpu::run::Pass",
            "train::gpu::run"
        ]
    );
    // Sibling paths through `super::` count too, from the parent module.
    let paths = super_paths("train::gpu::run", "use super::plan::{ModelPlan, Place};");
    assert_eq!(
        paths,
        [
            "train::gpu::plan::ModelPlan",
            "train::gpu::plan::Place",
            "train::gpu::plan"
        ]
    );
    let edge = |a: &str, b: &[&str]| (a.to_string(), b.iter().map(|s| s.to_string()).collect());
    let mut g: BTreeMap<String, BTreeSet<String>> =
        [edge("a", &["b"]), edge("b", &["c"]), edge("c", &[])].into();
    assert_eq!(find_cycle(&g), None);
    g.insert("c".into(), ["a".to_string()].into());
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
}
