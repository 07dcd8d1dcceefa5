//! `nightscape scene render` as a user runs it: a PNG that shows the lit fixtures, a GIF, and
//! refusals that leave existing files alone.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn nightscape() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nightscape"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

#[test]
fn a_png_shows_the_scene_and_bad_options_change_nothing() {
    let dir = std::env::temp_dir().join(format!("nightscape-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("wave.png");
    let out = nightscape()
        .args([
            "scene",
            "render",
            "--scene",
            "gyebaek-blue-wave",
            "--at",
            "2026-12-24T19:30",
            "--out",
        ])
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("at 2026-12-24 19:30:00 site time"));

    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut rgb).unwrap();
    assert_eq!(info.width, 1280);
    // The railings are drawn as rows of blue dots: many pixels are clearly blue, and the
    // brightest are bluer than red (the wave runs between two blues).
    let pixels: Vec<&[u8]> = rgb.chunks(3).collect();
    let blue = pixels
        .iter()
        .filter(|p| p[2] > 150 && u16::from(p[2]) > u16::from(p[0]) + 60)
        .count();
    assert!(blue > 2000, "{blue} blue pixels");

    // A GIF needs --duration; asking for one without it fails and leaves the PNG alone.
    let before = std::fs::read(&png).unwrap();
    let out = nightscape()
        .args([
            "scene",
            "render",
            "--scene",
            "gyebaek-blue-wave",
            "--at",
            "2026-12-24T19:30",
            "--duration",
            "2s",
            "--out",
        ])
        .arg(&png)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("write to a .gif file"));
    assert_eq!(std::fs::read(&png).unwrap(), before);

    let gif = dir.join("wave.gif");
    let out = nightscape()
        .args([
            "scene",
            "render",
            "--scene",
            "gyebaek-blue-wave",
            "--at",
            "2026-12-24T19:30",
            "--duration",
            "1s",
            "--fps",
            "5",
            "--width",
            "320",
            "--out",
        ])
        .arg(&gif)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("5 frames"));
    assert_eq!(&std::fs::read(&gif).unwrap()[..6], b"GIF89a");

    let out = nightscape()
        .args([
            "scene",
            "render",
            "--scene",
            "no-such",
            "--at",
            "2026-12-24T19:30",
            "--out",
        ])
        .arg(dir.join("x.png"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no scene `no-such`"));
    assert!(!dir.join("x.png").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
