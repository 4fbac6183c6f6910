//! The dashboard's configuration and its checks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::WebError;

/// How requests prove who they are.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auth {
    /// A shared token: `Authorization: Bearer <token>`, `?token=<token>`
    /// once (it is then kept in an HttpOnly, SameSite=Strict cookie), or
    /// that cookie.
    Token(String),
    /// HTTP basic auth with one user.
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token(_) => f.write_str("Token(***)"),
            Self::Basic { user, .. } => write!(f, "Basic({user}:***)"),
        }
    }
}

impl Auth {
    /// Parses `--basic-auth user:password`.
    pub fn basic(user_password: &str) -> Result<Self, WebError> {
        match user_password.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => Ok(Self::Basic {
                user: user.to_owned(),
                password: password.to_owned(),
            }),
            _ => Err(WebError::Config(
                "--basic-auth takes user:password, both non-empty".into(),
            )),
        }
    }
}

/// Shortest auth token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// What the dashboard serves and how.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebConfig {
    /// Address to listen on. Defaults to 127.0.0.1:8080.
    pub listen: SocketAddr,
    /// Hide and refuse every action. Defaults to false.
    pub read_only: bool,
    /// Required on a non-loopback address. Defaults to none.
    pub auth: Option<Auth>,
    /// Key prefix of the queues.
    pub prefix: String,
    /// The Redis URL as shown in pages: with its password hidden.
    pub redis_shown: String,
    /// A consumer with no heartbeat for this long is dead (the consumers
    /// page, and prune). Defaults to 30 s, as `millrace consumers`.
    pub dead_after: Duration,
}

impl WebConfig {
    /// Defaults for `prefix` and the Redis at `redis_url` (its password is
    /// hidden here and never reaches a page).
    pub fn new(prefix: &str, redis_url: &str) -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            read_only: false,
            auth: None,
            prefix: prefix.to_owned(),
            redis_shown: millrace_core::Redacted(redis_url).to_string(),
            dead_after: Duration::from_secs(30),
        }
    }

    /// Refuses a non-loopback address without auth, and a weak token.
    pub fn validate(&self) -> Result<(), WebError> {
        if let Some(Auth::Token(t)) = &self.auth {
            if t.chars().count() < MIN_TOKEN_LEN {
                return Err(WebError::Config(format!(
                    "--auth-token must be at least {MIN_TOKEN_LEN} characters"
                )));
            }
            if !t
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b";,\"\\".contains(&b))
            {
                return Err(WebError::Config(
                    "--auth-token may hold only printable ASCII without spaces, quotes, backslashes, commas or semicolons".into(),
                ));
            }
        }
        if self.auth.is_none() && !self.listen.ip().is_loopback() {
            return Err(WebError::Config(format!(
                "refusing to serve the dashboard on non-loopback address {} without --auth-token or --basic-auth",
                self.listen
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses_need_auth_and_tokens_need_length() {
        let mut c = WebConfig::new("millrace", "redis://:secret@host:6379");
        assert!(!c.redis_shown.contains("secret"));
        assert!(c.validate().is_ok());
        c.listen = "0.0.0.0:8080".parse().unwrap_or(c.listen);
        assert!(c.validate().is_err());
        c.auth = Some(Auth::Token("short".into()));
        assert!(c.validate().is_err());
        c.auth = Some(Auth::Token("a-long-enough-token".into()));
        assert!(c.validate().is_ok());
        assert!(Auth::basic("nouser").is_err());
        assert_eq!(
            format!("{:?}", Auth::basic("u:p").ok()),
            "Some(Basic(u:***))"
        );
    }
}
