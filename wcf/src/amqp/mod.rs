//! The AMQP 1.0 subset of the WCF relay's listener control channel
//! (`wcf/PROTOCOL.md` §2, §8, §11.2): framing in [`frame`], the relay's
//! attach properties, error conditions and token renewal in [`listener`].
//! Values are encoded with `fe2o3-amqp-types` (the performative, SASL and
//! terminus types of a maintained AMQP 1.0 implementation); the connection and
//! session logic lives with the code that owns the socket.

pub mod frame;
pub mod listener;

pub use fe2o3_amqp_types as types;
pub use serde_amqp;
