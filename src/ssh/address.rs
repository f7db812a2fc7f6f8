//! `[user@]host[:port]` (or `ssh://[user@]host[:port]`): how a user names an SSH destination (`ssh:` targets, `auth tunnel`).
//! Parsed strictly before anything connects; `host` may be an `~/.ssh/config` alias and IPv6
//! addresses go in brackets.

use std::fmt;

/// `[user@]host[:port]`; `host` may be an `~/.ssh/config` alias.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SshAddress {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl SshAddress {
    /// Parse `[user@]host[:port]`, also accepting a leading `ssh:` (the tunnel takes either) and
    /// the URI form `ssh://[user@]host[:port]` (as `ssh` and `-J` take it; no path).
    pub fn parse(s: &str) -> Result<SshAddress, String> {
        let s = s.strip_prefix("ssh:").unwrap_or(s);
        let s = match s.strip_prefix("//") {
            Some(rest) => rest.strip_suffix('/').unwrap_or(rest),
            None => s,
        };
        let (user, hostport) = match s.rsplit_once('@') {
            Some((u, h)) => {
                // A user may hold an `@` (`first@realm@host`, as ssh splits at the last one), but
                // not an empty part around it: `u@@host` is a typo, not the user `u@`.
                if u.is_empty()
                    || u.starts_with('-')
                    || u.starts_with('@')
                    || u.ends_with('@')
                    || u.contains("@@")
                    || u.chars().any(|c| c.is_whitespace() || c.is_control() || c == ':')
                {
                    return Err("invalid user name".to_string());
                }
                (Some(u.to_string()), h)
            }
            None => (None, s),
        };
        let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or("unclosed '[' in IPv6 address")?;
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("'{h}' is not an IPv6 address"));
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("expected ':PORT' after ']'")?),
            };
            (h.to_string(), port)
        } else {
            if hostport.matches(':').count() > 1 {
                return Err("IPv6 addresses go in brackets, e.g. ssh:user@[::1]:22".to_string());
            }
            match hostport.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err("missing host".to_string());
        }
        if host.starts_with('-') || host.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@'))
        {
            return Err(format!("invalid host '{host}'"));
        }
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(format!("invalid port '{p}' (1-65535)")),
            },
        };
        Ok(SshAddress { user, host, port })
    }
}

impl fmt::Display for SshAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_uri_is_the_same_address_not_a_user_named_slash_slash() {
        for s in ["ssh://deploy@web:2222", "//deploy@web:2222/", "deploy@web:2222"] {
            let a = SshAddress::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!((a.user.as_deref(), a.host.as_str(), a.port), (Some("deploy"), "web", Some(2222)), "{s}");
        }
        let a = SshAddress::parse("ssh://[::1]:22").unwrap();
        assert_eq!((a.user, a.host.as_str(), a.port), (None, "::1", Some(22)));
        assert!(SshAddress::parse("ssh://web/path").is_err());
        assert!(SshAddress::parse("ssh://").is_err());
    }

    #[test]
    fn a_doubled_at_sign_is_an_invalid_user_not_a_user_ending_in_at() {
        for s in ["u@@h", "ssh:u@@h", "@@h", "u@@@h", "a@@b@h", "@u@h"] {
            assert_eq!(SshAddress::parse(s), Err("invalid user name".to_string()), "{s}");
        }
        let a = SshAddress::parse("first@realm@h").unwrap();
        assert_eq!((a.user.as_deref(), a.host.as_str()), (Some("first@realm"), "h"));
    }
}
