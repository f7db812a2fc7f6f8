//! The llmx integration tests, in one test binary (so the dependency tree is linked once): each
//! module is one area and runs the real `llmx` binary against real servers — the test issuer,
//! sshd (as root), network namespaces, the Docker Engine. Missing root, Docker or sshd is a test
//! failure with the reason, never a skip; `scripts/test` installs and starts what they need.
#![allow(
    unsafe_code,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "tests signal processes and report what they saw"
)]

mod accounts;
mod container_tunnel;
mod credentials;
mod docker;
mod engines;
mod family;
mod hostile;
mod inventory;
mod k8s;
mod k8s_cronjob;
mod leases;
mod login;
mod reach;
mod schedule;
mod signin;
mod ssh;
mod stores;
mod support;
mod terminal;
mod tunnel;
