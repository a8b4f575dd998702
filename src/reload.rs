//! Live reload (issue "Operating the gateway", item 3): SIGHUP or
//! `relay-gateway reload` (POST `/reload` on the admin endpoint) re-reads the
//! configuration file. A file that does not parse or check is refused with
//! its error and the running configuration stays. Otherwise new connections
//! get the new namespace rules, entities and limits (and the listener cap
//! applies to listeners registering from then on); established splices and
//! listeners go on with what they started with, except listeners whose
//! entity no longer exists, which are closed the way each protocol closes
//! a deleted entity (Hybrid Connections 1001, WCF `relay-not-found`).
//! Bind addresses and TLS files are read at start only.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::frontend::{hybrid, wcf, Settings};
use crate::relay::Relay;

/// The settings the front ends read, swapped as a whole on reload.
#[derive(Clone)]
pub struct Snapshot {
    /// Hybrid Connections.
    pub hybrid: Arc<hybrid::entity::Settings>,
    /// WCF relays.
    pub wcf: Arc<wcf::entity::Settings>,
}

impl Snapshot {
    /// The front ends' settings from a configuration.
    pub fn of(config: &Config) -> Snapshot {
        fn settings<E: Clone>(config: &Config, entities: &[E], dynamic: bool) -> Arc<Settings<E>> {
            Arc::new(Settings {
                host: config.namespace.host.clone(),
                aliases: config.namespace.aliases.clone(),
                rules: config.namespace.rule.clone(),
                entities: entities.to_vec(),
                dynamic,
                limits: config.limits.clone(),
            })
        }
        let ns = &config.namespace;
        Snapshot {
            hybrid: settings(
                config,
                &config.hybrid_connection,
                ns.dynamic_hybrid_connections,
            ),
            wcf: settings(config, &config.wcf_relay, ns.dynamic_wcf_relays),
        }
    }
}

/// The current settings.
pub struct Live(RwLock<Snapshot>);

impl Live {
    /// Start with `snapshot`.
    pub fn new(snapshot: Snapshot) -> Arc<Live> {
        Arc::new(Live(RwLock::new(snapshot)))
    }

    /// The settings now in force.
    pub fn current(&self) -> Snapshot {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, snapshot: Snapshot) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = snapshot;
    }
}

/// Re-reads the configuration file into [`Live`].
#[derive(Clone)]
pub struct Reloader {
    /// The file (`None` for the embedded default, which cannot be reloaded).
    pub path: Option<PathBuf>,
    /// Where the settings live.
    pub live: Arc<Live>,
    /// The relay core: this node's listeners are closed when their entity
    /// is gone.
    pub relay: Relay,
    /// The configuration the gateway started with: changes to `[listen]`,
    /// `[tls]` and the limits it took at start apply only after a restart.
    pub started: Arc<Config>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The gateway runs the embedded default.
    #[error("the embedded default configuration has no file to reload")]
    NoFile,
    /// The file does not make a configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl Reloader {
    /// Reload; `Ok` says what changed, `Err` why nothing did.
    pub fn reload(&self) -> Result<String, ReloadError> {
        let path = self.path.as_ref().ok_or(ReloadError::NoFile)?;
        let config = Config::load(path)?;
        let next = Snapshot::of(&config);
        let mut evicted = Vec::new();
        let registry = &self.relay.registry;
        for p in registry.paths() {
            let kinds: Vec<String> = registry.listeners(&p).into_iter().map(|l| l.kind).collect();
            let still = kinds
                .iter()
                .all(|kind| match wcf::entity::Kind::parse(kind) {
                    Some(k) => next.wcf.resolve_listener(&p, k, true, &self.relay).is_ok(),
                    None => next.hybrid.resolve(&p, &self.relay, true).is_some(),
                });
            if !still {
                registry.evict(&p);
                evicted.push(p);
            }
        }
        self.relay.set_limits(&config.limits.core());
        self.live.set(next);
        let mut what = "reloaded".to_owned();
        if !evicted.is_empty() {
            what.push_str(&format!(
                "; closed the listeners of removed entities: {}",
                evicted.join(", ")
            ));
        }
        let started = &*self.started;
        let mut pending: Vec<&str> = [
            ("[listen]", config.listen != started.listen),
            ("[tls]", config.tls != started.tls),
        ]
        .into_iter()
        .filter_map(|(table, changed)| changed.then_some(table))
        .collect();
        pending.extend(started.limits.restart_only_changes(&config.limits));
        if !pending.is_empty() {
            let tables = pending.join(", ");
            tracing::warn!(
                tables,
                "reloaded, but these changes apply only after a restart"
            );
            what.push_str(&format!("; {tables} changed: restart to apply"));
        }
        Ok(what)
    }
}
