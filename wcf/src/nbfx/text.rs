//! The XML text form of each [MC-NBFX] text record (`wcf/PROTOCOL.md §12`
//! §2.2): what .NET's `XmlConvert` prints for numbers, dates, durations,
//! GUIDs and binary data.
//!
//! Documented departures: a DateTime of kind Local is printed from its
//! stored UTC ticks with a `Z` suffix (the original offset is not on the
//! wire); floating-point values use the shortest round-trip digits, switching
//! to exponent form (`1E+20`, `1E-05`) outside 1e-4..1e15 as .NET's "R" format does.

use std::fmt::Write;

use base64::Engine;

use super::record::{letter, Text};

/// Append the XML text of `value` to `out`.
pub fn write_text(value: &Text<'_>, out: &mut String) {
    match value {
        Text::Zero => out.push('0'),
        Text::One => out.push('1'),
        Text::False | Text::Bool(false) => out.push_str("false"),
        Text::True | Text::Bool(true) => out.push_str("true"),
        Text::Int8(v) => push(out, v),
        Text::Int16(v) => push(out, v),
        Text::Int32(v) => push(out, v),
        Text::Int64(v) => push(out, v),
        Text::UInt64(v) => push(out, v),
        Text::Float(v) => float(f64::from(*v), v.is_sign_negative(), &format!("{v:e}"), out),
        Text::Double(v) => float(*v, v.is_sign_negative(), &format!("{v:e}"), out),
        Text::Decimal(b) => decimal(b, out),
        Text::DateTime(v) => datetime(*v, out),
        Text::Chars(s, _) => out.push_str(s),
        Text::Bytes(b, _) => base64::engine::general_purpose::STANDARD.encode_string(b, out),
        Text::StartList | Text::EndList | Text::Empty => {}
        Text::Dict(s) => out.push_str(s.text),
        Text::UniqueId(g) => {
            out.push_str("urn:uuid:");
            guid(g, out);
        }
        Text::TimeSpan(t) => timespan(*t, out),
        Text::Guid(g) => guid(g, out),
        Text::Unicode(b, _) => out.extend(
            char::decode_utf16(utf16le_units(b)).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)),
        ),
        Text::QName(p, s) => {
            out.push_str(letter(*p));
            out.push(':');
            out.push_str(s.text);
        }
    }
}

/// The XML text of `value` as a new string.
pub fn to_string(value: &Text<'_>) -> String {
    let mut s = String::new();
    write_text(value, &mut s);
    s
}

/// The UTF-16 code units of little-endian bytes (a trailing odd byte is
/// ignored; the reader rejects odd lengths before this is used).
pub fn utf16le_units(bytes: &[u8]) -> impl Iterator<Item = u16> + '_ {
    bytes
        .chunks_exact(2)
        .filter_map(|c| <[u8; 2]>::try_from(c).ok())
        .map(u16::from_le_bytes)
}

fn push(out: &mut String, v: impl std::fmt::Display) {
    let _ = write!(out, "{v}");
}

/// .NET "R"-style float text from Rust's shortest `{:e}` form.
fn float(v: f64, negative: bool, sci: &str, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if negative { "-INF" } else { "INF" });
        return;
    }
    if v == 0.0 {
        out.push_str(if negative { "-0" } else { "0" });
        return;
    }
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..15).contains(&exp) {
        let _ = write!(
            out,
            "{mantissa}E{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
        return;
    }
    let (sign, digits) = match mantissa.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", mantissa),
    };
    let digits: String = digits.chars().filter(char::is_ascii_digit).collect();
    out.push_str(sign);
    if exp < 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
        } else {
            let (i, f) = digits.split_at(int_len);
            let _ = write!(out, "{i}.{f}");
        }
    }
}

fn decimal(b: &[u8; 16], out: &mut String) {
    let word = |i: usize| {
        b.get(i..i + 4)
            .and_then(|w| <[u8; 4]>::try_from(w).ok())
            .map_or(0, u32::from_le_bytes)
    };
    let flags = word(0);
    let (hi, lo, mid) = (word(4), word(8), word(12));
    let scale = ((flags >> 16) & 0xFF) as usize;
    let value = (u128::from(hi) << 64) | (u128::from(mid) << 32) | u128::from(lo);
    let mut digits = value.to_string();
    if digits.len() <= scale {
        digits = format!("{}{digits}", "0".repeat(scale + 1 - digits.len()));
    }
    if flags & 0x8000_0000 != 0 && value != 0 {
        out.push('-');
    }
    let (i, f) = digits.split_at(digits.len() - scale);
    out.push_str(i);
    if scale > 0 {
        out.push('.');
        out.push_str(f);
    }
}

const TICKS_PER_SECOND: u64 = 10_000_000;
const TICKS_PER_DAY: u64 = 86_400 * TICKS_PER_SECOND;

/// Civil date from days since 0001-01-01 (proleptic Gregorian).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days - 719_162 + 719_468; // shift to 0000-03-01 based era counting
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn fraction(ticks: u64, out: &mut String) {
    if ticks > 0 {
        let f = format!("{ticks:07}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
}

fn datetime(v: u64, out: &mut String) {
    let kind = v >> 62;
    let ticks = v & 0x3FFF_FFFF_FFFF_FFFF;
    let (y, m, d) = civil((ticks / TICKS_PER_DAY) as i64);
    let tod = ticks % TICKS_PER_DAY;
    let secs = tod / TICKS_PER_SECOND;
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    fraction(tod % TICKS_PER_SECOND, out);
    if kind != 0 {
        out.push('Z');
    }
}

fn timespan(t: i64, out: &mut String) {
    if t < 0 {
        out.push('-');
    }
    let ticks = t.unsigned_abs();
    let days = ticks / TICKS_PER_DAY;
    let rest = ticks % TICKS_PER_DAY;
    let (h, m, s, f) = (
        rest / (3600 * TICKS_PER_SECOND),
        rest / (60 * TICKS_PER_SECOND) % 60,
        rest / TICKS_PER_SECOND % 60,
        rest % TICKS_PER_SECOND,
    );
    out.push('P');
    if days > 0 {
        push(out, days);
        out.push('D');
    }
    if rest > 0 {
        out.push('T');
        if h > 0 {
            let _ = write!(out, "{h}H");
        }
        if m > 0 {
            let _ = write!(out, "{m}M");
        }
        if s > 0 || f > 0 {
            push(out, s);
            fraction(f, out);
            out.push('S');
        }
    } else if days == 0 {
        out.push_str("T0S");
    }
}

/// Format a GUID stored in .NET byte layout (first three groups little-endian).
pub fn guid(b: &[u8; 16], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // .NET's Guid layout: the first three groups are little-endian.
    let order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
    for (i, &at) in order.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        let byte = b.get(at).copied().unwrap_or(0);
        for nibble in [byte >> 4, byte & 0x0f] {
            out.push(char::from(
                HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
}

/// Parse a GUID's text form into .NET byte layout.
pub fn parse_guid(s: &str) -> Option<[u8; 16]> {
    let bytes = s.as_bytes();
    if bytes.len() != 36 || [8, 13, 18, 23].iter().any(|&i| bytes.get(i) != Some(&b'-')) {
        return None;
    }
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut raw = [0u8; 16];
    for (i, slot) in raw.iter_mut().enumerate() {
        *slot = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    let mut out = raw;
    out[..4].copy_from_slice(&[raw[3], raw[2], raw[1], raw[0]]);
    out[4..6].copy_from_slice(&[raw[5], raw[4]]);
    out[6..8].copy_from_slice(&[raw[7], raw[6]]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nbfx::record::Width;

    #[test]
    fn numbers() {
        assert_eq!(to_string(&Text::Int16(256)), "256");
        assert_eq!(to_string(&Text::Double(1.5)), "1.5");
        assert_eq!(to_string(&Text::Double(1e20)), "1E+20");
        assert_eq!(to_string(&Text::Double(0.000_012_5)), "1.25E-05");
        assert_eq!(to_string(&Text::Double(0.001)), "0.001");
        assert_eq!(to_string(&Text::Double(123_456.0)), "123456");
        assert_eq!(to_string(&Text::Float(f32::NEG_INFINITY)), "-INF");
        assert_eq!(to_string(&Text::Float(-0.0)), "-0");
        assert_eq!(to_string(&Text::Double(f64::NAN)), "NaN");
        let mut d = [0u8; 16];
        d[2] = 2; // scale 2
        d[8] = 150; // lo = 150
        assert_eq!(to_string(&Text::Decimal(d)), "1.50");
        d[3] = 0x80;
        assert_eq!(to_string(&Text::Decimal(d)), "-1.50");
    }

    #[test]
    fn dates_and_durations() {
        // 2009-05-01T12:30:15.5Z
        let days = civil_days(2009, 5, 1);
        let ticks =
            days * TICKS_PER_DAY + (12 * 3600 + 30 * 60 + 15) * TICKS_PER_SECOND + 5_000_000;
        assert_eq!(
            to_string(&Text::DateTime(ticks | (1 << 62))),
            "2009-05-01T12:30:15.5Z"
        );
        assert_eq!(to_string(&Text::DateTime(0)), "0001-01-01T00:00:00");
        assert_eq!(to_string(&Text::TimeSpan(36_000_000_000)), "PT1H");
        assert_eq!(to_string(&Text::TimeSpan(0)), "PT0S");
        assert_eq!(
            to_string(&Text::TimeSpan(-(TICKS_PER_DAY as i64) - 15_000_000)),
            "-P1DT1.5S"
        );
    }

    fn civil_days(y: i64, m: u32, d: u32) -> u64 {
        (0..4_000_000i64).find(|&n| civil(n) == (y, m, d)).unwrap() as u64
    }

    #[test]
    fn guids_and_binary() {
        let g = parse_guid("d493b25d-0bbc-47a5-b9dc-cb2f140fd0c3").unwrap();
        assert_eq!(g[..4], [0x5d, 0xb2, 0x93, 0xd4]);
        assert_eq!(
            to_string(&Text::UniqueId(g)),
            "urn:uuid:d493b25d-0bbc-47a5-b9dc-cb2f140fd0c3"
        );
        assert_eq!(to_string(&Text::Bytes(b"hi", Width::W8)), "aGk=");
        assert_eq!(
            to_string(&Text::Unicode(&[0x60, 0x4f, 0x7d, 0x59], Width::W8)),
            "你好"
        );
    }
}
