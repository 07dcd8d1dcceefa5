//! The output map end to end: for every shipped site, each fixture's colour is encoded into
//! layout channels, gathered through the map into what a gateway sends (sACN, Art-Net and
//! DMX-over-MQTT packets, Modbus register writes), read back as a simulated controller reads
//! it, scattered through the same map into layout channels, and decoded: every fixture shows
//! what it was sent.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use nightscape_core::addr::RegisterAddr;
use nightscape_core::codec::{artnet, dmx_mqtt::DmxMessage, modbus, sacn};
use nightscape_core::colour::Rgb;
use nightscape_core::model::{FixtureKind, Level, Universe};
use nightscape_core::output::{OutputMap, SinkAddress};
use nightscape_core::render::{Frame, Layout, decode, encode};
use nightscape_core::show::check;

use crate::common;

/// What a simulated controller holds after receiving one universe's packet.
fn through_the_wire(universe: Universe, slots: &[u8]) -> Vec<u8> {
    match universe {
        Universe::Sacn(u) => {
            let packet = sacn::DataPacket {
                cid: [7; 16],
                source_name: "gateway".into(),
                priority: 100,
                sync_address: 0,
                sequence: 1,
                options: 0,
                universe: u.get(),
                start_code: 0,
                slots: slots.to_vec(),
            };
            match sacn::decode(&packet.encode()).unwrap() {
                sacn::Packet::Data(d) => d.slots,
                other => panic!("{other:?}"),
            }
        }
        Universe::ArtNet(port_address) => {
            let packet = artnet::ArtDmx {
                sequence: 1,
                physical: 0,
                port_address,
                data: slots.to_vec(),
            };
            match artnet::decode(&packet.encode()).unwrap() {
                artnet::Packet::Dmx(d) => d.data,
                other => panic!("{other:?}"),
            }
        }
        Universe::DmxMqtt(_) => {
            let message = DmxMessage {
                sequence: 1,
                slots: slots.to_vec(),
            };
            DmxMessage::decode(&message.encode()).unwrap().slots
        }
    }
}

/// A colour per fixture that tells neighbours apart.
fn colour_of(k: usize) -> Rgb {
    let hue = (k * 47 % 360) as f32;
    Rgb::from_hue(hue)
        .desaturate_to(0.6)
        .scale(0.3 + (k % 5) as f32 * 0.1)
}

#[test]
fn every_shipped_fixture_shows_its_colour_through_the_map_and_the_wire() {
    let checked = check(&common::shipped_library());
    let lib = &checked.library;
    assert_eq!(lib.sites.len(), 12);
    let mut sinks_used = BTreeMap::<&str, usize>::new();
    let mut colour_checked = 0;
    for site in lib.sites.values() {
        let layout = Layout::new(site, lib.zone_rule(site));
        let (map, errors) = OutputMap::build(&site.fixtures, &site.controllers, &lib.profiles);
        assert!(errors.is_empty(), "{}: {errors:?}", site.id);
        assert!(map.overlaps().is_empty(), "{}", site.id);
        assert_eq!(map.channel_count(), layout.channel_count());
        let ranges: Vec<_> = layout
            .fixtures()
            .iter()
            .map(|f| f.channels.clone())
            .collect();
        assert_eq!(map.fixture_channels(), &ranges[..], "{}", site.id);

        let mut frame = Frame::new(&layout);
        for (k, f) in layout.fixtures().iter().enumerate() {
            frame.pixels[f.pixels.clone()].fill(colour_of(k));
        }
        let mut sent = vec![0u8; layout.channel_count()];
        encode(&layout, &frame, Level::FULL, &mut sent);

        // Gateway: gather; wire; simulator: scatter.
        let mut received = vec![0u8; layout.channel_count()];
        let mut covered = vec![0u32; layout.channel_count()];
        for controller in map.controllers() {
            for sink in &controller.sinks {
                for run in &sink.runs {
                    for c in run.channels.clone() {
                        covered[c] += 1;
                    }
                }
                let mut out = vec![0u8; sink.len()];
                sink.gather(&sent, &mut out);
                let arrived = match sink.address {
                    SinkAddress::Universe(u) => {
                        *sinks_used.entry(protocol(u)).or_default() += 1;
                        through_the_wire(u, &out)
                    }
                    SinkAddress::ModbusChannels { .. } => {
                        *sinks_used.entry("modbus").or_default() += 1;
                        let profile = &lib.profiles[controller.profile.as_ref().unwrap()];
                        let levels = modbus::level_registers(profile, &out);
                        // The device's holding registers after the start-up sequence.
                        let mut holding = BTreeMap::<u32, u16>::new();
                        for request in modbus::start_up(profile, None, &levels) {
                            let values = match modbus::Request::from_pdu(&request.pdu()).unwrap() {
                                modbus::Request::WriteSingle { value, .. } => vec![value],
                                modbus::Request::WriteMultiple { values, .. } => values,
                            };
                            for (r, v) in request.registers().zip(values) {
                                holding.insert(r, v);
                            }
                        }
                        let start = u32::from(profile.levels.start.get());
                        let regs: Vec<u16> = profile
                            .level_registers()
                            .map(|r| holding.get(&r).copied().unwrap_or(0))
                            .collect();
                        assert_eq!(regs.len(), levels.len());
                        assert_eq!(
                            RegisterAddr::new(i64::from(start)).unwrap(),
                            profile.levels.start
                        );
                        modbus::channels_from_registers(profile, &regs)
                    }
                };
                sink.scatter(&arrived, &mut received);
            }
        }
        assert!(
            covered.iter().all(|&n| n == 1),
            "{}: every layout channel is carried exactly once",
            site.id
        );
        assert_eq!(received, sent, "{}", site.id);
        let shown = decode(&layout, &received).unwrap();
        let meant = decode(&layout, &sent).unwrap();
        assert_eq!(shown, meant);
        for (k, f) in layout.fixtures().iter().enumerate() {
            let c = shown[f.pixels.start];
            assert!(
                c.max_component() > 0.0,
                "{} fixture {} is dark, sent {:?}",
                site.id,
                f.id,
                colour_of(k)
            );
            // Where the site lets colour through and the fixture mixes colour, the controller
            // shows the colour sent (its brightness may be capped): same proportions.
            let mixes = matches!(
                site.fixtures[k].kind,
                FixtureKind::Rgb
                    | FixtureKind::Rgbw
                    | FixtureKind::Rgba
                    | FixtureKind::PixelStrip { .. }
            );
            if mixes && layout.limits().is_noop() {
                let (want, got) = (colour_of(k), c);
                let (wm, gm) = (want.max_component(), got.max_component());
                for (w, g) in [(want.r, got.r), (want.g, got.g), (want.b, got.b)] {
                    assert!(
                        (w / wm - g / gm).abs() < 0.05,
                        "{} fixture {}: sent {want:?}, shows {got:?}",
                        site.id,
                        f.id
                    );
                }
                colour_checked += 1;
            }
        }
    }
    // The shipped city uses all four protocols.
    assert_eq!(sinks_used.len(), 4, "{sinks_used:?}");
    assert!(
        colour_checked > 20,
        "{colour_checked} fixtures compared by colour"
    );
}

fn protocol(u: Universe) -> &'static str {
    match u {
        Universe::Sacn(_) => "sacn",
        Universe::ArtNet(_) => "artnet",
        Universe::DmxMqtt(_) => "dmx-mqtt",
    }
}

#[test]
fn a_short_universe_leaves_the_missing_slots_dark_and_nothing_panics() {
    let checked = check(&common::shipped_library());
    let lib = &checked.library;
    let site = &lib.sites[&"gyebaek-bridge".parse().unwrap()];
    let layout = Layout::new(site, lib.zone_rule(site));
    let (map, _) = OutputMap::build(&site.fixtures, &site.controllers, &lib.profiles);
    let mut channels = vec![0xaa; layout.channel_count()];
    for controller in map.controllers() {
        for sink in &controller.sinks {
            sink.scatter(&[0xff; 24], &mut channels);
            // A gather into a buffer too small, or from too few channels, skips what does
            // not fit.
            sink.gather(&channels[..10], &mut [0u8; 4]);
        }
    }
    assert!(channels.iter().all(|&b| b == 0xff || b == 0));
    assert!(decode(&layout, &channels[1..]).is_err());
}
