//! What the accept loop hands each connection: the byte stream served ([`Io`]) and the step that makes it from a TCP stream ([`Acceptor`], e.g. a TLS handshake).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A connection's byte stream once accepted (plain TCP, or TLS around it).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// The future of an [`Acceptor`]: the stream to serve HTTP on, and its client certificate name.
pub type AcceptFuture = Pin<Box<dyn Future<Output = io::Result<Accepted>> + Send>>;

/// A stream to serve HTTP on, with the name of the client certificate it
/// presented, if any (see [`crate::upstream::Caller`]).
pub type Accepted = (Box<dyn Io>, Option<crate::upstream::ClientCertName>);

/// Turns an accepted TCP stream into the stream HTTP is served on, e.g. a
/// TLS handshake. Runs on the connection's own task, never in the accept loop.
pub type Acceptor = Arc<dyn Fn(TcpStream) -> AcceptFuture + Send + Sync>;
