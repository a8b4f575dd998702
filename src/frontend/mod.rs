//! Front ends: the only code that imports both the relay core and a
//! protocol crate. Each owns its sockets and TLS (`design.md`, "Seams").

pub mod hybrid;
pub mod websocket;
