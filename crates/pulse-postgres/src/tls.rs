//! Connection strings with libpq's TLS settings, so that health data crosses the network
//! encrypted and, when asked, only to the right server.
//!
//! tokio-postgres reads `sslmode=disable|prefer|require` but neither libpq's verifying
//! modes nor `sslrootcert`. [`connection`] takes them out of the string, leaves the rest to
//! tokio-postgres and builds the rustls connector they describe:
//!
//! | `sslmode` | encrypted | server certificate checked |
//! |---|---|---|
//! | `disable` | no | — |
//! | `prefer` (default) | when the server offers TLS | against `sslrootcert` if given |
//! | `require` | always | against `sslrootcert` if given (as libpq does) |
//! | `verify-ca` | always | chain against `sslrootcert` |
//! | `verify-full` | always | chain against `sslrootcert`, and the host name |
//!
//! `sslrootcert` is a PEM file of trusted certificates, or `system` for the machine's
//! trust store; the verifying modes need it. Both forms of connection string take these
//! settings: `postgres://db/health?sslmode=verify-full&sslrootcert=/etc/pulse/ca.pem` and
//! `host=db dbname=health sslmode=verify-full sslrootcert=/etc/pulse/ca.pem`.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode;
use tokio_postgres::Config;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The TLS connector every connection of Pulse to PostgreSQL uses.
pub type Tls = MakeRustlsConnect;

/// How the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// Not at all (encryption only).
    None,
    /// Its chain against the trusted roots.
    Chain,
    /// Its chain, and that it names the host connected to.
    ChainAndHost,
}

/// Reads a connection string (URL or key=value) with libpq's TLS settings: the
/// tokio-postgres configuration and the connector that applies them. Errors say what is
/// wrong in words fit for a configuration error.
pub fn connection(url: &str) -> Result<(Config, Tls), String> {
    let (rest, mode, root) = take_tls_settings(url)?;
    let mut config: Config = rest
        .parse()
        .map_err(|e| format!("invalid postgres url: {e}"))?;
    let (ssl_mode, check) = match mode.as_deref().unwrap_or("prefer") {
        "disable" => (SslMode::Disable, Check::None),
        "prefer" | "allow" => (SslMode::Prefer, root_check(&root)),
        "require" => (SslMode::Require, root_check(&root)),
        "verify-ca" => (SslMode::Require, Check::Chain),
        "verify-full" => (SslMode::Require, Check::ChainAndHost),
        other => {
            return Err(format!(
                "invalid sslmode {other:?}: expected disable, prefer, require, verify-ca or verify-full"
            ))
        }
    };
    config.ssl_mode(ssl_mode);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = match (check, root) {
        (Check::None, _) => None,
        (_, None) => {
            return Err(format!(
                "sslmode={} checks the server's certificate: add sslrootcert=<PEM file> or \
                 sslrootcert=system",
                mode.unwrap_or_default()
            ))
        }
        (_, Some(root)) => {
            let roots = Arc::new(load_roots(&root)?);
            let chain = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|e| format!("cannot use the certificates of sslrootcert={root}: {e}"))?;
            Some(chain)
        }
    };
    let verifier = Verifier {
        chain,
        host: check == Check::ChainAndHost,
        provider: Arc::clone(&provider),
    };
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok((config, MakeRustlsConnect::new(client)))
}

/// `prefer` and `require` check the chain when a root is given, like libpq.
fn root_check(root: &Option<String>) -> Check {
    if root.is_some() {
        Check::Chain
    } else {
        Check::None
    }
}

/// Splits `sslmode` and `sslrootcert` off `url`: what is left, and their values.
fn take_tls_settings(url: &str) -> Result<(String, Option<String>, Option<String>), String> {
    let (mut mode, mut root) = (None, None);
    let mut take = |key: &str, value: String| -> Result<bool, String> {
        let slot = match key {
            "sslmode" => &mut mode,
            "sslrootcert" => &mut root,
            _ => return Ok(false),
        };
        if slot.replace(value).is_some() {
            return Err(format!("{key} is given twice"));
        }
        Ok(true)
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_owned(), None, None));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(key, percent_decode(value)?)? {
                kept.push(pair);
            }
        }
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        // key=value pairs; the two settings never need quoting (a path with spaces does,
        // and is refused below rather than misread).
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            if value.starts_with('\'') && matches!(key, "sslmode" | "sslrootcert") {
                return Err(format!("{key} must be written without quotes"));
            }
            if !take(key, value.to_owned())? {
                kept.push(word);
            }
        }
        kept.join(" ")
    };
    Ok((rest, mode, root))
}

/// Decodes `%XX` escapes of a URL query value.
fn percent_decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("invalid %-escape in {value:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{value:?} is not UTF-8 once decoded"))
}

/// The trusted roots of `sslrootcert`: a PEM file, or the system's store.
fn load_roots(root: &str) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    if root == "system" {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = store.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err("sslrootcert=system: no trusted certificate found on this machine".into());
        }
        return Ok(store);
    }
    let file = std::fs::read(Path::new(root))
        .map_err(|e| format!("cannot read sslrootcert {root}: {e}"))?;
    for cert in rustls_pemfile::certs(&mut file.as_slice()) {
        let cert = cert.map_err(|e| format!("sslrootcert {root} is not PEM: {e}"))?;
        store
            .add(cert)
            .map_err(|e| format!("sslrootcert {root} holds an unusable certificate: {e}"))?;
    }
    if store.is_empty() {
        return Err(format!("sslrootcert {root} holds no certificate"));
    }
    Ok(store)
}

/// Checks the server's certificate as its [`Check`] says; the handshake signatures are
/// always checked. Without a check (`prefer` and `require` without `sslrootcert`) this
/// gives what libpq gives: encryption against eavesdropping, not against an impostor.
#[derive(Debug)]
struct Verifier {
    /// The chain check against the trusted roots (`None`: no check).
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// Whether the certificate must also name the host (`verify-full`).
    host: bool,
    /// The signature algorithms of the handshake.
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.host => Ok(ServerCertVerified::assertion()),
            checked => checked,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, Option<String>, Option<String>) {
        take_tls_settings(url).unwrap()
    }

    #[test]
    fn tls_settings_are_taken_out_of_both_forms() {
        assert_eq!(
            split("postgres://u@db/h?sslmode=verify-full&connect_timeout=3&sslrootcert=%2Fca.pem"),
            (
                "postgres://u@db/h?connect_timeout=3".to_owned(),
                Some("verify-full".to_owned()),
                Some("/ca.pem".to_owned())
            )
        );
        assert_eq!(
            split("postgres://db/h?sslmode=require"),
            (
                "postgres://db/h".to_owned(),
                Some("require".to_owned()),
                None
            )
        );
        assert_eq!(
            split("host=db sslrootcert=system dbname=h sslmode=verify-ca"),
            (
                "host=db dbname=h".to_owned(),
                Some("verify-ca".to_owned()),
                Some("system".to_owned())
            )
        );
        assert_eq!(
            split("postgres://db/h"),
            ("postgres://db/h".to_owned(), None, None)
        );
    }

    #[test]
    fn bad_tls_settings_are_refused_with_the_reason() {
        let refused = |url: &str| connection(url).map(|_| ()).unwrap_err();
        assert!(refused("postgres://db/h?sslmode=always").contains("invalid sslmode \"always\""));
        assert!(refused("postgres://db/h?sslmode=verify-full").contains("add sslrootcert"));
        assert!(refused("postgres://db/h?sslmode=require&sslmode=disable").contains("twice"));
        assert!(
            refused("postgres://db/h?sslmode=verify-ca&sslrootcert=/no/such.pem")
                .contains("cannot read sslrootcert /no/such.pem")
        );
        assert!(refused("postgres://db/h?sslrootcert=%zz").contains("invalid %-escape"));
        assert!(refused("host=db sslrootcert='/a b.pem'").contains("without quotes"));
        let empty = tempfile::NamedTempFile::new().unwrap();
        let empty = empty.path().display();
        assert!(refused(&format!(
            "postgres://db/h?sslmode=verify-ca&sslrootcert={empty}"
        ))
        .contains("holds no certificate"));
    }
}
