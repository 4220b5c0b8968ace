//! Transport security and credentials: a CA generated once per data directory, a serving
//! certificate for the addresses the server answers on, the bearer token, and the kubeconfig
//! that hands all three to kubectl and kube-rs.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// Why certificates or credentials could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("configuring TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.to_path_buf(), source }
}

/// Writes a file readable only by its owner (it may hold a key or a token). The contents go to a
/// new file created with mode 0600 (never readable by others, not even for a moment), which then
/// replaces `path` in one rename; a file already at `path` with a looser mode is replaced, not
/// reused.
pub fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let suffix: u64 = rand::random();
    let staging = dir.join(format!(".{name}.{suffix:016x}.tmp"));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let written = opts.open(&staging).map_err(io(&staging)).and_then(|mut f| {
        f.write_all(contents.as_bytes()).map_err(io(&staging))?;
        f.sync_all().map_err(io(&staging))
    });
    let replaced = written.and_then(|()| fs::rename(&staging, path).map_err(io(path)));
    if replaced.is_err() {
        let _ = fs::remove_file(&staging);
    }
    replaced
}

/// Reads a file that must stay private; one left readable by others (by an older version, or by
/// hand) is made owner-only again, with a warning.
fn read_private(path: &Path) -> std::io::Result<String> {
    let text = fs::read_to_string(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "private file was readable by others; restricting it to its owner");
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(text)
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "shifter-apiserver-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// The CA (kept in the data directory so kubeconfigs stay valid across restarts) and a fresh
/// serving certificate for `hosts`.
pub struct Certificates {
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
}

pub fn certificates(dir: &Path, hosts: &[String]) -> Result<Certificates, TlsError> {
    let (ca_cert_path, ca_key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
    let (ca_pem, ca_key) = match (fs::read_to_string(&ca_cert_path), read_private(&ca_key_path)) {
        (Ok(cert), Ok(key)) => (cert, KeyPair::from_pem(&key)?),
        _ => {
            let key = KeyPair::generate()?;
            let cert = ca_params().self_signed(&key)?;
            write_private(&ca_key_path, &key.serialize_pem())?;
            fs::write(&ca_cert_path, cert.pem()).map_err(io(&ca_cert_path))?;
            (cert.pem(), key)
        }
    };
    let issuer = Issuer::new(ca_params(), ca_key);
    let mut params = CertificateParams::new(hosts.to_vec())?;
    params.distinguished_name.push(DnType::CommonName, "shifter-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Certificates { ca_pem, server_config: Arc::new(config) })
}

/// The bearer token stored in the data directory, created on first start.
pub fn token(dir: &Path) -> Result<String, TlsError> {
    let path = dir.join("token");
    if let Ok(t) = read_private(&path)
        && !t.trim().is_empty()
    {
        return Ok(t.trim().to_string());
    }
    let bytes: [u8; 32] = rand::random();
    let token = bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    write_private(&path, &token)?;
    Ok(token)
}

/// A kubeconfig with one cluster, one user (the token) and one current context.
pub fn kubeconfig(server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: shifter
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: shifter-admin
  user:
    token: {token}
contexts:
- name: shifter
  context:
    cluster: shifter
    user: shifter-admin
    namespace: default
current-context: shifter
"
    )
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn keys_and_tokens_are_owner_only_from_creation() {
        let dir = tempfile::tempdir().unwrap();
        certificates(dir.path(), &["localhost".into()]).unwrap();
        let token = token(dir.path()).unwrap();
        assert_eq!(mode(&dir.path().join("ca.key")), 0o600);
        assert_eq!(mode(&dir.path().join("token")), 0o600);
        assert_eq!(fs::read_to_string(dir.path().join("token")).unwrap(), token);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_world_readable_file_in_the_way_is_replaced_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        fs::write(&kubeconfig, "old").unwrap();
        fs::set_permissions(&kubeconfig, fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&kubeconfig, "token: secret").unwrap();
        assert_eq!(mode(&kubeconfig), 0o600);
        assert_eq!(fs::read_to_string(&kubeconfig).unwrap(), "token: secret");
    }

    #[test]
    fn a_loose_token_left_by_hand_is_restricted_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        fs::write(&path, "abc").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(token(dir.path()).unwrap(), "abc");
        assert_eq!(mode(&path), 0o600);
    }
}
