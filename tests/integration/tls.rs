//! TLS: the system's certificate store is trusted, and `SSL_CERT_FILE`
//! names one, so llmroute works behind a TLS-inspecting proxy whose CA
//! the bundled roots do not know.
//!
//! `tests/fixtures/tls/` holds a CA and a certificate it signed for
//! 127.0.0.1, both valid for 100 years, made with:
//!
//! ```sh
//! openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 36500 \
//!   -subj "/CN=llmroute test CA" -addext "basicConstraints=critical,CA:TRUE" \
//!   -addext "keyUsage=critical,keyCertSign,cRLSign"
//! openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1"
//! openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
//!   -days 36500 -extfile <(printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
//! ```
//!
//! (the CA's key was thrown away).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::util::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// A TLS front for `backend` on 127.0.0.1, like a proxy that terminates
/// TLS with its own CA. Runs until the test process ends.
fn tls_front(backend: SocketAddr) -> SocketAddr {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(fixture("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
    });
    addr
}

#[test]
fn ssl_cert_file_is_trusted_beside_the_bundled_roots() {
    let env = Env::three();
    let front = tls_front(env.server.addr());
    let base = format!("https://{front}/api/v1");
    let run = |cert_file: Option<PathBuf>| {
        let mut cmd = env
            .cmd()
            .env("LLMROUTE_BASE_URL", &base)
            .args(["--models", "t/a", "--no-cache", "--max-attempts", "1"])
            .stdin(prompts(1));
        if let Some(f) = cert_file {
            cmd = cmd.env("SSL_CERT_FILE", f);
        }
        cmd.run()
    };
    // An unknown CA is refused...
    let out = run(None);
    out.assert_code(1);
    assert!(out.stdout.contains("certificate"), "{}", out.stdout);
    assert_eq!(env.server.completions().len(), 0);
    // ...and trusted once SSL_CERT_FILE names it.
    let out = run(Some(fixture("ca.pem")));
    out.assert_code(0);
    assert_eq!(answered_by(&out.lines()[0]), "t/a");
    assert_eq!(env.server.completions().len(), 1);
}
