//! Metrics in the Prometheus text format (served on the admin endpoint's
//! `/metrics`), mirroring the metric set the service documents: active
//! connections and listeners, bytes transferred, listener and sender
//! connections by outcome, listener disconnects; plus a rendezvous-latency
//! histogram, rejected tokens by reason and limit hits by limit name. Every
//! series is labelled with the namespace, the entity and the front end.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// How a connection attempt ended, by the status it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 1xx/2xx/3xx.
    Success,
    /// 4xx.
    ClientError,
    /// 5xx.
    ServerError,
}

impl Outcome {
    /// Classify an HTTP status.
    pub fn of(status: u16) -> Outcome {
        match status {
            400..=499 => Outcome::ClientError,
            500.. => Outcome::ServerError,
            _ => Outcome::Success,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
        }
    }
}

#[derive(Clone)]
struct Buckets;

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        // 100 µs to about 13 s.
        Histogram::new(exponential_buckets(0.0001, 2.0, 18))
    }
}

/// Whether a refusal with `status` has its own row on the status page
/// already: 401 and 403 come from a rejected token or a listener quota, 503
/// from a limit, each recorded where it happens with its reason.
fn reported_elsewhere(status: u16) -> bool {
    matches!(status, 401 | 403 | 503)
}

/// The gateway's metrics.
pub struct Metrics {
    namespace: String,
    registry: Registry,
    active_connections: Family<Labels, Gauge>,
    active_listeners: Family<Labels, Gauge>,
    bytes: Family<Labels, Counter>,
    listener_connections: Family<Labels, Counter>,
    listener_disconnects: Family<Labels, Counter>,
    sender_connections: Family<Labels, Counter>,
    rendezvous: Family<Labels, Histogram, Buckets>,
    rejected_tokens: Family<Labels, Counter>,
    limit_hits: Family<Labels, Counter>,
    accept_errors: Family<Labels, Counter>,
    splice_endings: Family<Labels, Counter>,
    cap_hits: Family<Labels, Counter>,
    cluster_members: Family<Labels, Gauge>,
    cluster_connected: Family<Labels, Gauge>,
    cluster_listeners: Family<Labels, Gauge>,
    cluster_dropped: Family<Labels, Counter>,
    /// What the status page shows.
    pub status: std::sync::Arc<crate::status::Status>,
}

/// Decrements a gauge (and, for connections, the status page's count) when
/// dropped.
pub struct Active(
    Gauge,
    Option<(std::sync::Arc<crate::status::Status>, String)>,
);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.dec();
        if let Some((status, entity)) = &self.1 {
            status.update(entity, |e| e.active = e.active.saturating_sub(1));
        }
    }
}

impl Metrics {
    /// Metrics for `namespace`.
    pub fn new(namespace: &str) -> Metrics {
        let mut registry = Registry::with_prefix("relay");
        let m = Metrics {
            namespace: namespace.to_owned(),
            active_connections: Family::default(),
            active_listeners: Family::default(),
            bytes: Family::default(),
            listener_connections: Family::default(),
            listener_disconnects: Family::default(),
            sender_connections: Family::default(),
            rendezvous: Family::new_with_constructor(Buckets),
            rejected_tokens: Family::default(),
            limit_hits: Family::default(),
            accept_errors: Family::default(),
            splice_endings: Family::default(),
            cap_hits: Family::default(),
            cluster_members: Family::default(),
            cluster_connected: Family::default(),
            cluster_listeners: Family::default(),
            cluster_dropped: Family::default(),
            registry: Registry::default(),
            status: std::sync::Arc::default(),
        };
        registry.register(
            "active_connections",
            "Spliced connections now open",
            m.active_connections.clone(),
        );
        registry.register(
            "active_listeners",
            "Listeners now connected",
            m.active_listeners.clone(),
        );
        registry.register(
            "bytes_transferred",
            "Bytes relayed, by direction",
            m.bytes.clone(),
        );
        registry.register(
            "listener_connections",
            "Listener connection attempts, by outcome",
            m.listener_connections.clone(),
        );
        registry.register(
            "listener_disconnects",
            "Listener control channels that ended",
            m.listener_disconnects.clone(),
        );
        registry.register(
            "sender_connections",
            "Sender connections and relayed requests, by outcome",
            m.sender_connections.clone(),
        );
        registry.register(
            "rendezvous_seconds",
            "Sender connect to the listener's answer",
            m.rendezvous.clone(),
        );
        registry.register(
            "rejected_tokens",
            "Tokens refused, by reason",
            m.rejected_tokens.clone(),
        );
        registry.register(
            "limit_hits",
            "Requests refused by a limit, by limit name",
            m.limit_hits.clone(),
        );
        registry.register(
            "splice_endings",
            "Spliced connections that ended, by how: clean, linger, idle, shutdown, broken_client, broken_listener, broken_gateway",
            m.splice_endings.clone(),
        );
        registry.register(
            "connection_cap_hits",
            "Times an endpoint reached limits.max_connections and paused accepting, by endpoint",
            m.cap_hits.clone(),
        );
        registry.register(
            "accept_errors",
            "Connections the listening socket could not accept (descriptors or memory exhausted), by endpoint",
            m.accept_errors.clone(),
        );
        registry.register(
            "cluster_members",
            "Gateway nodes this node sees in the cluster (itself included)",
            m.cluster_members.clone(),
        );
        registry.register(
            "cluster_connected",
            "1 while this node reaches NATS and the cluster's bucket, else 0 (serving its own listeners only)",
            m.cluster_connected.clone(),
        );
        registry.register(
            "cluster_listeners",
            "Listeners of each entity on every node of the cluster (active_listeners counts this node's)",
            m.cluster_listeners.clone(),
        );
        registry.register(
            "cluster_messages_dropped",
            "Messages from other nodes dropped, by reason: oversized, malformed, listener_queue (a Multicast message found the listener's queue full)",
            m.cluster_dropped.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Take the cluster's figures as this node now sees them.
    pub fn cluster(&self, view: &crate::relay::ClusterView) {
        let ns = ("namespace".to_owned(), self.namespace.clone());
        let node = ("node".to_owned(), view.node.clone());
        let at = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.cluster_members
            .get_or_create(&vec![ns.clone(), node.clone()])
            .set(at(view.members.len()));
        self.cluster_connected
            .get_or_create(&vec![ns.clone(), node])
            .set(i64::from(view.connected));
        self.cluster_listeners.clear();
        for (path, n) in &view.listeners {
            self.cluster_listeners
                .get_or_create(&vec![ns.clone(), ("entity".to_owned(), path.clone())])
                .set(at(*n));
        }
        for (reason, n) in &view.dropped {
            self.cluster_dropped
                .get_or_create(&vec![
                    ns.clone(),
                    ("reason".to_owned(), (*reason).to_owned()),
                ])
                .inner()
                .store(*n, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn labels(&self, entity: &str, frontend: &str, extra: Option<(&str, &str)>) -> Labels {
        let mut l = vec![
            ("namespace".to_owned(), self.namespace.clone()),
            ("entity".to_owned(), entity.to_owned()),
            ("frontend".to_owned(), frontend.to_owned()),
        ];
        if let Some((k, v)) = extra {
            l.push((k.to_owned(), v.to_owned()));
        }
        l
    }

    /// Count one event in `family`.
    fn count(
        &self,
        family: &Family<Labels, Counter>,
        entity: &str,
        frontend: &str,
        extra: Option<(&str, &str)>,
    ) {
        family
            .get_or_create(&self.labels(entity, frontend, extra))
            .inc();
    }

    /// A listener connected; the returned guard keeps it counted as active.
    pub fn listener_connected(&self, entity: &str, frontend: &str) -> Active {
        self.count(
            &self.listener_connections,
            entity,
            frontend,
            Some(("outcome", "success")),
        );
        let g = self
            .active_listeners
            .get_or_create(&self.labels(entity, frontend, None))
            .clone();
        g.inc();
        Active(g, None)
    }

    /// A listener was refused with `status`.
    pub fn listener_refused(&self, entity: &str, frontend: &str, status: u16) {
        if !reported_elsewhere(status) {
            self.status
                .error(entity, frontend, format!("listener refused ({status})"));
        }
        self.count(
            &self.listener_connections,
            entity,
            frontend,
            Some(("outcome", Outcome::of(status).label())),
        );
    }

    /// A listener's control channel ended.
    pub fn listener_disconnected(&self, entity: &str, frontend: &str) {
        self.count(&self.listener_disconnects, entity, frontend, None);
    }

    /// A sender connection or relayed request ended its setup with `status`.
    pub fn sender(&self, entity: &str, frontend: &str, status: u16) {
        if status >= 400 && !reported_elsewhere(status) {
            self.status
                .error(entity, frontend, format!("sender refused ({status})"));
        }
        self.count(
            &self.sender_connections,
            entity,
            frontend,
            Some(("outcome", Outcome::of(status).label())),
        );
    }

    /// How long the listener took to answer.
    pub fn rendezvous(&self, entity: &str, frontend: &str, seconds: f64) {
        self.rendezvous
            .get_or_create(&self.labels(entity, frontend, None))
            .observe(seconds);
    }

    /// A splice started; the guard keeps it counted as active.
    pub fn connection_started(&self, entity: &str, frontend: &str) -> Active {
        let g = self
            .active_connections
            .get_or_create(&self.labels(entity, frontend, None))
            .clone();
        g.inc();
        self.status.update(entity, |e| e.active += 1);
        Active(g, Some((self.status.clone(), entity.to_owned())))
    }

    /// Bytes a splice carried (`to_listener` and `to_sender`).
    pub fn bytes(&self, entity: &str, frontend: &str, to_listener: u64, to_sender: u64) {
        self.bytes
            .get_or_create(&self.labels(entity, frontend, Some(("direction", "to_listener"))))
            .inc_by(to_listener);
        self.bytes
            .get_or_create(&self.labels(entity, frontend, Some(("direction", "to_sender"))))
            .inc_by(to_sender);
        self.status.update(entity, |e| {
            e.to_listener += to_listener;
            e.to_sender += to_sender;
        });
    }

    /// A spliced connection ended as `ending` (a [`crate::relay::splice::SpliceEnd`] label).
    pub fn splice_ended(&self, entity: &str, frontend: &str, ending: &str) {
        self.count(
            &self.splice_endings,
            entity,
            frontend,
            Some(("ending", ending)),
        );
    }

    /// A token was refused for `reason`.
    pub fn token_rejected(&self, entity: &str, frontend: &str, reason: &str) {
        self.status
            .error(entity, frontend, format!("token rejected: {reason}"));
        self.count(
            &self.rejected_tokens,
            entity,
            frontend,
            Some(("reason", reason)),
        );
    }

    /// A request was refused by the limit named `limit`.
    pub fn limit_hit(&self, entity: &str, frontend: &str, limit: &str) {
        self.status
            .error(entity, frontend, format!("limit reached: {limit}"));
        self.count(&self.limit_hits, entity, frontend, Some(("limit", limit)));
    }

    /// Zero-valued series for a configured entity, so that `/metrics` shows
    /// its families before any traffic: listener series under `listeners`
    /// (the front end its listeners use), sender series under each of
    /// `senders`.
    pub fn prime(&self, entity: &str, listeners: &str, senders: &[&str]) {
        let labels = |f: &str, extra| self.labels(entity, f, extra);
        let _ = self
            .active_listeners
            .get_or_create(&labels(listeners, None));
        let _ = self
            .listener_connections
            .get_or_create(&labels(listeners, Some(("outcome", "success"))));
        for &f in senders {
            let _ = self.active_connections.get_or_create(&labels(f, None));
            let _ = self
                .sender_connections
                .get_or_create(&labels(f, Some(("outcome", "success"))));
            for direction in ["to_listener", "to_sender"] {
                let _ = self
                    .bytes
                    .get_or_create(&labels(f, Some(("direction", direction))));
            }
        }
    }

    /// A zero-valued accept-error series for `endpoint`.
    pub fn prime_endpoint(&self, endpoint: &str) {
        let _ = self
            .accept_errors
            .get_or_create(&self.endpoint_labels(endpoint));
    }

    /// `endpoint` reached its connection cap.
    pub fn connection_cap_hit(&self, endpoint: &str) {
        self.cap_hits
            .get_or_create(&self.endpoint_labels(endpoint))
            .inc();
    }

    /// An accept on `endpoint` failed.
    pub fn accept_failed(&self, endpoint: &str) {
        self.accept_errors
            .get_or_create(&self.endpoint_labels(endpoint))
            .inc();
    }

    fn endpoint_labels(&self, endpoint: &str) -> Labels {
        vec![
            ("namespace".to_owned(), self.namespace.clone()),
            ("endpoint".to_owned(), endpoint.to_owned()),
        ]
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Name the entity in the current connection's log span (declared empty by
/// the accept loop; the front end fills it in once it knows the entity).
pub fn record_entity(entity: &str) {
    tracing::Span::current().record("entity", entity);
}

/// A short name for a token failure, for the `reason` label.
pub fn token_reason(e: &hybrid::sas::TokenError) -> &'static str {
    use hybrid::sas::TokenError::*;
    match e {
        Missing => "missing",
        Malformed(_) => "malformed",
        UnknownKey => "unknown_key",
        BadSignature => "bad_signature",
        Expired(_) => "expired",
        WrongAudience => "wrong_audience",
        MissingRight(_) => "missing_right",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_series() {
        let m = Metrics::new("ns");
        let _l = m.listener_connected("hc1", "hybrid");
        m.listener_refused("hc1", "hybrid", 401);
        m.sender("hc1", "hybrid", 101);
        m.sender("hc1", "hybrid", 504);
        m.bytes("hc1", "hybrid", 10, 20);
        m.rendezvous("hc1", "hybrid", 0.002);
        m.token_rejected("hc1", "hybrid", "expired");
        m.limit_hit("hc1", "hybrid", "listeners_per_path");
        let text = m.render();
        for want in [
            r#"relay_active_listeners{namespace="ns",entity="hc1",frontend="hybrid"} 1"#,
            r#"relay_listener_connections_total{namespace="ns",entity="hc1",frontend="hybrid",outcome="client_error"} 1"#,
            r#"relay_sender_connections_total{namespace="ns",entity="hc1",frontend="hybrid",outcome="server_error"} 1"#,
            r#"relay_bytes_transferred_total{namespace="ns",entity="hc1",frontend="hybrid",direction="to_sender"} 20"#,
            r#"relay_rendezvous_seconds_count{namespace="ns",entity="hc1",frontend="hybrid"} 1"#,
            r#"relay_rejected_tokens_total{namespace="ns",entity="hc1",frontend="hybrid",reason="expired"} 1"#,
            r#"relay_limit_hits_total{namespace="ns",entity="hc1",frontend="hybrid",limit="listeners_per_path"} 1"#,
        ] {
            assert!(text.contains(want), "missing {want}\n{text}");
        }
        drop(_l);
        assert!(m.render().contains(
            r#"relay_active_listeners{namespace="ns",entity="hc1",frontend="hybrid"} 0"#
        ));
    }
}
