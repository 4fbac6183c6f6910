//! The TLS flags every Millrace binary takes, as one clap group a user's
//! own binary can flatten too.

use std::path::PathBuf;

use millrace_core::connect::TlsConfig;

/// `--tls-ca-file`, `--tls-cert-file`, `--tls-key-file` (and their
/// `MILLRACE_TLS_*` variables) for a `rediss://` URL.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// PEM file of the CA to trust for rediss:// instead of the system's
    /// (a private CA).
    #[arg(long, env = "MILLRACE_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM file of the client certificate, for servers that require
    /// mutual TLS (with --tls-key-file).
    #[arg(long, env = "MILLRACE_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (with
    /// --tls-cert-file).
    #[arg(long, env = "MILLRACE_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
}

impl TlsArgs {
    /// The files as a [`TlsConfig`].
    pub fn config(&self) -> TlsConfig {
        TlsConfig::from_files(
            self.tls_ca_file.clone(),
            self.tls_cert_file.clone(),
            self.tls_key_file.clone(),
        )
    }
}
