//! The `relay-gateway` binary: the gateway itself (`serve`) and its tools
//! (`forward`, `token`, `decode`, `encode`, `check-config`).
//!
//! # Design
//!
//! Two front ends, one core. `frontend::wcf` speaks the WCF relay
//! (`wcf/PROTOCOL.md`), `frontend::hybrid` Hybrid Connections
//! (`hybrid/PROTOCOL.md`); they are the only code that names both the core
//! and a protocol crate, and each owns its sockets and TLS. The core
//! (`relay`) knows listeners by path (`registry`), pending rendezvous by id
//! (`rendezvous`) and how to splice two legs (`splice`, `zerocopy`); it names
//! no protocol type (`tests/core_seam.rs` checks). A listen registers a
//! listener for its path; a connect parks its client under a fresh id and
//! hands one listener a request; the listener's answer (a dial-back, a
//! rendezvous upgrade, a response) completes the rendezvous and the legs are
//! spliced. Which listener a connect reaches goes through one seam
//! (`relay::Routes`): this node's registry alone, or a cluster of nodes over
//! NATS (`cluster`, as protocol-neutral as the core), where the request
//! carries the client's node and the listener dials there. A path may be
//! served by both protocols (`frontend::bridge`, the one module that names
//! both front ends). The protocol crates `wcf` and `hybrid` are sans-IO.
//! `server` binds the endpoints (reported on one `ready` line; port 0
//! allowed). `forward`, the relay client, is a sibling of the front ends:
//! both stand on `transport` (byte streams, WebSockets server and client
//! side, HTTP bodies).
//!
//! # House habits
//!
//! 1. Protocol code in `wcf` and `hybrid` is sans-IO: no sockets, tasks or
//!    clock; "need more bytes" is `Ok(None)`. Sessions with timers (the AMQP
//!    control channel's two ends, the Hybrid Connections listener channel)
//!    are state machines given `now` that say when they next need it; the
//!    front ends and `forward` drive them.
//! 2. Everything is bounded: every length read off the wire is checked
//!    against a named limit before allocating, every channel and pending
//!    table has a cap and a deadline.
//! 3. Every wait has a timeout, on by default (handshakes, headers,
//!    rendezvous, idle, linger, drain).
//! 4. Splices pass a half-close on, linger a bounded time, then close both.
//! 5. No `unwrap`, `expect`, `panic!` or unchecked indexing on input-driven
//!    paths (workspace lints; tests are exempt).
//! 6. Typed errors with context at the leaves; the core's errors say which
//!    side failed; `anyhow` only at the top.
//! 7. Every public item is documented; every module says what it
//!    implements and where that is described.
//! 8. One tracing span per connection; secrets (keys, tokens, signatures)
//!    live in redacting types and never reach a log.
//! 9. Shutdown is passed in: stop accepting, drain until a grace deadline,
//!    then abort.
//! 10. Every bug and fuzz crash becomes a test or fixture that failed before
//!     its fix; every fixture names its source.
//! 11. Where our code plays a real client (`forward`, test listeners), it
//!     does what the SDK does (re-parses GUIDs, URIs and numbers as the SDK
//!     types them), so a test cannot pass on an assumption the SDK breaks.

mod admin;
mod auth;
mod cluster;
mod config;
mod forward;
mod frontend;
mod relay;
mod reload;
mod server;
mod shutdown;
mod state;
mod status;
mod telemetry;
mod tls;
mod transcript;
mod transport;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "relay-gateway",
    version,
    about = "A self-hostable gateway for the Azure Relay wire protocols"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (with no --config: the embedded default, see the README).
    Serve {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// State directory for the generated key and certificate (embedded default only).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Log format on stderr.
        #[arg(long, value_parser = ["text", "json"], default_value = "text")]
        log_format: String,
    },
    /// Carry a local net.tcp service or client through a WCF relay (see the README).
    Forward {
        #[command(flatten)]
        options: Box<forward::Options>,
    },
    /// Ask a running gateway to re-read its configuration file (through its admin endpoint).
    Reload {
        /// The admin endpoint, e.g. 127.0.0.1:9090.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: String,
        /// The `[admin] token`, when the gateway has one.
        #[arg(long)]
        token: Option<String>,
    },
    /// Check a configuration file without starting: prints "ok", or the error (exit status 1).
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
    /// Print a SAS token for a resource URI, built as the Node SDKs build it.
    Token {
        /// The resource, e.g. http://localhost/hc1
        #[arg(long)]
        uri: String,
        /// The key to sign with.
        #[command(flatten)]
        keys: state::KeyArgs,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Decode captured WCF bytes (net.tcp stream, hex dump, or one envelope) into a transcript.
    Decode {
        /// Input file, or `-` for stdin.
        file: PathBuf,
        /// The input is one msbin1 envelope.
        #[arg(long)]
        envelope: bool,
        /// With --envelope: the envelope starts with an in-band string table (msbinsession1).
        #[arg(long, requires = "envelope")]
        session: bool,
    },
    /// Encode an XML envelope as binary XML, written to stdout.
    Encode {
        /// XML file, or `-` for stdin.
        #[arg(long = "envelope", value_name = "FILE")]
        envelope: PathBuf,
        /// Write msbinsession1 (an in-band string table first).
        #[arg(long)]
        session: bool,
    },
}

fn read_input(path: &PathBuf) -> std::io::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path)
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let limits = wcf::Limits::DEFAULT;
    match cli.command {
        Command::Serve {
            config,
            state_dir,
            log_format,
        } => match serve(config, state_dir, &log_format) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(format_args!("{e:#}")),
        },
        Command::CheckConfig { file } => match config::Config::load(&file) {
            Ok(_) => {
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Forward { options } => {
            init_logging("text");
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            // Run on a worker, not on this thread: the tasks it spawns for
            // each notice then start where it runs instead of waking a
            // worker through the runtime's driver.
            match runtime.block_on(runtime.spawn(forward::run(*options))) {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(e)) => fail(format_args!("{e:#}")),
                Err(e) => fail(e),
            }
        }
        Command::Reload { admin, token } => match admin::request_reload(&admin, token.as_deref()) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Token { uri, keys, ttl } => {
            if !uri
                .split_once("://")
                .is_some_and(|(scheme, rest)| !scheme.is_empty() && !rest.is_empty())
            {
                return fail(format_args!(
                    "--uri must name a scheme, host and path, e.g. http://localhost/hc1 (got {uri:?})"
                ));
            }
            let (name, key) = match keys.resolve() {
                Ok(k) => k,
                Err(e) => return fail(e),
            };
            println!(
                "{}",
                hybrid::sas::create(&uri, &name, key.expose(), auth::now() + ttl)
            );
            ExitCode::SUCCESS
        }
        Command::Decode {
            file,
            envelope,
            session,
        } => {
            let input = match read_input(&file) {
                Ok(i) => i,
                Err(e) => return fail(format_args!("{}: {e}", file.display())),
            };
            let result = if envelope {
                let kind = if session {
                    transcript::EnvelopeKind::Session
                } else {
                    transcript::EnvelopeKind::Plain
                };
                transcript::decode_envelope(&input, kind, limits).map(|mut x| {
                    x.push('\n');
                    x
                })
            } else {
                transcript::decode(&input, limits)
            };
            match result {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Encode { envelope, session } => {
            let input = match read_input(&envelope) {
                Ok(i) => i,
                Err(e) => return fail(format_args!("{}: {e}", envelope.display())),
            };
            let Ok(xml) = std::str::from_utf8(&input) else {
                return fail("input is not UTF-8");
            };
            let bytes = if session {
                let mut dict = wcf::nbfx::SessionDictionary::new(limits.max_session);
                wcf::nbfx::session_from_xml(xml, &mut dict)
            } else {
                wcf::nbfx::from_xml(xml)
            };
            match bytes {
                Ok(b) => match std::io::stdout().write_all(&b) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(e),
                },
                Err(e) => fail(e),
            }
        }
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `relay-gateway serve`.
fn serve(
    config_path: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    log_format: &str,
) -> anyhow::Result<()> {
    init_logging(log_format);
    let state = || state::State::open(state_dir.clone().unwrap_or_else(state::default_dir));
    let config = match &config_path {
        Some(path) => config::Config::load(path).map_err(anyhow::Error::msg)?,
        None => {
            let st = state()?;
            tracing::info!(key_file = %st.dir.join("default-rule.key").display(), "embedded default configuration");
            config::Config::embedded(st.key()?)
        }
    };
    let listen = &config.listen;
    let needs_tls = listen.https.is_some()
        || listen.amqps.is_some()
        || listen.relayed.is_some()
        || listen.nettcps.is_some();
    let tls_files = match (&config.tls, needs_tls) {
        (Some(t), _) => Some((t.cert.clone(), t.key.clone())),
        (None, true) => {
            let st = state()?;
            let files = st.tls_files().map_err(anyhow::Error::msg)?;
            tracing::info!(ca = %st.ca_path().display(), "development certificate: trust this CA for wss:// and https://");
            Some(files)
        }
        (None, false) => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let limits = &config.limits;
        let acceptor = match &tls_files {
            Some((cert, key)) => Some(tls::acceptor(cert, key).map_err(anyhow::Error::msg)?),
            None => None,
        };
        let mut endpoints = Vec::new();
        use server::Protocol;
        let wanted = [
            ("http", config.listen.http, Protocol::Http, false),
            ("https", config.listen.https, Protocol::Http, true),
            ("amqps", config.listen.amqps, Protocol::Amqps, true),
            ("relayed", config.listen.relayed, Protocol::Relayed, false),
            (
                "nettcp",
                config.listen.nettcp,
                Protocol::NetTcp(false),
                false,
            ),
            (
                "nettcps",
                config.listen.nettcps,
                Protocol::NetTcp(true),
                false,
            ),
        ];
        for (name, addr, protocol, tls) in wanted {
            if let Some(addr) = addr {
                let acc = if tls { acceptor.clone() } else { None };
                endpoints.push(server::bind(name, addr, acc, protocol).await?);
            }
        }
        let bound_addr = |name: &str| {
            endpoints
                .iter()
                .find(|e| e.name == name)
                .and_then(|e| e.listener.local_addr().ok())
        };
        let ports = frontend::wcf::Ports {
            relayed: bound_addr("relayed"),
            http: bound_addr("http"),
            https: bound_addr("https"),
        };
        let (trigger, shutdown) = shutdown::channel();
        let metrics = std::sync::Arc::new(telemetry::Metrics::new(&config.namespace.host));
        let mut bound: Vec<(&str, std::net::SocketAddr)> = Vec::new();
        for ep in &endpoints {
            bound.push((ep.name, ep.listener.local_addr()?));
        }
        let mut relay = relay::Relay::new(limits.core());
        if let Some(c) = &config.cluster {
            let a = &c.advertise;
            let origin = relay::Origin {
                node: c.node_name(),
                http: a.http.or(ports.http),
                https: a.https.or(ports.https),
                relayed: a.relayed.or(ports.relayed),
                host: a.host.clone(),
            };
            for addr in [origin.http, origin.https, origin.relayed].into_iter().flatten() {
                if addr.ip().is_unspecified() {
                    tracing::warn!(%addr, "cluster: advertising an unspecified address; set [cluster.advertise] so that other nodes' listeners can reach this one");
                }
            }
            let settings = cluster::Settings {
                nats: c.nats.clone(),
                node: origin.node.clone(),
                prefix: c.subject_prefix.clone(),
                origin,
                auth: c.auth.clone(),
                listeners_per_path: limits.listeners_per_path,
                rendezvous: relay.rendezvous.clone(),
            };
            tracing::info!(node = settings.node, nats = ?settings.nats, "cluster: joining");
            let routes = cluster::Cluster::start(settings, relay.registry.clone())
                .await
                .map_err(anyhow::Error::msg)?;
            relay = relay.with_routes(std::sync::Arc::new(routes));
        }
        let snapshot = reload::Snapshot::of(&config);
        let live = reload::Live::new(snapshot.clone());
        let reloader = reload::Reloader {
            path: config_path.clone(),
            live: live.clone(),
            relay: relay.clone(),
            started: std::sync::Arc::new(config.clone()),
        };
        if let Some(addr) = config.listen.admin {
            let ep = server::bind("admin", addr, None, Protocol::Http).await?;
            bound.push(("admin", ep.listener.local_addr()?));
            let configured = config
                .hybrid_connection
                .iter()
                .map(|h| (h.path.clone(), "Hybrid Connection".to_owned()))
                .chain(
                    config
                        .wcf_relay
                        .iter()
                        .map(|r| (r.path.clone(), format!("WCF {}", r.kind.name()))),
                )
                .collect();
            tokio::spawn(admin::serve(
                ep.listener,
                admin::Admin {
                    shutdown: shutdown.clone(),
                    metrics: metrics.clone(),
                    relay: relay.clone(),
                    namespace: config.namespace.host.clone(),
                    configured: std::sync::Arc::new(configured),
                    reloader: reloader.clone(),
                    token: config.admin.token.clone(),
                    endpoints: bound.iter().map(|(n, a)| ((*n).to_owned(), *a)).collect(),
                    started: std::time::Instant::now(),
                },
                config.limits.max_connections,
            ));
        }
        let wcf = frontend::wcf::Wcf {
            relay: relay.clone(),
            settings: snapshot.wcf.clone(),
            hybrid: snapshot.hybrid.clone(),
            shutdown: shutdown.clone(),
            metrics: metrics.clone(),
            tls: acceptor.clone(),
            ports,
        };
        let hybrid = frontend::hybrid::Hybrid {
            relay,
            settings: snapshot.hybrid.clone(),
            wcf: snapshot.wcf.clone(),
            shutdown,
            metrics: metrics.clone(),
        };
        // Before any traffic, /metrics shows each family with zero values
        // for the configured entities and the bound endpoints.
        for h in &config.hybrid_connection {
            metrics.prime(
                h.path.trim_matches('/'),
                frontend::hybrid::FRONTEND_WS,
                &[
                    frontend::hybrid::FRONTEND_WS,
                    frontend::hybrid::FRONTEND_HTTP,
                ],
            );
        }
        for r in &config.wcf_relay {
            let sender = match r.kind {
                config::WcfRelayType::NetTcp => frontend::wcf::FRONTEND_RELAYED,
                config::WcfRelayType::NetOneway | config::WcfRelayType::NetEvent => {
                    frontend::wcf::oneway::FRONTEND_ONEWAY
                }
                config::WcfRelayType::Http => frontend::wcf::http::FRONTEND_HTTP,
            };
            metrics.prime(
                r.path.trim_matches('/'),
                frontend::wcf::FRONTEND_AMQP,
                &[sender],
            );
        }
        for (name, _) in &bound {
            metrics.prime_endpoint(name);
        }
        // The signals are taken before the ready line, so that one sent
        // right after it is not lost to its default action (which killed
        // the process when SIGTERM came first).
        let signals = Signals::take()?;
        println!("{}", server::ready_line(&bound));
        std::io::stdout().flush()?;
        let Signals { stop, hangup } = signals;
        tokio::spawn(reload_on_hangup(reloader, hangup));
        let in_force = live.clone();
        tokio::spawn(async move {
            stop.recv().await;
            tracing::info!("stopping: no new connections; draining");
            trigger.stop();
            // The grace in force at the stop, a reload's included.
            let grace = in_force.current().hybrid.limits.shutdown_grace;
            tokio::time::sleep(grace).await;
            trigger.drain();
            // Keep the trigger alive until the process exits.
            std::future::pending::<()>().await;
        });
        server::run(endpoints, server::FrontEnds { hybrid, wcf, live }).await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// The signals the gateway acts on, taken from the process at start.
struct Signals {
    /// SIGTERM or SIGINT: stop.
    stop: Stop,
    /// SIGHUP: reload.
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
    #[cfg(not(unix))]
    hangup: (),
}

/// SIGTERM and SIGINT.
struct Stop {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn take() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                stop: Stop {
                    term: signal(SignalKind::terminate())?,
                    int: signal(SignalKind::interrupt())?,
                },
                hangup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {
                stop: Stop {},
                hangup: (),
            })
        }
    }
}

impl Stop {
    /// Wait for a stop signal.
    async fn recv(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Reload the configuration on every SIGHUP.
#[cfg(unix)]
async fn reload_on_hangup(reloader: reload::Reloader, mut hup: tokio::signal::unix::Signal) {
    while hup.recv().await.is_some() {
        match reloader.reload() {
            Ok(what) => tracing::info!(result = %what, "configuration reloaded (SIGHUP)"),
            Err(e) => {
                tracing::error!(error = %e, "configuration not reloaded; the running one stays")
            }
        }
    }
}

/// Without SIGHUP, reloads come through the admin endpoint only.
#[cfg(not(unix))]
async fn reload_on_hangup(_reloader: reload::Reloader, _hup: ()) {}
