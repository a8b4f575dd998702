//! `relay-gateway forward`: the gateway's own WCF relay client, so that a
//! service or client without Microsoft.ServiceBus.dll can use the relay as
//! NetTcpRelayBinding does (`wcf/PROTOCOL.md` §2, §3). `--listen`
//! registers as a RelayedConnection listener over AMQP and splices each
//! rendezvous to a local service ([`listen`], over [`amqp`]); `--connect`
//! accepts local net.tcp clients and carries each through a RelayedConnect
//! ([`connect`]); `--listen --http` serves an HTTP relay from a local web
//! server ([`http`]). With `--hc`, the same roles for Hybrid Connections
//! ([`hc`]). All sign their own tokens (or take one), trust a given CA,
//! and reconnect with back-off.

pub mod amqp;
pub mod connect;
pub mod hc;
pub mod http;
pub mod listen;
pub mod oneway;
pub mod spare;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use wcf::relay::{ConnectPreamble, RelayFault, MAX_PREFIXED_MESSAGE};
use wcf::soap::Envelope;

use crate::transport::stream::Conn;

/// Options of `relay-gateway forward`.
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("role").required(true).args(["listen", "connect"])))]
pub struct Options {
    /// Register as a listener for this relay address (sb://HOST/PATH; with
    /// --hc, http(s):// or ws(s)://HOST[:PORT]/PATH) ...
    #[arg(long, value_name = "URI", requires = "to")]
    pub listen: Option<String>,
    /// ... and splice each connection to this local service.
    #[arg(long, value_name = "HOST:PORT")]
    pub to: Option<String>,
    /// Carry local clients to this relay address (as for --listen) ...
    #[arg(long, value_name = "URI", requires = "local")]
    pub connect: Option<String>,
    /// ... accepting them on this local address.
    #[arg(long, value_name = "ADDR:PORT")]
    pub local: Option<SocketAddr>,
    /// The gateway's AMQP endpoint (default: the address's host, port 5671).
    #[arg(long, value_name = "HOST:PORT")]
    pub amqp: Option<String>,
    /// The gateway's relayed-connect endpoint (default: the address's host, port 9352).
    #[arg(long, value_name = "HOST:PORT")]
    pub relayed: Option<String>,
    /// The key tokens are signed and renewed from.
    #[command(flatten)]
    pub keys: crate::state::KeyArgs,
    /// A ready-made token instead of a key (not renewed).
    #[arg(long, conflicts_with_all = ["key", "key_file"])]
    pub token: Option<String>,
    /// Lifetime of signed tokens in seconds (renewed at half-life).
    #[arg(long, default_value_t = 3600)]
    pub token_ttl: u64,
    /// CA certificate (PEM) to trust for the gateway (default: the embedded
    /// default's development CA in the state directory).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Relayed connections without TLS (flag byte 0x00); a listener then
    /// registers with transport-security-required = false. One-way senders
    /// then use the plain net.tcp endpoint (9350) instead of the TLS upgrade.
    #[arg(long)]
    pub plain: bool,
    /// One-way relay (NetOnewayRelayBinding): listen as a Unicast listener,
    /// or publish local one-way clients.
    #[arg(long, conflicts_with = "event")]
    pub oneway: bool,
    /// Event relay (NetEventRelayBinding): listen as a Multicast listener,
    /// or publish local one-way clients.
    #[arg(long)]
    pub event: bool,
    /// With --listen: an HTTP relay listener (RelayedHttp, the listener side
    /// of WebHttpRelayBinding and its siblings) that turns each relayed
    /// request into a plain HTTP request to --to (an http:// URL whose path
    /// prefixes the request's path below the relay); with --plain, plain
    /// HTTP clients are accepted.
    #[arg(long, conflicts_with_all = ["oneway", "event", "connect"])]
    pub http: bool,
    /// Register with client-authentication-required = false: the gateway
    /// then lets clients in without a Send token.
    #[arg(long)]
    pub no_client_auth: bool,
    /// Hybrid Connections instead of the WCF relay: --listen serves the
    /// hybrid connection from the TCP service at --to (with --http, relayed
    /// HTTP requests from the web server at --to), --connect carries local
    /// TCP clients to it.
    #[arg(long, conflicts_with_all = ["oneway", "event", "plain", "amqp", "relayed", "nettcp", "via", "no_client_auth"])]
    pub hc: bool,
    /// The gateway's net.tcp endpoint for one-way senders (default: the
    /// address's host, port 9351, or 9350 with --plain).
    #[arg(long, value_name = "HOST:PORT")]
    pub nettcp: Option<String>,
    /// With --listen and --oneway/--event: the Via of the session to the
    /// local service (default net.tcp://TO/PATH).
    #[arg(long, value_name = "URI")]
    pub via: Option<String>,
}

/// What both roles share: the relay address, where the gateway is, TLS and tokens.
#[derive(Clone)]
pub struct Relay {
    /// The relay address, with a trailing slash (`sb://host/path/`).
    pub uri: String,
    /// Its host (the TLS name and the token audience's host).
    pub host: String,
    /// Its path.
    pub path: String,
    /// The AMQP endpoint.
    pub amqp: String,
    /// The relayed-connect endpoint.
    pub relayed: String,
    /// TLS towards the gateway.
    pub tls: TlsConnector,
    /// Whether relayed connections skip TLS.
    pub plain: bool,
    /// Whether the listener asks the gateway to require client tokens.
    pub client_auth: bool,
    /// The listener's dial-back opened ahead of need.
    pub spares: spare::Spares,
    tokens: Tokens,
}

#[derive(Clone)]
enum Tokens {
    Fixed(String),
    Signed {
        name: String,
        key: crate::config::Secret,
        ttl: u64,
    },
}

impl Relay {
    /// A token for the relay address (fresh when signing).
    pub fn token(&self) -> String {
        match &self.tokens {
            Tokens::Fixed(t) => t.clone(),
            Tokens::Signed { name, key, ttl } => hybrid::sas::create(
                &format!("http://{}/{}/", self.host, self.path),
                name,
                key.expose(),
                crate::auth::now() + ttl,
            ),
        }
    }

    /// When to renew the token, if it can be renewed.
    pub fn renew_every(&self) -> Option<Duration> {
        match &self.tokens {
            Tokens::Fixed(_) => None,
            Tokens::Signed { ttl, .. } => Some(Duration::from_secs((ttl / 2).max(1))),
        }
    }

    /// TLS to the gateway for the relay's host.
    pub async fn tls_to<S>(&self, io: S) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(self.host.clone())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        self.tls.connect(name, io).await
    }

    /// Open a relayed connection to `addr` and send `hello` (a RelayedConnect
    /// or RelayedAccept); returns the connection once the gateway's reply is
    /// not a fault.
    pub async fn relayed_hello(&self, addr: &str, hello: &Envelope) -> anyhow::Result<Conn> {
        let msg = hello.to_msbin1();
        let mut conn = self.open_relayed(addr, Some(&msg)).await?;
        let reply = conn.read_message(MAX_PREFIXED_MESSAGE).await?;
        check_reply(conn, &reply)
    }

    /// Open a relayed connection to `addr`: TCP, the preamble, TLS unless
    /// plain, then `msg` if given (when plain, in the preamble's write).
    pub async fn open_relayed(&self, addr: &str, msg: Option<&[u8]>) -> anyhow::Result<Conn> {
        let mut tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let _ = tcp.set_nodelay(true);
        let mut pre = Vec::new();
        ConnectPreamble {
            via: self.uri.clone(),
            tls: !self.plain,
        }
        .encode(&mut pre);
        if self.plain {
            if let Some(msg) = msg {
                wcf::relay::write_prefixed(msg, &mut pre);
            }
            tokio::io::AsyncWriteExt::write_all(&mut tcp, &pre).await?;
            return Ok(Conn::tcp(tcp, BytesMut::new()));
        }
        tokio::io::AsyncWriteExt::write_all(&mut tcp, &pre).await?;
        let tls = self.tls_to(tcp).await.context("TLS to the gateway")?;
        let mut conn = Conn::new(Box::new(tls), BytesMut::new());
        if let Some(msg) = msg {
            conn.write_message(msg).await?;
        }
        Ok(conn)
    }
}

/// `conn` if the gateway's `reply` to a hello is not a fault.
pub fn check_reply(conn: Conn, reply: &[u8]) -> anyhow::Result<Conn> {
    let reply = Envelope::decode(reply, wcf::Limits::DEFAULT)?;
    if let Some(f) = reply.fault() {
        let code = RelayFault::from_code(&f.code.0, &f.code.1)
            .map_or_else(|| f.code.1.clone(), |c| c.code().to_owned());
        return Err(anyhow!("the gateway refused: {code}: {}", f.reason));
    }
    Ok(conn)
}

fn client_tls(ca: &std::path::Path) -> anyhow::Result<TlsConnector> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("{}", ca.display()))? {
        roots.add(cert.with_context(|| format!("{}", ca.display()))?)?;
    }
    client_tls_with(roots)
}

fn client_tls_with(roots: RootCertStore) -> anyhow::Result<TlsConnector> {
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Build the shared settings from the options.
pub fn relay(opts: &Options, uri: &str) -> anyhow::Result<Relay> {
    let rest = uri
        .strip_prefix("sb://")
        .ok_or_else(|| anyhow!("the relay address must be sb://HOST/PATH, not {uri}"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.trim_matches('/').to_owned();
    if host.is_empty() || path.is_empty() {
        return Err(anyhow!(
            "the relay address must name a host and a path: {uri}"
        ));
    }
    build(opts, host.to_owned(), path, true)
}

/// The shared settings for the relay at `host` and `path`; without `tls`
/// (plain `ws://` Hybrid Connections), a missing CA file is no error.
fn build(opts: &Options, host: String, path: String, tls: bool) -> anyhow::Result<Relay> {
    let tokens = match &opts.token {
        Some(t) => Tokens::Fixed(t.clone()),
        None => {
            let (name, key) = opts.keys.resolve().map_err(|e| anyhow!(e))?;
            Tokens::Signed {
                name,
                key,
                ttl: opts.token_ttl.max(2),
            }
        }
    };
    let ca = opts
        .ca
        .clone()
        .unwrap_or_else(|| opts.keys.dir().join("ca.pem"));
    Ok(Relay {
        uri: format!("sb://{host}/{path}/"),
        amqp: opts.amqp.clone().unwrap_or_else(|| format!("{host}:5671")),
        relayed: opts
            .relayed
            .clone()
            .unwrap_or_else(|| format!("{host}:9352")),
        tls: match client_tls(&ca) {
            Ok(connector) => connector,
            Err(_) if !tls && opts.ca.is_none() => client_tls_with(RootCertStore::empty())?,
            Err(e) => return Err(e),
        },
        plain: opts.plain,
        client_auth: !opts.no_client_auth,
        spares: spare::Spares::default(),
        host,
        path,
        tokens,
    })
}

/// How forwarded connections are spliced: as the gateway's defaults (no
/// idle limit, its linger after one side ends).
pub fn splice_limits() -> crate::relay::SpliceLimits {
    crate::config::Limits::default().splice()
}

/// Back-off between reconnects: 1 s doubling to 10 s (§8), reset by success.
pub struct Backoff(Duration);

impl Backoff {
    /// The first delay.
    pub fn new() -> Self {
        Backoff(Duration::from_secs(1))
    }
    /// Wait, then lengthen the next wait.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(10));
    }
    /// Start again from the first delay.
    pub fn reset(&mut self) {
        self.0 = Duration::from_secs(1);
    }
}

/// Run the role the options ask for, until interrupted.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    if opts.hc {
        return run_hc(opts).await;
    }
    let messages = opts.oneway || opts.event;
    match (&opts.listen, &opts.to, &opts.connect, opts.local) {
        (Some(uri), Some(to), None, None) if messages => {
            let relay = relay(&opts, uri)?;
            let via = opts
                .via
                .clone()
                .unwrap_or_else(|| format!("net.tcp://{to}/{}", relay.path));
            let kind = if opts.event { "Multicast" } else { "Unicast" };
            oneway::listen(relay, to.clone(), via, kind).await
        }
        (Some(uri), Some(to), None, None) if opts.http => {
            http::listen(relay(&opts, uri)?, to).await
        }
        (Some(uri), Some(to), None, None) => listen::run(relay(&opts, uri)?, to.clone()).await,
        (None, None, Some(uri), Some(local)) if messages => {
            let relay = relay(&opts, uri)?;
            let port = if relay.plain { 9350 } else { 9351 };
            let nettcp = opts
                .nettcp
                .clone()
                .unwrap_or_else(|| format!("{}:{port}", relay.host));
            oneway::connect(relay, local, nettcp).await
        }
        (None, None, Some(uri), Some(local)) => connect::run(relay(&opts, uri)?, local).await,
        _ => Err(anyhow!(
            "use --listen URI --to HOST:PORT, or --connect URI --local ADDR:PORT"
        )),
    }
}

/// The `--hc` roles.
async fn run_hc(opts: Options) -> anyhow::Result<()> {
    let hc_relay = |uri: &str| -> anyhow::Result<(Relay, hc::Endpoint)> {
        let mut ep = hc::endpoint(uri)?;
        ep.rest = ep.rest.trim_matches('/').to_owned();
        if ep.rest.is_empty() || ep.rest.contains('?') {
            return Err(anyhow!(
                "the hybrid connection address must name a path (and no query): {uri}"
            ));
        }
        Ok((build(&opts, ep.host.clone(), ep.rest.clone(), ep.tls)?, ep))
    };
    match (&opts.listen, &opts.to, &opts.connect, opts.local) {
        (Some(uri), Some(to), None, None) => {
            let (relay, ep) = hc_relay(uri)?;
            let service = if opts.http {
                hc::Service::Http(http::target(to)?)
            } else {
                hc::Service::Tcp(to.clone())
            };
            hc::listen(relay, ep, service).await
        }
        (None, None, Some(uri), Some(local)) => {
            let (relay, ep) = hc_relay(uri)?;
            hc::connect(relay, ep, local).await
        }
        _ => Err(anyhow!(
            "use --hc --listen URL --to HOST:PORT, or --hc --connect URL --local ADDR:PORT"
        )),
    }
}
