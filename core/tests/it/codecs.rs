//! Codec properties: what is encoded decodes to the same, and no bytes make a decoder panic.
#![allow(clippy::unwrap_used)]

use nightscape_core::addr::ArtNetPortAddress;
use nightscape_core::codec::{artnet, dmx_mqtt::DmxMessage, modbus::Request, sacn};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn artdmx_round_trips(seq: u8, physical: u8, address in 0u16..=32767, data in prop::collection::vec(any::<u8>(), 1..=512)) {
        let mut data = data;
        if data.len() % 2 == 1 {
            data.push(0);
        }
        if data.len() < 2 {
            data.push(0);
        }
        let p = artnet::ArtDmx { sequence: seq, physical, port_address: ArtNetPortAddress::new(i64::from(address)).unwrap(), data };
        prop_assert_eq!(artnet::decode(&p.encode()).unwrap(), artnet::Packet::Dmx(p));
    }

    #[test]
    // Names up to 63 bytes (21 Hangul syllables) fit the 64-byte field with its NUL.
    fn sacn_data_round_trips(cid: [u8; 16], name in "[a-z가-힣 ]{0,21}", priority in 0u8..=200, sync: u16, seq: u8, options: u8, universe in 1u16..=63999, start: u8, slots in prop::collection::vec(any::<u8>(), 0..=512)) {
        let p = sacn::DataPacket { cid, source_name: name, priority, sync_address: sync, sequence: seq, options, universe, start_code: start, slots };
        prop_assert_eq!(sacn::decode(&p.encode()).unwrap(), sacn::Packet::Data(p));
    }

    #[test]
    fn sacn_discovery_round_trips(cid: [u8; 16], page: u8, last: u8, mut universes in prop::collection::vec(1u16..=63999, 0..=512)) {
        universes.sort_unstable();
        let p = sacn::DiscoveryPacket { cid, source_name: "gw".into(), page, last_page: last, universes };
        prop_assert_eq!(sacn::decode(&p.encode()).unwrap(), sacn::Packet::Discovery(p));
    }

    #[test]
    fn modbus_requests_round_trip(start: u16, values in prop::collection::vec(any::<u16>(), 1..=123)) {
        let r = Request::WriteMultiple { start: nightscape_core::addr::RegisterAddr::from_u16(start), values };
        prop_assert_eq!(Request::from_pdu(&r.pdu()).unwrap(), r);
    }

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
        let _ = artnet::decode(&bytes);
        let _ = sacn::decode(&bytes);
        let _ = Request::from_pdu(&bytes);
        let _ = DmxMessage::decode(&bytes);
    }

    #[test]
    fn decoders_never_panic_on_damaged_real_packets(flip in 0usize..700, value: u8, cut in 0usize..700) {
        let sacn = sacn::DataPacket { cid: [7; 16], source_name: "x".into(), priority: 100, sync_address: 0, sequence: 1, options: 0, universe: 1, start_code: 0, slots: vec![1; 512] }.encode();
        let art = artnet::ArtDmx { sequence: 1, physical: 0, port_address: ArtNetPortAddress::new(1).unwrap(), data: vec![1; 512] }.encode();
        for mut b in [sacn, art] {
            let i = flip % b.len();
            b[i] = value;
            b.truncate(cut.max(1).min(b.len()));
            let _ = artnet::decode(&b);
            let _ = sacn::decode(&b);
        }
    }
}
