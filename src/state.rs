//! The state directory of the embedded default: the generated SAS key of
//! the default rule, and a development CA with a server certificate for
//! `localhost`, `127.0.0.1` and `::1`, each generated once and kept.

use std::path::{Path, PathBuf};

use base64::Engine;

use crate::config::Secret;
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Files of the state directory.
pub struct State {
    /// The directory.
    pub dir: PathBuf,
}

/// The default state directory: `$RELAY_GATEWAY_STATE`, else
/// `$XDG_STATE_HOME/relay-gateway`, else `~/.local/state/relay-gateway`.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("RELAY_GATEWAY_STATE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(d).join("relay-gateway");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/relay-gateway")
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// How a client command (`token`, `forward`) signs its tokens: a key on
/// the command line or in a file, else the embedded default's key in the
/// state directory, which must exist (a client never makes one up).
#[derive(clap::Args, Debug, Clone)]
pub struct KeyArgs {
    /// SAS rule name (default: the embedded default's rule).
    #[arg(long)]
    pub key_name: Option<String>,
    /// SAS rule key (default: the embedded default's key in the state directory).
    #[arg(long, conflicts_with = "key_file")]
    pub key: Option<Secret>,
    /// A file holding the SAS rule key.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// State directory holding the embedded default's key and development CA.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

impl KeyArgs {
    /// The state directory in use.
    pub fn dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(default_dir)
    }

    /// The rule name and key to sign with.
    pub fn resolve(&self) -> Result<(String, Secret), KeyError> {
        let key = match (&self.key, &self.key_file) {
            (Some(k), _) => k.clone(),
            (None, Some(file)) => {
                let text = std::fs::read_to_string(file).map_err(|source| KeyError::File {
                    path: file.clone(),
                    source,
                })?;
                Secret::from(text.trim())
            }
            (None, None) if self.key_name.is_some() => return Err(KeyError::NameWithoutKey),
            (None, None) => {
                let path = self.dir().join(KEY_FILE);
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if text.trim().is_empty() {
                    return Err(KeyError::NoKey(path));
                }
                Secret::from(text.trim())
            }
        };
        if key.expose().is_empty() {
            return Err(KeyError::Empty);
        }
        let name = self
            .key_name
            .clone()
            .unwrap_or_else(|| crate::config::DEFAULT_RULE.to_owned());
        Ok((name, key))
    }
}

/// Why no key can be had for signing.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `--key-file` does not read.
    #[error("--key-file {}: {source}", .path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `--key-name` alone.
    #[error("--key-name needs --key or --key-file")]
    NameWithoutKey,
    /// No key given and none in the state directory.
    #[error("no key in {}: give --key or --key-file, or start the gateway once with this state directory", .0.display())]
    NoKey(PathBuf),
    /// An empty key.
    #[error("the key is empty")]
    Empty,
}

/// Why the development certificate cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Generating it failed.
    #[error("generating the development certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// Writing it failed.
    #[error("writing the development certificate: {0}")]
    Write(#[from] std::io::Error),
}

/// The file of the default rule's key in the state directory.
const KEY_FILE: &str = "default-rule.key";

impl State {
    /// Open (creating) the directory.
    pub fn open(dir: PathBuf) -> std::io::Result<State> {
        std::fs::create_dir_all(&dir)?;
        Ok(State { dir })
    }

    /// The default rule's key, generated on first use (32 random bytes, base64).
    pub fn key(&self) -> std::io::Result<String> {
        let path = self.dir.join(KEY_FILE);
        if let Ok(k) = std::fs::read_to_string(&path) {
            if !k.trim().is_empty() {
                return Ok(k.trim().to_owned());
            }
        }
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let key = base64::engine::general_purpose::STANDARD.encode(raw);
        write_private(&path, &key)?;
        Ok(key)
    }

    /// Path of the development CA certificate.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The server certificate and key paths, generated (with the CA) on first use.
    pub fn tls_files(&self) -> Result<(PathBuf, PathBuf), CertError> {
        let (cert, key) = (self.dir.join("server.pem"), self.dir.join("server.key"));
        if cert.exists() && key.exists() && self.ca_path().exists() {
            return Ok((cert, key));
        }
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "relay-gateway development CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()])?;
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        leaf.subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
        let leaf_key = KeyPair::generate()?;
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
        std::fs::write(self.ca_path(), ca_cert.pem())?;
        std::fs::write(&cert, format!("{}{}", leaf_cert.pem(), ca_cert.pem()))?;
        write_private(&key, &leaf_key.serialize_pem())?;
        Ok((cert, key))
    }
}
