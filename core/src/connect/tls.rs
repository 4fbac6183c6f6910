//! TLS settings shared by every component: a private CA to trust and a
//! client certificate for mutual TLS, read from PEM files when a client is
//! built. `rediss://` itself needs the cargo feature `tls` (rustls with the
//! `ring` provider, the system's trust store by default).

#[cfg(feature = "tls")]
use std::path::Path;
use std::path::PathBuf;

use crate::error::ConfigError;

/// The variable naming the CA file (`--tls-ca-file`).
pub const ENV_CA_FILE: &str = "MILLRACE_TLS_CA_FILE";
/// The variable naming the client certificate (`--tls-cert-file`).
pub const ENV_CERT_FILE: &str = "MILLRACE_TLS_CERT_FILE";
/// The variable naming the client key (`--tls-key-file`).
pub const ENV_KEY_FILE: &str = "MILLRACE_TLS_KEY_FILE";

/// TLS files for a `rediss://` URL. All unset (the default) trusts the
/// system's certificate authorities and presents no client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsConfig {
    /// PEM file of the certificate authorities to trust instead of the
    /// system's (a private CA). Defaults to none.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (chain) for mutual TLS; needs
    /// `key_file`. Defaults to none.
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key; needs
    /// `cert_file`. Defaults to none.
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// The settings from three optional paths (a binary's flags).
    pub fn from_files(
        ca_file: Option<PathBuf>,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
    ) -> Self {
        Self {
            ca_file,
            cert_file,
            key_file,
        }
    }

    /// Trusts the certificate authorities in `path` (PEM) instead of the
    /// system's.
    #[must_use]
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Presents the client certificate in `cert` with its key in `key`
    /// (both PEM), for servers that require mutual TLS.
    #[must_use]
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.cert_file = Some(cert.into());
        self.key_file = Some(key.into());
        self
    }

    /// True when no file is set.
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.cert_file.is_none() && self.key_file.is_none()
    }

    /// The settings from the `MILLRACE_TLS_*` variables read through
    /// `lookup` (an empty value counts as unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let path = |name: &str| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .map(PathBuf::from)
        };
        Self::from_files(path(ENV_CA_FILE), path(ENV_CERT_FILE), path(ENV_KEY_FILE))
    }

    /// Checks that a client certificate comes with its key and the other
    /// way round.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Err(ConfigError::Invalid(
                "a TLS client certificate (--tls-cert-file) needs its key (--tls-key-file)".into(),
            )),
            (None, Some(_)) => Err(ConfigError::Invalid(
                "a TLS client key (--tls-key-file) needs its certificate (--tls-cert-file)".into(),
            )),
            _ => Ok(()),
        }
    }

    /// The files' contents in redis-rs's form; the error names the file
    /// that cannot be read.
    #[cfg(feature = "tls")]
    pub(crate) fn certificates(&self) -> Result<redis::TlsCertificates, String> {
        self.validate().map_err(|e| e.to_string())?;
        let root_cert = self.ca_file.as_deref().map(|p| read("CA", p)).transpose()?;
        let client_tls = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read("client certificate", cert)?,
                client_key: read("client key", key)?,
            }),
            _ => None,
        };
        Ok(redis::TlsCertificates {
            client_tls,
            root_cert,
        })
    }
}

/// Reads a PEM file; the error names what it is and where.
#[cfg(feature = "tls")]
fn read(what: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path)
        .map_err(|e| format!("cannot read the TLS {what} file {}: {e}", path.display()))
}

/// Whether `url` asks for TLS (`rediss://`).
pub(crate) fn wants_tls(url: &str) -> bool {
    url.get(..9)
        .is_some_and(|s| s.eq_ignore_ascii_case("rediss://"))
}

/// Makes rustls's `ring` provider the process default, once; a provider
/// another crate installed first is kept.
#[cfg(feature = "tls")]
pub(crate) fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err: a provider is installed already, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A TLS failure in plain words, told by its rustls error (wrapped by
/// tokio-rustls in an I/O error, by redis-rs in its own): what is wrong
/// and which setting fixes it. `None` when `err` is no TLS failure.
#[cfg(feature = "tls")]
pub(crate) fn explain(err: &redis::RedisError) -> Option<String> {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error as Tls};
    use std::error::Error as _;
    use std::sync::Arc;
    let inner = err
        .source()?
        .downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>()?;
    let tls = inner
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|e| e.downcast_ref::<Tls>())
        .or_else(|| inner.downcast_ref::<Tls>())?;
    Some(match tls {
        Tls::InvalidCertificate(Cert::UnknownIssuer) => format!(
            "TLS: the server's certificate is not signed by a trusted CA ({tls}); trust its CA with --tls-ca-file"
        ),
        Tls::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            format!("TLS: the server's certificate is not for this host name ({tls})")
        }
        Tls::AlertReceived(Alert::CertificateRequired) => format!(
            "TLS: the server requires a client certificate ({tls}); give --tls-cert-file and --tls-key-file"
        ),
        Tls::AlertReceived(
            Alert::BadCertificate | Alert::UnknownCA | Alert::CertificateUnknown,
        ) => format!("TLS: the server refused the client certificate ({tls})"),
        _ => format!("TLS: {tls}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cert_needs_its_key_and_a_key_its_cert() {
        let c = TlsConfig::default().client_cert("c.pem", "k.pem");
        assert!(c.validate().is_ok());
        let only_cert = TlsConfig::from_files(None, Some("c.pem".into()), None);
        assert_eq!(
            only_cert.validate().unwrap_err().to_string(),
            "a TLS client certificate (--tls-cert-file) needs its key (--tls-key-file)"
        );
        let only_key = TlsConfig::from_files(None, None, Some("k.pem".into()));
        assert!(only_key.validate().is_err());
    }

    #[test]
    fn variables_fill_the_files_and_empty_ones_are_unset() {
        let c = TlsConfig::from_lookup(|name| match name {
            ENV_CA_FILE => Some("/etc/ca.pem".into()),
            ENV_CERT_FILE => Some(" ".into()),
            _ => None,
        });
        assert_eq!(c, TlsConfig::default().ca_file("/etc/ca.pem"));
        assert!(TlsConfig::from_lookup(|_| None).is_empty());
    }

    #[test]
    fn only_rediss_urls_want_tls() {
        assert!(wants_tls("rediss://h:6380"));
        assert!(wants_tls("REDISS://h"));
        assert!(!wants_tls("redis://h:6379"));
        assert!(!wants_tls("redis+unix:///tmp/r.sock"));
    }
}
