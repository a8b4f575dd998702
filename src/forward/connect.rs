//! `forward --connect`: accept local net.tcp clients and carry each through
//! a RelayedConnect to the relay (`wcf/PROTOCOL.md` §3.1): preamble, TLS,
//! the RelayedConnect with a Send token, the reply, then the client's own
//! bytes untouched in both directions.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};
use wcf::relay::RelayedConnect;

use super::Relay;

use crate::transport::stream::{self, Conn};

/// Accept local clients on `local` until interrupted; prints `ready ADDR`.
pub async fn run(relay: Relay, local: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(local)
        .await
        .with_context(|| format!("binding --local {local}"))?;
    println!("ready {}", listener.local_addr()?);
    info!(uri = %relay.uri, "forwarding local clients to the relay");
    loop {
        let (client, peer) = listener.accept().await?;
        let relay = relay.clone();
        tokio::spawn(async move {
            if let Err(e) = carry(&relay, client).await {
                warn!(%peer, error = %e, "relayed connection failed");
            }
        });
    }
}

async fn carry(relay: &Relay, client: TcpStream) -> anyhow::Result<()> {
    let _ = client.set_nodelay(true);
    let hello = RelayedConnect {
        tracking_id: Some(crate::relay::Guid::random().to_string()),
        token: Some(relay.token()),
        uri: relay.uri.clone(),
    }
    .to_envelope();
    let conn = relay.relayed_hello(&relay.relayed, &hello).await?;
    let client = Conn::tcp(client, BytesMut::new());
    let stats = stream::splice(client, conn, super::splice_limits(), std::future::pending()).await;
    debug!(end = %stats.end, "relayed connection ended");
    Ok(())
}
