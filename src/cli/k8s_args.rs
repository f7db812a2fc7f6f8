//! The Kubernetes flags shared by every command that reaches `k8s:` targets (`auth push`,
//! `auth status`, `auth where/pull/sync/remove`, `logout`). `--connect-timeout` is shared with
//! SSH ([`SshArgs`]); nothing here loads a kubeconfig: that happens only when a `k8s:` target is
//! resolved.

use crate::cli::docker_args::DockerArgs;
use crate::cli::ssh_args::SshArgs;
use clap::Args;
use llmx::targets::k8s::K8sOptions;
use llmx::targets::resolve::ResolveOptions;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct K8sArgs {
    /// Kubernetes: the kubeconfig to use (default: KUBECONFIG, else ~/.kube/config, else the
    /// in-cluster service account)
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubernetes: the kubeconfig context to use (default: its current context)
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

impl K8sArgs {
    /// How every kind resolves, from the SSH, Docker and Kubernetes flags.
    pub fn resolve_options(&self, ssh: &SshArgs, docker: &DockerArgs) -> ResolveOptions {
        self.resolve_options_for(ssh, docker, false)
    }

    /// [`resolve_options`](K8sArgs::resolve_options) for a run that may be a dry run (SSH then
    /// records no first-seen host key).
    pub fn resolve_options_for(&self, ssh: &SshArgs, docker: &DockerArgs, dry_run: bool) -> ResolveOptions {
        let k8s = K8sOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            connect_timeout: Duration::from_secs(ssh.connect_timeout.unwrap_or(15)),
        };
        ResolveOptions { ssh: ssh.options_for(dry_run), k8s, docker: docker.options(), deadline: None }
    }
}
