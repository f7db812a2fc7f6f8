//! The container user (`Config.User`) resolved to uid, gid and home from the container's own
//! `/etc/passwd` and `/etc/group` (read through the archive API, so no shell is needed).
//!
//! The rules follow runc's `GetExecUser`, which is what the engine applies when it starts the
//! container's processes: an empty user is uid 0; a numeric uid need not exist in `/etc/passwd`
//! (then gid 0 and home `/`); a user *name* must exist; a group part, numeric or named, overrides
//! the primary group (a name must exist in `/etc/group`).

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// Who the container's processes run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// The home directory from `/etc/passwd`; `/` when the user has no entry (runc's default).
    pub home: String,
}

/// Parse `/etc/passwd`, skipping lines that are not 7 colon-separated fields with numeric ids.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    records(text, 7)
        .filter_map(|f| {
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

/// Parse `/etc/group` into (name, gid) pairs.
pub fn parse_group(text: &str) -> Vec<(String, u32)> {
    records(text, 3).filter_map(|f| Some((f[0].to_string(), f[2].parse().ok()?))).collect()
}

/// The colon-separated fields of each non-comment line that has at least `min` of them.
fn records(text: &str, min: usize) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(move |f| f.len() >= min)
}

/// Does `Config.User` name a group that must be looked up in `/etc/group`?
pub fn needs_group_file(user: &str) -> bool {
    user.split_once(':').is_some_and(|(_, g)| !g.is_empty() && g.parse::<u32>().is_err())
}

/// Resolve `Config.User` (`""`, `name`, `uid`, `name:group`, `uid:gid`...). `passwd` and `group`
/// are the files' contents, `None` when the container has none. The error is a one-line reason.
pub fn resolve(user: &str, passwd: Option<&str>, group: Option<&str>) -> Result<ResolvedUser, String> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let entries = passwd.map(parse_passwd).unwrap_or_default();
    let (uid, mut gid, home) = if user_part.is_empty() {
        by_uid(&entries, 0)
    } else if let Ok(uid) = user_part.parse::<u32>() {
        by_uid(&entries, uid)
    } else {
        match entries.iter().find(|e| e.name == user_part) {
            Some(e) => (e.uid, e.gid, e.home.clone()),
            None if passwd.is_none() => {
                return Err(format!("user '{user_part}' cannot be resolved: the container has no /etc/passwd"));
            }
            None => return Err(format!("user '{user_part}' is not in the container's /etc/passwd")),
        }
    };
    match group_part {
        None | Some("") => {}
        Some(g) => {
            if let Ok(n) = g.parse::<u32>() {
                gid = n;
            } else {
                let groups = group.map(parse_group).unwrap_or_default();
                gid = groups
                    .iter()
                    .find(|(name, _)| name == g)
                    .map(|(_, id)| *id)
                    .ok_or_else(|| format!("group '{g}' is not in the container's /etc/group"))?;
            }
        }
    }
    let home = if home.is_empty() { "/".to_string() } else { home };
    Ok(ResolvedUser { uid, gid, home })
}

fn by_uid(entries: &[PasswdEntry], uid: u32) -> (u32, u32, String) {
    match entries.iter().find(|e| e.uid == uid) {
        Some(e) => (uid, e.gid, e.home.clone()),
        None => (uid, 0, "/".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nbroken\napp:x:1000:1000::/home/app:/bin/sh\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\nweird:x:7:7:::/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app\napp:x:1000:\n";

    fn r(u: &str) -> Result<ResolvedUser, String> {
        resolve(u, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn user_forms() {
        assert_eq!(r("").unwrap(), ResolvedUser { uid: 0, gid: 0, home: "/root".into() });
        assert_eq!(r("app").unwrap(), ResolvedUser { uid: 1000, gid: 1000, home: "/home/app".into() });
        assert_eq!(r("1000").unwrap(), ResolvedUser { uid: 1000, gid: 1000, home: "/home/app".into() });
        assert_eq!(r("65532:65532").unwrap().home, "/home/nonroot");
        assert_eq!(r("app:staff").unwrap().gid, 50);
        assert_eq!(r("app:7").unwrap().gid, 7);
        assert_eq!(r("4242").unwrap(), ResolvedUser { uid: 4242, gid: 0, home: "/".into() });
        assert_eq!(r("weird").unwrap().home, "/");
    }

    #[test]
    fn missing_names_are_errors() {
        assert!(r("nobody").unwrap_err().contains("'nobody'"));
        assert!(r("app:nogroup").unwrap_err().contains("'nogroup'"));
        assert!(resolve("app", None, None).unwrap_err().contains("no /etc/passwd"));
        assert_eq!(resolve("", None, None).unwrap(), ResolvedUser { uid: 0, gid: 0, home: "/".into() });
    }

    #[test]
    fn group_file_only_for_named_groups() {
        assert!(needs_group_file("app:staff"));
        assert!(!needs_group_file("app:50"));
        assert!(!needs_group_file("app"));
        assert!(!needs_group_file("app:"));
    }
}
