//! TLS for the listeners (rustls with the ring provider): loading a listener's certificate, key
//! and client CA from PEM files into an acceptor. The handshake itself runs in [`crate::serve`].

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
pub use tokio_rustls::TlsAcceptor;

use crate::config::{ConfigError, TlsListener};

/// ALPN of the worker endpoint: gRPC is HTTP/2 only.
pub const ALPN_H2: &[&[u8]] = &[b"h2"];
/// ALPN of the front door: HTTP/2 or HTTP/1.1.
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

/// An acceptor for `[tls.<what>]`: its certificate chain and key, offering `alpn`; with
/// `client_ca`, clients must present a certificate that chains to it.
pub fn acceptor(what: &str, tls: &TlsListener, alpn: &[&[u8]]) -> Result<TlsAcceptor, ConfigError> {
    let invalid =
        |file: &Path, why: String| ConfigError::Invalid(format!("tls.{what}: {}: {why}", file.display()));
    let read = |file: &Path| std::fs::read(file).map_err(|e| invalid(file, format!("cannot read: {e}")));

    let pem = read(&tls.cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(&tls.cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(&tls.cert, "no CERTIFICATE in the file".into()));
    }
    let pem = read(&tls.key)?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| invalid(&tls.key, format!("no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}")))?;

    // ring, not aws-lc-rs: no C toolchain or cmake in the build, and kube already brings it.
    // rustls 0.23.48 deprecates ring's provider for lacking post-quantum key exchange; the
    // classical suites it offers are the ones every worker and client here speaks.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Invalid(format!("tls.{what}: {e}")))?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let pem = read(ca)?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| invalid(ca, format!("not a PEM certificate: {e}")))?;
                roots.add(cert).map_err(|e| invalid(ca, format!("not a usable CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(invalid(ca, "no CERTIFICATE in the file".into()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid(ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| invalid(&tls.key, format!("does not fit the certificate: {e}")))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}
