//! `cargo xtask modules`: no two modules of one level import each other.
//!
//! For every crate (`crates/*/src`, `xtask/src`) each file is a module (`a/b.rs` and
//! `a/b/mod.rs` are `a::b`; `lib.rs`/`main.rs` the crate root). A module depends on another
//! when its code (comments and `#[cfg(test)]` modules left out) names it by path:
//! `crate::a::b…` (the longest prefix that is a module), `super::x` (the sibling `x` if there
//! is one, else the parent), or `use x::…` of its own child `x`. Two modules that depend on
//! each other fail the check unless one contains the other: a child using its parent's items
//! is how one module is split into files, a pair of siblings using each other is a cycle
//! (the lesson of rust-analyzer's architecture notes: shared vocabulary goes into a leaf).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::*;

type ModPath = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: ModPath = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its `#[cfg(test)]` tail.
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or(text);
    text.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `::`-separated identifiers after each occurrence of `prefix` (`crate::a::b` gives
/// `["a", "b"]`; a `*` ends a path as the identifier `*`).
fn paths_after(code: &str, prefix: &str) -> Vec<ModPath> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let mut path = Vec::new();
        let mut tail = rest;
        loop {
            if tail.starts_with('*') {
                path.push("*".to_string());
                break;
            }
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            if end == 0 {
                break;
            }
            path.push(tail[..end].to_string());
            tail = &tail[end..];
            match tail.strip_prefix("::") {
                Some(t) => tail = t,
                None => break,
            }
        }
        out.push(path);
    }
    out
}

fn longest_module(modules: &BTreeSet<ModPath>, path: &[String]) -> Option<ModPath> {
    (1..=path.len())
        .rev()
        .map(|k| path[..k].to_vec())
        .find(|p| modules.contains(p))
}

fn is_within(inner: &ModPath, outer: &ModPath) -> bool {
    inner.len() >= outer.len() && inner[..outer.len()] == outer[..]
}

/// Sibling pairs of modules of the crate at `src` that depend on each other.
fn cycles_in(src: &Path) -> Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    rust_files(src, &mut files)?;
    let mut code: BTreeMap<ModPath, String> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        code.insert(module_of(src, file), code_of(&text));
    }
    let modules: BTreeSet<ModPath> = code.keys().cloned().collect();
    let mut edges: BTreeSet<(ModPath, ModPath)> = BTreeSet::new();
    for (me, text) in &code {
        let mut add = |target: Option<ModPath>| {
            if let Some(t) = target
                && t != *me
            {
                edges.insert((me.clone(), t));
            }
        };
        for path in paths_after(text, "crate::") {
            add(longest_module(&modules, &path));
        }
        let parent: ModPath = me
            .iter()
            .take(me.len().saturating_sub(1))
            .cloned()
            .collect();
        for path in paths_after(text, "super::") {
            let mut sibling = parent.clone();
            sibling.extend(path.first().cloned());
            add(Some(if modules.contains(&sibling) {
                sibling
            } else {
                parent.clone()
            }));
        }
        for line in text.lines() {
            let line = line.trim_start();
            let line = line
                .strip_prefix("pub(crate) ")
                .or_else(|| line.strip_prefix("pub(super) "))
                .or_else(|| line.strip_prefix("pub "))
                .unwrap_or(line);
            if let Some(used) = line.strip_prefix("use ") {
                let first = used.split("::").next().unwrap_or("");
                let mut child = me.clone();
                child.push(first.to_string());
                if modules.contains(&child) {
                    add(Some(child));
                }
            }
        }
    }
    let name = |m: &ModPath| {
        if m.is_empty() {
            "crate".to_string()
        } else {
            m.join("::")
        }
    };
    Ok(edges
        .iter()
        .filter(|(a, b)| a < b && edges.contains(&(b.clone(), a.clone())))
        .filter(|(a, b)| !is_within(a, b) && !is_within(b, a))
        .map(|(a, b)| (name(a), name(b)))
        .collect())
}

/// Fails, naming each pair, if any two sibling modules of a crate depend on each other:
/// the crates' `src` directories in `dirs`, or every crate of the workspace and xtask.
pub(crate) fn check_module_cycles(dirs: &[String]) -> Result<()> {
    let root = workspace_root();
    let mut sources: Vec<PathBuf> = dirs.iter().map(PathBuf::from).collect();
    if sources.is_empty() {
        sources.push(root.join("xtask/src"));
        let crates = std::fs::read_dir(root.join("crates")).map_err(|e| e.to_string())?;
        for entry in crates {
            let src = entry.map_err(|e| e.to_string())?.path().join("src");
            if src.is_dir() {
                sources.push(src);
            }
        }
    }
    sources.sort();
    let mut found = Vec::new();
    for src in &sources {
        for (a, b) in cycles_in(src)? {
            found.push(format!("{}: {a} <-> {b}", src.display()));
        }
    }
    if found.is_empty() {
        eprintln!(
            "xtask: modules: no two sibling modules depend on each other ({} crates)",
            sources.len()
        );
        Ok(())
    } else {
        Err(format!(
            "modules that import each other (put what both need into a leaf module):\n{}",
            found.join("\n")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_after_their_prefix_only() {
        let code = "use crate::a::b::{C, d};\nlet x = mycrate::z; crate::e::f();\nsuper::*";
        assert_eq!(
            paths_after(code, "crate::"),
            vec![
                vec!["a".to_string(), "b".into()],
                vec!["e".to_string(), "f".into()]
            ]
        );
        assert_eq!(paths_after(code, "super::"), vec![vec!["*".to_string()]]);
    }

    #[test]
    fn a_pair_of_siblings_is_a_cycle_and_a_parent_with_its_child_is_not() {
        let dir = std::env::temp_dir().join(format!("xtask-modules-{}", std::process::id()));
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("p")).unwrap();
        std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod p;\nuse p::X;\n").unwrap();
        std::fs::write(src.join("a.rs"), "use crate::b::B;\n").unwrap();
        std::fs::write(
            src.join("b.rs"),
            "use crate::a::A; // crate::p in a comment\n",
        )
        .unwrap();
        std::fs::write(src.join("p/mod.rs"), "mod q;\nuse q::Q;\n").unwrap();
        std::fs::write(src.join("p/q.rs"), "use super::*;\n").unwrap();
        let found = cycles_in(&src).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found, vec![("a".to_string(), "b".to_string())]);
    }
}
