//! optimize: see the crate map in lib.rs.
