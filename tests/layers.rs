//! The crate's modules form layers, lowest first, and an import points down,
//! never up or sideways (`src/lib.rs`, `docs/architecture.md`): read from the
//! sources, so a new upward `use crate::...` fails here.

use std::collections::BTreeSet;
use std::path::Path;

/// Each top-level module with its layer.
const LAYERS: &[(&str, u8)] = &[
    ("http1", 0),
    ("balance", 0),
    ("tls", 0),
    ("error", 0),
    ("peers", 0),
    ("import", 0),
    ("acme", 1),
    ("route", 1),
    ("access", 1),
    ("net", 1),
    ("config", 2),
    ("observe", 3),
    ("backend", 4),
    ("proxy", 5),
    ("frontend", 6),
    ("runtime", 7),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The first name of each path after `prefix` in `text` (`prefix a::b`,
/// `prefix {a, b::c}`).
fn names_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices(prefix) {
        let rest = &text[i + prefix.len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group[..group.find('}').unwrap_or(0)].split(',').collect(),
            None => vec![rest],
        };
        for n in names {
            let n = n.trim();
            let end = n
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(n.len());
            if end > 0 {
                out.insert(n[..end].to_string());
            }
        }
    }
    out
}

/// Top-level modules named after `crate::` in `text` (`crate::a::b`, `crate::{a, b::c}`).
fn crate_refs(text: &str) -> BTreeSet<String> {
    names_after(text, "crate::")
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn imports_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut seen = BTreeSet::new();
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel.iter().next().unwrap().to_string_lossy();
        let top = top.trim_end_matches(".rs");
        // The binary: main.rs and its `floatlb ctl` client use the library as a whole.
        if matches!(top, "lib" | "main" | "ctl") {
            continue;
        }
        let Some(from) = layer(top) else {
            wrong.push(format!("{}: module `{top}` has no layer", rel.display()));
            continue;
        };
        seen.insert(top.to_string());
        for to in crate_refs(&std::fs::read_to_string(f).unwrap()) {
            if to == top || to == "test_util" {
                continue;
            }
            match layer(&to) {
                Some(l) if l < from => {}
                Some(l) => wrong.push(format!(
                    "{}: `{top}` (layer {from}) imports `{to}` (layer {l})",
                    rel.display()
                )),
                None => wrong.push(format!("{}: `crate::{to}` has no layer", rel.display())),
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(seen.len(), LAYERS.len(), "every layer has code: {seen:?}");
}

#[test]
fn references_are_read_from_plain_and_grouped_imports() {
    let refs = crate_refs("use crate::a::b;\nuse crate::{c, d::e};\nlet x = crate::f(1);");
    assert_eq!(refs.into_iter().collect::<Vec<_>>(), ["a", "c", "d", "f"]);
}

/// The sibling files (by stem) a file of folder `folder` refers to:
/// `crate::<folder>::<sibling>` anywhere, and `super::<sibling>` in a file
/// below the folder's `mod.rs`.
fn sibling_refs(folder: &str, text: &str, siblings: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    // Comments name modules without importing them.
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let text = code.as_str();
    for prefix in [format!("crate::{folder}::"), "super::".to_string()] {
        out.extend(
            names_after(text, &prefix)
                .into_iter()
                .filter(|n| siblings.contains(n)),
        );
    }
    out
}

/// A circle among the files of one folder: `(folder, files)` pairs each
/// holding a file's stem and text. Returns one circle, as the files on it.
fn folder_circle(folder: &str, files: &[(String, String)]) -> Option<Vec<String>> {
    let stems: BTreeSet<String> = files
        .iter()
        .map(|(s, _)| s.clone())
        .filter(|s| s != "mod")
        .collect();
    let edges: std::collections::BTreeMap<String, BTreeSet<String>> = files
        .iter()
        .filter(|(s, _)| s != "mod")
        .map(|(s, t)| {
            let mut to = sibling_refs(folder, t, &stems);
            to.remove(s);
            (s.clone(), to)
        })
        .collect();
    // Depth-first search; a node met again on the current path closes a circle.
    fn visit(
        n: &str,
        edges: &std::collections::BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            return Some(path[at..].to_vec());
        }
        if !done.insert(n.to_string()) {
            return None;
        }
        path.push(n.to_string());
        for next in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, &edges, &mut Vec::new(), &mut done))
}

/// Every folder below `dir` (itself included) with its module path
/// (`runtime::admin` for src/runtime/admin).
fn folders(dir: &Path, module: &str, out: &mut Vec<(std::path::PathBuf, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let path = if module.is_empty() {
                name
            } else {
                format!("{module}::{name}")
            };
            folders(&p, &path, out);
            out.push((p, path));
        }
    }
}

#[test]
fn no_circle_between_the_files_of_one_folder() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    folders(&src, "", &mut all);
    assert!(
        all.iter().any(|(_, m)| m == "runtime::admin"),
        "nested folders are read: {all:?}"
    );
    let mut circles = Vec::new();
    for (dir, folder) in &all {
        let files: Vec<(String, String)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
            .map(|p| {
                let stem = p.file_stem().unwrap().to_string_lossy().to_string();
                (stem, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        if let Some(c) = folder_circle(folder, &files) {
            circles.push(format!(
                "src/{}: {}",
                folder.replace("::", "/"),
                c.join(" -> ")
            ));
        }
    }
    assert!(circles.is_empty(), "{circles:#?}");
}

/// The test of the test: a circle of two or three files is found, a chain is not.
#[test]
fn a_circle_between_two_files_is_found() {
    let f = |s: &str, t: &str| (s.to_string(), t.to_string());
    let two = [
        f("admin", "fn a() { crate::runtime::exposition::render(); }"),
        f("exposition", "use crate::runtime::admin::AdminHooks;"),
        f("mod", "pub mod admin;\npub mod exposition;"),
    ];
    assert_eq!(
        folder_circle("runtime", &two),
        Some(vec!["admin".to_string(), "exposition".to_string()])
    );
    let three = [
        f("a", "use super::b::X;"),
        f("b", "use crate::x::{c::Y, d};"),
        f("c", "use super::{a, d};"),
    ];
    assert!(folder_circle("x", &three).is_some());
    // A module named in a comment is no import.
    let commented = [
        f("h2", "use super::streams::StreamSet;"),
        f("streams", "//! Not for: HTTP/2 itself (`super::h2`)."),
    ];
    assert_eq!(folder_circle("frontend", &commented), None);
    let chain = [
        f("admin", "use crate::runtime::{exposition, hooks::H};"),
        f("exposition", "use crate::runtime::hooks::H;"),
        f("hooks", "pub trait H {}"),
    ];
    assert_eq!(folder_circle("runtime", &chain), None);
}

/// The `vrrp` crate's place: below floatlb (which uses it from `config` up,
/// for addresses and the VRRP instances), and knowing nothing of floatlb.
#[test]
fn the_vrrp_crate_sits_below_and_knows_nothing_of_floatlb() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("vrrp/src"), &mut files);
    let mut wrong = Vec::new();
    for f in &files {
        if std::fs::read_to_string(f).unwrap().contains("floatlb::") {
            wrong.push(format!("{}: the vrrp crate names floatlb", f.display()));
        }
    }
    let config = layer("config").unwrap();
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel.iter().next().unwrap().to_string_lossy();
        let top = top.trim_end_matches(".rs");
        let uses_vrrp = std::fs::read_to_string(f)
            .unwrap()
            .lines()
            .any(|l| l.split("//").next().unwrap_or("").contains("vrrp::"));
        if uses_vrrp && layer(top).is_some_and(|l| l < config) {
            wrong.push(format!(
                "{}: `{top}` is below config and uses the vrrp crate",
                rel.display()
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
