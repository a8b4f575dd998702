//! The [MC-NBFS] static dictionary (wcf/PROTOCOL.md §12.3): 487 strings with
//! even wire ids 0..=972, loaded from `nbfs-dictionary.tsv` (CoreWCF's
//! `ServiceModelStringsVersion1`), keeping id 424's leading space.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::fnv::BuildFnv;

const TSV: &str = include_str!("../nbfs-dictionary.tsv");

struct Table {
    by_index: Vec<&'static str>,
    by_text: HashMap<&'static str, u32, BuildFnv>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut by_index = Vec::with_capacity(487);
        let mut by_text = HashMap::with_capacity_and_hasher(487, BuildFnv::default());
        for line in TSV.lines() {
            if let Some((id, text)) = line.split_once('\t') {
                if let Ok(id) = id.parse::<u32>() {
                    by_index.push(text);
                    by_text.entry(text).or_insert(id);
                }
            }
        }
        Table { by_index, by_text }
    })
}

/// The string for an even wire id, if the static dictionary has it.
pub fn lookup(wire_id: u32) -> Option<&'static str> {
    if wire_id % 2 != 0 {
        return None;
    }
    table().by_index.get((wire_id / 2) as usize).copied()
}

/// The even wire id of a string, if the static dictionary has it.
pub fn id_of(text: &str) -> Option<u32> {
    table().by_text.get(text).copied()
}

/// Number of entries (487).
pub fn len() -> usize {
    table().by_index.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_entries() {
        assert_eq!(len(), 487);
        for (id, s) in [
            (0, "mustUnderstand"),
            (2, "Envelope"),
            (4, "http://www.w3.org/2003/05/soap-envelope"),
            (6, "http://www.w3.org/2005/08/addressing"),
            (20, "http://www.w3.org/2005/08/addressing/anonymous"),
            (44, "ReplyTo"),
            (970, "faultactor"),
            (972, "detail"),
        ] {
            assert_eq!(lookup(id), Some(s));
            assert_eq!(id_of(s), Some(id));
        }
        assert_eq!(
            lookup(424),
            Some(" http://schemas.xmlsoap.org/ws/2005/02/trust/tlsnego")
        );
        assert_eq!(lookup(974), None);
        assert_eq!(lookup(3), None);
    }
}
