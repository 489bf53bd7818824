//! Channel names and grants.

/// Longest channel name.
pub const MAX_CHANNEL_LEN: usize = 128;
/// Longest user id (so that `user:<id>` is a channel name).
pub const MAX_USER_LEN: usize = 100;
/// Prefix of a user's own channel.
pub const USER_PREFIX: &str = "user:";

/// A channel or user name that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {name:?} is not allowed: {problem}")]
pub struct ChannelError {
    /// "channel" or "user".
    pub what: &'static str,
    /// The name as given (cut to 140 characters).
    pub name: String,
    /// What is wrong.
    pub problem: &'static str,
}

fn legal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.' | '@')
}

fn check(what: &'static str, name: &str, max: usize) -> Result<(), ChannelError> {
    let error = |problem| ChannelError {
        what,
        name: name.chars().take(140).collect(),
        problem,
    };
    if name.is_empty() {
        return Err(error("it is empty"));
    }
    if name.len() > max {
        return Err(error(if max == MAX_CHANNEL_LEN {
            "it is longer than 128 characters"
        } else {
            "it is longer than 100 characters"
        }));
    }
    if !name.chars().all(legal_char) {
        return Err(error("use only A-Z a-z 0-9 _ - : . @"));
    }
    Ok(())
}

/// Checks a channel name: 1–128 characters of `A-Z a-z 0-9 _ - : . @`.
pub fn validate_channel(name: &str) -> Result<(), ChannelError> {
    check("channel", name, MAX_CHANNEL_LEN)
}

/// Checks a user id (a token's `sub`, a subscriber's `externalId` in realtime terms).
pub fn validate_user(user: &str) -> Result<(), ChannelError> {
    check("user", user, MAX_USER_LEN)
}

/// The user's own channel, `user:<id>`.
pub fn user_channel(user: &str) -> String {
    format!("{USER_PREFIX}{user}")
}

/// What a token lets its holder join: its own user channel, the names it lists, and the
/// prefixes it lists (`room:*`), which never reach another user's channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    user: String,
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl Grants {
    /// Grants of user `user` from a token's `channels` claim. A grant that is neither a
    /// channel name nor a prefix ending in `*` is an error.
    pub fn new(user: &str, channels: &[String]) -> Result<Self, ChannelError> {
        validate_user(user)?;
        let mut grants = Grants {
            user: user.to_owned(),
            ..Grants::default()
        };
        for grant in channels {
            if let Some(prefix) = grant.strip_suffix('*') {
                if !prefix.is_empty() {
                    validate_channel(prefix)?;
                }
                grants.prefixes.push(prefix.to_owned());
            } else {
                validate_channel(grant)?;
                grants.exact.push(grant.clone());
            }
        }
        Ok(grants)
    }

    /// The user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Whether `channel` may be joined.
    pub fn allows(&self, channel: &str) -> bool {
        if let Some(user) = channel.strip_prefix(USER_PREFIX)
            && user == self.user
        {
            return true;
        }
        if self.exact.iter().any(|c| c == channel) {
            return true;
        }
        !channel.starts_with(USER_PREFIX)
            && self
                .prefixes
                .iter()
                .any(|p| channel.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_channel("room:1").is_ok());
        assert!(validate_channel("a@b.c_d-e").is_ok());
        assert!(validate_channel("").is_err());
        assert!(validate_channel("with space").is_err());
        assert!(validate_channel(&"x".repeat(129)).is_err());
        assert!(validate_channel(&"x".repeat(128)).is_ok());
        assert!(validate_user(&"x".repeat(101)).is_err());
    }

    #[test]
    fn grants() {
        let grants =
            Grants::new("u1", &["room:*".into(), "news".into(), "user:u9".into()]).expect("valid");
        assert!(grants.allows("user:u1"));
        assert!(grants.allows("room:42"));
        assert!(grants.allows("news"));
        assert!(!grants.allows("news:eu"));
        assert!(
            !grants.allows("user:u2"),
            "a prefix never grants another user"
        );
        assert!(grants.allows("user:u9"), "an exact grant may");
        let all = Grants::new("u1", &["*".into()]).expect("valid");
        assert!(all.allows("anything"));
        assert!(!all.allows("user:u2"));
        assert!(Grants::new("u 1", &[]).is_err());
        assert!(Grants::new("u1", &["bad name".into()]).is_err());
    }
}
