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

/// Writes `contents` to `path` readable by its owner only: the file is created `0600` (never
/// briefly world-readable), written and synced under a temporary name, then renamed into place, so
/// a crash leaves either no file or the whole one.
fn write(path: &Path, contents: &str) -> Result<(), CredentialError> {
    use std::io::Write;
    fn err(path: &Path) -> impl FnOnce(std::io::Error) -> CredentialError + '_ {
        move |source| CredentialError::Write { path: path.into(), source }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err(dir))?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(err(&tmp))?;
    file.write_all(contents.as_bytes()).and_then(|()| file.sync_all()).map_err(err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(err(path))
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
        #[cfg(unix)]
        for file in [&first.key, &dir.join("token")] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} is readable by its owner only", file.display());
        }
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
