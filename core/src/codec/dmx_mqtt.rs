//! DMX over MQTT, for controllers on cellular links. The topic says where
//! (`nightscape/v1/dmx/{controller}/{universe}`, the `v1` being the payload's version); the
//! payload is a sequence byte and then the slots, 1–512 of them. The sequence counts every
//! message (keep-alives too), so a controller can tell loss from silence.

use super::DecodeError;

/// The topic of one controller's universe, under `prefix` (empty in production).
pub fn topic(prefix: &str, controller: &crate::ids::ControllerId, universe: u16) -> String {
    format!("{prefix}nightscape/v1/dmx/{controller}/{universe}")
}

/// Writes a payload into `out` (cleared first): the sequence byte, then at most 512 slots.
pub fn encode_into(sequence: u8, slots: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.push(sequence);
    out.extend_from_slice(&slots[..slots.len().min(512)]);
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmxMessage {
    pub sequence: u8,
    pub slots: Vec<u8>,
}

impl DmxMessage {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 512);
        encode_into(self.sequence, &self.slots, &mut out);
        out
    }

    pub fn decode(b: &[u8]) -> Result<DmxMessage, DecodeError> {
        match b.len() {
            0 | 1 => Err(DecodeError::TooShort {
                need: 2,
                got: b.len(),
            }),
            n if n > 513 => Err(DecodeError::OutOfRange {
                field: "slot count",
                value: (n - 1) as u32,
                allowed: "1–512",
            }),
            _ => Ok(DmxMessage {
                sequence: b[0],
                slots: b[1..].to_vec(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_bytes() {
        let m = DmxMessage {
            sequence: 3,
            slots: vec![0, 128, 255],
        };
        assert_eq!(m.encode(), [3, 0, 128, 255]);
        assert_eq!(DmxMessage::decode(&[3, 0, 128, 255]).unwrap(), m);
        let controller = "donam-dmx".parse().unwrap();
        assert_eq!(topic("", &controller, 1), "nightscape/v1/dmx/donam-dmx/1");
        assert!(DmxMessage::decode(&[1]).is_err());
        assert!(DmxMessage::decode(&[0; 514]).is_err());
    }
}
