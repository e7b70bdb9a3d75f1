//! The store over PostgreSQL with TLS.
//!
//! One test binary per area (each links the whole crate): one module per former test file.

mod tls;
