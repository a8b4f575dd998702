//! Front ends: the only code that imports both the relay core and a
//! protocol crate. Each owns its sockets and TLS (`design.md`, "Seams").

pub mod hybrid;
pub mod wcf;
pub mod websocket;

/// A fresh random GUID in its usual text form.
pub fn guid() -> String {
    use rand::RngCore;
    let hex = |n: u8| char::from_digit(u32::from(n), 16).unwrap_or('0');
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(hex(byte >> 4));
        s.push(hex(byte & 0x0f));
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn guids_have_the_usual_shape() {
        let g = super::guid();
        let parts: Vec<usize> = g.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert!(g.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        assert_ne!(g, super::guid());
    }
}
