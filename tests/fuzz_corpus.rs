//! Replays the `config_load` fuzz corpus (`fuzz/corpus/config_load`) on stable
//! with the fuzz target's own checks (`fuzz/checks/config_load.rs`): CI has no
//! nightly, so this is how the inputs the fuzzer found keep being tested.

#[path = "../fuzz/checks/config_load.rs"]
mod check;
#[path = "../fuzz/checks/corpus.rs"]
mod corpus;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

#[test]
fn corpus_replays_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/config_load");
    let files = corpus::files(&dir);

    let (mut loaded, mut not_utf8, mut failed) = (0, 0, Vec::new());
    for path in &files {
        let data = std::fs::read(path).unwrap();
        // As in the fuzz target: the loader only ever sees UTF-8.
        let Ok(text) = std::str::from_utf8(&data) else {
            not_utf8 += 1;
            continue;
        };
        match catch_unwind(AssertUnwindSafe(|| check::check(text))) {
            Ok(ok) => loaded += usize::from(ok),
            Err(_) => failed.push(path.display().to_string()),
        }
    }
    println!(
        "replayed {} inputs from {}: {loaded} loaded, {} rejected, {not_utf8} skipped (not UTF-8)",
        files.len(),
        dir.display(),
        files.len() - loaded - not_utf8 - failed.len()
    );
    assert!(failed.is_empty(), "checks failed on: {failed:#?}");
    // Without a config that loads only the error paths would be replayed.
    assert!(loaded > 0, "corpus no longer holds a config that loads");
}
