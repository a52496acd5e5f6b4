//! Where the server listens: an address it binds itself, or a listener its caller has
//! bound already.
//!
//! A caller binds first when it must know the port is free before it does anything else
//! (`pulse serve` binds before it creates its data directory, so a busy port leaves nothing
//! behind) or when it resolves a host name such as `localhost` its own way.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::server::ServerError;

/// Where the server listens.
#[derive(Debug)]
#[non_exhaustive]
pub enum Listen {
    /// Bind this address (port 0 picks a free port).
    Addr(SocketAddr),
    /// Serve on a listener the caller has bound: so that it can bind before doing
    /// anything else (`pulse serve` binds before it creates its data directory), or
    /// resolve a host name its own way.
    Bound(std::net::TcpListener),
}

impl From<SocketAddr> for Listen {
    fn from(addr: SocketAddr) -> Self {
        Self::Addr(addr)
    }
}

impl From<std::net::TcpListener> for Listen {
    fn from(listener: std::net::TcpListener) -> Self {
        Self::Bound(listener)
    }
}

impl std::str::FromStr for Listen {
    type Err = std::net::AddrParseError;

    /// An address such as `127.0.0.1:7400` (no name resolution).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse().map(Self::Addr)
    }
}

/// Checks that `text` is `host:port` (a host name, an IPv4 address or a bracketed IPv6
/// address, and a port number), as `--listen` and `[server] listen` take it; the host is
/// resolved when it is bound. The error says what is expected.
pub fn check_host_port(text: &str) -> Result<(), String> {
    let port = text.rsplit_once(':').and_then(|(host, port)| {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        (!host.is_empty()).then_some(port)
    });
    match port.map(str::parse::<u16>) {
        Some(Ok(_)) => Ok(()),
        _ => Err(format!(
            "{text:?} is not host:port, such as 127.0.0.1:7400 or localhost:7400"
        )),
    }
}

impl Listen {
    /// The listener to accept on, bound now unless the caller has bound it.
    pub(crate) async fn bind(self) -> Result<TcpListener, ServerError> {
        match self {
            Self::Addr(addr) => TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source }),
            Self::Bound(listener) => {
                let addr = listener
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                listener
                    .set_nonblocking(true)
                    .and_then(|()| TcpListener::from_std(listener))
                    .map_err(|source| ServerError::Bind { addr, source })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[tokio::test]
    async fn a_busy_address_is_a_bind_error_whose_chain_names_the_os_error_once() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = Listen::Addr(addr).bind().await.unwrap_err();
        let ServerError::Bind {
            addr: named,
            source,
        } = &err
        else {
            panic!("expected a bind error, got {err}");
        };
        assert_eq!(*named, addr);
        assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        // What `{:#}` of an anyhow error built on it prints: every source in turn.
        let mut chain = err.to_string();
        let mut cause = err.source();
        while let Some(c) = cause {
            chain = format!("{chain}: {c}");
            cause = c.source();
        }
        assert_eq!(chain.matches(&source.to_string()).count(), 1, "{chain}");
    }

    #[tokio::test]
    async fn a_bound_listener_is_served_as_it_is() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let adopted = Listen::from(listener).bind().await.unwrap();
        assert_eq!(adopted.local_addr().unwrap(), addr);
        let (accepted, connected) =
            tokio::join!(adopted.accept(), tokio::net::TcpStream::connect(addr));
        assert!(accepted.is_ok() && connected.is_ok());
    }
}
