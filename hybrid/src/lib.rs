//! `hybrid`: Azure Relay Hybrid Connections protocol pieces (`spec/hybrid-connections.md`).
