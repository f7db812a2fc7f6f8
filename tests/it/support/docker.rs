//! Test bed for the Docker target: images built from local files (no registry), containers that
//! remove themselves, and the `llmx` under test with its own temp homes (run through
//! [`Llmx`](super::harness::Llmx), with the test run's `DOCKER_HOST`).
//!
//! Images (TESTBED.md): a busybox-static rootfs (root, and a `USER app` uid 1000 variant) and a
//! shell-less image holding only a static C sleeper (uid 65532). Each is built once per tag:
//! an in-process `OnceLock` plus an `flock` across test processes, so racing test threads and
//! binaries build it once. Missing Docker, busybox-static or gcc is a test failure with the
//! reason, never a skip.

use super::harness::{Llmx, Run};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const IMAGE_ROOT: &str = "llmx-test-busybox:1";
pub const IMAGE_APP: &str = "llmx-test-busybox-app:1";
pub const IMAGE_NOSHELL: &str = "llmx-test-noshell:1";
/// The busybox rootfs plus this machine's glibc and the libraries the llmx under test links
/// (from `ldd`), `USER app`: a container llmx itself can run in.
pub const IMAGE_GLIBC: &str = "llmx-test-glibc-app:1";

/// Run `docker` with `args`; panic with its stderr when it fails.
pub fn docker(args: &[&str]) -> String {
    let out = docker_raw(args, None);
    assert!(out.status.success(), "docker {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn docker_raw(args: &[&str], stdin: Option<&[u8]>) -> Output {
    docker_on(&[], args, stdin)
}

/// The variables that point the docker CLI at an engine other than the test run's
/// (`DOCKER_HOST`, `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`); empty: the test run's engine.
pub type EngineEnv = Vec<(&'static str, String)>;

/// `docker ARGS` against the engine `env` names (see [`EngineEnv`]).
pub fn docker_on(env: &[(&'static str, String)], args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new("docker");
    cmd.args(args).envs(env.iter().map(|(k, v)| (k, v))).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run the docker CLI ({e}); install docker.io"));
    if let Some(data) = stdin {
        let mut input = child.stdin.take().unwrap();
        input.write_all(data).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Build the test images (once) and check the engine answers; panics with the reason otherwise.
pub fn images() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = READY.get_or_init(build_images) {
        panic!("docker test bed unavailable: {e}");
    }
}

fn build_images() -> Result<(), String> {
    let info = docker_raw(&["version", "--format", "{{.Server.APIVersion}}"], None);
    if !info.status.success() {
        return Err(format!(
            "no Docker Engine answers ({}); start one (see TESTBED.md / scripts/test)",
            String::from_utf8_lossy(&info.stderr).trim()
        ));
    }
    let lock_path = std::env::temp_dir().join("llmx-test-images.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| e.to_string())?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own; released when `lock` is dropped.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!("flock {}: {}", lock_path.display(), std::io::Error::last_os_error()));
    }
    let exists = |tag: &str| docker_raw(&["image", "inspect", tag], None).status.success();
    if !exists(IMAGE_ROOT) || !exists(IMAGE_APP) {
        let rootfs = busybox_rootfs()?;
        import(&rootfs, IMAGE_ROOT, &["CMD [\"/bin/sleep\",\"infinity\"]"])?;
        import(&rootfs, IMAGE_APP, &["CMD [\"/bin/sleep\",\"infinity\"]", "USER app"])?;
    }
    if !exists(IMAGE_GLIBC) {
        import(&glibc_rootfs()?, IMAGE_GLIBC, &["CMD [\"/bin/sleep\",\"infinity\"]", "USER app"])?;
    }
    if !exists(IMAGE_NOSHELL) {
        import(&noshell_rootfs()?, IMAGE_NOSHELL, &["ENTRYPOINT [\"/sleeper\"]", "USER 65532:65532"])?;
    }
    Ok(())
}

fn import(tar: &[u8], tag: &str, changes: &[&str]) -> Result<(), String> {
    let mut args = vec!["import"];
    for c in changes {
        args.push("-c");
        args.push(c);
    }
    args.extend(["-", tag]);
    let out = docker_raw(&args, Some(tar));
    if !out.status.success() {
        return Err(format!("docker import {tag}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}

/// A tar built in memory, with owners and modes set in the headers (no chown needed).
struct Rootfs(tar::Builder<Vec<u8>>);

impl Rootfs {
    fn new() -> Rootfs {
        Rootfs(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, mode: u32, uid: u64, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h
    }

    fn dir(&mut self, path: &str, mode: u32, uid: u64) {
        let mut h = Self::header(tar::EntryType::Directory, mode, uid, 0);
        self.0.append_data(&mut h, format!("{path}/"), std::io::empty()).unwrap();
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        let mut h = Self::header(tar::EntryType::Regular, mode, 0, data.len() as u64);
        self.0.append_data(&mut h, path, data).unwrap();
    }

    fn symlink(&mut self, path: &str, target: &str) {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0, 0);
        self.0.append_link(&mut h, path, target).unwrap();
    }

    fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// True when the ELF file has no program interpreter (a static binary).
fn is_static_elf(bytes: &[u8]) -> bool {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).all(|i| {
        let o = phoff + i * size;
        bytes.get(o..o + 4).is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap()) != 3)
    })
}

fn busybox_rootfs() -> Result<Vec<u8>, String> {
    Ok(busybox_fs()?.finish())
}

/// The busybox rootfs with the loader and every library `ldd` names for the llmx under test, at
/// the paths `ldd` gives (contents of the files they resolve to), and /usr/local/bin.
fn glibc_rootfs() -> Result<Vec<u8>, String> {
    let out = Command::new("ldd").arg(super::harness::LLMX).output().map_err(|e| format!("ldd: {e}"))?;
    if !out.status.success() {
        return Err(format!("ldd {}: {}", super::harness::LLMX, String::from_utf8_lossy(&out.stderr)));
    }
    let libs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_string())
        })
        .collect();
    let mut fs = busybox_fs()?;
    let mut dirs = std::collections::BTreeSet::new();
    for p in libs.iter().map(String::as_str).chain(["/usr/local/bin/x"]) {
        let mut parent = Path::new(p.trim_start_matches('/')).parent();
        while let Some(d) = parent.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.to_string_lossy().into_owned());
            parent = d.parent();
        }
    }
    for d in dirs.iter().filter(|d| !["bin", "etc", "tmp", "root", "home"].contains(&d.as_str())) {
        fs.dir(d, 0o755, 0);
    }
    for lib in &libs {
        let bytes = std::fs::read(lib).map_err(|e| format!("{lib}: {e}"))?;
        fs.file(lib.trim_start_matches('/'), 0o755, &bytes);
    }
    Ok(fs.finish())
}

fn busybox_fs() -> Result<Rootfs, String> {
    let path = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("busybox not found; apt-get install -y busybox-static")?;
    let bin = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    if !is_static_elf(&bin) {
        return Err(format!("{path} is not statically linked; apt-get install -y busybox-static"));
    }
    let list = Command::new(path).arg("--list").output().map_err(|e| format!("{path} --list: {e}"))?;
    let mut fs = Rootfs::new();
    for (d, mode, uid) in [
        ("bin", 0o755, 0),
        ("etc", 0o755, 0),
        ("tmp", 0o1777, 0),
        ("root", 0o700, 0),
        ("home", 0o755, 0),
        ("home/app", 0o755, 1000),
    ] {
        fs.dir(d, mode, uid);
    }
    fs.file("bin/busybox", 0o755, &bin);
    for applet in
        String::from_utf8_lossy(&list.stdout).lines().map(str::trim).filter(|a| !a.is_empty() && *a != "busybox")
    {
        fs.symlink(&format!("bin/{applet}"), "busybox");
    }
    fs.file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n");
    fs.file("etc/group", 0o644, b"root:x:0:\napp:x:1000:\n");
    Ok(fs)
}

const SLEEPER_C: &str = r#"
#include <signal.h>
#include <unistd.h>
static void stop(int s) { (void)s; _exit(0); }
int main(void) { signal(SIGTERM, stop); signal(SIGINT, stop); for (;;) pause(); }
"#;

fn noshell_rootfs() -> Result<Vec<u8>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let src = dir.path().join("sleeper.c");
    std::fs::write(&src, SLEEPER_C).map_err(|e| e.to_string())?;
    let exe = dir.path().join("sleeper");
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .map_err(|e| format!("gcc: {e}; apt-get install -y gcc libc6-dev"))?;
    if !out.status.success() {
        return Err(format!("gcc -static failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let bin = std::fs::read(&exe).map_err(|e| e.to_string())?;
    let mut fs = Rootfs::new();
    for (d, mode, uid) in [("etc", 0o755, 0), ("tmp", 0o1777, 0), ("home", 0o755, 0), ("home/nonroot", 0o755, 65532)] {
        fs.dir(d, mode, uid);
    }
    fs.file("sleeper", 0o755, &bin);
    fs.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    );
    fs.file("etc/group", 0o644, b"root:x:0:\nnonroot:x:65532:\n");
    Ok(fs.finish())
}

/// A container this test made; removed (with `docker rm -f`) when dropped, pass or fail.
pub struct Container {
    pub name: String,
    /// The engine it runs on (empty: the test run's).
    pub engine: EngineEnv,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A name no other test (or test process) uses.
pub fn unique_name(tag: &str) -> String {
    format!("llmx-t-{}-{}-{tag}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst))
}

impl Container {
    /// `docker run -d` (running) with extra `docker run` options.
    pub fn run(tag: &str, image: &str, opts: &[&str]) -> Container {
        Container::start("run", tag, image, opts)
    }

    /// `docker create` (never started).
    pub fn created(tag: &str, image: &str, opts: &[&str]) -> Container {
        Container::start("create", tag, image, opts)
    }

    /// `docker run -d` on the engine `engine` names, which must hold `image` already.
    pub fn run_on(engine: EngineEnv, tag: &str, image: &str, opts: &[&str]) -> Container {
        Container::make(engine, "run", tag, image, opts)
    }

    fn start(verb: &str, tag: &str, image: &str, opts: &[&str]) -> Container {
        images();
        Container::make(Vec::new(), verb, tag, image, opts)
    }

    fn make(engine: EngineEnv, verb: &str, tag: &str, image: &str, opts: &[&str]) -> Container {
        let name = unique_name(tag);
        let c = Container { name: name.clone(), engine };
        let mut args = vec![verb];
        if verb == "run" {
            args.push("-d");
        }
        args.extend(["--pull", "never", "--network", "none", "--name", &name]);
        args.extend(opts);
        args.push(image);
        c.docker(&args);
        c
    }

    /// Remove the container and run a new one of `image` under the same name (a redeploy).
    pub fn recreate(&self, image: &str) {
        self.docker(&["rm", "-f", &self.name]);
        self.docker(&["run", "-d", "--pull", "never", "--network", "none", "--name", &self.name, image]);
    }

    /// `docker ARGS` against this container's engine; panics with its stderr when it fails.
    fn docker(&self, args: &[&str]) -> String {
        let out = self.docker_raw(args, None);
        assert!(out.status.success(), "docker {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn docker_raw(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        docker_on(&self.engine, args, stdin)
    }

    pub fn target(&self) -> String {
        format!("docker:{}", self.name)
    }

    /// A file (or directory) in the container through `docker cp` (works with no shell and
    /// when stopped): its bytes (files), uid, gid and permission bits; `None` when missing.
    pub fn stat(&self, path: &str) -> Option<(Vec<u8>, u64, u64, u32)> {
        let out = self.docker_raw(&["cp", &format!("{}:{path}", self.name), "-"], None);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("No such") || err.contains("not found") || err.contains("Could not find"),
                "docker cp: {err}"
            );
            return None;
        }
        let mut a = tar::Archive::new(&out.stdout[..]);
        let mut e = a.entries().unwrap().next().unwrap().unwrap();
        let h = e.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        Some((data, h.uid().unwrap(), h.gid().unwrap(), h.mode().unwrap() & 0o7777))
    }

    pub fn read(&self, path: &str) -> Option<String> {
        self.stat(path).map(|(b, ..)| String::from_utf8(b).unwrap())
    }

    /// Put `data` at `path` (the directory must exist), as `uid`, mode 0600.
    pub fn put(&self, dir: &str, name: &str, data: &[u8], uid: u64) {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o600);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
        let tar = b.into_inner().unwrap();
        let out = self.docker_raw(&["cp", "-", &format!("{}:{dir}", self.name)], Some(&tar));
        assert!(out.status.success(), "docker cp: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn exec(&self, cmd: &[&str]) -> String {
        let mut args = vec!["exec", self.name.as_str()];
        args.extend(cmd);
        self.docker(&args)
    }
}

impl Container {
    /// The container's main process id (for joining its network namespace).
    pub fn pid(&self) -> u32 {
        self.docker(&["inspect", "-f", "{{.State.Pid}}", &self.name]).parse().unwrap()
    }

    /// Command lines of the container's processes (`docker top`, no exec needed).
    pub fn processes(&self) -> Vec<String> {
        self.docker(&["top", &self.name, "-o", "pid,args"]).lines().skip(1).map(str::to_string).collect()
    }

    /// The engine's event actions for this container since `since` (unix seconds) until now,
    /// e.g. `exec_create: /bin/sh -c …`, `extract-to-dir`: what a push asked of the engine.
    pub fn events_since(&self, since: f64) -> Vec<String> {
        let until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() + 0.5;
        let out = self.docker(&[
            "events",
            "--since",
            &format!("{since:.3}"),
            "--until",
            &format!("{until:.3}"),
            "--filter",
            &format!("container={}", self.name),
            "--format",
            "{{.Action}}",
        ]);
        out.lines().map(str::to_string).collect()
    }

    /// The execs the engine knows for the container (`null` when none was ever made).
    pub fn exec_ids(&self) -> String {
        self.docker(&["inspect", "-f", "{{json .ExecIDs}}", &self.name])
    }

    /// Copy `bin` to `path` in the container (the directory must exist), 0755.
    pub fn give_binary(&self, bin: &Path, dir: &str, name: &str) {
        let data = std::fs::read(bin).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, &data[..]).unwrap();
        let out = self.docker_raw(&["cp", "-", &format!("{}:{dir}", self.name)], Some(&b.into_inner().unwrap()));
        assert!(out.status.success(), "docker cp: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.docker_raw(&["rm", "-f", &self.name], None);
    }
}

/// A temp machine for the `llmx` under test: its own LLMX_HOME and HOME.
pub struct Local {
    pub dir: tempfile::TempDir,
}

impl Local {
    pub fn new() -> Local {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("llmx")).unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        Local { dir }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn auth_path(&self) -> PathBuf {
        self.dir.path().join("llmx").join("auth.json")
    }

    pub fn write_auth(&self, text: &str) {
        std::fs::write(self.auth_path(), text).unwrap();
    }

    /// Run `llmx args` with a clean environment: PATH, HOME (temp), LLMX_HOME (temp) and the
    /// DOCKER_HOST of the test run (scripts/test may start a private engine), then `env`.
    pub fn llmx(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Llmx::new(args).env("HOME", self.home()).env("LLMX_HOME", self.dir.path().join("llmx"));
        // The engine and the Kubernetes test bed scripts/test started.
        for var in ["DOCKER_HOST", "KUBECONFIG"] {
            if let Ok(v) = std::env::var(var) {
                cmd = cmd.env(var, v);
            }
        }
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        cmd.run_blocking()
    }
}

/// Credentials for fixtures, with values that tests grep for in every output.
pub struct Creds {
    pub access_token: String,
    pub refresh_token: String,
    pub id_token: String,
}

pub const API_KEY: &str = "sk-test-SECRETKEYVALUE-0123456789abcdef";

pub fn creds(account: &str, tag: &str) -> Creds {
    let id_token = llmx_test_issuer::jwt(&serde_json::json!({
        "email": "dev@example.com",
        llmx::auth::claims::AUTH_CLAIMS: {"chatgpt_account_id": account, "chatgpt_plan_type": "pro"},
    }));
    Creds {
        access_token: llmx_test_issuer::jwt(
            &serde_json::json!({"exp": 4_102_444_800i64, "nonce": format!("AT-SECRET-{tag}")}),
        ),
        refresh_token: format!("RT-SECRET-{tag}-{account}"),
        id_token,
    }
}

/// An auth.json of a ChatGPT login, pretty-printed as llmx writes it.
pub fn chatgpt_auth(c: &Creds, account: &str, last_refresh: &str) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "OPENAI_API_KEY": null,
        "tokens": {"id_token": c.id_token, "access_token": c.access_token, "refresh_token": c.refresh_token, "account_id": account},
        "last_refresh": last_refresh,
    }))
    .unwrap()
}

/// The lease llmx pushes for the login `owner` (an auth.json from [`chatgpt_auth`] of `c`): the
/// same bytes with an empty refresh token.
pub fn lease_text(owner: &str, c: &Creds) -> String {
    let lease = owner.replace(&format!("\"refresh_token\": \"{}\"", c.refresh_token), "\"refresh_token\": \"\"");
    assert_ne!(lease, owner, "the owner's file holds the refresh token");
    lease
}

pub fn api_key_auth() -> String {
    serde_json::to_string_pretty(&serde_json::json!({"OPENAI_API_KEY": API_KEY})).unwrap()
}

/// Assert that no secret value appears in `text`.
pub fn assert_no_secret(text: &str, c: &Creds) {
    for (what, v) in [
        ("access token", &c.access_token),
        ("refresh token", &c.refresh_token),
        ("id token", &c.id_token),
        ("API key", &API_KEY.to_string()),
    ] {
        assert!(!text.contains(v.as_str()), "{what} leaked into output:\n{text}");
    }
    for marker in ["AT-SECRET", "RT-SECRET", "SECRETKEYVALUE"] {
        assert!(!text.contains(marker), "secret marker {marker} leaked into output:\n{text}");
    }
}

pub fn path_of(p: &Path) -> &str {
    p.to_str().unwrap()
}
