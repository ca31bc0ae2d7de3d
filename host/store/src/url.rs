//! Where the database is: a [`DatabaseUrl`], whose password never shows.
//!
//! The URL is the one configuration value that holds a secret, so it is a type of its own: its
//! `Debug` and `Display` print `postgres://user:***@host/db` (and `password=***` in the query),
//! and every message the store writes about a database uses that form. Only the driver sees the
//! text as given.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A database to connect to: `postgres://…` / `postgresql://…`, or `sqlite://PATH` (also
/// `sqlite:PATH`) for a SQLite file.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    /// As given, password included: for the driver only.
    text: String,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite(PathBuf),
    Postgres,
}

/// A database URL this build cannot use. Its message shows the URL redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the database URL {url} {reason}")]
pub struct BadDatabaseUrl {
    /// The URL, its password redacted.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

impl DatabaseUrl {
    /// Parses `text`: a PostgreSQL URL (checked as the driver reads it) or a SQLite file's URL.
    pub fn parse(text: &str) -> Result<DatabaseUrl, BadDatabaseUrl> {
        let text = text.trim();
        let bad = |reason: &str| BadDatabaseUrl { url: redact(text), reason: reason.to_string() };
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            // The driver's own parser decides; its messages name the part, never the URL.
            sqlx::postgres::PgConnectOptions::from_str(text)
                .map_err(|e| bad(&format!("is not a PostgreSQL URL this build can use: {e}")))?;
            return Ok(DatabaseUrl { text: text.to_string(), kind: Kind::Postgres });
        }
        let path = lower
            .starts_with("sqlite://")
            .then(|| &text["sqlite://".len()..])
            .or_else(|| lower.starts_with("sqlite:").then(|| &text["sqlite:".len()..]));
        match path {
            Some("") => Err(bad("names no file (sqlite://PATH)")),
            Some(":memory:") => Err(bad("is in memory, which no other command can see: name a file")),
            Some(path) if path.contains('?') => Err(bad("has options; give the file's path alone (sqlite://PATH)")),
            Some(path) => Ok(DatabaseUrl { text: text.to_string(), kind: Kind::Sqlite(PathBuf::from(path)) }),
            None => Err(bad("is neither postgres://… (or postgresql://…) nor sqlite://PATH")),
        }
    }

    /// The URL of a SQLite file.
    pub fn sqlite(path: &Path) -> DatabaseUrl {
        DatabaseUrl { text: format!("sqlite://{}", path.display()), kind: Kind::Sqlite(path.to_path_buf()) }
    }

    /// Whether it names a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        self.kind == Kind::Postgres
    }

    /// The SQLite file it names, if it names one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Sqlite(path) => Some(path),
            Kind::Postgres => None,
        }
    }

    /// The URL with its password replaced by `***` (what `Display` prints).
    pub fn redacted(&self) -> String {
        redact(&self.text)
    }

    pub(crate) fn kind(&self) -> &Kind {
        &self.kind
    }

    /// The URL as given, password included: for the driver, never for a message.
    /// The URL with its password, to hand to a child process (in its environment, never on its
    /// command line, where `ps` shows it). Never log it.
    pub fn expose_secret(&self) -> &str {
        self.secret()
    }

    pub(crate) fn secret(&self) -> &str {
        &self.text
    }
}

impl FromStr for DatabaseUrl {
    type Err = BadDatabaseUrl;
    fn from_str(text: &str) -> Result<Self, BadDatabaseUrl> {
        DatabaseUrl::parse(text)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl").field(&self.redacted()).finish()
    }
}

/// `text` with the password of its user info and any `password=` query parameter as `***`.
/// The user info ends at the last `@` before the query, so a password holding `/`, `#` or `@`
/// unencoded is still hidden whole.
fn redact(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else { return text.to_string() };
    let query_at = rest.find('?').unwrap_or(rest.len());
    let (before_query, query) = rest.split_at(query_at);
    let before_query = match before_query.rfind('@') {
        Some(at) => {
            let (userinfo, host) = before_query.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:***{host}"),
                None => before_query.to_string(),
            }
        }
        None => before_query.to_string(),
    };
    let query = match query.strip_prefix('?') {
        Some(params) => {
            let params: Vec<String> = params
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => param.to_string(),
                })
                .collect();
            format!("?{}", params.join("&"))
        }
        None => String::new(),
    };
    format!("{scheme}://{before_query}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_wherever_they_are() {
        let cases = [
            ("postgres://alice:s3cret@db.example:5432/sandflow", "postgres://alice:***@db.example:5432/sandflow"),
            ("postgresql://alice:p/a#ss@w0rd@db/sandflow", "postgresql://alice:***@db/sandflow"),
            (
                "postgres://alice@db/sandflow?password=s3cret&sslmode=require",
                "postgres://alice@db/sandflow?password=***&sslmode=require",
            ),
            ("postgres://db/sandflow", "postgres://db/sandflow"),
            ("sqlite:///var/lib/sandflow.db", "sqlite:///var/lib/sandflow.db"),
        ];
        for (given, shown) in cases {
            assert_eq!(redact(given), shown, "{given}");
        }
    }
}
