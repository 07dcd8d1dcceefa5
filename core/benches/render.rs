//! Channel values rendered per second on one core, for every shipped scene, side by side
//! with what the same loop costs without effects (encode only) and without limits; then a
//! city-scale layout of 2,048 sACN universes (348,160 RGB pixels), rendered, encoded, and
//! also gathered through the output map into universes and written as sACN packets: the
//! whole frame path of a gateway but the socket.
//!
//! Run: `cargo bench -p nightscape-core --bench render` (`-- encode` for encode beside its
//! reference only)

use std::hint::black_box;
use std::time::{Duration, Instant};

use nightscape_core::codec::sacn::{DataFields, DataTemplate};
use nightscape_core::codec::{artnet, dmx_mqtt, modbus};
use nightscape_core::model::{Level, Universe};
use nightscape_core::output::{OutputMap, SinkAddress};
use nightscape_core::render::{CompiledScene, Frame, Layout, encode, render};
use nightscape_core::show::check;

#[path = "../tests/it/common.rs"]
mod common;

const RUN: Duration = Duration::from_millis(1500);

/// Runs `step` for about `RUN`; returns steps per second.
fn rate(mut step: impl FnMut(i64)) -> f64 {
    let start = Instant::now();
    let mut n = 0i64;
    let t0 = 1_798_000_000_000i64; // an evening in 2026
    while start.elapsed() < RUN {
        for _ in 0..64 {
            step(t0 + n * 23);
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // `-- encode`: only the side-by-side of encode and its reference.
    if std::env::args().skip(1).any(|a| a == "encode") {
        encode_side_by_side();
        return;
    }
    let checked = check(&common::shipped_library());
    assert_eq!(checked.error_count(), 0, "the shipped library has errors");
    let lib = &checked.library;
    println!(
        "| scene | channels | render + limits + encode | + packets | encode only | without limits |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let (mut values, mut seconds, mut seconds_packed) = (0.0, 0.0, 0.0);
    let mut wire = Wire::new();
    for scene in lib.scenes.values() {
        let site = &lib.sites[&scene.site];
        let layout = Layout::new(site, lib.zone_rule(site));
        let map = lib.output_map(&site.id).expect("a checked site");
        let compiled = CompiledScene::new(scene, &layout);
        let mut frame = Frame::new(&layout);
        let mut out = vec![0u8; layout.channel_count()];
        let full = rate(|t| {
            render(&compiled, &layout, t, &mut frame).expect("compiled for this layout");
            encode(&layout, &frame, Level::FULL, &mut out);
            black_box(&out);
        });
        let packed = rate(|t| {
            render(&compiled, &layout, t, &mut frame).expect("compiled for this layout");
            encode(&layout, &frame, Level::FULL, &mut out);
            wire.send(lib, &map, &out);
        });
        let encode_only = rate(|_| {
            encode(&layout, black_box(&frame), Level::FULL, &mut out);
            black_box(&out);
        });
        let free = layout.without_limits();
        let unlimited = rate(|t| {
            render(&compiled, &free, t, &mut frame).expect("compiled for this layout");
            encode(&free, &frame, Level::FULL, &mut out);
            black_box(&out);
        });
        let ch = layout.channel_count() as f64;
        println!(
            "| {} | {} | {:.0} M/s | {:.0} M/s | {:.0} M/s | {:.0} M/s |",
            scene.id,
            layout.channel_count(),
            full * ch / 1e6,
            packed * ch / 1e6,
            encode_only * ch / 1e6,
            unlimited * ch / 1e6
        );
        values += ch;
        seconds += 1.0 / full;
        seconds_packed += 1.0 / packed;
    }
    println!(
        "\nshipped-scene mix (each scene one frame in turn): {:.0} M channel values/s on one core; {:.0} M/s with every controller's packets or register writes",
        values / seconds / 1e6,
        values / seconds_packed / 1e6
    );
    big_layout();
    encode_side_by_side();
}

/// A gateway's send step without the sockets: every universe gathered through the output map
/// and written as its protocol's packet into a reused buffer; every Modbus controller's
/// level registers and the writes that change them.
struct Wire {
    slots: Vec<u8>,
    packet: Vec<u8>,
    template: DataTemplate,
    sequence: u8,
    /// Per Modbus controller (by index), the registers last written and the next ones.
    registers: Vec<(Vec<u16>, Vec<u16>)>,
}

impl Wire {
    fn new() -> Wire {
        Wire {
            slots: vec![0; 4096],
            packet: Vec::with_capacity(126 + 512),
            template: DataTemplate::new([7; 16], "nightscape gateway", 100),
            sequence: 0,
            registers: Vec::new(),
        }
    }

    fn send(&mut self, lib: &nightscape_core::ShowLibrary, map: &OutputMap, channels: &[u8]) {
        self.sequence = self.sequence.wrapping_add(1);
        for controller in map.controllers() {
            for sink in &controller.sinks {
                let slots = &mut self.slots[..sink.len()];
                sink.gather(channels, slots);
                match sink.address {
                    SinkAddress::Universe(Universe::Sacn(u)) => self.template.encode_into(
                        &DataFields {
                            sync_address: 0,
                            sequence: self.sequence,
                            options: 0,
                            universe: u.get(),
                            start_code: 0,
                        },
                        slots,
                        &mut self.packet,
                    ),
                    SinkAddress::Universe(Universe::ArtNet(u)) => {
                        artnet::encode_dmx_into(self.sequence, 0, u, slots, &mut self.packet)
                    }
                    SinkAddress::Universe(Universe::DmxMqtt(_)) => {
                        dmx_mqtt::encode_into(self.sequence, slots, &mut self.packet)
                    }
                    SinkAddress::ModbusChannels { .. } => {
                        let Some(profile) = controller
                            .profile
                            .as_ref()
                            .and_then(|p| lib.profiles.get(p))
                        else {
                            continue;
                        };
                        if self.registers.len() <= controller.index {
                            self.registers
                                .resize(controller.index + 1, Default::default());
                        }
                        let (last, next) = &mut self.registers[controller.index];
                        modbus::level_registers_into(profile, slots, next);
                        // Writes only when something changed, as a gateway does.
                        if last != next {
                            let writes = modbus::plan_writes(profile, Some(last), next);
                            black_box(&writes);
                            std::mem::swap(last, next);
                        }
                    }
                }
                black_box(&self.packet);
            }
        }
    }
}

fn big_layout() {
    let checked = check(&common::pixel_city(2048));
    assert_eq!(checked.error_count(), 0, "{:?}", checked.diagnostics);
    let lib = &checked.library;
    let site = lib.sites.values().next().expect("one site");
    let layout = Layout::new(site, lib.zone_rule(site));
    let (map, errors) = OutputMap::build(&site.fixtures, &site.controllers, &lib.profiles);
    assert!(errors.is_empty());
    let universes: usize = map.controllers().iter().map(|c| c.sinks.len()).sum();
    assert_eq!(universes, 2048);
    let mut frame = Frame::new(&layout);
    let mut channels = vec![0u8; layout.channel_count()];
    let template = DataTemplate::new([7; 16], "nightscape gateway", 100);
    let mut slots = [0u8; 512];
    let mut packet = Vec::with_capacity(126 + 512);
    println!(
        "\n2,048-universe layout ({} pixels, {} channels; a gateway at 44 Hz needs {:.1} M/s):\n",
        layout.pixel_count(),
        layout.channel_count(),
        2048.0 * 512.0 * 44.0 / 1e6
    );
    println!(
        "| scene | render + limits + encode | + gather + sACN packets | frames/s with packets |"
    );
    println!("|---|---:|---:|---:|");
    for scene in lib.scenes.values() {
        let compiled = CompiledScene::new(scene, &layout);
        let render_only = rate_big(|t| {
            render(&compiled, &layout, t, &mut frame).expect("compiled for this layout");
            encode(&layout, &frame, Level::FULL, &mut channels);
            black_box(&channels);
        });
        let mut sequence = 0u8;
        let with_packets = rate_big(|t| {
            render(&compiled, &layout, t, &mut frame).expect("compiled for this layout");
            encode(&layout, &frame, Level::FULL, &mut channels);
            sequence = sequence.wrapping_add(1);
            for controller in map.controllers() {
                for sink in &controller.sinks {
                    let SinkAddress::Universe(universe) = sink.address else {
                        continue;
                    };
                    sink.gather(&channels, &mut slots);
                    let number = universe.number();
                    template.encode_into(
                        &DataFields {
                            sync_address: 0,
                            sequence,
                            options: 0,
                            universe: number,
                            start_code: 0,
                        },
                        &slots,
                        &mut packet,
                    );
                    black_box(&packet);
                }
            }
        });
        let ch = layout.channel_count() as f64;
        println!(
            "| {} | {:.0} M/s | {:.0} M/s | {:.0} |",
            scene.id,
            render_only * ch / 1e6,
            with_packets * ch / 1e6,
            with_packets
        );
    }
}

/// `encode` against its reference (no fast paths) on one rendered wave frame of the big
/// layout, alternating in one run so both see the same machine.
fn encode_side_by_side() {
    let checked = check(&common::pixel_city(2048));
    let lib = &checked.library;
    let site = lib.sites.values().next().expect("one site");
    let layout = Layout::new(site, lib.zone_rule(site));
    let scene = lib
        .scenes
        .values()
        .find(|s| s.id.as_str() == "big-wave")
        .expect("the wave");
    let compiled = CompiledScene::new(scene, &layout);
    let mut frame = Frame::new(&layout);
    render(&compiled, &layout, 1_798_000_000_000, &mut frame).expect("compiled for this layout");
    let mut channels = vec![0u8; layout.channel_count()];
    let (mut fast, mut reference) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        fast.push(rate_big(|_| {
            encode(&layout, &frame, Level::FULL, &mut channels);
            black_box(&channels);
        }));
        reference.push(rate_big(|_| {
            nightscape_core::render::encode_reference(&layout, &frame, Level::FULL, &mut channels);
            black_box(&channels);
        }));
    }
    let ch = layout.channel_count() as f64;
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max) * ch / 1e6;
    println!(
        "\nencode alone on the 2,048-universe wave, best of 5 alternating runs: {:.0} M/s with the RGB 8-bit fast path, {:.0} M/s without (the reference)",
        best(&fast),
        best(&reference)
    );
}

/// Frames per second of `step` over about `RUN` (whole frames; a frame here is large).
fn rate_big(mut step: impl FnMut(i64)) -> f64 {
    let start = Instant::now();
    let mut n = 0i64;
    let t0 = 1_798_000_000_000i64;
    while start.elapsed() < RUN {
        step(t0 + n * 23);
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}
