//! The server side of the [MC-NMF] preamble (wcf/PROTOCOL.md §12.1, §1.6):
//! Version, Mode, Via, encoding, any number of upgrade requests, then
//! PreambleEnd (duplex and singleton-unsized) or nothing more (simplex and
//! singleton-sized). Violations come back as [`Error::Framing`] carrying the
//! fault the server must send before it closes.
//!
//! Records that arrive out of order have no dedicated fault URI in [MC-NMF];
//! they are answered with `ConnectionDispatchFailed`, and a first record that
//! is not Version with `UnsupportedVersion`.

use super::{FaultCode, Mode, Record};
use crate::{Error, Result};

/// The encoding a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoding {
    /// A KnownEncoding value (§1.3).
    Known(u8),
    /// An ExtensibleEncoding content type.
    Extensible(String),
}

/// What the server accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreambleConfig {
    /// Accepted modes.
    pub modes: Vec<Mode>,
    /// Accepted encodings.
    pub encodings: Vec<Encoding>,
    /// Accepted upgrade protocols (for example [`super::UPGRADE_TLS`]).
    pub upgrades: Vec<String>,
}

impl Default for PreambleConfig {
    /// Duplex and singleton-unsized, binary encodings, no upgrades.
    fn default() -> Self {
        PreambleConfig {
            modes: vec![Mode::Duplex, Mode::SingletonUnsized],
            encodings: vec![
                Encoding::Known(super::ENCODING_MSBINSESSION1),
                Encoding::Known(super::ENCODING_MSBIN1),
            ],
            upgrades: Vec::new(),
        }
    }
}

/// A completed preamble.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preamble {
    /// The mode.
    pub mode: Mode,
    /// The Via URI.
    pub via: String,
    /// The encoding.
    pub encoding: Encoding,
    /// The upgrades performed, in order.
    pub upgrades: Vec<String>,
}

impl Preamble {
    /// Whether the server must answer with PreambleAck (after it has checked
    /// the Via); simplex and singleton-sized preambles are not acknowledged.
    pub fn needs_ack(&self) -> bool {
        matches!(self.mode, Mode::Duplex | Mode::SingletonUnsized)
    }
}

/// What the server has to do after a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing yet; feed the next record.
    Continue,
    /// Send UpgradeResponse, run this upgrade protocol on the raw stream, then
    /// keep feeding records decoded from inside it.
    Upgrade(String),
    /// The preamble is complete. Check the Via; then send PreambleAck when
    /// [`Preamble::needs_ack`] (or the EndpointNotFound fault).
    Complete(Preamble),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Version,
    Mode,
    Via(Mode),
    Encoding(Mode, String),
    AfterEncoding(Mode, String, Encoding),
    Done,
}

/// Server-side preamble state machine.
#[derive(Debug, Clone)]
pub struct ServerPreamble {
    config: PreambleConfig,
    state: State,
    upgrades: Vec<String>,
}

impl ServerPreamble {
    /// A machine waiting for the Version record.
    pub fn new(config: PreambleConfig) -> Self {
        ServerPreamble {
            config,
            state: State::Version,
            upgrades: Vec::new(),
        }
    }

    /// Feed the next record; `offset` is its stream offset, for errors.
    pub fn feed(&mut self, record: &Record, offset: usize) -> Result<Step> {
        let fault = |fault: FaultCode, message: String| Error::Framing {
            offset,
            fault,
            message,
        };
        let state = std::mem::replace(&mut self.state, State::Done);
        let (next, step) = match (state, record) {
            (State::Version, Record::Version { major, minor }) => {
                if *major != 1 {
                    return Err(fault(
                        FaultCode::UnsupportedVersion,
                        format!("version {major}.{minor} is not supported"),
                    ));
                }
                (State::Mode, Step::Continue)
            }
            (State::Version, other) => {
                return Err(fault(
                    FaultCode::UnsupportedVersion,
                    format!("expected a Version record, got {}", other.describe()),
                ))
            }
            (State::Mode, Record::Mode(m)) => {
                if !self.config.modes.contains(m) {
                    return Err(fault(
                        FaultCode::UnsupportedMode,
                        format!("mode {} is not supported", m.byte()),
                    ));
                }
                (State::Via(*m), Step::Continue)
            }
            (State::Via(m), Record::Via(v)) => (State::Encoding(m, v.clone()), Step::Continue),
            (State::Encoding(m, via), Record::KnownEncoding(e)) => {
                self.encoding_step(m, via, Encoding::Known(*e), offset)?
            }
            (State::Encoding(m, via), Record::ExtensibleEncoding(c)) => {
                self.encoding_step(m, via, Encoding::Extensible(c.clone()), offset)?
            }
            (State::AfterEncoding(m, via, enc), Record::UpgradeRequest(p)) => {
                if !self.config.upgrades.iter().any(|u| u == p) {
                    return Err(fault(
                        FaultCode::UpgradeInvalid,
                        format!("upgrade {p} is not supported"),
                    ));
                }
                self.upgrades.push(p.clone());
                (State::AfterEncoding(m, via, enc), Step::Upgrade(p.clone()))
            }
            (State::AfterEncoding(mode, via, encoding), Record::PreambleEnd) => (
                State::Done,
                Step::Complete(Preamble {
                    mode,
                    via,
                    encoding,
                    upgrades: std::mem::take(&mut self.upgrades),
                }),
            ),
            (_, other) => {
                return Err(fault(
                    FaultCode::ConnectionDispatchFailed,
                    format!("unexpected {} during the preamble", other.describe()),
                ))
            }
        };
        self.state = next;
        Ok(step)
    }

    fn encoding_step(
        &mut self,
        mode: Mode,
        via: String,
        encoding: Encoding,
        offset: usize,
    ) -> Result<(State, Step)> {
        if !self.config.encodings.contains(&encoding) {
            return Err(Error::Framing {
                offset,
                fault: FaultCode::ContentTypeInvalid,
                message: format!("encoding {encoding:?} is not supported"),
            });
        }
        if matches!(mode, Mode::Simplex | Mode::SingletonSized) {
            return Ok((
                State::Done,
                Step::Complete(Preamble {
                    mode,
                    via,
                    encoding,
                    upgrades: Vec::new(),
                }),
            ));
        }
        Ok((State::AfterEncoding(mode, via, encoding), Step::Continue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::{UPGRADE_NEGOTIATE, UPGRADE_TLS};

    fn run(config: PreambleConfig, records: &[Record]) -> Result<Vec<Step>> {
        let mut m = ServerPreamble::new(config);
        records.iter().map(|r| m.feed(r, 0)).collect()
    }

    fn start(mode: Mode, enc: u8) -> Vec<Record> {
        Record::preamble(mode, "net.tcp://h/svc", enc).to_vec()
    }

    #[test]
    fn duplex_completes_on_preamble_end() {
        let mut recs = start(Mode::Duplex, 8);
        recs.push(Record::PreambleEnd);
        let steps = run(PreambleConfig::default(), &recs).unwrap();
        let Step::Complete(p) = steps.last().unwrap() else {
            panic!("not complete")
        };
        assert_eq!(p.via, "net.tcp://h/svc");
        assert!(p.needs_ack());
    }

    #[test]
    fn tls_upgrade_then_preamble_end() {
        let config = PreambleConfig {
            upgrades: vec![UPGRADE_TLS.into()],
            ..PreambleConfig::default()
        };
        let mut recs = start(Mode::Duplex, 8);
        recs.push(Record::UpgradeRequest(UPGRADE_TLS.into()));
        recs.push(Record::PreambleEnd);
        let steps = run(config.clone(), &recs).unwrap();
        assert_eq!(steps[4], Step::Upgrade(UPGRADE_TLS.into()));
        assert!(
            matches!(&steps[5], Step::Complete(p) if p.upgrades == vec![UPGRADE_TLS.to_string()])
        );
        let mut bad = start(Mode::Duplex, 8);
        bad.push(Record::UpgradeRequest(UPGRADE_NEGOTIATE.into()));
        assert!(matches!(
            run(config, &bad),
            Err(Error::Framing {
                fault: FaultCode::UpgradeInvalid,
                ..
            })
        ));
    }

    #[test]
    fn simplex_needs_no_preamble_end() {
        let config = PreambleConfig {
            modes: vec![Mode::Simplex],
            ..PreambleConfig::default()
        };
        let steps = run(config, &start(Mode::Simplex, 7)).unwrap();
        assert!(matches!(&steps[3], Step::Complete(p) if !p.needs_ack()));
    }

    #[test]
    fn faults_for_each_violation() {
        let cases: Vec<(Vec<Record>, FaultCode)> = vec![
            (
                vec![Record::Version { major: 2, minor: 0 }],
                FaultCode::UnsupportedVersion,
            ),
            (vec![Record::PreambleEnd], FaultCode::UnsupportedVersion),
            (
                start(Mode::Other(9), 8)[..2].to_vec(),
                FaultCode::UnsupportedMode,
            ),
            (start(Mode::Duplex, 3), FaultCode::ContentTypeInvalid),
            (
                vec![
                    Record::Version { major: 1, minor: 0 },
                    Record::Mode(Mode::Duplex),
                    Record::KnownEncoding(8),
                ],
                FaultCode::ConnectionDispatchFailed,
            ),
        ];
        for (recs, want) in cases {
            match run(PreambleConfig::default(), &recs) {
                Err(Error::Framing { fault, .. }) => assert_eq!(fault, want, "{recs:?}"),
                other => panic!("{recs:?}: {other:?}"),
            }
        }
    }
}
