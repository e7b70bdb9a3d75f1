//! Where the project's shared data (`shared/`: the domain brief's scenarios and the real FOCUS
//! samples) is, for the tests that read it. One lookup for every test binary.

use std::path::PathBuf;

/// `$COMMITD_TEST_SHARED` when set (`.ci/run` sets it wherever it finds the directory), else
/// `<manifest>/../shared` (CI's layout) or, from a nested git worktree, the nearest ancestor's.
/// Absent shared data is a failure, not a skip: the tests that need it must run.
pub fn shared() -> PathBuf {
    if let Some(dir) = std::env::var_os("COMMITD_TEST_SHARED").map(PathBuf::from) {
        assert!(
            dir.join("scenarios").is_dir(),
            "COMMITD_TEST_SHARED={} has no scenarios/ directory",
            dir.display()
        );
        return dir;
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .skip(1)
        .map(|a| a.join("shared"))
        .find(|p| p.join("scenarios").is_dir())
        .unwrap_or_else(|| {
            panic!(
                "{}/../shared is missing: the tests need the shared/ directory beside the clone \
                 (or COMMITD_TEST_SHARED pointing at it)",
                manifest.display()
            )
        })
}

/// The FinOps Foundation's real FOCUS 1.0 sample.
#[allow(dead_code)] // not every test binary that includes this module reads the sample
pub fn focus_sample() -> PathBuf {
    shared().join("data/focus/focus-1.0-sample-real.csv")
}
