//! `nightscape scene render` as a user runs it: a PNG that shows the lit fixtures, a GIF, and
//! refusals that leave existing files alone.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

/// Renders `scene` at Christmas Eve 19:30 site time into `out`, with `extra` options.
fn render(scene: &str, extra: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nightscape"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "scene",
            "render",
            "--scene",
            scene,
            "--at",
            "2026-12-24T19:30",
        ])
        .args(extra)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_png_shows_the_scene_and_bad_options_change_nothing() {
    let dir = std::env::temp_dir().join(format!("nightscape-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("wave.png");
    let out = render("gyebaek-blue-wave", &[], &png);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("at 2026-12-24 19:30:00 site time"));

    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut rgb).unwrap();
    assert_eq!(info.width, 1280);
    // The railings are drawn as rows of blue dots: many pixels are clearly blue (the wave runs
    // between two blues).
    let blue = rgb
        .chunks(3)
        .filter(|p| p[2] > 150 && u16::from(p[2]) > u16::from(p[0]) + 60)
        .count();
    assert!(blue > 2000, "{blue} blue pixels");

    // A GIF needs --duration; asking for one without it fails and leaves the PNG alone.
    let before = std::fs::read(&png).unwrap();
    let out = render("gyebaek-blue-wave", &["--duration", "2s"], &png);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("write to a .gif file"));
    assert_eq!(std::fs::read(&png).unwrap(), before);

    let gif = dir.join("wave.gif");
    let out = render(
        "gyebaek-blue-wave",
        &["--duration", "1s", "--fps", "5", "--width", "320"],
        &gif,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("5 frames"));
    assert_eq!(&std::fs::read(&gif).unwrap()[..6], b"GIF89a");

    let missing = dir.join("x.png");
    let out = render("no-such", &[], &missing);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no scene `no-such`"));
    assert!(!missing.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
