//! The file side of `floatlb import`: HAProxy's `-f FILE|DIR` and keepalived's `include`
//! (a glob in its last part, relative to the including file's folder) read from disk.
//! Kept apart so the readers and mappers stay text in, text out.

use std::path::{Path, PathBuf};

use super::Source;

fn read(p: &Path) -> Result<Source, String> {
    std::fs::read_to_string(p)
        .map(|text| Source {
            name: p.display().to_string(),
            text,
        })
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// HAProxy's `-f`: a file, or a folder whose `*.cfg` files are read in name order.
pub fn haproxy(path: &Path) -> Result<Vec<Source>, String> {
    if path.is_dir() {
        let mut names: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "cfg") && p.is_file())
            .collect();
        names.sort();
        names.iter().map(|p| read(p)).collect()
    } else {
        Ok(vec![read(path)?])
    }
}

/// One file, as the user named it.
pub fn one(path: &Path) -> Result<Source, String> {
    read(path)
}

/// `*` and `?` in one name.
fn glob_match(pat: &[u8], name: &[u8]) -> bool {
    match (pat.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob_match(&pat[1..], name) || (!name.is_empty() && glob_match(pat, &name[1..]))
        }
        (Some(b'?'), Some(_)) => glob_match(&pat[1..], &name[1..]),
        (Some(a), Some(b)) if a == b => glob_match(&pat[1..], &name[1..]),
        _ => false,
    }
}

/// keepalived's `include PATTERN` from the file `from`: the files it names, in name order.
/// A pattern that names no file is an error (keepalived warns about it too).
pub fn include(pattern: &str, from: &str) -> Result<Vec<Source>, String> {
    let base = Path::new(from).parent().unwrap_or(Path::new("."));
    let p = Path::new(pattern);
    let p = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return Ok(vec![read(&p)?]);
    }
    let dir = p.parent().unwrap_or(Path::new("."));
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|f| {
            f.is_file()
                && f.file_name()
                    .is_some_and(|n| glob_match(name.as_bytes(), n.to_string_lossy().as_bytes()))
        })
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(format!("{}: no file matches", p.display()));
    }
    found.iter().map(|f| read(f)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_one_name() {
        assert!(glob_match(b"*.conf", b"a.conf"));
        assert!(glob_match(b"vi_?.conf", b"vi_1.conf"));
        assert!(!glob_match(b"*.conf", b"a.cfg"));
        assert!(glob_match(b"*", b""));
    }
}
