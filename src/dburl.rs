//! Database URLs: which backend a URL selects, the embedded default, and the URL as messages
//! and logs may show it (password redacted). A leaf: the configuration validates URLs with it
//! and the store connects with it, without either importing the other.

use std::path::Path;

/// The embedded default database file name inside the data directory.
pub const DEFAULT_DB_FILE: &str = "commitd.db";

/// Which database engine a store talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backend a URL selects, from its scheme alone.
pub fn backend_of(url: &str) -> Option<Backend> {
    if url.starts_with("sqlite:") {
        Some(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Some(Backend::Postgres)
    } else {
        None
    }
}

/// The embedded default: `sqlite://<data_dir>/commitd.db`.
pub fn default_sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join(DEFAULT_DB_FILE).display())
}

/// The URL with the password (if any) replaced by `***`, for messages and logs.
///
/// Works on the text rather than a URL parser so that even a malformed URL, which is
/// exactly the one that ends up in an error message, never leaks its secret.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    // The authority ends at the first '/', '?' or '#'; the userinfo at the authority's
    // last '@' (a password may itself contain '@' when not percent-encoded).
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..rest_start]);
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let tail = &rest[authority_end..];
    out.push_str(&redact_query_password(tail));
    out
}

/// libpq also accepts `?password=...` in the query string.
fn redact_query_password(tail: &str) -> String {
    let Some(q) = tail.find('?') else {
        return tail.to_string();
    };
    let (path, query) = tail.split_at(q + 1);
    let parts: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}{}", parts.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_in_userinfo_and_query() {
        assert_eq!(
            redact_url("postgres://app:s3cr%40t@db.example:5432/commitd"),
            "postgres://app:***@db.example:5432/commitd"
        );
        assert_eq!(
            redact_url("postgresql://app:p@ss@db/commitd?sslmode=require"),
            "postgresql://app:***@db/commitd?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://db/commitd?user=app&password=hunter2&sslmode=verify-full"),
            "postgres://db/commitd?user=app&password=***&sslmode=verify-full"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:5432/x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            redact_url("sqlite://./commitd-data/commitd.db"),
            "sqlite://./commitd-data/commitd.db"
        );
    }

    #[test]
    fn backend_is_chosen_by_scheme() {
        assert_eq!(backend_of("sqlite://x.db"), Some(Backend::Sqlite));
        assert_eq!(backend_of("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(backend_of("postgres://h/d"), Some(Backend::Postgres));
        assert_eq!(backend_of("postgresql://h/d"), Some(Backend::Postgres));
        assert_eq!(backend_of("mysql://h/d"), None);
        assert_eq!(
            default_sqlite_url(Path::new("./commitd-data")),
            "sqlite://./commitd-data/commitd.db"
        );
    }
}
