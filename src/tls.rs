//! TLS for every outbound HTTPS connection cutover makes (webhooks, smoke requests, a
//! remote console): rustls on the `ring` provider the AWS SDK already brings, trusting the
//! system's store plus the PEM bundle named by `SSL_CERT_FILE` (the convention curl and git
//! follow). There is no insecure fallback: a certificate problem is an error that names the
//! host and the reason.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The system bundles probed in order, as OpenSSL distributions lay them out (Debian and
/// Ubuntu, Fedora and RHEL, openSUSE, Alpine, macOS with Homebrew).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/local/etc/openssl/cert.pem",
    "/opt/homebrew/etc/openssl@3/cert.pem",
];

/// Where the trusted roots came from, for error messages.
#[derive(Debug, Clone, Default)]
pub struct TrustSources {
    pub system: Option<PathBuf>,
    pub extra: Option<PathBuf>,
    pub roots: usize,
}

impl TrustSources {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.system {
            parts.push(format!("system store {}", p.display()));
        }
        if let Some(p) = &self.extra {
            parts.push(format!("SSL_CERT_FILE {}", p.display()));
        }
        if parts.is_empty() {
            "no trust store found".into()
        } else {
            format!("{} root(s) from {}", self.roots, parts.join(" and "))
        }
    }
}

/// A client configuration and where its roots came from.
pub struct Client {
    config: Arc<rustls::ClientConfig>,
    sources: TrustSources,
}

impl Client {
    /// The system store plus the bundle `extra` names (`SSL_CERT_FILE` for [`client`]).
    /// Fails when no root at all could be loaded, or when `extra` is named but unreadable.
    pub fn new(extra: Option<&Path>) -> Result<Client, String> {
        let mut roots = RootCertStore::empty();
        let mut sources = TrustSources::default();
        if let Some(bundle) = SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.is_file()) {
            let loaded = load_pem(bundle)?;
            let (added, _) = roots.add_parsable_certificates(loaded);
            if added > 0 {
                sources.system = Some(bundle.to_path_buf());
            }
        }
        if let Some(extra) = extra {
            let loaded = load_pem(extra).map_err(|e| format!("SSL_CERT_FILE: {e}"))?;
            if loaded.is_empty() {
                return Err(format!(
                    "SSL_CERT_FILE {} holds no PEM certificate; point it at a PEM bundle or unset it",
                    extra.display()
                ));
            }
            roots.add_parsable_certificates(loaded);
            sources.extra = Some(extra.to_path_buf());
        }
        sources.roots = roots.len();
        if roots.is_empty() {
            return Err(
                "no trusted root certificate: install the system's CA bundle (Debian: ca-certificates) \
                 or name a PEM bundle in SSL_CERT_FILE"
                    .into(),
            );
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Client {
            config: Arc::new(config),
            sources,
        })
    }

    /// Where the roots came from ("N root(s) from system store … and SSL_CERT_FILE …").
    pub fn trust(&self) -> &TrustSources {
        &self.sources
    }

    /// Wrap `stream` in TLS to `host`, verifying its certificate. The error names the host
    /// and the reason (an unknown issuer, an expired certificate, a name mismatch).
    pub async fn connect<S>(&self, host: &str, stream: S) -> Result<TlsStream<S>, String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|e| format!("`{host}` is not a valid TLS server name: {e}"))?
            .to_owned();
        TlsConnector::from(self.config.clone())
            .connect(name, stream)
            .await
            .map_err(|e| {
                format!(
                    "TLS with {host} failed: {} (trusting {})",
                    reason(&e),
                    self.sources.describe()
                )
            })
    }
}

/// The process-wide client: the system store plus `SSL_CERT_FILE`, loaded once.
pub fn client() -> Result<&'static Client, String> {
    static CLIENT: OnceLock<Result<Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let extra = std::env::var_os("SSL_CERT_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from);
            Client::new(extra.as_deref())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// TLS for PostgreSQL (the journal and migrations): the same roots as [`client`], so a
/// server's certificate must verify against the system store or `SSL_CERT_FILE`. Whether it
/// is used is the URL's `sslmode`: `prefer` (the default: TLS when the server offers it),
/// `require`, or `disable`. There is no unverified mode.
pub fn postgres() -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(
        client()?.config.as_ref().clone(),
    ))
}

/// A PostgreSQL connection error, with what to do when TLS was the problem.
pub fn postgres_error(message: String) -> String {
    let tls = ["TLS", "certificate", "UnknownIssuer"]
        .iter()
        .any(|w| message.contains(w));
    if tls && !message.contains("SSL_CERT_FILE") {
        format!(
            "{message} (TLS to PostgreSQL: the server's certificate must verify against the \
             system store or SSL_CERT_FILE, so add its CA there; `sslmode=disable` in the URL \
             turns TLS off)"
        )
    } else {
        message
    }
}

fn load_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    iter.collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM bundle: {e}", path.display()))
}

/// The certificate error inside an I/O error from the handshake, in words.
fn reason(e: &std::io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(c)) => {
            use rustls::CertificateError as C;
            let why = match c {
                C::UnknownIssuer => {
                    "it is signed by an unknown authority (add that CA to SSL_CERT_FILE)"
                        .to_string()
                }
                C::Expired | C::ExpiredContext { .. } => "it has expired".to_string(),
                C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet".to_string(),
                C::BadSignature => {
                    "its signature does not verify against the trusted authority of that name"
                        .to_string()
                }
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    "it is not valid for this host name".to_string()
                }
                other => format!("{other:?}"),
            };
            format!("the server's certificate was refused: {why}")
        }
        Some(other) => other.to_string(),
        None => e.to_string(),
    }
}
