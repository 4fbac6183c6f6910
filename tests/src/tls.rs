//! Certificates for a TLS test server, made by the test itself with
//! `rcgen`: a CA, a server certificate for `127.0.0.1` and `localhost`
//! signed by it, a client certificate signed by it (mutual TLS), and a
//! second CA that signed nothing here (the wrong CA).

use std::path::{Path, PathBuf};

use millrace_core::connect::TlsConfig;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::HarnessError;

/// Whether a test server asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS only (`--tls-auth-clients no`).
    ServerOnly,
    /// Mutual TLS: a client must present a certificate signed by the CA
    /// (`--tls-auth-clients yes`).
    Mutual,
}

/// The PEM files of a TLS test server, in its directory.
#[derive(Debug, Clone)]
pub struct TestCerts {
    dir: PathBuf,
}

impl TestCerts {
    /// The files' places in `dir` (written by a TLS server's start).
    pub fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// Writes a fresh CA, server and client certificate (and a second,
    /// unrelated CA) into `dir`, unless they are there already.
    pub fn in_dir(dir: &Path) -> Result<Self, HarnessError> {
        Self::in_dir_for(dir, &["127.0.0.1", "localhost"])
    }

    /// As [`in_dir`](Self::in_dir), with a server certificate naming only
    /// `names` (a cluster announcing hostnames: its certificate names
    /// hosts, not the IPs the nodes listen on).
    pub fn in_dir_for(dir: &Path, names: &[&str]) -> Result<Self, HarnessError> {
        let certs = Self::at(dir);
        if !certs.ca().exists() {
            certs.generate(names).map_err(|e| {
                HarnessError::Io(std::io::Error::other(format!("certificates: {e}")))
            })?;
        }
        Ok(certs)
    }

    fn generate(&self, names: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
        let (ca_pem, ca) = authority("millrace test CA")?;
        std::fs::write(self.ca(), ca_pem)?;
        let (other_pem, _) = authority("an unrelated CA")?;
        std::fs::write(self.other_ca(), other_pem)?;
        let names = names.iter().map(|n| (*n).to_owned()).collect();
        self.leaf(&ca, names, &self.server_cert(), &self.server_key())?;
        let client = vec!["millrace-client".to_owned()];
        self.leaf(&ca, client, &self.client_cert(), &self.client_key())?;
        Ok(())
    }

    fn leaf(
        &self,
        ca: &Issuer<'_, KeyPair>,
        names: Vec<String>,
        cert: &Path,
        key: &Path,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let pair = KeyPair::generate()?;
        let signed = CertificateParams::new(names)?.signed_by(&pair, ca)?;
        std::fs::write(cert, signed.pem())?;
        std::fs::write(key, pair.serialize_pem())?;
        Ok(())
    }

    /// The CA that signed the server and client certificates.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A CA that signed nothing here: trusting it alone must fail.
    pub fn other_ca(&self) -> PathBuf {
        self.dir.join("other-ca.pem")
    }

    /// The server's certificate (for `127.0.0.1` and `localhost`).
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    /// The server's private key.
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// A client certificate signed by the CA.
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("client.pem")
    }

    /// The client certificate's private key.
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client.key")
    }
}

/// The `--tls-*` flags of a Millrace binary for `tls` (none for unset
/// files), to pass a child process the settings of its parent.
pub fn tls_flags(tls: &TlsConfig) -> Vec<String> {
    [
        ("--tls-ca-file", &tls.ca_file),
        ("--tls-cert-file", &tls.cert_file),
        ("--tls-key-file", &tls.key_file),
    ]
    .into_iter()
    .filter_map(|(flag, path)| {
        path.as_ref()
            .map(|p| [flag.to_owned(), p.display().to_string()])
    })
    .flatten()
    .collect()
}

/// A self-signed CA: its PEM and the issuer that signs with it.
fn authority(name: &str) -> Result<(String, Issuer<'static, KeyPair>), Box<dyn std::error::Error>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate()?;
    let pem = params.self_signed(&key)?.pem();
    Ok((pem, Issuer::new(params, key)))
}
