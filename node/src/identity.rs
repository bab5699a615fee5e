//! Node identity: an ECDSA P-256 key generated once into the data dir, a self-signed
//! certificate for it (rcgen), and the peer id = sha256 of the key's SubjectPublicKeyInfo.
//! Also the admin token file and the atomic `node.json` writer.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use crate::proto::PeerId;

/// File name of the identity key (PKCS#8 PEM, mode 0600) in the data dir.
pub const IDENTITY_KEY_FILE: &str = "identity.key";

/// Identity errors.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// File system error.
    #[error("failed to access {path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Key or certificate error.
    #[error("failed to load or create the identity key: {0}")]
    Key(#[from] rcgen::Error),
    /// The certificate could not be parsed for its public key.
    #[error("certificate has no parsable SubjectPublicKeyInfo")]
    BadCertificate,
    /// JSON error.
    #[error("failed to encode node.json: {0}")]
    Json(#[from] serde_json::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The node's key, certificate and peer id.
#[derive(Debug)]
pub struct Identity {
    /// Peer id.
    pub peer_id: PeerId,
    /// Self-signed certificate (DER).
    pub cert: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Identity {
    /// Load the key from `data_dir` or generate and store it.
    pub fn load_or_create(data_dir: &Path) -> Result<Identity, IdentityError> {
        let path = data_dir.join(IDENTITY_KEY_FILE);
        let key = match fs::read_to_string(&path) {
            Ok(pem) => rcgen::KeyPair::from_pem(&pem)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = rcgen::KeyPair::generate()?;
                write_private(&path, key.serialize_pem().as_bytes())?;
                key
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        Self::from_key(&key)
    }

    /// A fresh in-memory identity (tests and benchmarks).
    pub fn ephemeral() -> Result<Identity, IdentityError> {
        Self::from_key(&rcgen::KeyPair::generate()?)
    }

    fn from_key(key: &rcgen::KeyPair) -> Result<Identity, IdentityError> {
        let params = rcgen::CertificateParams::new(vec!["soak-node".to_string()])?;
        let cert = params.self_signed(key)?;
        let cert = cert.der().clone();
        let peer_id = peer_id_of_cert(&cert).ok_or(IdentityError::BadCertificate)?;
        Ok(Identity {
            peer_id,
            cert,
            key_der: key.serialize_der(),
        })
    }

    /// The private key for rustls.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// Peer id of a certificate: sha256 of its SubjectPublicKeyInfo; `None` if unparsable.
pub fn peer_id_of_cert(cert: &[u8]) -> Option<PeerId> {
    let spki = spki_of_cert(cert)?;
    Some(PeerId(Sha256::digest(spki).into()))
}

/// One DER TLV: (tag, content, whole element, rest).
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

fn der_tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *input.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    if end > input.len() {
        return None;
    }
    Some((tag, &input[header..end], &input[..end], &input[end..]))
}

/// Extract the SubjectPublicKeyInfo element from an X.509 certificate (minimal DER walk:
/// Certificate → tbsCertificate → [version] serial sigAlg issuer validity subject SPKI).
fn spki_of_cert(cert: &[u8]) -> Option<&[u8]> {
    let (0x30, cert_body, _, _) = der_tlv(cert)? else {
        return None;
    };
    let (0x30, tbs, _, _) = der_tlv(cert_body)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, _, r) = der_tlv(rest)?;
    if tag == 0xa0 {
        rest = r; // explicit version
    }
    // serial, signature algorithm, issuer, validity, subject
    for _ in 0..5 {
        let (_, _, _, r) = der_tlv(rest)?;
        rest = r;
    }
    let (tag, _, whole, _) = der_tlv(rest)?;
    (tag == 0x30).then_some(whole)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Shortest admin token kept from a file written by someone else (16 bytes as hex).
pub const MIN_TOKEN_LEN: usize = 32;

/// Read `DIR/admin.token`, or generate it (32 random bytes, hex, mode 0600). A token file that
/// is empty, shorter than [`MIN_TOKEN_LEN`] characters, or readable or writable by anyone but
/// its owner is replaced by a fresh one; the second value is then a warning to log (the token
/// itself is never logged).
pub fn load_or_create_token(data_dir: &Path) -> Result<(String, Option<String>), IdentityError> {
    let path = data_dir.join(soak_api::ADMIN_TOKEN_FILE);
    let problem = match fs::read_to_string(&path) {
        Ok(s) => {
            let token = s.trim();
            let open_mode = token_mode(&path).filter(|m| m & 0o077 != 0);
            if let Some(mode) = open_mode {
                Some(format!(
                    "{} was accessible to others (mode {mode:o}); replaced with a fresh token (mode 600)",
                    path.display()
                ))
            } else if token.len() < MIN_TOKEN_LEN {
                Some(format!(
                    "{} held a token of {} characters (fewer than {MIN_TOKEN_LEN}); replaced with a fresh one",
                    path.display(),
                    token.len()
                ))
            } else {
                return Ok((token.to_string(), None));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(&path)(e)),
    };
    if problem.is_some() {
        fs::remove_file(&path).map_err(io_err(&path))?;
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    write_private(&path, token.as_bytes())?;
    Ok((token, problem))
}

#[cfg(unix)]
fn token_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn token_mode(_path: &Path) -> Option<u32> {
    None
}

/// Write `DIR/node.json` atomically (temp file + fsync + rename).
pub fn write_node_info(data_dir: &Path, info: &soak_api::NodeInfo) -> Result<(), IdentityError> {
    let path = data_dir.join(soak_api::NODE_INFO_FILE);
    let tmp = data_dir.join(format!("{}.tmp", soak_api::NODE_INFO_FILE));
    let json = serde_json::to_vec_pretty(info)?;
    {
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&json).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, &path).map_err(io_err(&path))
}

/// Remove a stale `node.json` (at start, before listening, and on clean exit).
pub fn remove_node_info(data_dir: &Path) {
    let _ = fs::remove_file(data_dir.join(soak_api::NODE_INFO_FILE));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_stable_across_loads_and_token_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.peer_id, b.peer_id);
        let other = Identity::ephemeral().unwrap();
        assert_ne!(a.peer_id, other.peer_id);
        let (t1, w1) = load_or_create_token(dir.path()).unwrap();
        let (t2, w2) = load_or_create_token(dir.path()).unwrap();
        assert_eq!(t1, t2);
        assert_eq!((w1, w2), (None, None));
        assert_eq!(t1.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(soak_api::ADMIN_TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_short_or_world_readable_token_is_replaced_with_a_warning() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(soak_api::ADMIN_TOKEN_FILE);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // Short, private.
        fs::write(&path, "hunter2\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let (token, warning) = load_or_create_token(dir.path()).unwrap();
        assert_eq!(token.len(), 64);
        assert!(warning.unwrap().contains("7 characters"));
        assert_eq!(fs::read_to_string(&path).unwrap(), token);
        assert_eq!(mode(&path), 0o600);
        // Long enough but world-readable.
        let long = "a".repeat(64);
        fs::write(&path, &long).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let (token, warning) = load_or_create_token(dir.path()).unwrap();
        assert_ne!(token, long);
        let warning = warning.unwrap();
        assert!(warning.contains("mode 644"), "{warning}");
        assert!(!warning.contains(&token), "the token is never in a message");
        assert_eq!(mode(&path), 0o600);
        // A good one is kept as is.
        fs::remove_file(&path).unwrap();
        write_private(&path, long.as_bytes()).unwrap();
        assert_eq!(load_or_create_token(dir.path()).unwrap(), (long, None));
    }

    #[test]
    fn peer_id_is_the_hash_of_the_key() {
        let key = rcgen::KeyPair::generate().unwrap();
        use rcgen::PublicKeyData;
        let expected = PeerId(Sha256::digest(key.subject_public_key_info()).into());
        let id = Identity::from_key(&key).unwrap();
        assert_eq!(id.peer_id, expected);
    }

    #[test]
    fn garbage_certificates_have_no_peer_id() {
        assert!(peer_id_of_cert(&[]).is_none());
        assert!(peer_id_of_cert(&[0x30, 0x82, 0xff]).is_none());
        assert!(peer_id_of_cert(&[0x30, 0x03, 0x30, 0x01, 0x00]).is_none());
    }
}
