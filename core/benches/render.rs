//! Channel values rendered per second on one core, for every shipped scene, side by side
//! with what the same loop costs without effects (encode only) and without limits.
//!
//! Run: `cargo bench -p nightscape-core --bench render`

use std::hint::black_box;
use std::time::{Duration, Instant};

use nightscape_core::model::Level;
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
    let checked = check(&common::shipped_library());
    assert_eq!(checked.error_count(), 0, "the shipped library has errors");
    let lib = &checked.library;
    println!("| scene | channels | render + limits + encode | encode only | without limits |");
    println!("|---|---:|---:|---:|---:|");
    let (mut values, mut seconds) = (0.0, 0.0);
    for scene in lib.scenes.values() {
        let site = &lib.sites[&scene.site];
        let layout = Layout::new(site, lib.zone_rule(site));
        let compiled = CompiledScene::new(scene, &layout);
        let mut frame = Frame::new(&layout);
        let mut out = vec![0u8; layout.channel_count()];
        let full = rate(|t| {
            render(&compiled, &layout, t, &mut frame).expect("compiled for this layout");
            encode(&layout, &frame, Level::FULL, &mut out);
            black_box(&out);
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
            "| {} | {} | {:.0} M/s | {:.0} M/s | {:.0} M/s |",
            scene.id,
            layout.channel_count(),
            full * ch / 1e6,
            encode_only * ch / 1e6,
            unlimited * ch / 1e6
        );
        values += ch;
        seconds += 1.0 / full;
    }
    println!(
        "\nshipped-scene mix (each scene one frame in turn): {:.0} M channel values/s on one core",
        values / seconds / 1e6
    );
}
