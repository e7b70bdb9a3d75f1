//! Loading only: the files and services the core's data comes from, read into the core's types.
//!
//! * [`policies`]: the policy directory, parsed by [`crate::policy::PolicySet::from_files`].

pub mod policies;
