//! `hybrid`: the Azure Relay Hybrid Connections protocol pieces, sans-IO
//! (`hybrid/PROTOCOL.md`):
//!
//! * [`sas`]: SharedAccessSignature tokens: parse, sign, verify, audience
//!   rules (§5; the same scheme serves WCF relays, `wcf/PROTOCOL.md` §7);
//! * [`address`]: `$hc` addresses, `sb-hc-*` query parameters and the query
//!   filtering rule (§1);
//! * [`control`]: the JSON control-channel messages `accept`, `request`,
//!   `response` and `renewToken` (§2.2, §2.3, §4);
//! * [`listener`]: both ends of a listener's control channel as state
//!   machines: messages, response and inline bodies, pings, keep-alive,
//!   renewal and token deadlines (§2, §4).
//!
//! No sockets, no clock: token times are passed in as Unix seconds, and the
//! sessions are given `now` and say when they next need it.

pub mod address;
pub mod control;
pub mod listener;
pub mod sas;
