//! `forward` for one-way and event relays (`wcf/PROTOCOL.md` §5, §11.4).
//! `--listen ... --oneway|--event` registers a Unicast or Multicast listener
//! over AMQP and passes each delivered message, unwrapped and addressed to
//! the service (`a:To` = its Via), to a local net.tcp one-way service over
//! one duplex msbinsession1 session. `--connect ...
//! --oneway` accepts local net.tcp one-way clients and publishes each of
//! their messages through the gateway's net.tcp endpoint as an SDK sender
//! does: preamble (with the TLS upgrade unless `--plain`), Connect with a
//! Send token, then every message, each answered by the gateway.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use wcf::framing::preamble::{PreambleConfig, ServerPreamble, Step};
use wcf::framing::{Mode, Record, ENCODING_MSBINSESSION1, UPGRADE_TLS};
use wcf::relay::{Connect, OnewaySend};
use wcf::soap::{must_understand, Element, Envelope, NS_WSA10};

use super::amqp::{self, Failure};
use super::{Backoff, Relay};
use crate::frontend::wcf::nmf::Session;
use crate::transport::stream::Transport;

/// Largest record a forwarded session reads.
const MAX_RECORD: usize = 4 << 20;

/// Open a client session to `addr` with `via`: the preamble, the TLS
/// upgrade when `tls` names the server, PreambleEnd, PreambleAck.
async fn open(addr: &str, via: &str, tls: Option<&Relay>) -> anyhow::Result<Session> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let _ = tcp.set_nodelay(true);
    let mut s = Session::new(Transport::Tcp(tcp), MAX_RECORD);
    let mut records: Vec<Record> =
        Record::preamble(Mode::Duplex, via, ENCODING_MSBINSESSION1).into();
    if let Some(relay) = tls {
        records.push(Record::UpgradeRequest(UPGRADE_TLS.into()));
        s.send_all(&records).await?;
        records.clear();
        match s.record().await? {
            Some((_, Record::UpgradeResponse)) => {}
            other => return Err(anyhow!("expected UpgradeResponse, got {other:?}")),
        }
        let (tcp, _) = s.take_tcp().ok_or_else(|| anyhow!("not a TCP session"))?;
        let stream = relay.tls_to(tcp).await.context("TLS upgrade")?;
        s = s.upgraded(Box::new(stream));
    }
    records.push(Record::PreambleEnd);
    s.send_all(&records).await?;
    match s.record().await? {
        Some((_, Record::PreambleAck)) => Ok(s),
        Some((_, Record::Fault(uri))) => Err(anyhow!("{addr} refused the session: {uri}")),
        other => Err(anyhow!("expected PreambleAck from {addr}, got {other:?}")),
    }
}

/// Register as a one-way (`Unicast`) or event (`Multicast`) listener and pass
/// every message to the local service at `to` with `via`.
pub async fn listen(
    relay: Relay,
    to: String,
    via: String,
    listener_type: &str,
) -> anyhow::Result<()> {
    let mut backoff = Backoff::new();
    loop {
        let failure = match amqp::attach(&relay, listener_type).await {
            Ok(l) => {
                backoff.reset();
                println!("attached {}", relay.uri);
                info!(uri = %relay.uri, listener_type, "listening");
                deliver_all(&to, &via, l).await
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

async fn deliver_all(to: &str, via: &str, mut l: amqp::Listener) -> Failure {
    let (tx, rx) = mpsc::channel(BATCH * 4);
    let writer = tokio::spawn(write_local(to.to_owned(), via.to_owned(), rx));
    let failure = loop {
        let data = match l.next().await {
            Ok(d) => d,
            Err(f) => break f,
        };
        // The local service sees itself addressed, as a service behind the
        // relay does (Mono filters on `a:To` even with AddressFilterMode.Any).
        match readdressed(&data, via) {
            Ok(p) => {
                if tx.send(p).await.is_err() {
                    break Failure {
                        fatal: true,
                        message: "the local writer stopped".into(),
                    };
                }
            }
            Err(e) => warn!(error = %e, "undecodable delivery"),
        }
    };
    writer.abort();
    failure
}

/// Most messages written to the local service in one write.
const BATCH: usize = 64;

/// Pass payloads to the local service over one session, as many as are
/// waiting in one write; one retry on a fresh session if it dropped the
/// old one.
async fn write_local(to: String, via: String, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut local: Option<Session> = None;
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.push(Record::SizedEnvelope(Bytes::from(first)));
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(Record::SizedEnvelope(Bytes::from(p))),
                Err(_) => break,
            }
        }
        for attempt in 0..2 {
            let mut session = match local.take() {
                Some(s) => s,
                None => match open(&to, &via, None).await {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(error = %e, dropped = batch.len(), "local service unreachable; messages dropped");
                        break;
                    }
                },
            };
            match session.send_all(&batch).await {
                Ok(()) => {
                    local = Some(session);
                    break;
                }
                Err(e) if attempt == 0 => debug!(error = %e, "local session lost; reopening"),
                Err(e) => warn!(error = %e, "messages not delivered to the local service"),
            }
        }
    }
}

/// The inner envelope of a delivery addressed to `via`, as a msbinsession1
/// payload: in one pass over its records when it has a `To` header (with an
/// empty StringTable: its strings stay inline), else through the tree.
fn readdressed(data: &[u8], via: &str) -> wcf::Result<Vec<u8>> {
    let limits = wcf::Limits::DEFAULT.with_max_message(MAX_RECORD);
    let inner = match OnewaySend::inner_of(data, limits)? {
        Some(inner) => inner,
        None => OnewaySend::from_envelope(&Envelope::decode(data, limits)?)?
            .inner
            .into(),
    };
    // An empty StringTable, then the document.
    let mut payload = vec![0x00];
    if !wcf::nbfx::transcode::replace_to(&inner, via, limits, &mut payload)? {
        payload.truncate(1);
        let env = Envelope::decode(&inner, limits)?
            .replace_header(must_understand(Element::new("a", "To", NS_WSA10).text(via)));
        payload.extend_from_slice(&env.to_msbin1());
    }
    Ok(payload)
}

/// Accept local one-way clients on `local` and publish their messages to
/// the relay through the gateway's net.tcp endpoint `nettcp`.
pub async fn connect(relay: Relay, local: SocketAddr, nettcp: String) -> anyhow::Result<()> {
    let listener = TcpListener::bind(local)
        .await
        .with_context(|| format!("binding --local {local}"))?;
    println!("ready {}", listener.local_addr()?);
    info!(uri = %relay.uri, "publishing local one-way clients to the relay");
    loop {
        let (client, peer) = listener.accept().await?;
        let (relay, nettcp) = (relay.clone(), nettcp.clone());
        tokio::spawn(async move {
            if let Err(e) = publish(&relay, &nettcp, client).await {
                warn!(%peer, error = %e, "one-way client not forwarded");
            }
        });
    }
}

async fn publish(relay: &Relay, nettcp: &str, client: TcpStream) -> anyhow::Result<()> {
    let mut local = Session::new(Transport::Tcp(client), MAX_RECORD);
    let mut preamble = ServerPreamble::new(PreambleConfig::default());
    loop {
        let Some((at, record)) = local.record().await? else {
            return Ok(());
        };
        match preamble.feed(&record, at) {
            Ok(Step::Continue) => {}
            Ok(Step::Complete(_)) => break,
            Ok(Step::Upgrade(_)) => return Err(anyhow!("local clients cannot upgrade")),
            Err(wcf::Error::Framing { fault, message, .. }) => {
                local.framing_fault(fault).await;
                return Err(anyhow!("local preamble: {message}"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let port = nettcp.rsplit_once(':').map_or("9351", |(_, p)| p);
    let via = format!("net.tcp://{}:{port}/{}/", relay.host, relay.path);
    let mut gateway = open(nettcp, &via, (!relay.plain).then_some(relay)).await?;
    let id = format!("urn:uuid:{}", crate::relay::Guid::random());
    let hello = Connect {
        message_id: id.clone(),
        token: Some(relay.token()),
        uri: relay.uri.clone(),
    }
    .to_envelope(&relay.uri);
    gateway.send_envelope(&hello).await?;
    check(&mut gateway).await?;
    local.send(&Record::PreambleAck).await?;
    loop {
        match local.record().await? {
            Some((_, Record::SizedEnvelope(p))) => {
                let env = local.decode(&p)?;
                gateway.send_envelope(&env).await?;
                if let Err(e) = check(&mut gateway).await {
                    warn!(error = %e, "the gateway refused a message");
                }
            }
            Some((_, Record::End)) | None => {
                let _ = gateway.send(&Record::End).await;
                let _ = local.send(&Record::End).await;
                let _ = tokio::time::timeout(Duration::from_secs(5), gateway.receive()).await;
                return Ok(());
            }
            Some((_, other)) => return Err(anyhow!("unexpected record {}", other.describe())),
        }
    }
}

/// Read the gateway's answer to a Connect or message; a fault is an error.
async fn check(gateway: &mut Session) -> anyhow::Result<()> {
    match gateway.receive().await? {
        Some(reply) => match reply.fault() {
            Some(f) => Err(anyhow!("{}: {}", f.code.1, f.reason)),
            None => Ok(()),
        },
        None => Err(anyhow!("the gateway closed the session")),
    }
}
