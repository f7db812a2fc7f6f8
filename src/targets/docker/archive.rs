//! Files in a container through the engine's archive API (`GET/HEAD/PUT /containers/{id}/archive`).
//! This works with no shell in the container and on stopped containers.
//!
//! Reads unpack the one-entry tar the engine returns. Writes build a tar whose headers carry the
//! owner and the mode, because the engine applies them as given (`copyUIDGID` would need `getent`
//! in the container, which busybox and distroless images lack).

use bollard::Docker;
use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::{Stream, StreamExt};
use std::io::Read;

use crate::targets::{DirFacts, DirKind};
pub use crate::targets::{FileEntry, MAX_READ};

/// Room in a download for the tar around the file (headers, PAX records, padding, end blocks).
const TAR_SLACK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{0}")]
    Engine(String),
    #[error("{path}: {reason}")]
    Content { path: String, reason: String },
    /// The path is a symbolic link and the caller asked not to follow one.
    #[error("{path} is a symbolic link")]
    Symlink { path: String },
}

/// Whether [`read_file`] follows a symbolic link at the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Follow a few levels (`/etc/passwd` is sometimes a link).
    Follow,
    /// Answer [`ArchiveError::Symlink`] (auth.json: writing through a link could overwrite
    /// another file, and reading through one shows what is not there).
    Refuse,
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

fn engine(e: bollard::errors::Error) -> ArchiveError {
    ArchiveError::Engine(super::connect::error_text(&e))
}

/// Whether something exists at `path` (a `HEAD` stat).
pub async fn exists(docker: &Docker, id: &str, path: &str) -> Result<bool, ArchiveError> {
    let opts = ContainerArchiveInfoOptionsBuilder::default().path(path).build();
    match docker.get_container_archive_info(id, Some(opts)).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(engine(e)),
    }
}

/// What the path is, without following a link at it (the engine archives a link as a link),
/// with its owner and mode (the `HEAD` stat has no owner); `None` when it does not exist. Only
/// the first tar header is read: the download of a large directory is dropped right after it.
pub async fn lstat(docker: &Docker, id: &str, path: &str) -> Result<Option<DirFacts>, ArchiveError> {
    let opts = DownloadFromContainerOptionsBuilder::default().path(path).build();
    let mut stream = std::pin::pin!(docker.download_from_container(id, Some(opts)));
    let mut acc: Vec<u8> = Vec::new();
    loop {
        let done = match stream.next().await {
            Some(Ok(c)) => {
                acc.extend_from_slice(&c);
                false
            }
            Some(Err(e)) if is_not_found(&e) => return Ok(None),
            Some(Err(e)) => return Err(engine(e)),
            None => true,
        };
        // A header (and any long-name or PAX record before it) fits in the first 64 KiB.
        if let Some(facts) = first_header(&acc) {
            return Ok(Some(facts));
        }
        if done || acc.len() > TAR_SLACK {
            return Err(ArchiveError::Content { path: path.to_string(), reason: "unreadable archive".into() });
        }
    }
}

/// The kind, owner and mode of the first entry of a (possibly partial) tar.
fn first_header(tar_bytes: &[u8]) -> Option<DirFacts> {
    let mut archive = tar::Archive::new(tar_bytes);
    let entry = archive.entries().ok()?.next()?.ok()?;
    let h = entry.header();
    let kind = match h.entry_type() {
        k if k.is_dir() => DirKind::Dir,
        k if k.is_symlink() => DirKind::Link,
        _ => DirKind::Other,
    };
    let uid = h.uid().ok().and_then(|u| u32::try_from(u).ok());
    Some(DirFacts { kind, uid, mode: h.mode().ok()? & 0o7777 })
}

/// Read a regular file; `None` when it does not exist. A symbolic link is followed or refused
/// as `links` says. A download larger than [`MAX_READ`] (plus the tar around it) is abandoned
/// as soon as it passes that size.
pub async fn read_file(docker: &Docker, id: &str, path: &str, links: Links) -> Result<Option<FileEntry>, ArchiveError> {
    let mut path = path.to_string();
    for _ in 0..4 {
        let opts = DownloadFromContainerOptionsBuilder::default().path(&path).build();
        let stream = docker.download_from_container(id, Some(opts));
        let Some(tar) = collect_limited(&path, stream, MAX_READ + TAR_SLACK).await? else { return Ok(None) };
        match first_entry(&path, &tar)? {
            Entry::File(f) => return Ok(Some(f)),
            Entry::Link(_) if links == Links::Refuse => return Err(ArchiveError::Symlink { path }),
            Entry::Link(target) => {
                path = if target.starts_with('/') {
                    target
                } else {
                    let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    format!("{dir}/{target}")
                };
            }
        }
    }
    Err(ArchiveError::Content { path, reason: "too many levels of symbolic links".into() })
}

/// The whole download, or an error as soon as it passes `limit` bytes (the rest is not read:
/// dropping the stream closes the connection). `None` when the engine answers 404.
async fn collect_limited<S, B>(path: &str, stream: S, limit: usize) -> Result<Option<Vec<u8>>, ArchiveError>
where
    S: Stream<Item = Result<B, bollard::errors::Error>>,
    B: AsRef<[u8]>,
{
    let mut stream = std::pin::pin!(stream);
    let mut acc = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) if acc.len() + c.as_ref().len() > limit => {
                return Err(ArchiveError::Content {
                    path: path.to_string(),
                    reason: format!("larger than expected (over {} KiB)", MAX_READ / 1024),
                });
            }
            Ok(c) => acc.extend_from_slice(c.as_ref()),
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(engine(e)),
        }
    }
    Ok(Some(acc))
}

enum Entry {
    File(FileEntry),
    Link(String),
}

fn first_entry(path: &str, tar_bytes: &[u8]) -> Result<Entry, ArchiveError> {
    let bad = |reason: String| ArchiveError::Content { path: path.to_string(), reason };
    let mut archive = tar::Archive::new(tar_bytes);
    let mut entries = archive.entries().map_err(|e| bad(format!("unreadable archive: {e}")))?;
    let mut entry = match entries.next() {
        Some(e) => e.map_err(|e| bad(format!("unreadable archive: {e}")))?,
        None => return Err(bad("empty archive".into())),
    };
    let header = entry.header();
    let kind = header.entry_type();
    if kind.is_symlink() {
        let target = entry
            .link_name()
            .ok()
            .flatten()
            .map(|p| p.to_string_lossy().into_owned())
            .ok_or_else(|| bad("symbolic link without a target".into()))?;
        return Ok(Entry::Link(target));
    }
    if !kind.is_file() {
        return Err(bad("not a regular file".into()));
    }
    let uid = header.uid().ok().and_then(|u| u32::try_from(u).ok()).unwrap_or(0);
    let gid = header.gid().ok().and_then(|g| u32::try_from(g).ok()).unwrap_or(0);
    let mode = header.mode().unwrap_or(0) & 0o7777;
    let size = header.size().unwrap_or(0);
    if size > MAX_READ as u64 {
        return Err(bad(format!("{size} bytes is larger than expected")));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    entry.read_to_end(&mut bytes).map_err(|e| bad(format!("unreadable archive: {e}")))?;
    Ok(Entry::File(FileEntry { bytes, uid, gid, mode }))
}

/// What to put in the tar: optionally the directory entry itself, then one file.
pub struct Upload<'a> {
    /// Directory (inside the container) the tar is extracted into; it must exist.
    pub at: &'a str,
    /// Directories above `dir_rel` to include as entries (0700, the owner), relative to `at`,
    /// outermost first: `--install`'s `.llmx` above `.llmx/bin`. Credentials pass none.
    pub parents: &'a [&'a str],
    /// Path of the credential directory relative to `at` (`""` when it is `at` itself).
    pub dir_rel: &'a str,
    /// Whether to include an entry for the directory (creating it, or re-applying 0700 and the
    /// owner when it exists).
    pub dir_entry: bool,
    pub file_name: &'a str,
    /// The file's mode: 0600 for a credential, 0700 for a program.
    pub file_mode: u32,
    pub bytes: &'a [u8],
    pub uid: u32,
    pub gid: u32,
}

impl Upload<'_> {
    fn tar(&self) -> std::io::Result<Vec<u8>> {
        let mtime =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let header = |kind, mode, size| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(self.uid.into());
            h.set_gid(self.gid.into());
            h.set_mtime(mtime);
            h.set_size(size);
            h
        };
        let mut b = tar::Builder::new(Vec::new());
        let prefix = if self.dir_rel.is_empty() { String::new() } else { format!("{}/", self.dir_rel) };
        for p in self.parents {
            b.append_data(&mut header(tar::EntryType::Directory, 0o700, 0), format!("{p}/"), std::io::empty())?;
        }
        if self.dir_entry && !self.dir_rel.is_empty() {
            b.append_data(&mut header(tar::EntryType::Directory, 0o700, 0), &prefix, std::io::empty())?;
        }
        let mut h = header(tar::EntryType::Regular, self.file_mode, self.bytes.len() as u64);
        b.append_data(&mut h, format!("{prefix}{}", self.file_name), self.bytes)?;
        b.into_inner()
    }
}

/// Upload; `Ok(false)` when `at` does not exist (the engine answers 404).
pub async fn upload(docker: &Docker, id: &str, up: &Upload<'_>) -> Result<bool, ArchiveError> {
    let tar = up.tar().map_err(|e| ArchiveError::Content { path: up.at.to_string(), reason: e.to_string() })?;
    let opts = UploadToContainerOptionsBuilder::default().path(up.at).no_overwrite_dir_non_dir("true").build();
    match docker.upload_to_container(id, Some(opts), bollard::body_full(tar.into())).await {
        Ok(()) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(engine(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_tar_carries_owner_and_modes() {
        let up = Upload {
            at: "/home/app",
            parents: &[],
            dir_rel: ".llmx",
            dir_entry: true,
            file_name: "auth.json",
            file_mode: 0o600,
            bytes: b"{}",
            uid: 1000,
            gid: 1001,
        };
        let tar = up.tar().unwrap();
        let mut a = tar::Archive::new(&tar[..]);
        let got: Vec<(String, u32, u64, u64)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (e.path().unwrap().display().to_string(), h.mode().unwrap(), h.uid().unwrap(), h.gid().unwrap())
            })
            .collect();
        assert_eq!(got, vec![(".llmx/".into(), 0o700, 1000, 1001), (".llmx/auth.json".into(), 0o600, 1000, 1001)]);
        match first_entry("x", &Upload { dir_entry: false, dir_rel: "", ..up }.tar().unwrap()).unwrap() {
            Entry::File(f) => assert_eq!(f, FileEntry { bytes: b"{}".to_vec(), uid: 1000, gid: 1001, mode: 0o600 }),
            Entry::Link(_) => panic!("expected a file"),
        }
    }

    #[test]
    fn first_header_reads_kind_owner_and_mode_from_a_partial_tar() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o1777);
        h.set_uid(0);
        h.set_size(0);
        b.append_data(&mut h, "tmp/", std::io::empty()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(1 << 20);
        b.append_data(&mut h, "tmp/big", &vec![0u8; 1 << 20][..]).unwrap();
        let tar = b.into_inner().unwrap();
        // Only the first blocks have arrived.
        let facts = first_header(&tar[..1024]).unwrap();
        assert_eq!(facts, DirFacts { kind: DirKind::Dir, uid: Some(0), mode: 0o1777 });
        assert_eq!(first_header(&tar[..100]), None, "half a header");
    }

    #[tokio::test]
    async fn archive_download_stops_reading_past_the_limit() {
        // An endless download: the old code buffered until the end before checking the size.
        let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = read.clone();
        let endless = futures_util::stream::repeat_with(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, bollard::errors::Error>(vec![0u8; 64 * 1024])
        });
        let e = collect_limited("/x/auth.json", endless, MAX_READ + TAR_SLACK).await.unwrap_err();
        assert!(e.to_string().contains("larger than expected"), "{e}");
        let chunks = read.load(std::sync::atomic::Ordering::SeqCst);
        assert!(chunks <= (MAX_READ + TAR_SLACK) / (64 * 1024) + 1, "read {chunks} chunks");
        // Within the limit, everything is kept.
        let small = futures_util::stream::iter([Ok::<_, bollard::errors::Error>(&b"ab"[..]), Ok(&b"c"[..])]);
        assert_eq!(collect_limited("/x", small, 10).await.unwrap(), Some(b"abc".to_vec()));
    }
}
