//! The AMQP 1.0 subset of the WCF relay's listener control channel
//! (`wcf/PROTOCOL.md` §2, §8, §11.2): framing in [`frame`], the relay's
//! attach properties, error conditions and token renewal in [`listener`],
//! and the connection, session and link logic as sans-IO state machines for
//! both ends: [`server`] (the relay's) and [`client`] (a listener's), over
//! the pieces they share in [`connection`]. Values are encoded with
//! `fe2o3-amqp-types` (the performative, SASL and terminus types of a
//! maintained AMQP 1.0 implementation).

pub mod client;
pub mod connection;
pub mod frame;
pub mod listener;
pub mod server;

pub use fe2o3_amqp_types as types;
pub use serde_amqp;
