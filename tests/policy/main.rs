//! Policies: the give-up rules and `commitd policy`.
//!
//! One test binary per area (each links the whole crate): one module per former test file.

mod cli;
mod give_up;
