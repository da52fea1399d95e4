//! The committed corpus of a fuzz target, for the stable replay tests.

use std::path::{Path, PathBuf};

/// Every file of a corpus directory, sorted; panics if the directory is missing or empty
/// (a replay over nothing would pass without testing anything).
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("fuzz corpus {} is missing: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "fuzz corpus {} is empty", dir.display());
    files
}
