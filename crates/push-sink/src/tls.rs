//! TLS for [`crate::Protocol::Tls`]: a fresh self-signed certificate and the rustls server
//! configuration that offers HTTP/2 and HTTP/1.1 by ALPN.
//!
//! Real push services only speak HTTPS, and a sender's HTTP/2 pool negotiates `h2` through
//! ALPN, so load tests of the real client path need TLS. The certificate is generated per
//! start (rcgen) for `localhost`, `127.0.0.1` and the listen address; clients trust it through
//! [`crate::Sink::cert_pem`] or the file `cert_out` names. rustls runs on the aws-lc-rs
//! provider, passed explicitly so the process-wide default provider does not matter.

use std::net::IpAddr;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::SinkError;

/// A generated certificate and the acceptor that presents it.
pub(crate) struct SelfSigned {
    /// The certificate, PEM-encoded, for clients to trust.
    pub(crate) cert_pem: Vec<u8>,
    /// Accepts TLS connections with the certificate.
    pub(crate) acceptor: TlsAcceptor,
}

impl SelfSigned {
    /// Generates a certificate for `localhost`, `127.0.0.1`, `::1` and `listen_ip` (when it is
    /// a specific address).
    pub(crate) fn generate(listen_ip: IpAddr) -> Result<Self, SinkError> {
        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        let listen = listen_ip.to_string();
        if !listen_ip.is_unspecified() && !names.contains(&listen) {
            names.push(listen);
        }
        let certified = rcgen::generate_simple_self_signed(names)
            .map_err(|e| SinkError::Tls(format!("generating the certificate: {e}")))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| SinkError::Tls(format!("protocol versions: {e}")))?
                .with_no_client_auth()
                .with_single_cert(vec![certified.cert.der().clone()], key)
                .map_err(|e| SinkError::Tls(format!("installing the certificate: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(SelfSigned {
            cert_pem: certified.cert.pem().into_bytes(),
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_pem_certificate() {
        let tls = SelfSigned::generate(IpAddr::from([10, 1, 2, 3])).expect("generates");
        let pem = String::from_utf8(tls.cert_pem).expect("PEM is ASCII");
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        assert!(!pem.contains("PRIVATE KEY"));
    }
}
