//! Loading only: the files and services the core's data comes from, read into the core's
//! types. The core (`commitd_core::ingest`, `policy`) parses what it is handed; opening files,
//! walking directories and drawing progress bars happen here.
//!
//! * [`focus`]: FOCUS usage files (CSV, gzip CSV, Parquet; one file or a directory tree).
//! * [`scenario`]: a scenario directory, a rate card, a ContractCommitment file.
//! * [`policies`]: the policy directory, parsed by [`crate::policy::PolicySet::from_files`].
//! * [`progress`]: the progress bar the core's readers report to.

pub mod focus;
pub mod policies;
pub mod progress;
pub mod scenario;

pub use focus::{discover, read_focus, ReadOptions};
pub use scenario::{
    load_scenario, load_scenario_with, read_commitments, read_rate_card, read_scenario_file,
};
