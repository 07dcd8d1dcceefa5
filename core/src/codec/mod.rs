//! Protocol codecs, pure and tested at the byte level: what the gateway sends and the
//! simulator receives, through the same code so the two cannot drift apart.
//!
//! - [`artnet`]: Art-Net 4 ArtDmx, ArtPoll, ArtPollReply, ArtSync.
//! - [`sacn`]: E1.31-2018 data, universe sync and universe discovery packets, and the
//!   receiver's merge and timeout rules as a state machine fed with (packet, time).
//! - [`modbus`]: channel levels to register writes for a controller profile, and the
//!   profile's status, power and uptime readings.
//! - [`dmx_mqtt`]: the DMX-over-MQTT payload.
//!
//! Decoders take arbitrary bytes and return a typed error, never panic.

pub mod artnet;
pub mod dmx_mqtt;
pub mod modbus;
pub mod sacn;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet is {got} bytes; at least {need} are needed")]
    TooShort { need: usize, got: usize },
    #[error("not a {0} packet (identifier does not match)")]
    NotThisProtocol(&'static str),
    #[error("unsupported {what} {value:#x}")]
    Unsupported { what: &'static str, value: u32 },
    #[error("{field} is {value}; it must be {allowed}")]
    OutOfRange {
        field: &'static str,
        value: u32,
        allowed: &'static str,
    },
    #[error("{0}")]
    Malformed(&'static str),
}

pub(crate) fn need(bytes: &[u8], n: usize) -> Result<(), DecodeError> {
    if bytes.len() < n {
        Err(DecodeError::TooShort {
            need: n,
            got: bytes.len(),
        })
    } else {
        Ok(())
    }
}

pub(crate) fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn le16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

pub(crate) fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// A NUL-padded text field of `len` bytes, cut at the first NUL; invalid UTF-8 is replaced.
pub(crate) fn text_field(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Writes `text` into a NUL-padded field of `len` bytes, keeping a final NUL and never
/// splitting a UTF-8 character.
pub(crate) fn put_text(out: &mut Vec<u8>, text: &str, len: usize) {
    let mut end = text.len().min(len - 1);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&text.as_bytes()[..end]);
    out.resize(out.len() + (len - end), 0);
}
