//! What a task may touch beyond its JSON input: the grants a DAG file declares per task, read and
//! checked here, and the server's policy they are held to at load and upload.
//!
//! Everything is denied unless declared (DESIGN.md §9). A try always has its own writable `/out`
//! (under a quota) and sees its direct upstreams' artifacts under `/in`; the rest is asked for by
//! name: `mounts` (admin-declared host folders), `secrets` (admin-set values, as environment
//! variables), `allow_http` (origins a component may call). Grants enter the DAG's version, so a
//! DAG that asks for more is a new version, and the policy is checked on the whole DAG before any
//! of it is stored.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The grants of one task, validated and normalised. The default grants nothing but `/out` at the
/// server's default quota.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// The `/out` quota of one try in MiB (`out_quota_mb`); `None` leaves it to the server
    /// ([`Grants::DEFAULT_OUT_QUOTA_MB`] unless configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_quota_mb: Option<u64>,
    /// Admin-declared mounts the task reads at `/data/<name>` (`mounts`), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<String>,
    /// Secrets given to the task as environment variables (`secrets`), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Origins the task may send HTTP requests to (`allow_http`), normalised
    /// (`scheme://host[:port]`, lower case, default ports dropped), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_http: Vec<String>,
    /// Whether the try's HTTP exchanges are recorded so that `tasks replay` can serve them
    /// (`record_http`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub record_http: bool,
}

impl Grants {
    /// The `/out` quota of a task that sets none: 1 GiB.
    pub const DEFAULT_OUT_QUOTA_MB: u64 = 1024;

    /// Whether the task asks for nothing beyond the defaults.
    pub fn is_default(&self) -> bool {
        self == &Grants::default()
    }

    /// The environment variable a secret is given as: its name in upper case.
    pub fn secret_env_name(secret: &str) -> String {
        secret.to_ascii_uppercase()
    }
}

/// Why a secret or mount name is not valid, if it is not: `[a-z][a-z0-9_]*`, at most 64
/// characters (a secret becomes an environment variable named after it in upper case).
pub fn grant_name_problem(name: &str, what: &str) -> Option<String> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    (!valid).then(|| {
        format!(
            "invalid {what} {name:?}: use a lower-case letter, then lower-case letters, digits and \"_\" (at most 64)"
        )
    })
}

/// An HTTP origin: scheme, host and port, the unit `allow_http` grants.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// The host, lower case; an IPv6 address without its brackets.
    pub host: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
}

impl Origin {
    /// Parses `scheme://host[:port]`, with an optional trailing `/`. Paths, queries, fragments and
    /// user names are refused: a grant is for a whole origin.
    pub fn parse(text: &str) -> Result<Origin, String> {
        let (scheme, rest) =
            text.split_once("://").ok_or_else(|| format!("{text:?} is not an origin: write scheme://host[:port]"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            other => return Err(format!("{text:?}: the scheme {other:?} is not http or https")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(format!("{text:?}: an origin has no path, query or fragment (scheme://host[:port])"));
        }
        if rest.contains('@') {
            return Err(format!("{text:?}: an origin has no user name or password"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| format!("{text:?}: unclosed [ in the host"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| format!("{text:?}: expected :port after ]"))?),
            };
            (host.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (rest.to_string(), None),
            }
        };
        let host = host.to_ascii_lowercase();
        let host_ok =
            !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
        if !host_ok {
            return Err(format!("{text:?}: {host:?} is not a host name or address"));
        }
        let port = match port {
            None => default_port,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("{text:?}: bad port {p:?}"))?,
        };
        Ok(Origin { scheme, host, port })
    }

    /// The port a URL of this scheme has when it names none.
    fn default_port(&self) -> u16 {
        if self.scheme == "https" {
            443
        } else {
            80
        }
    }
}

/// The normal form: `https://api.example.com`, `http://127.0.0.1:8099`, `http://[::1]:81`.
impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == self.default_port() {
            write!(f, "{}://{host}", self.scheme)
        } else {
            write!(f, "{}://{host}:{}", self.scheme, self.port)
        }
    }
}

/// What the server lets DAGs ask for, checked at load and upload over the whole DAG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantPolicy {
    /// Origins DAGs may list in `allow_http` (`--allow-http`); `*` allows any origin (its
    /// addresses must still be public unless in `private_http`). Empty: no HTTP egress at all.
    pub allow_http: Vec<String>,
    /// The largest `out_quota_mb` a task may ask for.
    pub max_out_quota_mb: u64,
    /// The mounts an admin declared (`sandflow mounts set`).
    pub mounts: BTreeSet<String>,
    /// The secrets an admin set (`sandflow secrets set`).
    pub secrets: BTreeSet<String>,
    /// Whether whoever submits this DAG may grant secrets (their role is in the server's list;
    /// always true for DAG files on the server's own disk).
    pub may_grant_secrets: bool,
}

impl Default for GrantPolicy {
    fn default() -> Self {
        GrantPolicy {
            allow_http: Vec::new(),
            max_out_quota_mb: GrantPolicy::DEFAULT_MAX_OUT_QUOTA_MB,
            mounts: BTreeSet::new(),
            secrets: BTreeSet::new(),
            may_grant_secrets: true,
        }
    }
}

impl GrantPolicy {
    /// The default cap on `out_quota_mb`: 10 GiB per try.
    pub const DEFAULT_MAX_OUT_QUOTA_MB: u64 = 10 * 1024;

    /// Checks every task's grants, naming each refusal with its task (`task "train": mount
    /// "datasets" is not declared on this server (sandflow mounts set datasets PATH)`).
    pub fn check(&self, dag: &super::Dag) -> Result<(), Vec<String>> {
        let mut refused = Vec::new();
        let allowed: Vec<Origin> = self.allow_http.iter().filter_map(|o| Origin::parse(o).ok()).collect();
        let any_origin = self.allow_http.iter().any(|o| o == "*");
        for task in &dag.tasks {
            let g = &task.grants;
            let mut refuse = |why: String| refused.push(format!("task {:?}: {why}", task.id));
            if let Some(mb) = g.out_quota_mb {
                if mb > self.max_out_quota_mb {
                    refuse(format!("out_quota_mb {mb} is over the server's cap of {} MiB", self.max_out_quota_mb));
                }
            }
            for mount in &g.mounts {
                if !self.mounts.contains(mount) {
                    refuse(format!("mount {mount:?} is not declared on this server (an admin runs `sandflow mounts set {mount} PATH`)"));
                }
            }
            if !g.secrets.is_empty() && !self.may_grant_secrets {
                refuse(format!(
                    "granting secrets ({}) needs a role the server lets grant secrets",
                    g.secrets.join(", ")
                ));
            }
            for secret in &g.secrets {
                if !self.secrets.contains(secret) {
                    refuse(format!(
                        "secret {secret:?} is not set on this server (an admin runs `sandflow secrets set {secret}`)"
                    ));
                }
            }
            for origin in &g.allow_http {
                let ok = any_origin || Origin::parse(origin).is_ok_and(|o| allowed.contains(&o));
                if !ok {
                    let hint = if self.allow_http.is_empty() {
                        "the server allows no HTTP egress (start it with --allow-http ORIGIN)".to_string()
                    } else {
                        format!("the server allows only {}", self.allow_http.join(", "))
                    };
                    refuse(format!("allow_http {origin:?} is not allowed: {hint}"));
                }
            }
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(refused)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised() {
        let o = |t| Origin::parse(t).map(|o| o.to_string());
        assert_eq!(o("HTTPS://API.Example.com/"), Ok("https://api.example.com".into()));
        assert_eq!(o("https://api.example.com:443"), Ok("https://api.example.com".into()));
        assert_eq!(o("http://127.0.0.1:8099"), Ok("http://127.0.0.1:8099".into()));
        assert_eq!(o("http://[::1]:81"), Ok("http://[::1]:81".into()));
        for bad in
            ["api.example.com", "ftp://x", "https://x/path", "https://u@x", "https://x:0", "https://", "https://x?q"]
        {
            assert!(o(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(grant_name_problem("warehouse_2", "secret").is_none());
        for bad in ["", "Warehouse", "2x", "a-b", "a.b"] {
            assert!(grant_name_problem(bad, "secret").is_some(), "{bad}");
        }
        assert_eq!(Grants::secret_env_name("warehouse_2"), "WAREHOUSE_2");
    }
}
