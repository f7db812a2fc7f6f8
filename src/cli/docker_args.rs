//! The Docker flag shared by every command that reaches `docker:` targets (`auth push`, `auth
//! status`, `auth where/pull/sync/remove`, `logout --everywhere`, `auth tunnel docker:`). Where the
//! engine is comes from DOCKER_HOST and docker contexts, as for the docker CLI; this only decides
//! whether an engine on another machine may be reached without a verified, encrypted connection.

use crate::cli::output;
use clap::Args;
use llmx::targets::docker::connect::DockerOptions;
use std::sync::Arc;

#[derive(Debug, Clone, Args)]
pub struct DockerArgs {
    /// Docker: allow a DOCKER_HOST or context that reaches an engine on another machine over plain
    /// tcp:// (or TLS without checking its certificate); the credential can then be read on the way.
    /// Warns on every use. Prefer TLS (DOCKER_TLS_VERIFY) or DOCKER_HOST=ssh://USER@HOST
    #[arg(long)]
    pub insecure_engine: bool,
}

impl DockerArgs {
    pub fn options(&self) -> DockerOptions {
        DockerOptions {
            insecure_engine: self.insecure_engine,
            on_insecure: Some(Arc::new(|w: &str| {
                output::warning(
                    w,
                    Some("use TLS (DOCKER_TLS_VERIFY=1, DOCKER_CERT_PATH) or DOCKER_HOST=ssh://USER@HOST"),
                )
            })),
            recorded: None,
        }
    }
}
