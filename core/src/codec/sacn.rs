//! ANSI E1.31-2018 (streaming ACN, "sACN"): data packets, universe synchronization and
//! universe discovery, and the receiver's rules as a pure state machine.
//!
//! The receiver takes packets with the time they arrived and keeps, per universe, each
//! source's levels: packets out of order are dropped by the standard's sequence rule, the
//! highest priority wins and equal priorities merge highest-takes-precedence, a source that
//! is silent for 2.5 s or says it stopped (stream terminated) no longer counts. When none
//! counts, the receiver holds the last look.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::{DecodeError, be16, be32, need, put_text, text_field};
use crate::addr::SacnUniverse;
use crate::model::OnLoss;

pub const PORT: u16 = 5568;
const PACKET_ID: [u8; 12] = *b"ASC-E1.17\0\0\0";
const VECTOR_ROOT_DATA: u32 = 0x0000_0004;
const VECTOR_ROOT_EXTENDED: u32 = 0x0000_0008;
const VECTOR_FRAMING_DATA: u32 = 0x0000_0002;
const VECTOR_FRAMING_SYNC: u32 = 0x0000_0001;
const VECTOR_FRAMING_DISCOVERY: u32 = 0x0000_0002;
const VECTOR_DISCOVERY_LIST: u32 = 0x0000_0001;
/// Universe discovery packets are sent on this universe.
pub const DISCOVERY_UNIVERSE: u16 = 64214;
/// A source unheard for this long is gone (E1.31 network data loss timeout).
pub const DATA_LOSS_MS: i64 = 2500;

pub const OPTION_PREVIEW: u8 = 0x80;
pub const OPTION_TERMINATED: u8 = 0x40;
pub const OPTION_FORCE_SYNC: u8 = 0x20;

/// A component identifier (the source's UUID).
pub type Cid = [u8; 16];

/// The multicast group of a universe: 239.255.hi.lo.
pub fn multicast_group(universe: SacnUniverse) -> Ipv4Addr {
    let u = universe.get();
    Ipv4Addr::new(239, 255, (u >> 8) as u8, (u & 0xff) as u8)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPacket {
    pub cid: Cid,
    pub source_name: String,
    /// 0–200.
    pub priority: u8,
    /// 0 when not synchronized.
    pub sync_address: u16,
    pub sequence: u8,
    pub options: u8,
    pub universe: u16,
    pub start_code: u8,
    /// Up to 512 slots.
    pub slots: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPacket {
    pub cid: Cid,
    pub sequence: u8,
    pub sync_address: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryPacket {
    pub cid: Cid,
    pub source_name: String,
    pub page: u8,
    pub last_page: u8,
    /// Sorted, at most 512 a page.
    pub universes: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Data(DataPacket),
    Sync(SyncPacket),
    Discovery(DiscoveryPacket),
}

/// Flags (0x7) and a 12-bit length, as every E1.31 layer starts.
fn flags_length(len: usize) -> [u8; 2] {
    (0x7000 | (len as u16 & 0x0fff)).to_be_bytes()
}

fn root(out: &mut Vec<u8>, total: usize, vector: u32, cid: &Cid) {
    out.extend_from_slice(&0x0010u16.to_be_bytes()); // preamble size
    out.extend_from_slice(&0x0000u16.to_be_bytes()); // post-amble size
    out.extend_from_slice(&PACKET_ID);
    out.extend_from_slice(&flags_length(total - 16));
    out.extend_from_slice(&vector.to_be_bytes());
    out.extend_from_slice(cid);
}

impl DataPacket {
    pub fn encode(&self) -> Vec<u8> {
        let template = DataTemplate::new(self.cid, &self.source_name, self.priority);
        let mut out = Vec::with_capacity(126 + 512);
        template.encode_into(
            &DataFields {
                sync_address: self.sync_address,
                sequence: self.sequence,
                options: self.options,
                universe: self.universe,
                start_code: self.start_code,
            },
            &self.slots,
            &mut out,
        );
        out
    }

    pub fn terminated(&self) -> bool {
        self.options & OPTION_TERMINATED != 0
    }

    pub fn preview(&self) -> bool {
        self.options & OPTION_PREVIEW != 0
    }
}

/// What changes between a source's data packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFields {
    pub sync_address: u16,
    pub sequence: u8,
    pub options: u8,
    pub universe: u16,
    pub start_code: u8,
}

/// A source's data packet with what stays the same (CID, name, priority) written once: a
/// sender keeps one and writes each universe's packet into a reused buffer without
/// allocating or re-encoding the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataTemplate {
    head: [u8; 126],
}

impl DataTemplate {
    pub fn new(cid: Cid, source_name: &str, priority: u8) -> DataTemplate {
        let mut out = Vec::with_capacity(126);
        root(&mut out, 126, VECTOR_ROOT_DATA, &cid);
        out.extend_from_slice(&flags_length(126 - 38));
        out.extend_from_slice(&VECTOR_FRAMING_DATA.to_be_bytes());
        put_text(&mut out, source_name, 64);
        out.push(priority);
        out.extend_from_slice(&[0; 6]); // sync address, sequence, options, universe
        out.extend_from_slice(&flags_length(126 - 115));
        out.push(0x02); // set property
        out.push(0xa1); // address and data type
        out.extend_from_slice(&0x0000u16.to_be_bytes()); // first property address
        out.extend_from_slice(&0x0001u16.to_be_bytes()); // address increment
        out.extend_from_slice(&[0; 3]); // property count, start code
        let mut head = [0u8; 126];
        head.copy_from_slice(&out);
        DataTemplate { head }
    }

    /// Writes the packet of `slots` (at most 512 are sent) into `out`, cleared first.
    pub fn encode_into(&self, fields: &DataFields, slots: &[u8], out: &mut Vec<u8>) {
        let slots = &slots[..slots.len().min(512)];
        let total = 126 + slots.len();
        out.clear();
        out.extend_from_slice(&self.head);
        out[16..18].copy_from_slice(&flags_length(total - 16));
        out[38..40].copy_from_slice(&flags_length(total - 38));
        out[109..111].copy_from_slice(&fields.sync_address.to_be_bytes());
        out[111] = fields.sequence;
        out[112] = fields.options;
        out[113..115].copy_from_slice(&fields.universe.to_be_bytes());
        out[115..117].copy_from_slice(&flags_length(total - 115));
        out[123..125].copy_from_slice(&(slots.len() as u16 + 1).to_be_bytes());
        out[125] = fields.start_code;
        out.extend_from_slice(slots);
    }
}

impl SyncPacket {
    pub fn encode(&self) -> Vec<u8> {
        let total = 49;
        let mut out = Vec::with_capacity(total);
        root(&mut out, total, VECTOR_ROOT_EXTENDED, &self.cid);
        out.extend_from_slice(&flags_length(total - 38));
        out.extend_from_slice(&VECTOR_FRAMING_SYNC.to_be_bytes());
        out.push(self.sequence);
        out.extend_from_slice(&self.sync_address.to_be_bytes());
        out.extend_from_slice(&[0, 0]); // reserved
        out
    }
}

impl DiscoveryPacket {
    pub fn encode(&self) -> Vec<u8> {
        let list = &self.universes[..self.universes.len().min(512)];
        let total = 120 + 2 * list.len();
        let mut out = Vec::with_capacity(total);
        root(&mut out, total, VECTOR_ROOT_EXTENDED, &self.cid);
        out.extend_from_slice(&flags_length(total - 38));
        out.extend_from_slice(&VECTOR_FRAMING_DISCOVERY.to_be_bytes());
        put_text(&mut out, &self.source_name, 64);
        out.extend_from_slice(&[0, 0, 0, 0]); // reserved
        out.extend_from_slice(&flags_length(total - 112));
        out.extend_from_slice(&VECTOR_DISCOVERY_LIST.to_be_bytes());
        out.push(self.page);
        out.push(self.last_page);
        for u in list {
            out.extend_from_slice(&u.to_be_bytes());
        }
        out
    }
}

fn layer_length(b: &[u8], at: usize) -> usize {
    usize::from(be16(b, at) & 0x0fff)
}

/// Decodes any E1.31 packet.
pub fn decode(b: &[u8]) -> Result<Packet, DecodeError> {
    need(b, 38)?;
    if be16(b, 0) != 0x0010 || b[4..16] != PACKET_ID {
        return Err(DecodeError::NotThisProtocol("E1.31"));
    }
    if layer_length(b, 16) + 16 > b.len() {
        return Err(DecodeError::TooShort {
            need: layer_length(b, 16) + 16,
            got: b.len(),
        });
    }
    let mut cid = [0u8; 16];
    cid.copy_from_slice(&b[22..38]);
    match be32(b, 18) {
        VECTOR_ROOT_DATA => {
            need(b, 126)?;
            if be32(b, 40) != VECTOR_FRAMING_DATA {
                return Err(DecodeError::Unsupported {
                    what: "E1.31 framing vector",
                    value: be32(b, 40),
                });
            }
            if b[117] != 0x02 || b[118] != 0xa1 {
                return Err(DecodeError::Malformed(
                    "DMP layer is not a set-property with address type 0xa1",
                ));
            }
            let count = usize::from(be16(b, 123));
            if !(1..=513).contains(&count) {
                return Err(DecodeError::OutOfRange {
                    field: "DMP property value count",
                    value: count as u32,
                    allowed: "1–513",
                });
            }
            need(b, 125 + count)?;
            let priority = b[108];
            if priority > 200 {
                return Err(DecodeError::OutOfRange {
                    field: "priority",
                    value: u32::from(priority),
                    allowed: "0–200",
                });
            }
            Ok(Packet::Data(DataPacket {
                cid,
                source_name: text_field(&b[44..108]),
                priority,
                sync_address: be16(b, 109),
                sequence: b[111],
                options: b[112],
                universe: be16(b, 113),
                start_code: b[125],
                slots: b[126..125 + count].to_vec(),
            }))
        }
        VECTOR_ROOT_EXTENDED => {
            need(b, 44)?;
            match be32(b, 40) {
                VECTOR_FRAMING_SYNC => {
                    need(b, 49)?;
                    Ok(Packet::Sync(SyncPacket {
                        cid,
                        sequence: b[44],
                        sync_address: be16(b, 45),
                    }))
                }
                VECTOR_FRAMING_DISCOVERY => {
                    need(b, 120)?;
                    if be32(b, 114) != VECTOR_DISCOVERY_LIST {
                        return Err(DecodeError::Unsupported {
                            what: "E1.31 discovery vector",
                            value: be32(b, 114),
                        });
                    }
                    let n = (layer_length(b, 112).saturating_sub(8)) / 2;
                    need(b, 120 + 2 * n)?;
                    Ok(Packet::Discovery(DiscoveryPacket {
                        cid,
                        source_name: text_field(&b[44..108]),
                        page: b[118],
                        last_page: b[119],
                        universes: (0..n.min(512)).map(|i| be16(b, 120 + 2 * i)).collect(),
                    }))
                }
                other => Err(DecodeError::Unsupported {
                    what: "E1.31 extended framing vector",
                    value: other,
                }),
            }
        }
        other => Err(DecodeError::Unsupported {
            what: "E1.31 root vector",
            value: other,
        }),
    }
}

/// What the receiver did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fed {
    Accepted,
    /// Out of order by the sequence rule.
    OutOfOrder,
    /// Preview data, not for output.
    Preview,
    /// The source said it stopped; it no longer counts.
    Terminated,
    /// Another universe, or a start code other than levels (0).
    Ignored,
}

#[derive(Debug, Clone)]
struct Source {
    name: String,
    priority: u8,
    sequence: u8,
    seen_ms: i64,
    slots: [u8; 512],
}

/// One universe's receiver: sources, their levels, and the merged output.
#[derive(Debug, Clone)]
pub struct Receiver {
    universe: u16,
    sources: BTreeMap<Cid, Source>,
    last_look: [u8; 512],
    on_loss: OnLoss,
}

impl Receiver {
    pub fn new(universe: SacnUniverse) -> Self {
        Receiver {
            universe: universe.get(),
            sources: BTreeMap::new(),
            last_look: [0; 512],
            on_loss: OnLoss::Hold,
        }
    }

    /// A receiver that goes dark (`OnLoss::Dark`) instead of holding its last look when no
    /// source is live.
    pub fn with_loss(universe: SacnUniverse, on_loss: OnLoss) -> Self {
        Receiver {
            on_loss,
            ..Receiver::new(universe)
        }
    }

    /// Takes a packet that arrived at `now_ms`.
    pub fn feed(&mut self, packet: &DataPacket, now_ms: i64) -> Fed {
        self.expire(now_ms);
        if packet.universe != self.universe || packet.start_code != 0 {
            return Fed::Ignored;
        }
        if let Some(source) = self.sources.get(&packet.cid) {
            // E1.31 6.7.2: a packet whose sequence is 0 to 19 behind the last one is old.
            let diff = packet.sequence.wrapping_sub(source.sequence) as i8;
            if diff <= 0 && diff > -20 {
                return Fed::OutOfOrder;
            }
        }
        if packet.terminated() {
            self.output_into_last_look();
            self.sources.remove(&packet.cid);
            return Fed::Terminated;
        }
        if packet.preview() {
            return Fed::Preview;
        }
        let source = self.sources.entry(packet.cid).or_insert_with(|| Source {
            name: String::new(),
            priority: 0,
            sequence: 0,
            seen_ms: now_ms,
            slots: [0; 512],
        });
        if source.name != packet.source_name {
            source.name.clone_from(&packet.source_name);
        }
        source.priority = packet.priority;
        source.sequence = packet.sequence;
        source.seen_ms = now_ms;
        // Slots a packet does not carry are 0 (E1.31: a shorter packet ends the universe).
        let n = packet.slots.len().min(512);
        source.slots[..n].copy_from_slice(&packet.slots[..n]);
        source.slots[n..].fill(0);
        self.output_into_last_look();
        Fed::Accepted
    }

    /// Forgets sources unheard for [`DATA_LOSS_MS`]; returns how many.
    pub fn expire(&mut self, now_ms: i64) -> usize {
        let before = self.sources.len();
        let live = |s: &Source| now_ms - s.seen_ms < DATA_LOSS_MS;
        if self.sources.values().all(live) {
            return 0;
        }
        self.output_into_last_look();
        self.sources.retain(|_, s| live(s));
        before - self.sources.len()
    }

    fn merged(&self) -> Option<[u8; 512]> {
        let top = self.sources.values().map(|s| s.priority).max()?;
        let mut out = [0u8; 512];
        for s in self.sources.values().filter(|s| s.priority == top) {
            for (o, v) in out.iter_mut().zip(&s.slots) {
                *o = (*o).max(*v);
            }
        }
        Some(out)
    }

    fn output_into_last_look(&mut self) {
        if let Some(m) = self.merged() {
            self.last_look = m;
        }
    }

    /// The levels to output at `now_ms`: the highest-priority live sources merged, or, when
    /// none is live, the last look (or 0 for a receiver set to go dark). The flag says whether
    /// any source is live.
    pub fn output(&mut self, now_ms: i64) -> ([u8; 512], bool) {
        self.expire(now_ms);
        match (self.merged(), self.on_loss) {
            (Some(m), _) => (m, true),
            (None, OnLoss::Hold) => (self.last_look, false),
            (None, OnLoss::Dark) => ([0; 512], false),
        }
    }

    /// The live sources' names and priorities, highest first.
    pub fn sources(&self) -> Vec<(String, u8)> {
        let mut list: Vec<(String, u8)> = self
            .sources
            .values()
            .map(|s| (s.name.clone(), s.priority))
            .collect();
        list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: Cid = [
        0xef, 0x07, 0xc8, 0xdd, 0x00, 0x64, 0x44, 0x01, 0xa3, 0xa2, 0x45, 0x9e, 0xf8, 0xe6, 0x14,
        0x3e,
    ];

    fn data(cid: Cid, priority: u8, sequence: u8, options: u8, level: u8) -> DataPacket {
        DataPacket {
            cid,
            source_name: "nightscape".into(),
            priority,
            sync_address: 0,
            sequence,
            options,
            universe: 1,
            start_code: 0,
            slots: vec![level; 512],
        }
    }

    #[test]
    fn data_packet_layout_matches_the_standard() {
        let p = DataPacket {
            slots: vec![0x11, 0x22],
            sync_address: 7,
            ..data(CID, 100, 0x2a, OPTION_FORCE_SYNC, 0)
        };
        let b = p.encode();
        assert_eq!(b.len(), 128);
        // Root layer: preamble 0x0010, post-amble 0, "ASC-E1.17", flags+length 128−16 = 112.
        assert_eq!(&b[0..4], &[0x00, 0x10, 0x00, 0x00]);
        assert_eq!(&b[4..16], b"ASC-E1.17\0\0\0");
        assert_eq!(&b[16..18], &[0x70, 0x70]);
        assert_eq!(&b[18..22], &[0, 0, 0, 4]);
        assert_eq!(&b[22..38], &CID);
        // Framing layer at 38: length 128−38 = 90, vector 2, name, priority, sync, seq, options, universe.
        assert_eq!(&b[38..44], &[0x70, 0x5a, 0, 0, 0, 2]);
        assert_eq!(&b[44..54], b"nightscape");
        assert_eq!(b[54], 0);
        assert_eq!(&b[108..115], &[100, 0x00, 0x07, 0x2a, 0x20, 0x00, 0x01]);
        // DMP layer at 115: length 13, vector 2, type 0xa1, first 0, increment 1, count 3, start code 0.
        assert_eq!(
            &b[115..128],
            &[0x70, 0x0d, 0x02, 0xa1, 0, 0, 0, 1, 0, 3, 0, 0x11, 0x22]
        );
        assert_eq!(decode(&b).unwrap(), Packet::Data(p));
        // A full universe is 638 bytes.
        assert_eq!(data(CID, 100, 0, 0, 0).encode().len(), 638);
    }

    #[test]
    fn sync_and_discovery_round_trip() {
        let s = SyncPacket {
            cid: CID,
            sequence: 9,
            sync_address: 7962,
        };
        let b = s.encode();
        assert_eq!(b.len(), 49);
        assert_eq!(&b[16..18], &[0x70, 0x21]);
        assert_eq!(&b[18..22], &[0, 0, 0, 8]);
        assert_eq!(&b[38..47], &[0x70, 0x0b, 0, 0, 0, 1, 9, 0x1f, 0x1a]);
        assert_eq!(decode(&b).unwrap(), Packet::Sync(s));
        let d = DiscoveryPacket {
            cid: CID,
            source_name: "gw".into(),
            page: 0,
            last_page: 0,
            universes: vec![1, 2, 3, 11],
        };
        let b = d.encode();
        assert_eq!(b.len(), 128);
        assert_eq!(&b[112..120], &[0x70, 0x10, 0, 0, 0, 1, 0, 0]);
        assert_eq!(decode(&b).unwrap(), Packet::Discovery(d));
        assert_eq!(
            multicast_group(SacnUniverse::new(0x0102).unwrap()),
            Ipv4Addr::new(239, 255, 1, 2)
        );
    }

    #[test]
    fn sequence_wrap_is_accepted_and_late_packets_dropped() {
        let mut r = Receiver::new(SacnUniverse::new(1).unwrap());
        assert_eq!(r.feed(&data(CID, 100, 254, 0, 10), 0), Fed::Accepted);
        assert_eq!(r.feed(&data(CID, 100, 255, 0, 20), 20), Fed::Accepted);
        assert_eq!(
            r.feed(&data(CID, 100, 0, 0, 30), 40),
            Fed::Accepted,
            "255 → 0 wraps"
        );
        assert_eq!(
            r.feed(&data(CID, 100, 250, 0, 99), 60),
            Fed::OutOfOrder,
            "250 after 0 is 6 behind"
        );
        assert_eq!(r.output(60).0[0], 30);
        let mut r = Receiver::new(SacnUniverse::new(1).unwrap());
        r.feed(&data(CID, 100, 255, 0, 20), 0);
        assert_eq!(
            r.feed(&data(CID, 100, 250, 0, 99), 10),
            Fed::OutOfOrder,
            "250 after 255 is dropped"
        );
        assert_eq!(
            r.feed(&data(CID, 100, 235, 0, 40), 20),
            Fed::Accepted,
            "20 behind counts as new"
        );
    }

    #[test]
    fn priority_takes_over_and_equal_priorities_merge() {
        let (a, b, c) = (CID, [1u8; 16], [2u8; 16]);
        let mut r = Receiver::new(SacnUniverse::new(1).unwrap());
        r.feed(&data(a, 100, 1, 0, 50), 0);
        r.feed(&data(b, 150, 1, 0, 20), 0);
        assert_eq!(
            r.output(0),
            ([20; 512], true),
            "the higher priority wins even when dimmer"
        );
        r.feed(&data(c, 150, 1, 0, 30), 10);
        assert_eq!(
            r.output(10).0[0],
            30,
            "equal priorities merge, highest level taking precedence"
        );
        // The high-priority sources stop: the lower one takes over at once.
        assert_eq!(
            r.feed(&data(b, 150, 2, OPTION_TERMINATED, 0), 20),
            Fed::Terminated
        );
        assert_eq!(
            r.feed(&data(c, 150, 2, OPTION_TERMINATED, 0), 20),
            Fed::Terminated
        );
        assert_eq!(r.output(20), ([50; 512], true));
        // The last source goes silent: after 2.5 s it is gone and the last look is held.
        assert!(r.output(2499).1);
        assert_eq!(r.output(2500), ([50; 512], false));
        assert!(r.sources().is_empty());
    }

    #[test]
    fn preview_and_other_start_codes_do_not_reach_output() {
        let mut r = Receiver::new(SacnUniverse::new(1).unwrap());
        assert_eq!(
            r.feed(&data(CID, 100, 1, OPTION_PREVIEW, 99), 0),
            Fed::Preview
        );
        let mut rdm = data(CID, 100, 2, 0, 99);
        rdm.start_code = 0xcc;
        assert_eq!(r.feed(&rdm, 0), Fed::Ignored);
        assert_eq!(r.output(0), ([0; 512], false));
    }

    #[test]
    fn a_receiver_set_to_go_dark_does_so_when_its_sources_are_lost() {
        let u = SacnUniverse::new(1).unwrap();
        let (mut hold, mut dark) = (Receiver::new(u), Receiver::with_loss(u, OnLoss::Dark));
        for r in [&mut hold, &mut dark] {
            assert_eq!(r.feed(&data(CID, 100, 1, 0, 90), 0), Fed::Accepted);
            assert_eq!(r.output(2_400).0[0], 90);
        }
        assert_eq!(hold.output(2_600), ([90; 512], false));
        assert_eq!(dark.output(2_600), ([0; 512], false));
        // Termination is a loss too.
        let mut dark = Receiver::with_loss(u, OnLoss::Dark);
        dark.feed(&data(CID, 100, 1, 0, 90), 0);
        dark.feed(&data(CID, 100, 2, OPTION_TERMINATED, 90), 10);
        assert_eq!(dark.output(20).0[0], 0);
    }

    #[test]
    fn malformed_packets_are_typed_errors() {
        let good = data(CID, 100, 1, 0, 1).encode();
        assert!(matches!(
            decode(&good[..100]),
            Err(DecodeError::TooShort { .. })
        ));
        let mut bad = good.clone();
        bad[4] = b'X';
        assert!(matches!(decode(&bad), Err(DecodeError::NotThisProtocol(_))));
        let mut bad = good.clone();
        bad[108] = 201;
        assert!(matches!(
            decode(&bad),
            Err(DecodeError::OutOfRange { .. } | DecodeError::Malformed(_))
        ));
        let mut bad = good;
        bad[123..125].copy_from_slice(&[0x03, 0x00]);
        assert!(matches!(
            decode(&bad),
            Err(DecodeError::OutOfRange { .. } | DecodeError::Malformed(_))
        ));
    }
}
