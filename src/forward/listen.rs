//! `forward --listen`: a RelayedConnection listener (`wcf/PROTOCOL.md`
//! §2, §3.2, §3.3). For each notice it connects to the local service, dials
//! the gateway back at the notice's address with RelayedAccept, and splices
//! the two; the control channel reconnects with back-off and renews its
//! token at half-life.

use std::time::Duration;

use anyhow::{anyhow, Context};
use bytes::BytesMut;
use tokio::net::TcpStream;
use tracing::{debug, info, warn};
use wcf::relay::{Notice, OnewaySend, RelayedAccept, MAX_PREFIXED_MESSAGE};
use wcf::soap::Envelope;

use super::amqp::{self, Failure};
use super::{Backoff, Relay};
use crate::relay::Guid;
use crate::transport::stream::{self, Conn};

/// Listen until interrupted or refused for good; prints `attached URI` each
/// time the listener (re)attaches.
pub async fn run(relay: Relay, to: String) -> anyhow::Result<()> {
    listen(relay, "RelayedConnection", move |relay, data| {
        let to = to.clone();
        async move { splice_to(&relay, &to, &data).await }
    })
    .await
}

/// Attach as a listener of `listener_type` and run `on_notice` on its own
/// task for every notice (the delivered data section), reattaching with
/// back-off until refused for good.
pub async fn listen<F, Fut>(relay: Relay, listener_type: &str, on_notice: F) -> anyhow::Result<()>
where
    F: Fn(Relay, Vec<u8>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut backoff = Backoff::new();
    loop {
        let failure = match amqp::attach(&relay, listener_type).await {
            Ok(l) => {
                backoff.reset();
                println!("attached {}", relay.uri);
                info!(uri = %relay.uri, "listening");
                serve(&relay, l, on_notice.clone()).await
            }
            Err(f) => f,
        };
        if failure.fatal {
            return Err(anyhow!("{}", failure.message));
        }
        warn!(reason = %failure.message, "control channel lost; reconnecting");
        backoff.wait().await;
    }
}

async fn serve<F, Fut>(relay: &Relay, mut l: amqp::Listener, on_notice: F) -> Failure
where
    F: Fn(Relay, Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let period = relay
        .renew_every()
        .unwrap_or(Duration::from_secs(u64::MAX / 4));
    let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            d = l.next() => match d {
                Ok(data) => {
                    let task = on_notice(relay.clone(), data);
                    tokio::spawn(async move {
                        if let Err(e) = task.await {
                            warn!(error = %e, "rendezvous failed");
                        }
                    });
                }
                Err(f) => return f,
            },
            _ = renew.tick() => {
                if let Err(f) = l.renew(&relay.token()).await {
                    return f;
                }
            }
        }
    }
}

/// Dial the gateway back for the notice in `data` (RelayedAccept).
pub async fn dial_back(relay: &Relay, data: &[u8]) -> anyhow::Result<Conn> {
    let limits = wcf::Limits::DEFAULT;
    let wrapper = OnewaySend::from_envelope(&Envelope::decode(data, limits)?)?;
    let notice = Notice::from_envelope(&Envelope::decode(&wrapper.inner, limits)?)?;
    let addr = format!("{}:{}", notice.ip, notice.ip_port);
    // As the SDK: the id is read as a System.Guid and written back with
    // Guid.ToString(), so a gateway that matched the text would fail here too.
    let id = Guid::parse(&notice.id)
        .with_context(|| format!("the notice id {:?} is not a GUID", notice.id))?;
    let hello = RelayedAccept { id: id.to_string() }.to_envelope();
    let spare = relay.spares.take(&addr);
    if let Some(mut conn) = spare {
        let written = conn.write_message(&hello.to_msbin1()).await;
        // The next spare is opened while the gateway answers this one.
        relay.spares.refill(relay, addr.clone());
        let reply = match written {
            Ok(()) => conn.read_message(MAX_PREFIXED_MESSAGE).await,
            Err(e) => Err(e),
        };
        match reply {
            Ok(reply) => return super::check_reply(conn, &reply),
            // No reply: the gateway closed the spare before reading it (or
            // read it for a client that had left; the fresh dial is then
            // refused as an unknown rendezvous, as it would have been).
            Err(e) => debug!(error = %e, "the spare dial-back was closed; dialing anew"),
        }
    } else {
        relay.spares.refill(relay, addr.clone());
    }
    relay.relayed_hello(&addr, &hello).await
}

async fn splice_to(relay: &Relay, to: &str, data: &[u8]) -> anyhow::Result<()> {
    // The local service and the dial-back are opened together (the
    // RelayedAccept written first: the client waits for it).
    let (conn, service) = tokio::join!(dial_back(relay, data), TcpStream::connect(to));
    let service = service.with_context(|| format!("connecting to the local service {to}"))?;
    let _ = service.set_nodelay(true);
    let conn = conn?;
    let service = Conn::tcp(service, BytesMut::new());
    let stats = stream::splice(
        conn,
        service,
        super::splice_limits(),
        std::future::pending(),
    )
    .await;
    debug!(end = %stats.end, "relayed connection ended");
    Ok(())
}
