use std::fs;
use std::path::{Path, PathBuf};

use harambee_charter::Charter;
use harambee_identity::Identity;
use harambee_proto::Invite;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use sha2::{Digest as _, Sha256};

use crate::{FederationConfig, ServerError};

/// A federation's folder: everything a coordinator keeps, in one place.
///
/// ```text
/// federation.toml      settings (FederationConfig)
/// charter.toml         the rules the software enforces (amended only by stewards)
/// coordinator.key      the coordinator's ed25519 key (PKCS#8 PEM, owner-only)
/// invite.toml          what participants need to join (URL, CA certificate, token)
/// tls/ca.pem, ca.key   the federation's own certificate authority
/// tls/server.pem, .key the coordinator's TLS certificate, issued by that CA
/// state.db             SQLite: enrolments, rounds, acknowledged updates
/// blobs/               parameters and updates, content-addressed
/// model.safetensors    the final model, once the federation has finished
/// ```
#[derive(Debug, Clone)]
pub struct FederationFolder {
    root: PathBuf,
}

impl FederationFolder {
    /// The folder at `root` (not checked until used).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// The folder's path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `federation.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("federation.toml")
    }

    /// `charter.toml`.
    pub fn charter_path(&self) -> PathBuf {
        self.root.join("charter.toml")
    }

    /// Reads and checks `charter.toml`.
    pub fn charter(&self) -> Result<Charter, ServerError> {
        let path = self.charter_path();
        let text = fs::read_to_string(&path).map_err(|e| ServerError::io(&path, e))?;
        Charter::parse(&text).map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))
    }

    /// `invite.toml`.
    pub fn invite_path(&self) -> PathBuf {
        self.root.join("invite.toml")
    }

    /// The state database.
    pub fn state_path(&self) -> PathBuf {
        self.root.join("state.db")
    }

    /// The blob store's root.
    pub fn blobs_path(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Where the final model is written.
    pub fn model_path(&self) -> PathBuf {
        self.root.join("model.safetensors")
    }

    /// The TLS certificate chain and key files.
    pub fn tls_paths(&self) -> (PathBuf, PathBuf, PathBuf) {
        let tls = self.root.join("tls");
        (
            tls.join("server.pem"),
            tls.join("server.key"),
            tls.join("ca.pem"),
        )
    }

    /// Reads and checks `federation.toml`.
    pub fn config(&self) -> Result<FederationConfig, ServerError> {
        let path = self.config_path();
        let text = fs::read_to_string(&path).map_err(|e| ServerError::io(&path, e))?;
        FederationConfig::parse(&text)
    }

    /// Creates a new federation folder: settings, the coordinator's key, a certificate
    /// authority and a server certificate for `config.server_names`, and an invite. The
    /// config's `federation_id` and `invite_token_sha256` are filled in here. Refuses a folder
    /// that already holds a federation.
    pub fn init(
        &self,
        mut config: FederationConfig,
        charter: &Charter,
    ) -> Result<Invite, ServerError> {
        if self.config_path().exists() {
            return Err(ServerError::Config(format!(
                "{} already holds a federation; choose an empty folder",
                self.root.display()
            )));
        }
        let tls = self.root.join("tls");
        fs::create_dir_all(&tls).map_err(|e| ServerError::io(&tls, e))?;
        config.federation_id = random_hex(16)?;
        let token = random_hex(32)?;
        config.invite_token_sha256 = hex::encode(Sha256::digest(token.as_bytes()));
        config.validate()?;
        charter
            .validate()
            .and_then(|()| {
                charter.check(
                    &config.training.strategy.to_string(),
                    config.rounds.quorum,
                    config.rounds.deadline_s,
                    config.rounds.rounds,
                )
            })
            .map_err(|e| ServerError::Config(e.to_string()))?;
        crate::privacy::check_budget(charter, &config)?;

        Identity::generate()
            .and_then(|key| key.save(&self.root.join("coordinator.key")))
            .map_err(|e| ServerError::Config(e.to_string()))?;
        let ca_pem = self.write_certificates(&config.server_names)?;

        let text = toml::to_string_pretty(&config)
            .map_err(|e| ServerError::Config(format!("federation.toml: {e}")))?;
        write_file(&self.config_path(), text.as_bytes(), false)?;
        let charter_text = toml::to_string_pretty(charter)
            .map_err(|e| ServerError::Config(format!("charter.toml: {e}")))?;
        write_file(&self.charter_path(), charter_text.as_bytes(), false)?;
        let invite = Invite {
            federation_id: config.federation_id.clone(),
            coordinator: config.public_url.clone(),
            server_name: config.server_names[0].clone(),
            ca_certificate: ca_pem,
            token,
            charter_sha256: charter.hash(),
            coordinator_key: Identity::load(&self.root.join("coordinator.key"))
                .map_err(|e| ServerError::Config(e.to_string()))?
                .public()
                .to_string(),
        };
        invite
            .save(&self.invite_path())
            .map_err(|e| ServerError::Config(e.to_string()))?;
        Ok(invite)
    }

    /// A CA and a server certificate signed by it; returns the CA's PEM.
    fn write_certificates(&self, names: &[String]) -> Result<String, ServerError> {
        let tls_err = |e: rcgen::Error| ServerError::Tls(e.to_string());
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Harambee federation CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().map_err(tls_err)?;
        let ca_key_pem = ca_key.serialize_pem();
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(tls_err)?;

        let mut server_params = CertificateParams::new(names.to_vec()).map_err(tls_err)?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, names[0].clone());
        let server_key = KeyPair::generate().map_err(tls_err)?;
        let server_cert = server_params.signed_by(&server_key, &ca).map_err(tls_err)?;

        let tls = self.root.join("tls");
        write_file(&tls.join("ca.pem"), ca.pem().as_bytes(), false)?;
        write_file(&tls.join("ca.key"), ca_key_pem.as_bytes(), true)?;
        write_file(&tls.join("server.pem"), server_cert.pem().as_bytes(), false)?;
        write_file(
            &tls.join("server.key"),
            server_key.serialize_pem().as_bytes(),
            true,
        )?;
        Ok(ca.pem())
    }
}

/// Writes a new file; secrets are readable by their owner only.
fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), ServerError> {
    use std::io::Write;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(|e| ServerError::io(path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| ServerError::io(path, e))
}

fn random_hex(bytes: usize) -> Result<String, ServerError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| ServerError::Config(format!("no randomness: {e}")))?;
    Ok(hex::encode(buf))
}

/// SHA-256 (hex) of an invite token, as `federation.toml` keeps it.
pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
