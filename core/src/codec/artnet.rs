//! Art-Net 4 (Artistic Licence), the packets Nightscape uses: ArtDmx for levels, ArtSync to
//! latch several universes at once, ArtPoll and ArtPollReply to find nodes. All on UDP 6454.

use super::{DecodeError, be16, le16, need, put_text, text_field};
use crate::addr::ArtNetPortAddress;

pub const PORT: u16 = 6454;
const ID: &[u8; 8] = b"Art-Net\0";
const PROTOCOL: u16 = 14;

pub const OP_POLL: u16 = 0x2000;
pub const OP_POLL_REPLY: u16 = 0x2100;
pub const OP_DMX: u16 = 0x5000;
pub const OP_SYNC: u16 = 0x5200;

/// Levels for one universe. `data` is 2–512 bytes, an even count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtDmx {
    /// 1–255 in order, 0 when sequencing is off.
    pub sequence: u8,
    pub physical: u8,
    pub port_address: ArtNetPortAddress,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArtPoll {
    pub flags: u8,
    pub diag_priority: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtPollReply {
    pub ip: [u8; 4],
    pub port: u16,
    pub version: u16,
    pub net_switch: u8,
    pub sub_switch: u8,
    pub oem: u16,
    pub status1: u8,
    pub esta_manufacturer: u16,
    pub short_name: String,
    pub long_name: String,
    pub node_report: String,
    pub num_ports: u16,
    pub port_types: [u8; 4],
    pub good_input: [u8; 4],
    pub good_output_a: [u8; 4],
    pub sw_in: [u8; 4],
    pub sw_out: [u8; 4],
    pub style: u8,
    pub mac: [u8; 6],
    pub bind_ip: [u8; 4],
    pub bind_index: u8,
    pub status2: u8,
}

/// Any packet Nightscape understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Dmx(ArtDmx),
    Poll(ArtPoll),
    PollReply(Box<ArtPollReply>),
    Sync,
}

fn header(out: &mut Vec<u8>, opcode: u16) {
    out.extend_from_slice(ID);
    out.extend_from_slice(&opcode.to_le_bytes());
}

impl ArtDmx {
    /// The packet; data longer than 512 bytes is cut, an odd count padded with a zero.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(18 + 512);
        encode_dmx_into(
            self.sequence,
            self.physical,
            self.port_address,
            &self.data,
            &mut out,
        );
        out
    }
}

/// Writes an ArtDmx packet for `data` into `out` (cleared first; no allocation once `out`
/// has held one packet). Data longer than 512 bytes is cut, an odd count padded with a zero.
pub fn encode_dmx_into(
    sequence: u8,
    physical: u8,
    port_address: ArtNetPortAddress,
    data: &[u8],
    out: &mut Vec<u8>,
) {
    let data = &data[..data.len().min(512)];
    let mut len = data.len().max(2);
    len += len % 2;
    out.clear();
    header(out, OP_DMX);
    out.extend_from_slice(&PROTOCOL.to_be_bytes());
    out.push(sequence);
    out.push(physical);
    let address = port_address.get();
    out.push((address & 0xff) as u8);
    out.push((address >> 8) as u8);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(data);
    out.resize(18 + len, 0);
}

impl ArtPoll {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(14);
        header(&mut out, OP_POLL);
        out.extend_from_slice(&PROTOCOL.to_be_bytes());
        out.push(self.flags);
        out.push(self.diag_priority);
        out
    }
}

pub fn encode_sync() -> Vec<u8> {
    let mut out = Vec::with_capacity(14);
    header(&mut out, OP_SYNC);
    out.extend_from_slice(&PROTOCOL.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

/// Length of an Art-Net 4 ArtPollReply; older nodes send 207 bytes, which is also accepted.
pub const POLL_REPLY_LEN: usize = 239;
const POLL_REPLY_MIN: usize = 207;

impl ArtPollReply {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(POLL_REPLY_LEN);
        header(&mut out, OP_POLL_REPLY);
        out.extend_from_slice(&self.ip);
        out.extend_from_slice(&self.port.to_le_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.push(self.net_switch);
        out.push(self.sub_switch);
        out.extend_from_slice(&self.oem.to_be_bytes());
        out.push(0); // UBEA version
        out.push(self.status1);
        out.extend_from_slice(&self.esta_manufacturer.to_le_bytes());
        put_text(&mut out, &self.short_name, 18);
        put_text(&mut out, &self.long_name, 64);
        put_text(&mut out, &self.node_report, 64);
        out.extend_from_slice(&self.num_ports.to_be_bytes());
        for field in [
            self.port_types,
            self.good_input,
            self.good_output_a,
            self.sw_in,
            self.sw_out,
        ] {
            out.extend_from_slice(&field);
        }
        out.extend_from_slice(&[0, 0, 0]); // AcnPriority, SwMacro, SwRemote
        out.extend_from_slice(&[0, 0, 0]); // spare
        out.push(self.style);
        out.extend_from_slice(&self.mac);
        out.extend_from_slice(&self.bind_ip);
        out.push(self.bind_index);
        out.push(self.status2);
        out.resize(POLL_REPLY_LEN, 0);
        out
    }

    fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        need(b, POLL_REPLY_MIN)?;
        let four = |at: usize| [b[at], b[at + 1], b[at + 2], b[at + 3]];
        let byte = |at: usize| b.get(at).copied().unwrap_or(0);
        Ok(ArtPollReply {
            ip: four(10),
            port: le16(b, 14),
            version: be16(b, 16),
            net_switch: b[18],
            sub_switch: b[19],
            oem: be16(b, 20),
            status1: b[23],
            esta_manufacturer: le16(b, 24),
            short_name: text_field(&b[26..44]),
            long_name: text_field(&b[44..108]),
            node_report: text_field(&b[108..172]),
            num_ports: be16(b, 172),
            port_types: four(174),
            good_input: four(178),
            good_output_a: four(182),
            sw_in: four(186),
            sw_out: four(190),
            style: b[200],
            mac: [b[201], b[202], b[203], b[204], b[205], b[206]],
            bind_ip: [byte(207), byte(208), byte(209), byte(210)],
            bind_index: byte(211),
            status2: byte(212),
        })
    }
}

/// Decodes any Art-Net packet Nightscape understands.
pub fn decode(b: &[u8]) -> Result<Packet, DecodeError> {
    need(b, 10)?;
    if &b[..8] != ID {
        return Err(DecodeError::NotThisProtocol("Art-Net"));
    }
    let opcode = le16(b, 8);
    if opcode == OP_POLL_REPLY {
        return ArtPollReply::decode(b).map(|r| Packet::PollReply(Box::new(r)));
    }
    need(b, 12)?;
    let version = be16(b, 10);
    if version < PROTOCOL {
        return Err(DecodeError::Unsupported {
            what: "Art-Net protocol version",
            value: u32::from(version),
        });
    }
    match opcode {
        OP_DMX => {
            need(b, 18)?;
            let len = usize::from(be16(b, 16));
            if !(2..=512).contains(&len) {
                return Err(DecodeError::OutOfRange {
                    field: "ArtDmx length",
                    value: len as u32,
                    allowed: "2–512",
                });
            }
            need(b, 18 + len)?;
            let address = u16::from(b[15] & 0x7f) << 8 | u16::from(b[14]);
            let port_address = ArtNetPortAddress::new(i64::from(address)).map_err(|_| {
                DecodeError::OutOfRange {
                    field: "ArtDmx port-address",
                    value: u32::from(address),
                    allowed: "0–32767",
                }
            })?;
            Ok(Packet::Dmx(ArtDmx {
                sequence: b[12],
                physical: b[13],
                port_address,
                data: b[18..18 + len].to_vec(),
            }))
        }
        OP_POLL => {
            need(b, 14)?;
            Ok(Packet::Poll(ArtPoll {
                flags: b[12],
                diag_priority: b[13],
            }))
        }
        OP_SYNC => {
            need(b, 14)?;
            Ok(Packet::Sync)
        }
        other => Err(DecodeError::Unsupported {
            what: "Art-Net opcode",
            value: u32::from(other),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ArtDmx for port-address 0:1:2 (net 0, subnet 1, universe 2), sequence 7, four
    /// slots — written out byte by byte from the Art-Net 4 specification's table.
    const DMX: [u8; 22] = [
        b'A', b'r', b't', b'-', b'N', b'e', b't', 0, // ID
        0x00, 0x50, // OpCode 0x5000, low byte first
        0x00, 0x0e, // ProtVer 14, high byte first
        0x07, // Sequence
        0x00, // Physical
        0x12, // SubUni: subnet 1, universe 2
        0x00, // Net 0
        0x00, 0x04, // Length 4, high byte first
        0xff, 0x80, 0x01, 0x00,
    ];

    #[test]
    fn artdmx_matches_the_specification_bytes() {
        let packet = ArtDmx {
            sequence: 7,
            physical: 0,
            port_address: "0:1:2".parse().unwrap(),
            data: vec![0xff, 0x80, 0x01, 0x00],
        };
        assert_eq!(packet.encode(), DMX);
        assert_eq!(decode(&DMX).unwrap(), Packet::Dmx(packet));
    }

    #[test]
    fn odd_lengths_are_padded_and_net_is_seven_bits() {
        let packet = ArtDmx {
            sequence: 0,
            physical: 1,
            port_address: ArtNetPortAddress::new(0x7fff).unwrap(),
            data: vec![9, 9, 9],
        };
        let bytes = packet.encode();
        assert_eq!(bytes.len(), 22);
        assert_eq!(&bytes[14..18], &[0xff, 0x7f, 0x00, 0x04]);
        assert_eq!(bytes[21], 0);
    }

    #[test]
    fn poll_sync_and_reply_round_trip() {
        let poll = ArtPoll {
            flags: 0x06,
            diag_priority: 0x10,
        };
        assert_eq!(
            poll.encode(),
            [
                b'A', b'r', b't', b'-', b'N', b'e', b't', 0, 0x00, 0x20, 0x00, 0x0e, 0x06, 0x10
            ]
        );
        assert_eq!(decode(&poll.encode()).unwrap(), Packet::Poll(poll));
        assert_eq!(decode(&encode_sync()).unwrap(), Packet::Sync);
        assert_eq!(&encode_sync()[8..10], &[0x00, 0x52]);
        let reply = ArtPollReply {
            ip: [10, 0, 0, 7],
            port: PORT,
            version: 1,
            net_switch: 0,
            sub_switch: 1,
            oem: 0x2828,
            status1: 0xd0,
            esta_manufacturer: 0x7ff0,
            short_name: "nightscape-sim".into(),
            long_name: "Nightscape simulated node 계백교".into(),
            node_report: "#0001 [0000] ok".into(),
            num_ports: 4,
            port_types: [0x80; 4],
            good_input: [0; 4],
            good_output_a: [0x80; 4],
            sw_in: [0; 4],
            sw_out: [0, 1, 2, 3],
            style: 0,
            mac: [2, 0, 0, 0, 0, 7],
            bind_ip: [10, 0, 0, 7],
            bind_index: 1,
            status2: 0x08,
        };
        let bytes = reply.encode();
        assert_eq!(bytes.len(), POLL_REPLY_LEN);
        assert_eq!(&bytes[14..16], &[0x36, 0x19], "port 6454, low byte first");
        assert_eq!(
            decode(&bytes).unwrap(),
            Packet::PollReply(Box::new(reply.clone()))
        );
        // An older, shorter reply still decodes.
        let old = decode(&bytes[..207]).unwrap();
        assert!(
            matches!(old, Packet::PollReply(r) if r.short_name == reply.short_name && r.bind_index == 0)
        );
    }

    #[test]
    fn bad_packets_are_typed_errors() {
        assert!(matches!(
            decode(b"Art-Net"),
            Err(DecodeError::TooShort { .. })
        ));
        assert!(matches!(
            decode(b"Not-Net\0\x00\x50\x00\x0e"),
            Err(DecodeError::NotThisProtocol(_))
        ));
        let mut short = DMX.to_vec();
        short.truncate(20);
        assert!(matches!(
            decode(&short),
            Err(DecodeError::TooShort { need: 22, got: 20 })
        ));
        let mut zero = DMX.to_vec();
        zero[16..18].copy_from_slice(&[0x03, 0x00]);
        assert!(matches!(
            decode(&zero),
            Err(DecodeError::OutOfRange { .. } | DecodeError::Malformed(_))
        ));
        let mut op = DMX.to_vec();
        op[8..10].copy_from_slice(&[0x00, 0x99]);
        assert!(matches!(decode(&op), Err(DecodeError::Unsupported { .. })));
    }
}
