//! Connections below both the gateway's front ends and its relay client
//! (`forward`), so that the server and the client are siblings over the
//! same pieces: byte streams over TCP, TLS or a WebSocket adapter, as core
//! legs ([`stream`]); WebSockets as core legs, server and client side
//! ([`websocket`]); and HTTP bodies and header rules ([`http`]).

pub mod http;
pub mod stream;
pub mod websocket;
