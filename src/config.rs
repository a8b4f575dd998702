//! Configuration (`relay-gateway serve --config FILE`): TOML, unknown keys
//! rejected with a message naming the key, and the embedded default used when
//! no file is given (namespace `localhost`, plain HTTP/WS on 127.0.0.1:9080,
//! HTTPS/WSS on 127.0.0.1:9443, one all-rights rule whose key lives in the
//! state directory, any path accepted as a dynamic hybrid connection or WCF
//! relay, AMQP on 127.0.0.1:5671, relayed connect on 127.0.0.1:9352 and
//! net.tcp for one-way senders on 127.0.0.1:9350 and 9351).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A SAS right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Right {
    /// Open listeners.
    Listen,
    /// Connect and send.
    Send,
    /// Everything (implies Listen and Send).
    Manage,
}

/// A secret from the configuration (a SAS key, the admin token): its
/// `Debug` and `Display` never show it, so no log line can carry it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the code that signs or compares with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(secret)")
    }
}

/// A SAS rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The key name (`skn`).
    pub name: String,
    /// The primary key.
    pub key: Secret,
    /// The secondary key.
    #[serde(default)]
    pub secondary_key: Option<Secret>,
    /// Rights.
    pub rights: Vec<Right>,
}

impl Rule {
    /// Whether the rule grants `right` (Manage implies the others).
    pub fn grants(&self, right: Right) -> bool {
        self.rights.contains(&right) || self.rights.contains(&Right::Manage)
    }
}

/// `[namespace]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespace {
    /// The namespace host name.
    pub host: String,
    /// Other names of the namespace that token audiences may use (the host
    /// clients reach it by, such as `127.0.0.1`); never the `Host` a request
    /// happens to carry.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Namespace-wide rules.
    #[serde(default)]
    pub rule: Vec<Rule>,
    /// Accept listeners on any path as a dynamic hybrid connection
    /// (requiring client authorization).
    #[serde(default)]
    pub dynamic_hybrid_connections: bool,
    /// Accept WCF relay listeners on any path that asks for dynamic
    /// registration (`com.microsoft:dynamic-relay`, the SDK's default).
    #[serde(default)]
    pub dynamic_wcf_relays: bool,
}

/// `[listen]`: bind addresses, port 0 allowed; absent means off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Plain HTTP and WebSocket.
    pub http: Option<SocketAddr>,
    /// HTTPS and WSS.
    pub https: Option<SocketAddr>,
    /// The admin endpoint (`/healthz`, `/readyz`), kept off the public ports.
    pub admin: Option<SocketAddr>,
    /// AMQP over TLS: WCF relay listeners' control channel (5671).
    pub amqps: Option<SocketAddr>,
    /// Relayed connect: NetTcpRelayBinding clients and listeners' rendezvous (9352).
    pub relayed: Option<SocketAddr>,
    /// net.tcp for one-way and event senders, plain (9350).
    pub nettcp: Option<SocketAddr>,
    /// net.tcp for one-way and event senders with the TLS upgrade (9351).
    pub nettcps: Option<SocketAddr>,
}

/// `[tls]`: PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// `[[hybrid_connection]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HybridConnection {
    /// The entity path (may contain `/`).
    pub path: String,
    /// Whether senders need a Send token.
    #[serde(default = "yes")]
    pub requires_client_authorization: bool,
    /// Entity-level rules.
    #[serde(default)]
    pub rule: Vec<Rule>,
    /// NetTcpRelayBinding clients may connect to this path too: their
    /// RelayedConnect goes to the Hybrid Connections listeners.
    #[serde(default)]
    pub accept_wcf_clients: bool,
}

/// The kind of a WCF relay (`[[wcf_relay]] type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum WcfRelayType {
    /// NetTcpRelayBinding (relayed and hybrid listeners).
    NetTcp,
    /// NetOnewayRelayBinding.
    NetOneway,
    /// NetEventRelayBinding.
    NetEvent,
    /// The HTTP relay bindings.
    Http,
}

impl WcfRelayType {
    /// The name used in the configuration and in listener families.
    pub fn name(self) -> &'static str {
        match self {
            WcfRelayType::NetTcp => "NetTcp",
            WcfRelayType::NetOneway => "NetOneway",
            WcfRelayType::NetEvent => "NetEvent",
            WcfRelayType::Http => "Http",
        }
    }
}

/// `[[wcf_relay]]`: a provisioned WCF relay.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WcfRelay {
    /// The entity path (may contain `/`).
    pub path: String,
    /// Which binding family it serves.
    #[serde(rename = "type")]
    pub kind: WcfRelayType,
    /// Whether clients need a Send token.
    #[serde(default = "yes")]
    pub requires_client_authorization: bool,
    /// Entity-level rules.
    #[serde(default)]
    pub rule: Vec<Rule>,
    /// HTTP relays: add a SOAP 1.1 request's `SOAPAction` to its envelope
    /// (the `inject-soap11-action` behaviour, `wcf/PROTOCOL.md` §11.3).
    #[serde(default = "yes")]
    pub inject_soap11_action: bool,
    /// NetTcp relays: Hybrid Connections senders may connect to this path
    /// too, and are served by its WCF listeners.
    #[serde(default)]
    pub accept_hybrid_senders: bool,
}

fn yes() -> bool {
    true
}

/// A configured duration: whole seconds (`30`) or a humantime text
/// (`"30s"`, `"2m"`, `"1h 30m"`).
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Seconds(u64),
        Text(String),
    }
    match Given::deserialize(d)? {
        Given::Seconds(s) => Ok(Duration::from_secs(s)),
        Given::Text(t) => humantime::parse_duration(&t).map_err(|e| {
            serde::de::Error::custom(format!("{t:?} is not a duration (say 30 or \"30s\"): {e}"))
        }),
    }
}

/// As [`duration`], with zero meaning "never".
fn duration_or_never<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(|t| (!t.is_zero()).then_some(t))
}

/// `[limits]`: the named limits and timeouts. Timeouts are whole seconds or
/// humantime texts (`"30s"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Listeners per entity.
    pub listeners_per_path: usize,
    /// Requests (accepts, HTTP requests) queued per listener before it is busy.
    pub listener_queue: usize,
    /// Pending rendezvous per entity.
    pub pending_per_path: usize,
    /// Pending rendezvous in all.
    pub pending_total: usize,
    /// How long a sender waits for the listener to accept.
    #[serde(deserialize_with = "duration")]
    pub accept_timeout: Duration,
    /// How long a relayed HTTP request waits for the response.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// How long a response body may stall.
    #[serde(deserialize_with = "duration")]
    pub response_idle_timeout: Duration,
    /// How long a handshake (TLS, request head, preamble, first message)
    /// may take.
    #[serde(deserialize_with = "duration")]
    pub handshake_timeout: Duration,
    /// How long a half-closed splice may linger.
    #[serde(deserialize_with = "duration")]
    pub linger: Duration,
    /// How long a splice may go without data (`0`: forever).
    #[serde(deserialize_with = "duration_or_never")]
    pub splice_idle: Option<Duration>,
    /// Between gateway pings on a listener control channel.
    #[serde(deserialize_with = "duration")]
    pub ping_interval: Duration,
    /// Grace after a listener token's expiry.
    #[serde(deserialize_with = "duration")]
    pub token_grace: Duration,
    /// Largest control-channel text message in bytes.
    pub max_control_message: usize,
    /// Largest relayed HTTP header block in bytes.
    pub max_header_bytes: usize,
    /// Largest HTTP relay body the gateway holds whole: `Xml` and SOAP 1.1
    /// request bodies it re-encodes, and `Xml` reply bodies it turns back
    /// into text (other bodies stream).
    pub max_buffered_http_body: usize,
    /// How long connections may drain on shutdown.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// Connections open at once per endpoint; at the cap the endpoint
    /// stops accepting until one ends.
    pub max_connections: usize,
    /// Largest one-way or event message a sender may relay, in bytes (the
    /// SDK's own limit is 64 KB); a larger one gets a QuotaExceeded fault.
    /// In a cluster, a message for a listener on another node also has to
    /// fit the cluster's 256 KiB message bound (base64 inside).
    pub max_oneway_message: usize,
    /// How long a connected one-way session may go without a record before
    /// it is ended: by default three of the SDK's 30 s ping intervals.
    #[serde(deserialize_with = "duration")]
    pub oneway_session_idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            listeners_per_path: 25,
            listener_queue: 64,
            pending_per_path: 1024,
            pending_total: 16384,
            accept_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            response_idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(30),
            splice_idle: None,
            ping_interval: Duration::from_secs(30),
            token_grace: Duration::from_secs(300),
            max_control_message: 64 * 1024,
            max_header_bytes: 32 * 1024,
            max_buffered_http_body: 16 << 20,
            shutdown_grace: Duration::from_secs(10),
            max_connections: 20_000,
            max_oneway_message: 64 * 1024,
            oneway_session_idle: Duration::from_secs(90),
        }
    }
}

impl Limits {
    /// The limits a running gateway took at start and keeps until it
    /// restarts, with the names of those that differ in `next`: only
    /// `max_connections`, which sizes each accept loop's count of open
    /// connections. Every other limit applies at a reload to what starts
    /// after it (connections, listeners, rendezvous, a shutdown).
    pub fn restart_only_changes(&self, next: &Limits) -> Vec<&'static str> {
        [(
            "limits.max_connections",
            self.max_connections != next.max_connections,
        )]
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
    }

    /// The relay core's share of these limits.
    pub fn core(&self) -> crate::relay::CoreLimits {
        crate::relay::CoreLimits {
            listeners_per_path: self.listeners_per_path,
            listener_queue: self.listener_queue,
            pending_per_path: self.pending_per_path,
            pending_total: self.pending_total,
        }
    }

    /// The splice rules these limits give.
    pub fn splice(&self) -> crate::relay::SpliceLimits {
        crate::relay::SpliceLimits {
            idle: self.splice_idle,
            linger: self.linger,
        }
    }
}

/// `[admin]`: the admin endpoint's access.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminAccess {
    /// When set, state-changing calls (`POST /reload`) need
    /// `Authorization: Bearer <token>`; required to bind admin beyond loopback.
    pub token: Option<Secret>,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The namespace.
    pub namespace: Namespace,
    /// Endpoints.
    #[serde(default)]
    pub listen: Listen,
    /// TLS files; without them, `https` uses the development certificate of
    /// the state directory (generated on first use).
    #[serde(default)]
    pub tls: Option<Tls>,
    /// Configured hybrid connections.
    #[serde(default)]
    pub hybrid_connection: Vec<HybridConnection>,
    /// Configured WCF relays.
    #[serde(default)]
    pub wcf_relay: Vec<WcfRelay>,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// Admin endpoint access.
    #[serde(default)]
    pub admin: AdminAccess,
    /// Several nodes sharing relays over NATS; absent: this node alone.
    #[serde(default)]
    pub cluster: Option<Cluster>,
}

/// `[cluster]`: this node is one of several behind a load balancer, sharing
/// listeners and routing connects over NATS.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// The NATS servers (`nats://HOST:PORT`, `tls://HOST:PORT`).
    pub nats: Vec<String>,
    /// This node's name among the members (default: the host name).
    #[serde(default)]
    pub node: Option<String>,
    /// The first token of every subject, so that clusters can share a NATS.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// How other parties reach this node directly.
    #[serde(default)]
    pub advertise: Advertise,
    /// Credentials and TLS for NATS.
    #[serde(default)]
    pub auth: ClusterAuth,
}

fn default_subject_prefix() -> String {
    "relay".into()
}

/// `[cluster.advertise]`: the addresses listeners on other nodes are told to
/// dial to reach a client held here; each defaults to what this node bound.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advertise {
    /// Plain HTTP and WebSocket (Hybrid Connections rendezvous over `ws`).
    pub http: Option<SocketAddr>,
    /// HTTPS and WSS (rendezvous over `wss`).
    pub https: Option<SocketAddr>,
    /// The relayed-connect port WCF listeners dial back to.
    pub relayed: Option<SocketAddr>,
    /// The host name in rendezvous addresses and WCF `InstanceDnsAddress`
    /// (default: the advertised IP address).
    pub host: Option<String>,
}

/// `[cluster.auth]`: how this node authenticates to NATS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterAuth {
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password (with `user`).
    pub password: Option<Secret>,
    /// A token.
    pub token: Option<Secret>,
    /// A NATS credentials file (JWT and NKey seed).
    pub creds: Option<PathBuf>,
    /// CA certificates (PEM) to verify the NATS servers' TLS with.
    pub ca: Option<PathBuf>,
}

impl Cluster {
    /// This node's name: `node`, else the host name (letters, digits, '-'
    /// and '_' kept, anything else made '-').
    pub fn node_name(&self) -> String {
        if let Some(node) = &self.node {
            return node.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_default();
        let name: String = host
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        if name.is_empty() {
            "node".into()
        } else {
            name
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.nats.is_empty() {
            return Err(Invalid::NoNats.into());
        }
        for url in &self.nats {
            let scheme = url.split_once("://").map(|(s, _)| s);
            if !matches!(scheme, Some("nats" | "tls" | "ws" | "wss")) || url.ends_with("://") {
                return Err(Invalid::NotNats(url.clone()).into());
            }
        }
        // Both name NATS subjects and the key-value bucket.
        let name_ok = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !name_ok(&self.subject_prefix) {
            return Err(Invalid::BadName {
                key: "subject_prefix",
                value: self.subject_prefix.clone(),
            }
            .into());
        }
        if let Some(node) = self.node.as_deref().filter(|n| !name_ok(n)) {
            return Err(Invalid::BadName {
                key: "node",
                value: node.to_owned(),
            }
            .into());
        }
        let a = &self.auth;
        if a.user.is_some() != a.password.is_some() {
            return Err(Invalid::UserWithoutPassword.into());
        }
        let ways = [a.user.is_some(), a.token.is_some(), a.creds.is_some()];
        if ways.iter().filter(|w| **w).count() > 1 {
            return Err(Invalid::AuthChoice.into());
        }
        Ok(())
    }
}

/// Why a configuration cannot be used; shown as one line that names the
/// file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file does not read.
    #[error("{0}")]
    Read(#[from] std::io::Error),
    /// The text is not TOML of the configuration's shape (the parser's
    /// message names the key).
    #[error("{0}")]
    Syntax(#[from] toml::de::Error),
    /// Values that parse but break a rule.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The TLS files named do not serve.
    #[error("[tls]: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A file `[cluster.auth]` names does not open.
    #[error("cluster.auth.{key} {}: {source}", .path.display())]
    AuthFile {
        /// Which key names it.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Any of the above, in a file.
    #[error("{}: {source}", .path.display())]
    In {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        #[source]
        source: Box<ConfigError>,
    },
}

/// A configuration that parses but breaks a rule; each names its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// An empty namespace host.
    #[error("namespace.host must not be empty")]
    EmptyHost,
    /// No endpoint to serve.
    #[error("[listen] sets no endpoint: the gateway would serve nothing")]
    NoEndpoint,
    /// A rule whose key (or secondary key) is empty.
    #[error("{rules} \"{name}\": a key must not be empty")]
    EmptyKey {
        /// Which rules: the namespace's or an entity's.
        rules: String,
        /// The rule's name.
        name: String,
    },
    /// Two rules of the same name in one list.
    #[error("{rules} name \"{name}\" is repeated")]
    RepeatedRule {
        /// Which rules.
        rules: String,
        /// The name.
        name: String,
    },
    /// An entity without a path.
    #[error("{0}.path must not be empty")]
    EmptyPath(&'static str),
    /// An entity path already taken (without case, across both tables).
    #[error("{table}.path \"{path}\" is already a {first} path (paths are compared without case)")]
    RepeatedPath {
        /// The table of the second one.
        table: &'static str,
        /// The path as written.
        path: String,
        /// The table of the first one.
        first: &'static str,
    },
    /// A listener cap of zero.
    #[error("limits.listeners_per_path must be at least 1")]
    NoListeners,
    /// The admin endpoint beyond loopback without a token.
    #[error("listen.admin = \"{0}\" is not a loopback address: set [admin] token, or bind admin to 127.0.0.1")]
    AdminExposed(SocketAddr),
    /// `[cluster]` without a NATS server.
    #[error("cluster.nats must name at least one NATS server")]
    NoNats,
    /// A NATS address of another scheme.
    #[error("cluster.nats: \"{0}\" is not a NATS address (nats://HOST:PORT)")]
    NotNats(String),
    /// A subject prefix or node name NATS subjects cannot carry.
    #[error("cluster.{key} \"{value}\" may hold only letters, digits, '-' and '_'")]
    BadName {
        /// `subject_prefix` or `node`.
        key: &'static str,
        /// The value.
        value: String,
    },
    /// A user without a password, or a password without a user.
    #[error("cluster.auth: user and password go together")]
    UserWithoutPassword,
    /// More than one way to authenticate to NATS.
    #[error("cluster.auth: choose one of user/password, token or creds")]
    AuthChoice,
}

/// Name of the rule the embedded default creates.
pub const DEFAULT_RULE: &str = "RootManageSharedAccessKey";

impl Config {
    /// Parse and check a configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    /// Read and check a configuration file, and the TLS files it names
    /// (each must hold its certificate chain or key, and they must match).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read = || -> Result<Config, ConfigError> {
            let text = std::fs::read_to_string(path)?;
            let config = Config::parse(&text)?;
            if let Some(t) = &config.tls {
                crate::tls::acceptor(&t.cert, &t.key)?;
            }
            if let Some(auth) = config.cluster.as_ref().map(|c| &c.auth) {
                for (key, file) in [("creds", &auth.creds), ("ca", &auth.ca)] {
                    if let Some(file) = file {
                        std::fs::File::open(file).map_err(|source| ConfigError::AuthFile {
                            key,
                            path: file.clone(),
                            source,
                        })?;
                    }
                }
            }
            Ok(config)
        };
        read().map_err(|e| ConfigError::In {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    /// The embedded default, with the generated key.
    pub fn embedded(key: String) -> Config {
        Config {
            namespace: Namespace {
                host: "localhost".into(),
                aliases: vec!["localhost".into(), "127.0.0.1".into()],
                rule: vec![Rule {
                    name: DEFAULT_RULE.into(),
                    key: key.into(),
                    secondary_key: None,
                    rights: vec![Right::Listen, Right::Send, Right::Manage],
                }],
                dynamic_hybrid_connections: true,
                dynamic_wcf_relays: true,
            },
            listen: Listen {
                http: Some(SocketAddr::from(([127, 0, 0, 1], 9080))),
                https: Some(SocketAddr::from(([127, 0, 0, 1], 9443))),
                admin: Some(SocketAddr::from(([127, 0, 0, 1], 9090))),
                amqps: Some(SocketAddr::from(([127, 0, 0, 1], 5671))),
                relayed: Some(SocketAddr::from(([127, 0, 0, 1], 9352))),
                nettcp: Some(SocketAddr::from(([127, 0, 0, 1], 9350))),
                nettcps: Some(SocketAddr::from(([127, 0, 0, 1], 9351))),
            },
            tls: None,
            hybrid_connection: Vec::new(),
            wcf_relay: Vec::new(),
            limits: Limits::default(),
            admin: AdminAccess::default(),
            cluster: None,
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.namespace.host.trim().is_empty() {
            return Err(Invalid::EmptyHost.into());
        }
        let l = &self.listen;
        let endpoints = [
            l.http, l.https, l.admin, l.amqps, l.relayed, l.nettcp, l.nettcps,
        ];
        if endpoints.iter().all(Option::is_none) {
            return Err(Invalid::NoEndpoint.into());
        }
        check_rules("namespace.rule", &self.namespace.rule)?;
        let mut paths: Vec<(String, &str)> = Vec::new();
        let entities = self
            .hybrid_connection
            .iter()
            .map(|h| ("hybrid_connection", &h.path, &h.rule))
            .chain(
                self.wcf_relay
                    .iter()
                    .map(|r| ("wcf_relay", &r.path, &r.rule)),
            );
        for (table, path, rules) in entities {
            let key = path.trim_matches('/').to_ascii_lowercase();
            if key.is_empty() {
                return Err(Invalid::EmptyPath(table).into());
            }
            if let Some((_, first)) = paths.iter().find(|(p, _)| *p == key) {
                return Err(Invalid::RepeatedPath {
                    table,
                    path: path.clone(),
                    first,
                }
                .into());
            }
            check_rules(&format!("{table} \"{path}\" rule"), rules)?;
            paths.push((key, table));
        }
        if self.limits.listeners_per_path == 0 {
            return Err(Invalid::NoListeners.into());
        }
        if let Some(c) = &self.cluster {
            c.check()?;
        }
        if let Some(addr) = self.listen.admin.filter(|a| !a.ip().is_loopback()) {
            if self.admin.token.is_none() {
                return Err(Invalid::AdminExposed(addr).into());
            }
        }
        Ok(())
    }
}

/// Every rule in `rules` has a key and a name of its own.
fn check_rules(what: &str, rules: &[Rule]) -> Result<(), ConfigError> {
    for (i, r) in rules.iter().enumerate() {
        let empty = |k: &Secret| k.expose().trim().is_empty();
        if empty(&r.key) || r.secondary_key.as_ref().is_some_and(empty) {
            return Err(Invalid::EmptyKey {
                rules: what.to_owned(),
                name: r.name.clone(),
            }
            .into());
        }
        if rules.iter().take(i).any(|o| o.name == r.name) {
            return Err(Invalid::RepeatedRule {
                rules: what.to_owned(),
                name: r.name.clone(),
            }
            .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("[namespace]\nhost = \"h\"\nfoo = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("foo"), "{err}");
        let err = Config::parse("[namespace]\nhost = \"h\"\n[limits]\nlisteners = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listeners"), "{err}");
    }

    #[test]
    fn the_cluster_table_is_checked_and_defaults_apply() {
        let base = "[namespace]\nhost = \"h\"\n[listen]\nhttp = \"127.0.0.1:0\"\n";
        let c = Config::parse(&format!(
            "{base}[cluster]\nnats = [\"nats://127.0.0.1:4222\"]\n[cluster.advertise]\nhttp = \"10.0.0.5:9080\"\nhost = \"node1.example\"\n[cluster.auth]\nuser = \"u\"\npassword = \"p-secret-1\"\n"
        ))
        .unwrap();
        let cluster = c.cluster.as_ref().unwrap();
        assert_eq!(cluster.subject_prefix, "relay");
        assert_eq!(
            cluster.advertise.http,
            Some("10.0.0.5:9080".parse().unwrap())
        );
        assert!(!cluster.node_name().is_empty());
        assert!(!format!("{c:?}").contains("p-secret-1"));
        for (table, wanted) in [
            ("[cluster]\nnats = [\"nats://x:1\"]\nnodes = 3\n", "nodes"),
            ("[cluster]\nnats = [\"nats://x:1\"]\n[cluster.advertise]\nrelay = \"1.2.3.4:1\"\n", "relay"),
            ("[cluster]\nnats = []\n", "at least one NATS server"),
            ("[cluster]\nnats = [\"http://x:1\"]\n", "not a NATS address"),
            ("[cluster]\nnats = [\"nats://x:1\"]\nsubject_prefix = \"a.b\"\n", "subject_prefix"),
            ("[cluster]\nnats = [\"nats://x:1\"]\nnode = \"my node\"\n", "cluster.node"),
            ("[cluster]\nnats = [\"nats://x:1\"]\n[cluster.auth]\nuser = \"u\"\n", "user and password go together"),
            ("[cluster]\nnats = [\"nats://x:1\"]\n[cluster.auth]\ntoken = \"t\"\ncreds = \"/c\"\n", "choose one"),
        ] {
            let err = Config::parse(&format!("{base}{table}")).unwrap_err().to_string();
            assert!(err.contains(wanted), "{table}: {err}");
        }
    }

    #[test]
    fn secrets_never_show_in_debug_or_display() {
        let c = Config::parse(
            "[namespace]\nhost = \"h\"\n[[namespace.rule]]\nname = \"r\"\nkey = \"k-primary-123\"\nsecondary_key = \"k-secondary-456\"\nrights = [\"Send\"]\n[listen]\nhttp = \"127.0.0.1:0\"\n[admin]\ntoken = \"t-admin-789\"\n",
        )
        .unwrap();
        let shown = format!(
            "{c:?} {:#?} {}",
            c.namespace.rule[0], c.namespace.rule[0].key
        );
        for secret in ["k-primary-123", "k-secondary-456", "t-admin-789"] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
        assert_eq!(c.namespace.rule[0].key.expose(), "k-primary-123");
    }

    #[test]
    fn mistakes_are_named_in_one_line() {
        let base = "[namespace]\nhost = \"h\"\n[listen]\nhttp = \"127.0.0.1:0\"\n";
        let rule = |name: &str, key: &str| {
            format!("name = \"{name}\"\nkey = \"{key}\"\nrights = [\"Send\"]\n")
        };
        let cases = [
            ("[namespace]\nhost = \"h\"\n".to_owned(), "[listen] sets no endpoint"),
            (format!("{base}[[namespace.rule]]\n{}", rule("r", " ")), "a key must not be empty"),
            (
                format!("{base}[[namespace.rule]]\n{}[[namespace.rule]]\n{}", rule("r", "a"), rule("r", "b")),
                "name \"r\" is repeated",
            ),
            (
                format!("{base}[[hybrid_connection]]\npath = \"Orders/\"\n[[wcf_relay]]\npath = \"orders\"\ntype = \"NetTcp\"\n"),
                "wcf_relay.path \"orders\" is already a hybrid_connection path",
            ),
            (
                format!("{base}[[hybrid_connection]]\npath = \"a\"\n[[hybrid_connection.rule]]\n{}", rule("s", "")),
                "hybrid_connection \"a\" rule \"s\": a key must not be empty",
            ),
        ];
        for (text, want) in cases {
            let err = Config::parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{want:?} not in {err:?}");
            assert!(!err.contains('\n'), "{err:?}");
        }
    }

    #[test]
    fn timeouts_are_seconds_or_humantime_and_zero_idle_is_never() {
        let base = "[namespace]\nhost = \"h\"\n[listen]\nhttp = \"127.0.0.1:0\"\n[limits]\n";
        let c = Config::parse(&format!(
            "{base}accept_timeout = \"2m\"\nlinger = 5\nsplice_idle = \"90s\"\n"
        ))
        .unwrap();
        assert_eq!(c.limits.accept_timeout, Duration::from_secs(120));
        assert_eq!(c.limits.linger, Duration::from_secs(5));
        assert_eq!(c.limits.splice_idle, Some(Duration::from_secs(90)));
        let c = Config::parse(&format!("{base}splice_idle = 0\n")).unwrap();
        assert_eq!(c.limits.splice().idle, None);
        let err = Config::parse(&format!("{base}request_timeout = \"soon\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("request_timeout") && err.contains("soon"),
            "{err}"
        );
    }

    #[test]
    fn a_broken_rule_comes_back_as_its_variant() {
        let err = Config::parse("[namespace]\nhost = \"h\"\n").unwrap_err();
        assert!(
            matches!(err, ConfigError::Invalid(Invalid::NoEndpoint)),
            "{err:?}"
        );
        let base = "[namespace]\nhost = \"h\"\n[listen]\nhttp = \"127.0.0.1:0\"\n";
        let err = Config::parse(&format!(
            "{base}[cluster]\nnats = [\"nats://x:1\"]\nnode = \"a b\"\n"
        ))
        .unwrap_err();
        match err {
            ConfigError::Invalid(Invalid::BadName { key, value }) => {
                assert_eq!((key, value.as_str()), ("node", "a b"))
            }
            other => panic!("{other:?}"),
        }
        // Read errors keep their cause and name the file.
        let missing = Path::new("/nonexistent/relay.toml");
        match Config::load(missing).unwrap_err() {
            ConfigError::In { path, source } => {
                assert_eq!(path, missing);
                assert!(matches!(*source, ConfigError::Read(_)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_one_way_limits_default_to_the_sdks_and_can_be_set() {
        let base = "[namespace]\nhost = \"h\"\n[listen]\nhttp = \"127.0.0.1:0\"\n";
        let c = Config::parse(base).unwrap();
        assert_eq!(c.limits.max_oneway_message, 65_536);
        assert_eq!(c.limits.oneway_session_idle, Duration::from_secs(90));
        let c = Config::parse(&format!(
            "{base}[limits]\nmax_oneway_message = 262144\noneway_session_idle = \"3m\"\n"
        ))
        .unwrap();
        assert_eq!(c.limits.max_oneway_message, 262_144);
        assert_eq!(c.limits.oneway_session_idle, Duration::from_secs(180));
    }

    #[test]
    fn admin_beyond_loopback_needs_a_token() {
        let base = "[namespace]\nhost = \"h\"\n[listen]\nadmin = \"0.0.0.0:9090\"\n";
        let err = Config::parse(base).unwrap_err().to_string();
        assert!(
            err.contains("listen.admin") && err.contains("[admin] token"),
            "{err}"
        );
        assert!(Config::parse(&format!("{base}[admin]\ntoken = \"x\"\n")).is_ok());
        assert!(
            Config::parse("[namespace]\nhost = \"h\"\n[listen]\nadmin = \"127.0.0.1:0\"\n").is_ok()
        );
    }

    #[test]
    fn full_file() {
        let c = Config::parse(
            r#"
[namespace]
host = "relay.example.com"
[[namespace.rule]]
name = "listen"
key = "k1"
rights = ["Listen"]
[listen]
http = "127.0.0.1:0"
[[hybrid_connection]]
path = "a/b"
requires_client_authorization = false
[[hybrid_connection.rule]]
name = "send"
key = "k2"
secondary_key = "k3"
rights = ["Send"]
[limits]
listeners_per_path = 3
"#,
        )
        .unwrap();
        assert_eq!(
            c.hybrid_connection[0].rule[0]
                .secondary_key
                .as_ref()
                .map(Secret::expose),
            Some("k3")
        );
        assert!(!c.hybrid_connection[0].requires_client_authorization);
        assert_eq!(c.limits.listeners_per_path, 3);
        assert_eq!(c.limits.accept_timeout, Duration::from_secs(30));
    }
}
