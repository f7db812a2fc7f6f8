//! TLS to a `tcp://` Docker Engine, with the certificate material the docker CLI uses.
//!
//! - From the environment (`DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`, default the docker config
//!   directory): `ca.pem` is trusted *in addition to* the system roots, and `cert.pem` + `key.pem`
//!   are the client certificate, each used only when the file exists (the docker CLI's
//!   `tlsconfig.Client`). A `DOCKER_CERT_PATH` set to a directory that does not exist (a typo) is
//!   an error naming it, before anything connects; the default directory may be missing.
//! - From a `docker context` (`contexts/tls/<sha256 of the name>/docker/`): its `ca.pem` *replaces*
//!   the system roots, as the CLI's context loader does.
//!
//! The server's certificate is checked against the host name or IP address of the endpoint
//! (rustls/webpki). `verify: false` (`DOCKER_TLS` without `_VERIFY`, a context's `SkipTLSVerify`)
//! encrypts without checking who answers: [`super::connect`] treats that like plain TCP.

use crate::targets::TargetError;
use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the certificates are and how they are used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    /// What asks for TLS, for messages: `DOCKER_TLS_VERIFY`, `docker context 'prod'`.
    pub why: String,
    /// Holds `ca.pem`, `cert.pem` and `key.pem`, each optional.
    pub dir: PathBuf,
    /// The variable that named `dir` (`DOCKER_CERT_PATH`), when it was set rather than defaulted:
    /// then the directory must exist.
    pub named_by: Option<String>,
    /// The CA replaces the system roots (a context) rather than joining them (the environment).
    pub ca_only: bool,
    /// Check the server's certificate (off: `DOCKER_TLS` alone, `SkipTLSVerify`).
    pub verify: bool,
}

/// The rustls client configuration for `material`; every file problem is one line naming the file.
pub fn client_config(m: &TlsMaterial) -> Result<Arc<ClientConfig>, TargetError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let fix = format!("check the certificates in {} ({})", m.dir.display(), m.why);
    let bad = |path: &Path, e: String| {
        TargetError::new(format!("cannot use {} for TLS to the Docker engine: {e}", path.display()))
            .with_hint(fix.clone())
    };
    if let Some(var) = &m.named_by {
        named_dir(var, m)?;
    }
    let mut roots = rustls::RootCertStore::empty();
    let ca = m.dir.join("ca.pem");
    let have_ca = ca.exists();
    if have_ca {
        let certs = CertificateDer::pem_file_iter(&ca)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| bad(&ca, e.to_string()))?;
        if certs.is_empty() {
            return Err(bad(&ca, "no certificate in it".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| bad(&ca, e.to_string()))?;
        }
    }
    if !(m.ca_only && have_ca) {
        // Unreadable system roots only narrow what is trusted.
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
    }
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TargetError::new(format!("TLS setup: {e}")))?;
    let builder = if m.verify {
        builder.with_root_certificates(roots)
    } else {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    };
    let (cert, key) = (m.dir.join("cert.pem"), m.dir.join("key.pem"));
    let config = match (cert.exists(), key.exists()) {
        (false, false) => builder.with_no_client_auth(),
        (true, true) => {
            let chain = CertificateDer::pem_file_iter(&cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| bad(&cert, e.to_string()))?;
            let pk = PrivateKeyDer::from_pem_file(&key).map_err(|e| bad(&key, e.to_string()))?;
            builder.with_client_auth_cert(chain, pk).map_err(|e| bad(&cert, e.to_string()))?
        }
        (true, false) => return Err(bad(&key, "missing (cert.pem needs its key.pem)".into())),
        (false, true) => return Err(bad(&cert, "missing (key.pem needs its cert.pem)".into())),
    };
    Ok(Arc::new(config))
}

/// A directory the user named must be there: a typo is said as one, not later as an engine that
/// does not trust us or that we do not trust.
fn named_dir(var: &str, m: &TlsMaterial) -> Result<(), TargetError> {
    let dir = m.dir.display();
    let what = match std::fs::metadata(&m.dir) {
        Ok(md) if md.is_dir() => return Ok(()),
        Ok(_) => "is not a directory".to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "no such directory".to_string(),
        Err(e) => format!("cannot be read: {e}"),
    };
    Err(TargetError::new(format!(
        "{var}={dir}: {what} ({} asks for TLS to the Docker engine with the certificates in it); nothing was sent",
        m.why
    ))
    .with_hint(format!(
        "set {var} to the directory holding ca.pem, cert.pem and key.pem (as for the docker CLI), or unset it to use \
         the docker config directory"
    )))
}

/// The name the server's certificate must carry: a DNS name or an IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TargetError> {
    ServerName::try_from(host.to_string())
        .map_err(|e| TargetError::new(format!("'{host}' cannot be checked against a TLS certificate: {e}")))
}

/// Accepts any server certificate (signatures are still checked): `SkipTLSVerify`.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn material(dir: &Path, named_by: Option<&str>) -> TlsMaterial {
        TlsMaterial {
            why: "DOCKER_TLS_VERIFY".into(),
            dir: dir.to_path_buf(),
            named_by: named_by.map(str::to_string),
            ca_only: false,
            verify: true,
        }
    }

    #[test]
    fn a_named_cert_dir_must_exist_and_a_default_one_may_be_missing() {
        let t = tempfile::tempdir().unwrap();
        let typo = t.path().join("certz");
        let e = client_config(&material(&typo, Some("DOCKER_CERT_PATH"))).unwrap_err();
        assert!(e.message.starts_with(&format!("DOCKER_CERT_PATH={}: no such directory", typo.display())), "{e}");
        assert!(e.message.contains("DOCKER_TLS_VERIFY") && !e.message.contains('\n'), "{e}");
        assert!(e.hint.as_deref().is_some_and(|h| h.contains("ca.pem, cert.pem and key.pem")), "{e:?}");

        let file = t.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let e = client_config(&material(&file, Some("DOCKER_CERT_PATH"))).unwrap_err();
        assert!(e.message.contains("is not a directory"), "{e}");

        // A missing default directory, and a named one without ca.pem: the system roots, as before.
        client_config(&material(&typo, None)).unwrap();
        client_config(&material(t.path(), Some("DOCKER_CERT_PATH"))).unwrap();
    }
}
