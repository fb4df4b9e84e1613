//! TLS on the shared listener: each connection's handshake runs on that
//! connection's own task.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::{AcceptFuture, Acceptor, Io};

/// The acceptor for the server's own accept loop: each connection's TLS
/// handshake runs on that connection's task, bounded by
/// [`crate::tls::HANDSHAKE_TIMEOUT`].
pub fn connection_acceptor(acceptor: TlsAcceptor) -> Acceptor {
    Arc::new(move |tcp: TcpStream| {
        let acceptor = acceptor.clone();
        Box::pin(async move {
            let peer = tcp
                .peer_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            match crate::tls::handshake(&acceptor, tcp, peer).await {
                Some(tls) => {
                    let name = client_cert_name(&tls);
                    Ok((Box::new(tls) as Box<dyn Io>, name))
                }
                None => Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "TLS handshake failed",
                )),
            }
        }) as AcceptFuture
    })
}

/// The common name of the client certificate presented on `tls`, if any.
fn client_cert_name(
    tls: &tokio_rustls::server::TlsStream<TcpStream>,
) -> Option<crate::upstream::ClientCertName> {
    let der = tls.get_ref().1.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(crate::upstream::ClientCertName(cn.to_string()))
}
