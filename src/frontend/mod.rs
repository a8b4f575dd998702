//! Front ends: the only code that imports both the relay core and a
//! protocol crate. Each owns its sockets and TLS (`design.md`, "Seams").

pub mod hybrid;
pub mod wcf;
pub mod websocket;

/// A fresh random GUID in its usual text form.
pub fn guid() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let part = |r: std::ops::Range<usize>| h.get(r).unwrap_or_default().to_owned();
    format!(
        "{}-{}-{}-{}-{}",
        part(0..8),
        part(8..12),
        part(12..16),
        part(16..20),
        part(20..32)
    )
}
