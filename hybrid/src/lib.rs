//! `hybrid`: the Azure Relay Hybrid Connections protocol pieces, sans-IO
//! (`hybrid/PROTOCOL.md`):
//!
//! * [`sas`]: SharedAccessSignature tokens: parse, sign, verify, audience
//!   rules (§5; the same scheme serves WCF relays, `wcf/PROTOCOL.md` §7);
//! * [`address`]: `$hc` addresses, `sb-hc-*` query parameters and the query
//!   filtering rule (§1);
//! * [`control`]: the JSON control-channel messages `accept`, `request`,
//!   `response` and `renewToken` (§2.2, §2.3, §4);
//! * [`listener`]: the relay's end of a listener's control channel as a
//!   state machine: messages, response bodies, pings, keep-alive and token
//!   deadlines (§2, §4).
//!
//! No sockets, no clock: token times are passed in as Unix seconds, and the
//! session is given `now` and says when it next needs it.

pub mod address;
pub mod control;
pub mod listener;
pub mod sas;
