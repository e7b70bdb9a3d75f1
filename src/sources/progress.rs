//! The core's [`Progress`] drawn as a progress bar on stderr, when it is a terminal and the
//! read is long enough to be worth one (a CSV file over 32 MiB, a Parquet file over a million
//! rows).

use crate::ingest::{Progress, ProgressUnit};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;

/// A progress bar per file read, or nothing when disabled or stderr is not a terminal (CI,
/// pipes).
pub struct TerminalProgress {
    enabled: bool,
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

impl TerminalProgress {
    pub fn new(enabled: bool) -> TerminalProgress {
        TerminalProgress {
            enabled: enabled && std::io::stderr().is_terminal(),
            bar: Mutex::new(None),
        }
    }

    fn with_bar(&self, f: impl FnOnce(&mut Option<indicatif::ProgressBar>)) {
        if self.enabled {
            // A bar is only a display: a poisoned lock shows nothing more.
            if let Ok(mut bar) = self.bar.lock() {
                f(&mut bar);
            }
        }
    }
}

impl Progress for TerminalProgress {
    fn start(&self, _what: &Path, total: u64, unit: ProgressUnit) {
        let worth = match unit {
            ProgressUnit::Bytes => total > 32 << 20,
            ProgressUnit::Rows => total > 1_000_000,
        };
        self.with_bar(|slot| {
            if let Some(old) = slot.take() {
                old.finish_and_clear();
            }
            if worth {
                let bar = indicatif::ProgressBar::new(total);
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {percent}% {per_sec} eta {eta}",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_message("reading");
                *slot = Some(bar);
            }
        });
    }

    fn advance(&self, n: u64) {
        self.with_bar(|slot| {
            if let Some(bar) = slot {
                bar.inc(n);
            }
        });
    }

    fn finish(&self) {
        self.with_bar(|slot| {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        });
    }
}

impl Drop for TerminalProgress {
    fn drop(&mut self) {
        self.finish();
    }
}
