//! The token family (issue 11): the ledger, `auth where`, `auth pull`, `auth sync`,
//! `auth remove`, logout's revocation, the auth.json lock and the refresh discipline, against the
//! in-process test issuer, real containers and a real sshd, through the real binary.

use crate::support::docker::{Container, IMAGE_ROOT, Local, assert_no_secret, docker_raw};
use crate::support::harness::{Llmx, json_lines};
use crate::support::login::{self as login_support, Home, logged_in, refresh};
use crate::support::sshd::{Key, Sshd, SshdOptions};
use llmx_test_issuer::RunningIssuer;
use serde_json::Value;
use std::time::{Duration, Instant};

const ROOT_AUTH: &str = "/root/.llmx/auth.json";

/// A machine signed in to a test issuer through the browser, as a docker-test [`Local`] (its own
/// HOME and LLMX_HOME); the issuer serves from its own runtime while the test blocks.
pub struct Signed {
    pub rt: tokio::runtime::Runtime,
    pub issuer: RunningIssuer,
    pub local: Local,
}

impl Signed {
    pub fn new() -> Signed {
        Signed::with(llmx_test_issuer::IssuerConfig::default())
    }

    /// Signed in to an issuer with `config` (e.g. a longer access-token lifetime).
    pub fn with(config: llmx_test_issuer::IssuerConfig) -> Signed {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let issuer = rt.block_on(login_support::issuer_with(config));
        let home = Home::new();
        rt.block_on(login_support::browser_login(&home, &issuer));
        let local = Local::new();
        std::fs::write(local.auth_path(), home.read_auth().unwrap()).unwrap();
        Signed { rt, issuer, local }
    }

    pub fn llmx(&self, args: &[&str]) -> crate::support::harness::Run {
        let iss = format!("auth_issuer={}", self.issuer.base_url());
        let mut all = vec!["-c", &iss];
        all.extend(args);
        self.local.llmx(&all, &[])
    }

    pub fn auth(&self) -> Vec<u8> {
        std::fs::read(self.local.auth_path()).unwrap()
    }

    pub fn refreshes(&self) -> u32 {
        self.issuer.issuer.stats().refreshes
    }

    pub fn ledger(&self) -> String {
        std::fs::read_to_string(self.local.auth_path().with_file_name("ledger.json")).unwrap_or_default()
    }

    /// The secrets of the current local login, for "no secret in any output".
    pub fn secrets(&self) -> Vec<String> {
        let v: Value = serde_json::from_slice(&self.auth()).unwrap();
        ["id_token", "access_token", "refresh_token"]
            .iter()
            .map(|k| v["tokens"][k].as_str().unwrap().to_string())
            .collect()
    }
}

pub fn assert_no_tokens(text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(!text.contains(s.as_str()), "a token leaked:\n{text}");
    }
}

pub fn holder_states(where_json: &Value) -> Vec<(String, String)> {
    where_json["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["target"].as_str().unwrap().to_string(), h["state"].as_str().unwrap().to_string()))
        .collect()
}

/// "The container refreshed on its own": its copy is refreshed elsewhere (a scratch home, as the
/// agent in the container would) and put back.
fn refresh_inside(s: &Signed, ct: &Container) -> Vec<u8> {
    let scratch = Home::new();
    scratch.write("auth.json", ct.read(ROOT_AUTH).unwrap().as_bytes());
    let r = s.rt.block_on(refresh(&scratch, &s.issuer.base_url(), false));
    assert_eq!(r.code(), 0, "{r:?}");
    let bytes = scratch.read_auth().unwrap();
    ct.put("/root/.llmx", "auth.json", &bytes, 0);
    bytes
}

#[test]
fn a_container_that_refreshed_on_its_own_is_fresher_then_pulled_then_one_sync_leaves_one_lineage() {
    let s = Signed::new();
    let a = Container::run("fam-a", IMAGE_ROOT, &[]);
    let b = Container::run("fam-b", IMAGE_ROOT, &[]);
    // Full copies (--full): the lineage shared by three places, the case leases avoid.
    let pushed = s.llmx(&["auth", "push", "--full", &a.target(), &b.target()]);
    assert_eq!(pushed.code(), 0, "{}", pushed.all());
    let mut secrets = s.secrets();

    // The ledger: one entry per target, the container id, the path, the hash; no secret.
    let ledger: Value = serde_json::from_str(&s.ledger()).unwrap();
    let entries = ledger["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{ledger}");
    assert_eq!(entries[0]["target"], a.target().as_str());
    assert_eq!(entries[0]["path"], ROOT_AUTH);
    assert_eq!(entries[0]["identity"]["kind"], "docker");
    assert_eq!(entries[0]["account_id"], "acc-test-0001");
    assert_eq!(login_support::mode(&s.local.auth_path().with_file_name("ledger.json")), 0o600);
    assert_no_tokens(&s.ledger(), &secrets);

    let w = s.llmx(&["auth", "where", "--json"]);
    assert_eq!(w.code(), 0, "{}", w.all());
    let v: Value = serde_json::from_str(w.stdout.trim()).unwrap();
    assert_eq!(holder_states(&v), [(a.target(), "same".into()), (b.target(), "same".into())]);

    // The container refreshes on its own: the local copy's refresh token is now dead.
    let theirs = refresh_inside(&s, &a);
    assert_eq!(s.refreshes(), 1);
    let started = Instant::now();
    let w = s.llmx(&["auth", "where", "--json"]);
    let where_time = started.elapsed();
    assert_eq!(w.code(), 0, "fresher is still this lineage: {}", w.all());
    let v: Value = serde_json::from_str(w.stdout.trim()).unwrap();
    assert_eq!(holder_states(&v), [(a.target(), "fresher".into()), (b.target(), "same".into())]);
    let human = s.llmx(&["auth", "where"]);
    assert!(human.stdout.contains("fresher") && human.stdout.contains("llmx auth sync"), "{}", human.all());
    eprintln!("auth where over 2 containers: {where_time:?}");

    // Pull adopts it on the issuer's word (its refresh token refreshed here, the answer naming
    // this account) and gives the container the renewed login back; the other container now
    // holds an older copy.
    let p = s.llmx(&["auth", "pull", &a.target(), "--json"]);
    assert_eq!(p.code(), 0, "{}", p.all());
    assert_eq!(
        (p.json()["adopted"].clone(), p.json()["verified_by_issuer"].clone()),
        (Value::Bool(true), Value::Bool(true))
    );
    assert_eq!(p.json()["account_id"], "acc-test-0001");
    assert_eq!(s.refreshes(), 2, "one refresh to adopt it");
    assert_ne!(s.auth(), theirs, "the issuer's answer, not the holder's bytes");
    assert_eq!(a.read(ROOT_AUTH).unwrap().as_bytes(), s.auth().as_slice(), "written back to the holder");
    let theirs = s.auth();
    let again = s.llmx(&["auth", "pull", &b.target()]);
    assert_eq!(again.code(), 1, "an older copy is refused: {}", again.all());
    assert!(again.stderr.contains("not fresher") && again.stderr.contains("--force"), "{}", again.stderr);
    let v: Value = serde_json::from_str(s.llmx(&["auth", "where", "--json"]).stdout.trim()).unwrap();
    assert_eq!(holder_states(&v), [(a.target(), "same".into()), (b.target(), "older".into())]);
    // `where` ends with what will happen to the older full copy and what to run.
    let human = s.llmx(&["auth", "where"]);
    assert!(
        human.stdout.contains("signed out at its next refresh") && human.stdout.contains("llmx auth sync"),
        "{}",
        human.stdout
    );
    secrets.extend(s.secrets());

    // A dry run writes nothing and calls nobody.
    let dry = s.llmx(&["auth", "sync", "--refresh", "--dry-run", "--json"]);
    assert_eq!(dry.code(), 0, "{}", dry.all());
    assert_eq!((s.refreshes(), s.auth()), (2, theirs.clone()));

    // One sync: refreshed once here, then written everywhere, byte for byte.
    let sync = s.llmx(&["auth", "sync", "--refresh", "--json"]);
    assert_eq!(sync.code(), 0, "{}", sync.all());
    assert_eq!(s.refreshes(), 3, "exactly one refresh during sync");
    let lines = json_lines(&sync.stdout);
    let summary = lines.last().unwrap();
    assert_eq!((summary["refreshed"].clone(), summary["ok"].clone()), (Value::Bool(true), Value::Bool(true)));
    let local = s.auth();
    assert_ne!(local, theirs);
    assert_eq!(a.read(ROOT_AUTH).unwrap().as_bytes(), local.as_slice());
    assert_eq!(b.read(ROOT_AUTH).unwrap().as_bytes(), local.as_slice());
    let v: Value = serde_json::from_str(s.llmx(&["auth", "where", "--json"]).stdout.trim()).unwrap();
    assert_eq!(holder_states(&v), [(a.target(), "same".into()), (b.target(), "same".into())]);
    // The synced copy is the one live login: it refreshes.
    let r = s.llmx(&["auth", "refresh"]);
    assert_eq!(r.code(), 0, "{}", r.all());
    secrets.extend(s.secrets());
    for out in [&pushed, &w, &human, &p, &again, &dry, &sync] {
        assert_no_tokens(&out.all(), &secrets);
    }
    assert_no_tokens(&s.ledger(), &secrets);
}

#[test]
fn sync_adopts_the_fresher_remote_copy_and_leaves_other_accounts_alone() {
    let s = Signed::new();
    let a = Container::run("fam-sa", IMAGE_ROOT, &[]);
    let other = Container::run("fam-so", IMAGE_ROOT, &[]);
    assert_eq!(s.llmx(&["auth", "push", "--full", &a.target(), &other.target()]).code(), 0);
    let theirs = refresh_inside(&s, &a);
    let c = crate::support::docker::creds("acc-other", "famso");
    let foreign = crate::support::docker::chatgpt_auth(&c, "acc-other", "2025-01-01T00:00:00Z");
    other.put("/root/.llmx", "auth.json", foreign.as_bytes(), 0);
    // The issuer's access tokens live an hour: 30 minutes is "far from expiry".
    let sync = s.llmx(&["auth", "sync", "--refresh-within", "30m"]);
    assert_eq!(sync.code(), 0, "{}", sync.all());
    // The holder's copy is adopted on the issuer's word: its refresh token, refreshed once here.
    assert_eq!(s.refreshes(), 2, "one refresh to adopt the holder's copy, none more");
    assert_ne!(s.auth(), theirs, "not the holder's bytes: the issuer's answer");
    assert_eq!(a.read(ROOT_AUTH).unwrap().as_bytes(), s.auth().as_slice(), "the --full holder has the new login");
    assert!(sync.stdout.contains(&format!("newest copy from {}", a.target())), "{}", sync.stdout);
    assert!(sync.stdout.contains("skipped: it holds a login of another account"), "{}", sync.stdout);
    assert_eq!(other.read(ROOT_AUTH).unwrap(), foreign, "left alone");
    assert_no_secret(&sync.all(), &c);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_concurrent_refreshes_make_one_issuer_call_and_both_succeed() {
    let (issuer, home) = logged_in().await;
    issuer.issuer.set_delay(Duration::from_millis(800));
    let url = issuer.base_url();
    let (a, b) = tokio::join!(refresh(&home, &url, true), refresh(&home, &url, true));
    assert_eq!((a.code(), b.code()), (0, 0), "{a:?}\n{b:?}");
    assert_eq!(issuer.issuer.stats().refreshes, 1, "the second one re-read under the lock");
    let by_other = [a.json(), b.json()].iter().filter(|j| j["by_another_process"] == true).count();
    assert_eq!(by_other, 1, "{a:?}\n{b:?}");
    // The login still works.
    issuer.issuer.set_delay(Duration::ZERO);
    assert_eq!(refresh(&home, &url, false).await.code(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_on_a_read_only_home_spends_nothing_and_the_login_still_works() {
    let (issuer, home) = logged_in().await;
    let url = issuer.base_url();
    assert_eq!(refresh(&home, &url, false).await.code(), 0, "creates the lock file");
    let before = home.read_auth().unwrap();
    let calls = issuer.issuer.stats().refreshes;
    let iss = format!("auth_issuer={url}");
    let script = r#"mount --bind "$H" "$H" && mount -o remount,ro,bind "$H" && exec "$0" "$@""#;
    let r = Llmx::via("unshare", ["-m", "sh", "-c", script])
        .args(["-c", &iss, "auth", "refresh"])
        .env("H", home.path())
        .env("LLMX_HOME", home.path())
        .run()
        .await;
    assert_eq!(r.code(), 1, "{r:?}");
    assert!(r.stderr.contains("the issuer was not called and the login still works"), "{}", r.stderr);
    assert!(r.stderr.contains("hint: make"), "{}", r.stderr);
    assert_eq!(issuer.issuer.stats().refreshes, calls, "nothing spent");
    assert_eq!(home.read_auth().unwrap(), before);
    let r = refresh(&home, &url, false).await;
    assert_eq!(r.code(), 0, "the login still works: {r:?}");
    let names: Vec<String> = std::fs::read_dir(home.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}

#[test]
fn logout_with_live_copies_refuses_and_everywhere_removes_them_and_revokes() {
    let s = Signed::new();
    let a = Container::run("fam-la", IMAGE_ROOT, &[]);
    assert_eq!(s.llmx(&["auth", "push", &a.target()]).code(), 0);
    let rt: String =
        serde_json::from_slice::<Value>(&s.auth()).unwrap()["tokens"]["refresh_token"].as_str().unwrap().to_string();
    let r = s.llmx(&["logout"]);
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.stderr.contains("not logging out") && r.stderr.contains(&a.target()), "{}", r.stderr);
    assert!(r.stderr.contains("--everywhere") && r.stderr.contains("--local"), "{}", r.stderr);
    assert!(s.local.auth_path().exists() && a.read(ROOT_AUTH).is_some());
    assert_eq!(s.issuer.issuer.stats().revocations, 0);

    let r = s.llmx(&["logout", "--everywhere", "--json"]);
    assert_eq!(r.code(), 0, "{}", r.all());
    let j = r.json();
    assert_eq!((j["removed"].clone(), j["revoked"].clone()), (Value::Bool(true), Value::Bool(true)), "{j}");
    assert_eq!(j["remote"][0]["outcome"], "removed");
    assert!(a.read(ROOT_AUTH).is_none(), "the container's copy is gone");
    assert!(!s.local.auth_path().exists());
    assert_eq!(s.issuer.issuer.stats().revocations, 1);
    assert!(s.issuer.issuer.is_revoked(&rt));
    let ledger: Value = serde_json::from_str(&s.ledger()).unwrap();
    assert_eq!(ledger["entries"].as_array().unwrap().len(), 0);
    assert!(!r.all().contains(&rt));
}

/// `logout --everywhere` with a copy it cannot reach (a stopped container): it still revokes,
/// exits 1, and says that copy keeps a working access token until it expires (on main it said
/// "every copy of this login is signed out").
#[test]
fn logout_everywhere_says_a_copy_it_could_not_remove_keeps_its_access_token_until_it_expires() {
    let s = Signed::new();
    let up = Container::run("fam-eu", IMAGE_ROOT, &[]);
    let down = Container::run("fam-ed", IMAGE_ROOT, &[]);
    assert_eq!(s.llmx(&["auth", "push", &up.target(), &down.target()]).code(), 0);
    assert!(docker_raw(&["stop", "-t", "0", &down.name], None).status.success());
    let r = s.llmx(&["logout", "--everywhere", "--yes"]);
    assert_eq!(r.code(), 1, "{}", r.all());
    assert_eq!(s.issuer.issuer.stats().revocations, 1);
    assert!(!r.stdout.contains("every copy of this login is signed out"), "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!("1 copy could not be removed ({})", down.target()))
            && r.stdout.contains("keeps working until it expires"),
        "{}",
        r.stdout
    );
    assert!(up.read(ROOT_AUTH).is_none() && !s.local.auth_path().exists());
}

/// The ledger's recorded identity is checked before anything is read or written: a container
/// recreated under the same name is "replaced" in `where`, `sync` writes nothing into the new
/// one, and `remove` forgets the old one without touching the new (on main, sync wrote the
/// login into whatever container now had the name).
#[test]
fn a_container_recreated_under_the_same_name_is_replaced_not_written_by_sync() {
    let s = Signed::new();
    let ct = Container::run("fam-rc", IMAGE_ROOT, &[]);
    assert_eq!(s.llmx(&["auth", "push", &ct.target()]).code(), 0);
    ct.recreate(IMAGE_ROOT);

    let w = s.llmx(&["auth", "where", "--json"]);
    assert_eq!(w.code(), 1, "{}", w.all());
    assert_eq!(holder_states(&w.json()), [(ct.target(), "replaced".into())]);
    let w = s.llmx(&["auth", "where"]);
    assert!(w.stdout.contains("was replaced: the container the ledger records"), "{}", w.stdout);
    assert!(w.stdout.contains(&format!("`llmx auth push {}`", ct.target())), "{}", w.stdout);

    let r = s.llmx(&["auth", "sync"]);
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.all().contains("was replaced"), "{}", r.all());
    assert!(ct.read(ROOT_AUTH).is_none(), "sync wrote into the new container");

    let r = s.llmx(&["auth", "remove", &ct.target()]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stdout.contains("the old one forgotten"), "{}", r.stdout);
    assert_eq!(serde_json::from_str::<Value>(&s.ledger()).unwrap()["entries"].as_array().unwrap().len(), 0);

    // A push gives the new container a copy and records it.
    assert_eq!(s.llmx(&["auth", "push", &ct.target()]).code(), 0);
    assert!(ct.read(ROOT_AUTH).is_some());
    let w = s.llmx(&["auth", "where", "--json"]);
    assert_eq!(holder_states(&w.json()), [(ct.target(), "same".into())]);
}

#[test]
fn logout_local_keeps_the_copies_and_revokes_nothing() {
    let s = Signed::new();
    let a = Container::run("fam-ll", IMAGE_ROOT, &[]);
    assert_eq!(s.llmx(&["auth", "push", &a.target()]).code(), 0);
    let r = s.llmx(&["logout", "--local"]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(!s.local.auth_path().exists() && a.read(ROOT_AUTH).is_some());
    assert_eq!(s.issuer.issuer.stats().revocations, 0);
}

#[test]
fn remove_deletes_only_this_logins_copies_unless_forced() {
    let s = Signed::new();
    let mine = Container::run("fam-rm", IMAGE_ROOT, &[]);
    let theirs = Container::run("fam-rt", IMAGE_ROOT, &[]);
    assert_eq!(s.llmx(&["auth", "push", &mine.target()]).code(), 0);
    let c = crate::support::docker::creds("acc-other", "famrt");
    theirs.exec(&["mkdir", "-p", "/root/.llmx"]);
    theirs.put(
        "/root/.llmx",
        "auth.json",
        crate::support::docker::chatgpt_auth(&c, "acc-other", "2025-01-01T00:00:00Z").as_bytes(),
        0,
    );
    let r = s.llmx(&["auth", "remove", &mine.target(), &theirs.target()]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stdout.contains(&format!("{}  removed", mine.target())), "{}", r.stdout);
    assert!(r.stdout.contains("skipped: it holds a login of another account"), "{}", r.stdout);
    assert!(mine.read(ROOT_AUTH).is_none() && theirs.read(ROOT_AUTH).is_some());
    assert!(!s.ledger().contains(&mine.target()), "forgotten in the ledger");
    let f = s.llmx(&["auth", "remove", &theirs.target(), "--force"]);
    assert_eq!(f.code(), 0, "{}", f.all());
    assert!(theirs.read(ROOT_AUTH).is_none());
    // A stopped container cannot have a file deleted: a clear failure.
    let stopped = Container::created("fam-rs", IMAGE_ROOT, &[]);
    assert_eq!(s.llmx(&["auth", "push", &stopped.target()]).code(), 0);
    let r = s.llmx(&["auth", "remove", &stopped.target()]);
    assert_eq!(r.code(), 1, "{}", r.all());
    assert!(r.stdout.contains("the container is stopped"), "{}", r.stdout);
    assert!(docker_raw(&["rm", "-f", &stopped.name], None).status.success());
}

/// A corrupt ledger stops what needs it (where, sync, logout --everywhere) with an error naming
/// the file, and is kept; a plain logout goes on and says it could not check the copies (on main
/// it refused: a broken ledger blocked logging out).
#[test]
fn a_corrupt_ledger_is_an_error_naming_the_file_and_is_kept_but_never_blocks_a_plain_logout() {
    let s = Signed::new();
    let path = s.local.auth_path().with_file_name("ledger.json");
    std::fs::write(&path, "{\"entries\": 5}").unwrap();
    for args in [&["auth", "where"][..], &["auth", "sync"][..], &["logout", "--everywhere", "--yes"][..]] {
        let r = s.llmx(args);
        assert_ne!(r.code(), 0, "{args:?}: {}", r.all());
        assert!(r.stderr.contains("ledger.json: not a valid ledger"), "{args:?}: {}", r.stderr);
        assert!(s.local.auth_path().exists(), "{args:?} deleted the login");
    }
    let r = s.llmx(&["logout"]);
    assert_eq!(r.code(), 0, "{}", r.all());
    assert!(r.stdout.contains("Logged out"), "{}", r.stdout);
    assert!(r.stdout.contains("could not be read") && r.stdout.contains("neither checked nor removed"), "{}", r.stdout);
    assert!(!s.local.auth_path().exists());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"entries\": 5}");
}

#[test]
fn sixteen_aliases_of_one_host_are_written_once_and_all_succeed() {
    let sshd = Sshd::start(SshdOptions::default());
    let user = sshd.user();
    let local = Local::new();
    let ssh_dir = local.home().join(".ssh");
    let key = Key::generate(&ssh_dir, "id_ed25519", "");
    user.authorize(&key.public);
    std::fs::write(ssh_dir.join("known_hosts"), sshd.known_hosts_line()).unwrap();
    let mut config = String::new();
    let aliases: Vec<String> = (0..16).map(|i| format!("alias{i}")).collect();
    for a in &aliases {
        config.push_str(&format!(
            "Host {a}\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n",
            sshd.port,
            user.name,
            key.path.display()
        ));
    }
    std::fs::write(ssh_dir.join("config"), config).unwrap();
    let c = crate::support::docker::creds("acc-1", "aliases");
    local.write_auth(&crate::support::docker::chatgpt_auth(&c, "acc-1", "2025-01-01T00:00:00Z"));
    let targets: Vec<String> = aliases.iter().map(|a| format!("ssh:{a}")).collect();
    let mut args = vec!["auth", "push", "--json", "-j", "16"];
    args.extend(targets.iter().map(String::as_str));
    let r = local.llmx(&args, &[]);
    assert_eq!(r.code(), 0, "{}", r.all());
    let lines = json_lines(&r.stdout);
    let done: Vec<&Value> = lines.iter().filter(|l| l["event"] == "target").collect();
    assert_eq!(done.len(), 16);
    assert!(done.iter().all(|l| l["outcome"] == "created"), "{}", r.stdout);
    assert_eq!(done.iter().filter(|l| l.get("same_as").is_some()).count(), 15, "{}", r.stdout);
    let home = user.home.join(".llmx");
    let names: Vec<String> =
        std::fs::read_dir(&home).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["auth.json"], "no temp file left");
    // Two pushes at once from two processes to the same host do not break each other.
    local.write_auth(&crate::support::docker::chatgpt_auth(&c, "acc-1", "2025-02-01T00:00:00Z"));
    let (a, b) = std::thread::scope(|sc| {
        let one = sc.spawn(|| local.llmx(&["auth", "push", "ssh:alias0"], &[]));
        let two = sc.spawn(|| local.llmx(&["auth", "push", "ssh:alias1"], &[]));
        (one.join().unwrap(), two.join().unwrap())
    });
    assert_eq!((a.code(), b.code()), (0, 0), "{}\n{}", a.all(), b.all());
    assert_no_secret(&format!("{}{}{}", r.all(), a.all(), b.all()), &c);
}

#[test]
fn where_and_sync_include_kubernetes_pods_and_secrets() {
    use crate::support::k8s::Namespace;
    let ns = Namespace::new("family");
    ns.pod("holder", "app: holder");
    ns.wait("pod/holder", "Ready");
    let s = Signed::new();
    let pod = format!("k8s:{}/pod/holder", ns.name);
    let secret = format!("k8s:{}/secret/llmx-auth", ns.name);
    let pushed = s.llmx(&["auth", "push", &pod, &secret]);
    assert_eq!(pushed.code(), 0, "{}", pushed.all());
    let ledger: Value = serde_json::from_str(&s.ledger()).unwrap();
    let kinds: Vec<&Value> = ledger["entries"].as_array().unwrap().iter().map(|e| &e["identity"]["kind"]).collect();
    assert_eq!(kinds, ["k8s", "k8s"], "{ledger}");
    assert_eq!(ledger["entries"][0]["identity"]["object"], "pod/holder/main");

    let w = s.llmx(&["auth", "where", "--json"]);
    assert_eq!(w.code(), 0, "{}", w.all());
    let v: Value = serde_json::from_str(w.stdout.trim()).unwrap();
    assert_eq!(holder_states(&v), [(pod.clone(), "same".into()), (secret.clone(), "same".into())]);

    // The single refresher: a refresh now, written to both holders.
    let sync = s.llmx(&["auth", "sync", "--refresh-within", "2h"]);
    assert_eq!(sync.code(), 0, "{}", sync.all());
    assert_eq!(s.refreshes(), 1, "{}", sync.all());
    let w = s.llmx(&["auth", "where", "--json"]);
    let v: Value = serde_json::from_str(w.stdout.trim()).unwrap();
    assert_eq!(holder_states(&v), [(pod, "same".into()), (secret, "same".into())], "{}", sync.all());
    assert_no_tokens(&format!("{}{}", sync.all(), w.all()), &s.secrets());
}

#[test]
fn where_with_targets_surveys_only_those_also_from_a_file_and_unpushed_ones() {
    let s = Signed::new();
    let a = Container::run("where-a", IMAGE_ROOT, &[]);
    let b = Container::run("where-b", IMAGE_ROOT, &[]);
    let never = Container::run("where-never", IMAGE_ROOT, &[]);
    let pushed = s.llmx(&["auth", "push", &a.target(), &b.target()]);
    assert_eq!(pushed.code(), 0, "{}", pushed.all());

    let w = s.llmx(&["auth", "where", "--json", &b.target()]);
    assert_eq!(w.code(), 0, "{}", w.all());
    assert_eq!(holder_states(&w.json()), [(b.target(), "same".into())]);

    let list = s.local.dir.path().join("targets.txt");
    std::fs::write(&list, format!("# the fleet\n{}\n\n{}\n", a.target(), never.target())).unwrap();
    let w = s.llmx(&["auth", "where", "--json", &format!("@{}", list.display())]);
    assert_eq!(w.code(), 1, "a holder without the login is not in the lineage: {}", w.all());
    assert_eq!(holder_states(&w.json()), [(a.target(), "same".into()), (never.target(), "missing".into())]);

    let bad = s.llmx(&["auth", "where", "nonsense:x"]);
    assert_eq!(bad.code(), 2, "{}", bad.all());
}

/// Issue 21 item 1 (High): a holder's copy is adopted only on the issuer's word. Root in a
/// container rewrites its auth.json three ways; `auth sync` (the cron job) never puts this
/// machine on the holder's API key, account claim or future date.
#[test]
fn a_hostile_holder_cannot_put_this_machine_on_its_key_its_claims_or_a_future_date() {
    let s = Signed::new();
    let a = Container::run("fam-hostile", IMAGE_ROOT, &[]);
    assert_eq!(s.llmx(&["auth", "push", "--full", &a.target()]).code(), 0);
    let mine: Value = serde_json::from_slice(&s.auth()).unwrap();

    // 1. The victim's real, fresher tokens (it refreshed) plus the attacker's key and auth_mode.
    let fresher = refresh_inside(&s, &a);
    let mut planted: Value = serde_json::from_slice(&fresher).unwrap();
    planted["OPENAI_API_KEY"] = "sk-attacker-000000000000000000000000".into();
    planted["auth_mode"] = "apikey".into();
    a.put("/root/.llmx", "auth.json", serde_json::to_vec_pretty(&planted).unwrap().as_slice(), 0);
    let sync = s.llmx(&["auth", "sync", "--renew-within", "1m"]);
    assert_eq!(sync.code(), 0, "{}", sync.all());
    let now: Value = serde_json::from_slice(&s.auth()).unwrap();
    assert_eq!(now["OPENAI_API_KEY"], mine["OPENAI_API_KEY"], "the holder's API key is never taken");
    assert_eq!(now["auth_mode"], "chatgpt");
    assert_eq!(now["tokens"]["account_id"], "acc-test-0001");
    let status = s.llmx(&["login", "status", "--json"]);
    assert_eq!(status.json()["method"], "chatgpt", "{}", status.all());

    // 2. A forged login claiming this account (unsigned claims, account_id) with a refresh token
    //    the issuer never issued, a moment fresher: the issuer refuses it; nothing here changes.
    let before = s.auth();
    let mut forged: Value = serde_json::from_slice(&before).unwrap();
    forged["tokens"]["refresh_token"] = "rt_attacker_forged".into();
    forged["last_refresh"] = llmx_now().into();
    a.put("/root/.llmx", "auth.json", serde_json::to_vec_pretty(&forged).unwrap().as_slice(), 0);
    let sync = s.llmx(&["auth", "sync", "--renew-within", "1m"]);
    assert_eq!(sync.code(), 1, "the refused holder is listed as a failure: {}", sync.all());
    assert!(sync.stdout.contains("not adopted") && sync.stdout.contains("refused"), "{}", sync.stdout);
    assert_eq!(s.auth(), before, "this machine's login is untouched");

    // 3. A copy dated 2099 is not "fresher": it is overwritten with this machine's login.
    let mut future: Value = serde_json::from_slice(&before).unwrap();
    future["tokens"]["refresh_token"] = "rt_attacker_2099".into();
    future["last_refresh"] = "2099-01-01T00:00:00Z".into();
    a.put("/root/.llmx", "auth.json", serde_json::to_vec_pretty(&future).unwrap().as_slice(), 0);
    let w = s.llmx(&["auth", "where", "--json"]);
    let v: Value = serde_json::from_str(w.stdout.trim()).unwrap();
    assert_eq!(holder_states(&v), [(a.target(), "older".into())]);
    let sync = s.llmx(&["auth", "sync", "--renew-within", "1m"]);
    assert_eq!(sync.code(), 0, "{}", sync.all());
    assert_eq!(s.auth(), before);
    assert_eq!(a.read(ROOT_AUTH).unwrap().as_bytes(), before.as_slice(), "the holder is back on this lineage");
}

/// A minute from now as RFC 3339 UTC: fresher than anything written here, within the clock skew
/// llmx allows.
fn llmx_now() -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::minutes(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}
