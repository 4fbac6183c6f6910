//! The README's least-privilege ACL users, read from its marked block, so
//! the tests create exactly the users the README tells operators to
//! create.

use std::path::Path;

use crate::{HarnessError, RedisServer};

const BEGIN: &str = "<!-- acl-users: begin";
const END: &str = "<!-- acl-users: end";

/// One `ACL SETUSER` line of the README.
#[derive(Debug, Clone)]
pub struct AclUser {
    /// The user's name (`millrace-producer`).
    pub name: String,
    /// Its password (the `>password` rule).
    pub password: String,
    /// The whole line's words, `ACL` first.
    pub words: Vec<String>,
}

/// The users of the README's `acl-users` block, in order.
pub fn readme_acl_users() -> Result<Vec<AclUser>, HarnessError> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&path)?;
    let bad =
        |why: &str| HarnessError::Io(std::io::Error::other(format!("{}: {why}", path.display())));
    let start = text.find(BEGIN).ok_or_else(|| bad("no acl-users block"))?;
    let len = text[start..]
        .find(END)
        .ok_or_else(|| bad("the acl-users block does not end"))?;
    let mut users = Vec::new();
    for line in text[start..start + len].lines() {
        let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        if words.first().map(String::as_str) != Some("ACL") {
            continue;
        }
        let name = words
            .get(2)
            .cloned()
            .ok_or_else(|| bad("a line names no user"))?;
        let password = words
            .iter()
            .find_map(|w| w.strip_prefix('>'))
            .ok_or_else(|| bad("a line sets no password"))?
            .to_owned();
        users.push(AclUser {
            name,
            password,
            words,
        });
    }
    Ok(users)
}

impl RedisServer {
    /// Runs each user's `ACL SETUSER` line as the default user.
    pub fn create_users(&self, users: &[AclUser]) -> redis::RedisResult<()> {
        let mut conn = self.connection()?;
        for u in users {
            let mut cmd = redis::cmd(&u.words[0]);
            cmd.arg(&u.words[1..]);
            cmd.query::<()>(&mut conn)?;
        }
        Ok(())
    }

    /// The server's URL as `user`.
    pub fn url_as(&self, user: &AclUser) -> String {
        let url = self.url();
        let (scheme, rest) = url.split_once("://").unwrap_or(("redis", &url));
        format!("{scheme}://{}:{}@{rest}", user.name, user.password)
    }

    /// The `ACL LOG` entries of `user` (denied commands and keys), each as
    /// `reason object` (`command xadd`), newest first.
    pub fn acl_denials(&self, user: &str) -> redis::RedisResult<Vec<String>> {
        let mut conn = self.connection()?;
        let log: Vec<std::collections::HashMap<String, redis::Value>> =
            redis::cmd("ACL").arg("LOG").query(&mut conn)?;
        let text = |v: Option<&redis::Value>| match v {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(redis::Value::SimpleString(s)) => s.clone(),
            _ => String::new(),
        };
        Ok(log
            .iter()
            .filter(|e| text(e.get("username")) == user)
            .map(|e| format!("{} {}", text(e.get("reason")), text(e.get("object"))))
            .collect())
    }
}
