//! Credentials for the gRPC API: a serving certificate (given, or a self-signed CA and certificate
//! generated once into a state directory) and the bearer token proxies must present.

use std::path::{Path, PathBuf};

use rand::RngCore;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// PEM files a server needs and the CA clients trust.
#[derive(Debug, Clone)]
pub struct ServingFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path} is empty; write the token proxies must present")]
    EmptyToken { path: PathBuf },
}

fn write(path: &Path, contents: &str) -> Result<(), CredentialError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| CredentialError::Write { path: dir.into(), source })?;
    }
    std::fs::write(path, contents).map_err(|source| CredentialError::Write { path: path.into(), source })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

/// Uses `dir/{ca.crt,tls.crt,tls.key}` when present; otherwise generates a CA and a serving
/// certificate for `names` (DNS names or IP literals) and writes them there.
pub fn ensure_self_signed(dir: &Path, names: &[String]) -> Result<ServingFiles, CredentialError> {
    let files = ServingFiles { ca: dir.join("ca.crt"), cert: dir.join("tls.crt"), key: dir.join("tls.key") };
    if files.ca.exists() && files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "shifter controller CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(DnType::CommonName, "shifter-controller");
    let cert = params.signed_by(&key, &issuer)?;
    write(&files.ca, &ca_cert.pem())?;
    write(&files.cert, &cert.pem())?;
    write(&files.key, &key.serialize_pem())?;
    Ok(files)
}

/// Reads the token at `path`, generating a random one there first if it does not exist.
pub fn ensure_token(path: &Path) -> Result<String, CredentialError> {
    if !path.exists() {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        write(path, &token)?;
    }
    let token = std::fs::read_to_string(path).map_err(|source| CredentialError::Read { path: path.into(), source })?;
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(CredentialError::EmptyToken { path: path.into() });
    }
    Ok(token)
}

/// Compares a presented `authorization` header with the token in constant time.
pub fn bearer_matches(header: Option<&str>, token: &str) -> bool {
    let Some(presented) = header.and_then(|h| h.strip_prefix("Bearer ")) else { return false };
    let (a, b) = (presented.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_generated_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("shifter-tls-{}", std::process::id()));
        let first = ensure_self_signed(&dir, &["localhost".into(), "127.0.0.1".into()]).unwrap();
        let ca = std::fs::read_to_string(&first.ca).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        ensure_self_signed(&dir, &["localhost".into()]).unwrap();
        assert_eq!(std::fs::read_to_string(&first.ca).unwrap(), ca, "not regenerated");
        let token = ensure_token(&dir.join("token")).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(ensure_token(&dir.join("token")).unwrap(), token);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn only_the_exact_bearer_token_passes() {
        assert!(bearer_matches(Some("Bearer s3cret"), "s3cret"));
        assert!(!bearer_matches(Some("Bearer s3cre"), "s3cret"));
        assert!(!bearer_matches(Some("s3cret"), "s3cret"));
        assert!(!bearer_matches(None, "s3cret"));
    }
}
