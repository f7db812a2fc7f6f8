//! Test support shared by every area: [`harness`] is the one way to run the `llmx` binary and read
//! its output (and the one free-port helper); the others are test beds: [`login`] (temp homes,
//! the in-process test issuer, a scripted browser), [`sshd`] (a real OpenSSH server and users),
//! [`netns`] (a second host in a network namespace), [`docker`] (images and containers) and
//! [`k8s`] (namespaces and pods on the Kubernetes test bed).

pub mod docker;
pub mod harness;
pub mod k8s;
pub mod keyring;
pub mod login;
pub mod netns;
pub mod sshd;
