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
    ("route", 1),
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

/// Top-level modules named after `crate::` in `text` (`crate::a::b`, `crate::{a, b::c}`).
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
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
        if matches!(top, "lib" | "main") {
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
