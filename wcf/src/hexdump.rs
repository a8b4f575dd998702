//! Reading the conversation hex dumps used by the project's captures and
//! fixtures: `#` comment
//! lines; chunk headers `C>S ...` / `S>C ...`; data lines of two spaces, a hex
//! offset (4 or 6 digits), two spaces, up to 16 hex byte pairs in a
//! 47-character column, then an ASCII column. Files without chunk headers
//! hold one direction, reported as client to server.

/// Direction of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server (`C>S`).
    ClientToServer,
    /// Server to client (`S>C`).
    ServerToClient,
}

impl Direction {
    /// The transcript label.
    pub fn label(self) -> &'static str {
        match self {
            Direction::ClientToServer => "C>S",
            Direction::ServerToClient => "S>C",
        }
    }
}

/// One chunk of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Its direction.
    pub direction: Direction,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Why a text is not a hex dump.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct HexError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Whether `text` looks like a hex dump (a chunk header or a data line
/// before any other non-comment line).
pub fn looks_like(text: &str) -> bool {
    text.lines()
        .map(str::trim_end)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| l.starts_with("C>S") || l.starts_with("S>C") || data_line(l).is_some())
}

fn data_line(line: &str) -> Option<Result<Vec<u8>, String>> {
    let rest = line.strip_prefix("  ")?;
    let digits = rest.chars().take_while(char::is_ascii_hexdigit).count();
    if !(4..=8).contains(&digits) {
        return None;
    }
    let after = rest.get(digits..)?.strip_prefix("  ")?;
    let column: String = after.chars().take(47).collect();
    Some(
        column
            .split_whitespace()
            .map(|pair| {
                if pair.len() == 2 {
                    u8::from_str_radix(pair, 16).map_err(|_| format!("bad hex pair {pair:?}"))
                } else {
                    Err(format!("bad hex pair {pair:?}"))
                }
            })
            .collect(),
    )
}

/// Parse a hex dump into chunks (consecutive chunks of one direction are
/// kept apart, as recorded).
pub fn parse(text: &str) -> Result<Vec<Chunk>, HexError> {
    let mut chunks: Vec<Chunk> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message: String| HexError {
            line: i + 1,
            message,
        };
        let direction = if line.starts_with("C>S") {
            Some(Direction::ClientToServer)
        } else if line.starts_with("S>C") {
            Some(Direction::ServerToClient)
        } else {
            None
        };
        if let Some(direction) = direction {
            chunks.push(Chunk {
                direction,
                bytes: Vec::new(),
            });
            continue;
        }
        match data_line(line) {
            Some(Ok(bytes)) => {
                if chunks.is_empty() {
                    chunks.push(Chunk {
                        direction: Direction::ClientToServer,
                        bytes: Vec::new(),
                    });
                }
                if let Some(c) = chunks.last_mut() {
                    c.bytes.extend_from_slice(&bytes);
                }
            }
            Some(Err(m)) => return Err(err(m)),
            None => return Err(err(format!("not a hex dump line: {line:?}"))),
        }
    }
    Ok(chunks)
}

/// The chunks of a step-by-step capture (`fixtures/wcf/http/sdk5-http-*.txt`:
/// `## step N: FROM -> TO, …` headings, each followed by `hex:` and data
/// lines, then decoded text that is skipped). Steps whose heading names
/// `from_client` before the arrow are [`Direction::ClientToServer`].
pub fn parse_steps(text: &str, from_client: &str) -> Result<Vec<Chunk>, HexError> {
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut in_hex = false;
    for (i, line) in text.lines().enumerate() {
        if let Some(heading) = line.strip_prefix("## step") {
            let sender = heading.split("->").next().unwrap_or("");
            chunks.push(Chunk {
                direction: if sender.contains(from_client) {
                    Direction::ClientToServer
                } else {
                    Direction::ServerToClient
                },
                bytes: Vec::new(),
            });
            in_hex = false;
        } else if line == "hex:" {
            in_hex = true;
        } else if in_hex {
            match (data_line(line.trim_end()), chunks.last_mut()) {
                (Some(Ok(bytes)), Some(c)) => c.bytes.extend_from_slice(&bytes),
                (Some(Err(message)), _) => {
                    return Err(HexError {
                        line: i + 1,
                        message,
                    })
                }
                _ => in_hex = false,
            }
        }
    }
    Ok(chunks)
}

/// All bytes of one direction, concatenated.
pub fn stream(chunks: &[Chunk], direction: Direction) -> Vec<u8> {
    chunks
        .iter()
        .filter(|c| c.direction == direction)
        .flat_map(|c| c.bytes.iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts() {
        let text = "# c\n# d\nC>S t=+0.0s len=3\n  0000  00 01 00                                          ...\nS>C t=+0.1s len=1\n  0000  0b                                               .\n";
        let chunks = parse(text).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].bytes, [0, 1, 0]);
        assert_eq!(chunks[1].direction, Direction::ServerToClient);
        let sdk =
            "# x\n  000000  fd 03 00 00 56 02 0b 01 73 04 0b 01 61 06 56 08   ....V...s...a.V.\n";
        assert!(looks_like(sdk));
        assert_eq!(parse(sdk).unwrap()[0].bytes.len(), 16);
        assert!(!looks_like("<s:Envelope/>"));
    }
}
