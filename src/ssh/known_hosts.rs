//! Host-key verification against OpenSSH known_hosts files (`sshd(8)`, "SSH_KNOWN_HOSTS FILE
//! FORMAT"): plain patterns with `*`/`?`/`!`, `[host]:port` for a port other than 22, hashed
//! entries (`|1|salt|HMAC-SHA1(salt, name)`), and the `@revoked` marker (`@cert-authority` lines
//! are skipped: we do not do host certificates). A missing file is an empty file.
//!
//! A file is parsed once per process and shared by every connection ([`KnownHosts::load_shared`]),
//! parsed again only when it changed (its size, modification time or inode): a fleet's
//! known_hosts has a line per host, and a wide push would otherwise hold a copy per connection.
//!
//! Our own parser rather than libssh2's: libssh2 stops at the first line it cannot parse (a marker,
//! a key type it does not know), and we need to tell "unknown" from "changed" precisely.

use crate::ssh::SshError;
use crate::ssh::config::pattern_list_matches;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

/// The result of checking one host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line for this host holds this very key.
    Known,
    /// No line holds a key of this type for this host. `other_types` lists the key types that are
    /// recorded for it, if any.
    Unknown { other_types: Vec<String> },
    /// A line for this host holds a different key of the same type.
    Changed { file: PathBuf, line: usize },
    /// The key is listed as `@revoked`.
    Revoked { file: PathBuf, line: usize },
}

/// One parsed line.
#[derive(Debug, Clone)]
struct Entry {
    file: PathBuf,
    line: usize,
    revoked: bool,
    hosts: Hosts,
    key_type: String,
    key: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Hosts {
    Patterns(Vec<String>),
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

/// The entries of every known-hosts file consulted, in order (one list per file).
#[derive(Debug, Default)]
pub struct KnownHosts {
    files: Vec<Lines>,
}

/// What tells a changed file from the one parsed: size, modification time, inode.
type Stamp = (u64, Option<std::time::SystemTime>, u64);

/// A file's parsed lines, shared.
type Lines = Arc<Vec<Entry>>;

/// Files parsed so far in this process, with the stamp they had.
static PARSED: LazyLock<Mutex<HashMap<PathBuf, (Stamp, Lines)>>> = LazyLock::new(Mutex::default);

impl KnownHosts {
    /// Load the files that exist among `files`; unreadable lines are skipped as OpenSSH does.
    pub fn load(files: &[PathBuf]) -> Result<KnownHosts, SshError> {
        let mut kh = KnownHosts::default();
        for f in files {
            if let Some(text) = read(f)? {
                kh.files.push(Arc::new(parse_text(f, &text)));
            }
        }
        Ok(kh)
    }

    /// As [`load`](KnownHosts::load), sharing each file's parsed lines with the other
    /// connections of this process while the file stays as it was.
    pub fn load_shared(files: &[PathBuf]) -> Result<KnownHosts, SshError> {
        use std::os::unix::fs::MetadataExt;
        let mut kh = KnownHosts::default();
        for f in files {
            let stamp = match std::fs::metadata(f) {
                Ok(m) => (m.len(), m.modified().ok(), m.ino()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(SshError::Config { path: f.clone(), reason: e.to_string() }),
            };
            // Held while a missing file is parsed: the many connections of a wide push that
            // start at once wait for one parse instead of each making its own.
            let mut parsed = PARSED.lock().unwrap_or_else(PoisonError::into_inner);
            let entries = match parsed.get(f) {
                Some((s, entries)) if *s == stamp => Arc::clone(entries),
                _ => {
                    let Some(text) = read(f)? else { continue };
                    let entries = Arc::new(parse_text(f, &text));
                    parsed.insert(f.clone(), (stamp, Arc::clone(&entries)));
                    entries
                }
            };
            kh.files.push(entries);
        }
        Ok(kh)
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.files.iter().flat_map(|f| f.iter())
    }

    /// Check `key` (the SSH wire-format blob) offered by `host` on `port`.
    pub fn check(&self, host: &str, port: u16, key: &[u8]) -> Verdict {
        let name = host_port_name(host, port);
        let key_type = blob_key_type(key).unwrap_or_default();
        let matching: Vec<&Entry> = self.entries().filter(|e| e.hosts.matches(&name)).collect();
        if let Some(e) = matching.iter().find(|e| e.revoked && e.key == key) {
            return Verdict::Revoked { file: e.file.clone(), line: e.line };
        }
        let plain: Vec<&&Entry> = matching.iter().filter(|e| !e.revoked).collect();
        if plain.iter().any(|e| e.key == key) {
            return Verdict::Known;
        }
        if let Some(e) = plain.iter().find(|e| e.key_type == key_type) {
            return Verdict::Changed { file: e.file.clone(), line: e.line };
        }
        let mut other_types: Vec<String> = plain.iter().map(|e| e.key_type.clone()).collect();
        other_types.sort();
        other_types.dedup();
        Verdict::Unknown { other_types }
    }

    /// Key types recorded for `host:port`, most preferred first, for the host-key algorithm
    /// preference (so that a host known by its RSA key is not asked for its Ed25519 key).
    pub fn known_types(&self, host: &str, port: u16) -> Vec<String> {
        let name = host_port_name(host, port);
        let mut out: Vec<String> = Vec::new();
        for e in self.entries().filter(|e| !e.revoked && e.hosts.matches(&name)) {
            if !out.contains(&e.key_type) {
                out.push(e.key_type.clone());
            }
        }
        out
    }
}

impl Hosts {
    fn matches(&self, name: &str) -> bool {
        match self {
            Hosts::Hashed { salt, hash } => {
                let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(salt) else { return false };
                mac.update(name.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
            Hosts::Patterns(pats) => pattern_list_matches(pats, name),
        }
    }
}

fn parse_line(file: &Path, line: usize, text: &str) -> Option<Entry> {
    let mut fields = text.split_whitespace();
    let mut first = fields.next()?;
    if first.starts_with('#') {
        return None;
    }
    let mut revoked = false;
    if let Some(marker) = first.strip_prefix('@') {
        match marker {
            "revoked" => revoked = true,
            _ => return None, // @cert-authority: host certificates are not supported
        }
        first = fields.next()?;
    }
    let hosts = if let Some(rest) = first.strip_prefix("|1|") {
        let (salt, hash) = rest.split_once('|')?;
        Hosts::Hashed { salt: STANDARD.decode(salt).ok()?, hash: STANDARD.decode(hash).ok()? }
    } else {
        Hosts::Patterns(first.split(',').map(|p| p.to_ascii_lowercase()).collect())
    };
    let key_type = fields.next()?.to_string();
    let key = STANDARD.decode(fields.next()?).ok()?;
    if blob_key_type(&key).as_deref() != Some(key_type.as_str()) {
        return None;
    }
    Some(Entry { file: file.to_path_buf(), line, revoked, hosts, key_type, key })
}

/// The name a host is recorded under: `host`, or `[host]:port` when the port is not 22.
pub fn host_port_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 { host } else { format!("[{host}]:{port}") }
}

/// A key type as ssh names it in messages: `ssh-ed25519` → `ED25519`, `ecdsa-sha2-nistp256` →
/// `ECDSA`, `ssh-rsa` → `RSA`, `sk-ssh-ed25519@openssh.com` → `ED25519-SK`.
pub fn key_type_label(key_type: &str) -> String {
    match key_type {
        "ssh-ed25519" => "ED25519".into(),
        "ssh-rsa" => "RSA".into(),
        "ssh-dss" => "DSA".into(),
        "sk-ssh-ed25519@openssh.com" => "ED25519-SK".into(),
        "sk-ecdsa-sha2-nistp256@openssh.com" => "ECDSA-SK".into(),
        t if t.starts_with("ecdsa-sha2-") => "ECDSA".into(),
        t => t.to_ascii_uppercase(),
    }
}

/// The key type named inside an SSH public-key blob (its first string).
pub fn blob_key_type(blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4 + len)?;
    std::str::from_utf8(name).ok().map(str::to_string)
}

/// `SHA256:<base64>` as `ssh-keygen -l` prints it.
pub fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

/// Append `host:port`'s key to `file` (creating it 0600, its directory 0700). One `write` of
/// one line on an `O_APPEND` file, so concurrent pushes that accept several hosts do not interleave.
/// The name is hashed (`|1|salt|HMAC-SHA1`, as `ssh-keygen -H` writes it) when `hash` is set
/// (`HashKnownHosts yes`) or the file already holds hashed entries: a hashed file must not start
/// listing the hosts it exists to hide.
///
/// Several targets of one run on the same host (other users, aliases) record its key once: the
/// file is re-read under a lock shared by the run's connections, and a key already there is not
/// appended again (`Ok(false)`).
pub fn record(file: &Path, host: &str, port: u16, blob: &[u8], hash: bool) -> Result<bool, SshError> {
    static RECORDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = RECORDING.lock().unwrap_or_else(|p| p.into_inner());
    if let Ok(known) = KnownHosts::load(&[file.to_path_buf()])
        && known.check(host, port, blob) == Verdict::Known
    {
        return Ok(false);
    }
    let err = |e: std::io::Error| SshError::RecordHost { file: file.to_path_buf(), reason: e.to_string() };
    let key_type = blob_key_type(blob).unwrap_or_else(|| "unknown".to_string());
    if let Some(dir) = file.parent()
        && !dir.exists()
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(err)?;
    }
    let existing = std::fs::read(file).unwrap_or_default();
    let needs_newline = !existing.is_empty() && !existing.ends_with(b"\n");
    let hashed_file = existing.split(|b| *b == b'\n').any(|l| l.starts_with(b"|1|"));
    let name = host_port_name(host, port);
    let name = if hash || hashed_file { hash_name(&name).map_err(err)? } else { name };
    let line = format!("{}{name} {key_type} {}\n", if needs_newline { "\n" } else { "" }, STANDARD.encode(blob));
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(file).map_err(err)?;
    f.write_all(line.as_bytes()).map_err(err)?;
    Ok(true)
}

/// The text of `file`; `None` when it does not exist (an empty file).
fn read(file: &Path) -> Result<Option<String>, SshError> {
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SshError::Config { path: file.to_path_buf(), reason: e.to_string() }),
    }
}

/// The lines of `text` (from `file`) that parse; the others are skipped as OpenSSH does.
fn parse_text(file: &Path, text: &str) -> Vec<Entry> {
    text.lines().enumerate().filter_map(|(n, line)| parse_line(file, n + 1, line)).collect()
}

/// `|1|base64(salt)|base64(HMAC-SHA1(salt, name))` with a fresh 20-byte salt.
fn hash_name(name: &str) -> Result<String, std::io::Error> {
    let mut salt = [0u8; 20];
    getrandom::getrandom(&mut salt).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&salt).map_err(|e| std::io::Error::other(e.to_string()))?;
    mac.update(name.as_bytes());
    Ok(format!("|1|{}|{}", STANDARD.encode(salt), STANDARD.encode(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(kind: &str, body: &[u8]) -> Vec<u8> {
        let mut b = (kind.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind.as_bytes());
        b.extend_from_slice(body);
        b
    }

    fn kh(text: &str) -> KnownHosts {
        KnownHosts { files: vec![Arc::new(parse_text(Path::new("kh"), text))] }
    }

    #[test]
    fn a_shared_file_is_parsed_again_once_it_changed() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("known_hosts");
        let key = blob("ssh-ed25519", b"k1");
        let files = [f.clone(), t.path().join("missing")];
        assert!(matches!(KnownHosts::load_shared(&files).unwrap().check("h", 22, &key), Verdict::Unknown { .. }));
        assert!(record(&f, "h", 22, &key, false).unwrap());
        let first = KnownHosts::load_shared(&files).unwrap();
        assert_eq!(first.check("h", 22, &key), Verdict::Known);
        let again = KnownHosts::load_shared(&files).unwrap();
        assert!(Arc::ptr_eq(&first.files[0], &again.files[0]), "an unchanged file is parsed once");
        std::fs::write(&f, "").unwrap();
        assert!(matches!(KnownHosts::load_shared(&files).unwrap().check("h", 22, &key), Verdict::Unknown { .. }));
    }

    fn hashed(name: &str, salt: &[u8]) -> String {
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(salt).unwrap();
        mac.update(name.as_bytes());
        format!("|1|{}|{}", STANDARD.encode(salt), STANDARD.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn plain_and_port_entries() {
        let a = blob("ssh-ed25519", b"AAAA");
        let b = blob("ssh-ed25519", b"BBBB");
        let text = format!(
            "# c\nhost1,10.0.0.1 ssh-ed25519 {}\n[host1]:2222 ssh-ed25519 {}\n",
            STANDARD.encode(&a),
            STANDARD.encode(&b)
        );
        let k = kh(&text);
        assert_eq!(k.check("host1", 22, &a), Verdict::Known);
        assert_eq!(k.check("HOST1", 22, &a), Verdict::Known);
        assert_eq!(k.check("10.0.0.1", 22, &a), Verdict::Known);
        assert_eq!(k.check("host1", 2222, &b), Verdict::Known);
        assert_eq!(k.check("host1", 2222, &a), Verdict::Changed { file: "kh".into(), line: 3 });
        assert_eq!(k.check("host1", 22, &b), Verdict::Changed { file: "kh".into(), line: 2 });
        assert_eq!(k.check("host2", 22, &a), Verdict::Unknown { other_types: vec![] });
    }

    #[test]
    fn hashed_entries() {
        let a = blob("ssh-ed25519", b"AAAA");
        let text =
            format!("{} ssh-ed25519 {}\n", hashed("[127.0.0.1]:4022", b"0123456789abcdefghij"), STANDARD.encode(&a));
        let k = kh(&text);
        assert_eq!(k.check("127.0.0.1", 4022, &a), Verdict::Known);
        assert_eq!(k.check("127.0.0.1", 22, &a), Verdict::Unknown { other_types: vec![] });
        assert_eq!(
            k.check("127.0.0.1", 4022, &blob("ssh-ed25519", b"X")),
            Verdict::Changed { file: "kh".into(), line: 1 }
        );
    }

    #[test]
    fn other_types_wildcards_negation_revoked_and_junk() {
        let rsa = blob("ssh-rsa", b"R");
        let ed = blob("ssh-ed25519", b"E");
        let text = format!(
            "garbage line\n@cert-authority *.x ssh-rsa {r}\n*.example,!bad.example ssh-rsa {r}\n@revoked * ssh-ed25519 {e}\n",
            r = STANDARD.encode(&rsa),
            e = STANDARD.encode(&ed)
        );
        let k = kh(&text);
        assert_eq!(k.check("a.example", 22, &rsa), Verdict::Known);
        assert_eq!(k.check("bad.example", 22, &rsa), Verdict::Unknown { other_types: vec![] });
        assert_eq!(k.check("a.example", 22, &ed), Verdict::Revoked { file: "kh".into(), line: 4 });
        assert_eq!(
            k.check("a.example", 22, &blob("ecdsa-sha2-nistp256", b"C")),
            Verdict::Unknown { other_types: vec!["ssh-rsa".into()] }
        );
        assert_eq!(k.known_types("a.example", 22), vec!["ssh-rsa"]);
    }

    #[test]
    fn record_then_known() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("ssh/known_hosts");
        let a = blob("ssh-ed25519", b"AAAA");
        assert!(record(&f, "127.0.0.1", 2200, &a, false).unwrap());
        assert!(record(&f, "h", 22, &a, false).unwrap());
        assert!(!record(&f, "h", 22, &a, false).unwrap(), "a key already there is not appended again");
        let k = KnownHosts::load(std::slice::from_ref(&f)).unwrap();
        assert_eq!(k.check("127.0.0.1", 2200, &a), Verdict::Known);
        assert_eq!(k.check("h", 22, &a), Verdict::Known);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(std::fs::read_to_string(&f).unwrap().starts_with("[127.0.0.1]:2200 ssh-ed25519 "));
    }

    #[test]
    fn accept_new_hashes_names_in_a_hashed_file_or_when_asked() {
        let t = tempfile::tempdir().unwrap();
        let a = blob("ssh-ed25519", b"AAAA");
        let kh_line = |f: &Path| std::fs::read_to_string(f).unwrap().lines().last().unwrap().to_string();
        // Asked (HashKnownHosts yes), into a new file; then a plain file stays plain.
        let asked = t.path().join("asked");
        record(&asked, "10.0.0.9", 2222, &a, true).unwrap();
        let plain = t.path().join("plain");
        record(&plain, "h", 22, &a, false).unwrap();
        assert!(kh_line(&plain).starts_with("h ssh-ed25519 "));
        // A file that already holds hashed entries (with no newline at its end, and comments).
        let mixed = t.path().join("mixed");
        std::fs::write(&mixed, format!("# c\n{} ssh-ed25519 {}", hashed("other", b"s"), STANDARD.encode(&a))).unwrap();
        for (f, host, port) in [(&asked, "10.0.0.9", 2222), (&mixed, "::1", 22), (&mixed, "Host.Example", 2200)] {
            record(f, host, port, &a, false).unwrap();
            let line = kh_line(f);
            assert!(line.starts_with("|1|") && !line.to_lowercase().contains(&host.to_lowercase()), "{line}");
            let k = KnownHosts::load(std::slice::from_ref(f)).unwrap();
            assert_eq!(k.check(host, port, &a), Verdict::Known, "{line}");
            assert_eq!(k.check("someone-else", port, &a), Verdict::Unknown { other_types: vec![] });
        }
        // Two hashes of one name differ (fresh salt), and ssh-keygen -F finds the entry. (A key
        // already on file is not appended again: `asked` holds one line.)
        assert_ne!(hash_name("[10.0.0.9]:2222").unwrap(), hash_name("[10.0.0.9]:2222").unwrap());
        assert_eq!(std::fs::read_to_string(&asked).unwrap().lines().count(), 1);
        let found = std::process::Command::new("ssh-keygen")
            .args(["-F", "[10.0.0.9]:2222", "-f"])
            .arg(&asked)
            .output()
            .expect("ssh-keygen is needed (openssh-client)");
        assert!(String::from_utf8_lossy(&found.stdout).contains("ssh-ed25519"), "{found:?}");
    }

    #[test]
    fn fingerprint_format() {
        // ssh-keygen -lf of this key blob prints the same value.
        assert!(fingerprint(b"x").starts_with("SHA256:"));
        assert!(!fingerprint(b"x").ends_with('='));
    }
}
