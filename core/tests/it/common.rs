//! Reading the shipped show library, for tests and benchmarks (the core itself reads no
//! files; the CLI has its own reader).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use nightscape_core::show::SourceFile;

/// Every `.toml` and `.ics` file of `scenes/`, with paths relative to it.
pub fn shipped_library() -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenes");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("reading the show library") {
            let path = entry.expect("reading the show library").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "toml" || e == "ics") {
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push(SourceFile {
                    path: rel,
                    text: std::fs::read_to_string(&path).unwrap(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The shipped zone table, as a library file.
pub fn zones() -> SourceFile {
    SourceFile {
        path: "zones.toml".into(),
        text: include_str!("../../../scenes/zones.toml").into(),
    }
}

/// A test site: its kind, place `(lat, lon, time zone)` and zone, a `[limits]` table, one
/// gateway `gw`, then `rest` — controllers, fixtures and groups.
pub fn site_toml(
    kind: &str,
    (lat, lon, tz): (f64, f64, &str),
    zone: u8,
    limits: &str,
    rest: &str,
) -> String {
    format!(
        "name = {{ ko = \"시험\" }}\nkind = \"{kind}\"\nlocation = {{ lat = {lat}, lon = {lon} }}\ntime_zone = \"{tz}\"\nzone = {zone}\n[limits]\n{limits}\n[[gateways]]\nid = \"gw\"\n{rest}\n"
    )
}

/// A site `big` of `universes` sACN universes (a multiple of 16) of RGB pixel strips on
/// controllers of up to 256 universes, each strip filling 16 universes, all in group `all`
/// (role railing), with a wave scene `big-wave` and a static one `big-static`; no curfew.
pub fn pixel_city(universes: u16) -> Vec<SourceFile> {
    const STRIP_UNIVERSES: u16 = 16;
    let each = universes.min(256);
    let mut rest = String::new();
    let mut members = Vec::new();
    for c in 0..universes.div_ceil(each) {
        let first = 1 + c * each;
        rest += &format!(
            "[[controllers]]\nid = \"px-{c}\"\ngateway = \"gw\"\nsacn = {{ universe = {first}, universes = {each} }}\n"
        );
        for k in 0..each / STRIP_UNIVERSES {
            let id = format!("strip-{c}-{k}");
            let y = f64::from(c * 16 + k);
            rest += &format!(
                "[[fixtures]]\nid = \"{id}\"\ntype = \"pixel-strip\"\npixel = \"rgb\"\ncontroller = \"px-{c}\"\nuniverse = {}\naddress = 1\npixels = {}\nline = [[0.0, {y}], [800.0, {y}]]\npower_w = 500.0\n",
                first + k * STRIP_UNIVERSES,
                170 * u32::from(STRIP_UNIVERSES)
            );
            members.push(format!("\"{id}\""));
        }
    }
    rest += &format!(
        "[[groups]]\nid = \"all\"\nrole = \"railing\"\nfixtures = [{}]\n",
        members.join(", ")
    );
    let site = site_toml(
        "building",
        (36.19, 127.1, "Asia/Seoul"),
        3,
        "curfew = \"none\"",
        &rest,
    );
    vec![
        zones(),
        SourceFile {
            path: "sites/big/site.toml".into(),
            text: site,
        },
        SourceFile {
            path: "sites/big/scenes/big-wave.toml".into(),
            text: "name = { ko = \"물결\" }\n[[layers]]\nrole = \"railing\"\neffect = \"wave\"\ncolours = [\"#2c40ff\", \"#38d6ff\"]\nwavelength_m = 30.0\nspeed_mps = 2.0\n".into(),
        },
        SourceFile {
            path: "sites/big/scenes/big-static.toml".into(),
            text: "name = { ko = \"정지\" }\n[[layers]]\nrole = \"railing\"\neffect = \"static\"\ncolour = \"#ffd8a0\"\n".into(),
        },
    ]
}
