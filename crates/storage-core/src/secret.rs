//! `SecretUrl`: a connection URL whose password never reaches logs or `Debug` output.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A connection URL that may carry a password (`redis://:pw@host`, `postgres://u:pw@host/db`).
///
/// `Debug` and `Display` print the URL with its password replaced by `***` (a URL that does
/// not parse is printed as `<unparseable URL>`), so a configuration struct holding one can be
/// logged or printed safely (OWASP ASVS 5.0 V14.2.4: control sensitive data in logs). Only
/// [`expose`](Self::expose) returns the real text, for the client library that connects.
/// Serialization keeps the full URL: configuration files round-trip.
///
/// ```
/// use hybridstore_core::SecretUrl;
/// let url = SecretUrl::new("redis://:hunter2@127.0.0.1:6379/0");
/// assert_eq!(url.to_string(), "redis://:***@127.0.0.1:6379/0");
/// assert!(!format!("{url:?}").contains("hunter2"));
/// assert_eq!(url.expose(), "redis://:hunter2@127.0.0.1:6379/0");
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }

    /// The URL with its password, for the library that connects. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`: the one in the userinfo and the value
    /// of every query parameter that carries a secret (see [`is_secret_parameter`]), such as
    /// libpq's `?password=…`.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut parsed) => {
                if parsed.password().is_some() {
                    // Fails only for URLs that cannot have credentials, which have no password.
                    let _ = parsed.set_password(Some("***"));
                }
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                if pairs.iter().any(|(k, _)| is_secret_parameter(k)) {
                    let mut query = parsed.query_pairs_mut();
                    query.clear();
                    for (k, v) in &pairs {
                        let v = if is_secret_parameter(k) { "***" } else { v };
                        query.append_pair(k, v);
                    }
                }
                parsed.to_string()
            }
            // `sqlite::memory:` and other opaque forms have no userinfo to hide.
            Err(_) if !self.0.contains('@') => self.0.clone(),
            Err(_) => "<unparseable URL>".to_string(),
        }
    }
}

/// Whether a URL query parameter named `name` carries a secret, compared without regard to
/// case: libpq's `password` and `sslpassword` (PostgreSQL's connection-string keywords,
/// <https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS>), and
/// any name containing `password`, `passwd`, `pwd`, `secret`, `token` or `credential`
/// (S3-style `secret_access_key`, `session_token`).
pub fn is_secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "passwd", "pwd", "secret", "token", "credential"]
        .iter()
        .any(|s| name.contains(s))
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({:?})", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        SecretUrl(url)
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> Self {
        SecretUrl(url.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::SecretUrl;

    #[test]
    fn passwords_never_appear_in_debug_or_display() {
        for (raw, shown) in [
            (
                "redis://:pw1@127.0.0.1:6379/0",
                "redis://:***@127.0.0.1:6379/0",
            ),
            ("redis://user:pw2@h/", "redis://user:***@h/"),
            (
                "postgres://u:pw3@db:5432/x?sslmode=disable",
                "postgres://u:***@db:5432/x?sslmode=disable",
            ),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            // Regression (issue 15, defect 9): libpq takes the password as a parameter too.
            (
                "postgres://u@db/x?password=pw5&sslmode=require",
                "postgres://u@db/x?password=***&sslmode=require",
            ),
            (
                "postgres://db/x?user=u&PassWord=pw6",
                "postgres://db/x?user=u&PassWord=***",
            ),
            (
                "s3://bucket/p?secret_access_key=pw7&region=x",
                "s3://bucket/p?secret_access_key=***&region=x",
            ),
            ("sqlite::memory:", "sqlite::memory:"),
            ("::not a url:pw4@", "<unparseable URL>"),
        ] {
            let url = SecretUrl::new(raw);
            assert_eq!(url.to_string(), shown);
            let debug = format!("{url:?}");
            for secret in ["pw1", "pw2", "pw3", "pw4", "pw5", "pw6", "pw7"] {
                assert!(!debug.contains(secret), "{debug}");
            }
            assert_eq!(url.expose(), raw);
        }
    }
}
