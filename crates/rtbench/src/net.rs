//! TCP connections from a chosen loopback source address.
//!
//! Linux gives each (source address, port) pair to one socket at a time: one source address
//! holds about 28,000 connections (the ephemeral range 32768–60999) to a gateway. Binding each
//! socket to one of 127.0.0.1…127.0.0.N before connecting multiplies that by N; every
//! 127.0.0.0/8 address is local without any configuration.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

/// Connects to `to` from `source` (any port), with Nagle off: frames are small and latency
/// is what is measured.
pub async fn connect_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let stream = socket.connect(to).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Raises this process's open-file limit to at least `needed`: the soft limit up to the hard
/// one, and the hard one too when allowed (root). Returns the soft limit in force, and an
/// error naming the shortfall when it stays below `needed`.
pub fn raise_open_files(needed: u64) -> anyhow::Result<u64> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    if soft >= needed {
        return Ok(soft);
    }
    if hard < needed && rlimit::setrlimit(rlimit::Resource::NOFILE, needed, needed).is_ok() {
        return Ok(needed);
    }
    let now = rlimit::increase_nofile_limit(needed)?;
    if now < needed {
        anyhow::bail!(
            "the open-file limit is {now} (hard limit {hard}) but {needed} are needed for the \
             connections: raise it (ulimit -Hn, /etc/security/limits.conf) or run as root"
        );
    }
    Ok(now)
}
