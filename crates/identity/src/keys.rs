use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::{IdentityError, SignedUpdate, UpdateStatement};

/// A member's signing key.
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Result<Self, IdentityError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| IdentityError::NoRandomness(e.to_string()))?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Writes the key as PKCS#8 PEM to a new file readable only by its owner.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let io = |error| IdentityError::Io {
            path: path.to_path_buf(),
            error,
        };
        let pem = self
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| IdentityError::BadKeyFile {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                IdentityError::Exists(path.to_path_buf())
            } else {
                io(e)
            }
        })?;
        file.write_all(pem.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io)
    }

    /// Reads a key written by [`save`](Self::save) (or by `openssl genpkey -algorithm ed25519`).
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let text = std::fs::read_to_string(path).map_err(|error| IdentityError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        let key = SigningKey::from_pkcs8_pem(&text).map_err(|e| IdentityError::BadKeyFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Self { key })
    }

    /// The public half, by which the federation knows this member.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// Signs an update statement.
    pub fn sign(&self, statement: UpdateStatement) -> SignedUpdate {
        let signature = self.key.sign(&statement.to_bytes()).to_bytes();
        SignedUpdate {
            statement,
            signer: self.public(),
            signature,
        }
    }
}

impl Identity {
    /// Signs the enrolment statement for `federation`: proof that whoever enrols a key holds it.
    pub fn sign_enrolment(&self, federation: &str) -> [u8; 64] {
        self.key
            .sign(&enrolment_bytes(federation, &self.public(), None))
            .to_bytes()
    }

    /// Signs the enrolment statement with a commitment to the member's local data (the
    /// Merkle root of its examples) appended.
    pub fn sign_enrolment_with_data(&self, federation: &str, data_root: &[u8; 32]) -> [u8; 64] {
        self.key
            .sign(&enrolment_bytes(
                federation,
                &self.public(),
                Some(data_root),
            ))
            .to_bytes()
    }
}

impl Identity {
    /// Signs `message` as it is. The caller's message must start with its own domain
    /// separator (as every signed structure in Harambee does), so that a signature over one
    /// kind of statement can never pass for another.
    pub fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

impl PublicKey {
    /// Checks a signature made by [`Identity::sign_raw`] (strictly).
    pub fn verify_raw(&self, message: &[u8], signature: &[u8]) -> Result<(), IdentityError> {
        let bytes: [u8; 64] = signature
            .try_into()
            .map_err(|_| IdentityError::BadSignature)?;
        self.0
            .verify_strict(message, &ed25519_dalek::Signature::from_bytes(&bytes))
            .map_err(|_| IdentityError::BadSignature)
    }
}

/// Domain separation for enrolment signatures.
const ENROL_DOMAIN: &[u8] = b"harambee.enrol.v1\0";

/// The signed bytes of an enrolment: the 18 bytes `harambee.enrol.v1\0`, the federation id's
/// length (`u32`, little-endian) and UTF-8 bytes, then the 32 public-key bytes.
fn enrolment_bytes(federation: &str, key: &PublicKey, data_root: Option<&[u8; 32]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENROL_DOMAIN.len() + 4 + federation.len() + 64);
    out.extend_from_slice(ENROL_DOMAIN);
    out.extend_from_slice(&(federation.len() as u32).to_le_bytes());
    out.extend_from_slice(federation.as_bytes());
    out.extend_from_slice(&key.to_bytes());
    // Fixed length: a statement with a root can never read as one without.
    if let Some(root) = data_root {
        out.extend_from_slice(root);
    }
    out
}

impl PublicKey {
    /// Checks an enrolment signature made by [`Identity::sign_enrolment`].
    pub fn verify_enrolment(
        &self,
        federation: &str,
        signature: &[u8],
    ) -> Result<(), IdentityError> {
        self.verify_enrolment_with_data(federation, None, signature)
    }

    /// Checks an enrolment signature with a data commitment
    /// ([`Identity::sign_enrolment_with_data`]), or without one when `data_root` is `None`.
    pub fn verify_enrolment_with_data(
        &self,
        federation: &str,
        data_root: Option<&[u8; 32]>,
        signature: &[u8],
    ) -> Result<(), IdentityError> {
        let bytes: [u8; 64] = signature
            .try_into()
            .map_err(|_| IdentityError::BadSignature)?;
        self.0
            .verify_strict(
                &enrolment_bytes(federation, self, data_root),
                &ed25519_dalek::Signature::from_bytes(&bytes),
            )
            .map_err(|_| IdentityError::BadSignature)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        write!(f, "Identity({})", self.public())
    }
}

/// A member's public key; written as 64 lower-case hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub(crate) VerifyingKey);

impl PublicKey {
    /// The 32 key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Parses 32 key bytes, refusing those that are not a valid point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, IdentityError> {
        VerifyingKey::from_bytes(bytes)
            .map(PublicKey)
            .map_err(|_| IdentityError::BadPublicKey(hex::encode(bytes)))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.to_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut bytes)
            .map_err(|_| IdentityError::BadPublicKey(s.to_string()))?;
        Self::from_bytes(&bytes)
    }
}
