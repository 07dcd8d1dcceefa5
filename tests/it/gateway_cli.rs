//! `nightscape gateway print-default-config` and `check-config`.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn the_default_configuration_checks_and_a_broken_one_says_where() {
    let bin = env!("CARGO_BIN_EXE_nightscape");
    let out = Command::new(bin)
        .args(["gateway", "print-default-config"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let dir = std::env::temp_dir().join(format!("ns-gwcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    std::fs::write(&file, &text).unwrap();
    let check = || {
        let out = Command::new(bin)
            .args(["gateway", "check-config"])
            .arg(&file)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // The default points at the city's key in /etc, which this machine does not have.
    let (code, shown) = check();
    assert_eq!(code, Some(1), "{shown}");
    assert!(
        shown.contains("reading trusted key /etc/nightscape/city.pub"),
        "{shown}"
    );
    // A key beside the file, named relative to it, wherever the command runs from.
    let key = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
    std::fs::write(
        dir.join("city.pub"),
        nightscape_core::plan::public_key_text(&key.verifying_key()),
    )
    .unwrap();
    let text = text.replace("/etc/nightscape/city.pub", "city.pub");
    std::fs::write(&file, &text).unwrap();
    let (code, shown) = check();
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("gateway `my-site-gw`"), "{shown}");
    std::fs::write(
        &file,
        text.replace("safe_state = \"hold\"", "safe_state = \"off\""),
    )
    .unwrap();
    let bad = Command::new(bin)
        .args(["gateway", "check-config"])
        .arg(&file)
        .output()
        .unwrap();
    let shown = String::from_utf8(bad.stdout).unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        shown.contains("gateway.toml:11:14: safe_state `off` is not one"),
        "{shown}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `nightscape gateway run --plan` as an engineer runs it against the simulator: a signed
/// plan, a scene override and a curfew exception in the data directory light the site
/// whatever the hour; SIGTERM
/// takes it to its dark safe state (Modbus levels written to 0, sACN zeros then terminated).
#[test]
fn the_gateway_process_plays_a_plan_without_a_broker_and_stops_dark() {
    use std::time::Duration;

    use nightscape_core::plan::{self, OverrideEntry, OverrideEntryKind, OverridesDocument};

    let bin = env!("CARGO_BIN_EXE_nightscape");
    let (site, gw) = ("nonsan-culture-center", "culture-gw");
    let SimRig {
        runtime,
        shutdown,
        sim,
        site_id,
        dir,
        data,
        key,
        now,
        plan: plan_bytes,
        ..
    } = sim_rig(site, gw, "gwrun", 11);
    std::fs::write(dir.join("plan.json"), plan_bytes).unwrap();
    let overrides = OverridesDocument {
        schema: plan::OVERRIDES_SCHEMA,
        gateway: gw.parse().unwrap(),
        version: 1,
        issued_at_ms: now - 60_000,
        overrides: vec![
            OverrideEntry {
                id: "commissioning".into(),
                kind: OverrideEntryKind::Scene,
                scene: Some("culture-evening".parse().unwrap()),
                brightness_pct: None,
                from_ms: now - 60_000,
                until_ms: Some(now + 3_600_000),
                by: "engineer".into(),
                reason: "test on the simulator".into(),
            },
            OverrideEntry {
                // Whatever the hour CI runs at: past the curfew, only an exception lights.
                id: "after-curfew".into(),
                kind: OverrideEntryKind::CurfewException,
                scene: None,
                brightness_pct: None,
                from_ms: now - 60_000,
                until_ms: Some(now + 3_600_000),
                by: "admin".into(),
                reason: "commissioning at night".into(),
            },
        ],
    };
    std::fs::write(
        data.join("overrides.json"),
        serde_json::to_vec(&plan::sign(overrides, &key)).unwrap(),
    )
    .unwrap();
    let config = format!(
        "gateway = \"{gw}\"\ndata_dir = \"{}\"\ntrusted_keys = [\"{}\"]\nsafe_state = \"dark\"\nloopback_only = true\nendpoints = \"{}\"\n\n[mqtt]\nhost = \"127.0.0.1\"\n",
        data.display(),
        dir.join("city.pub").display(),
        dir.join("endpoints.toml").display()
    );
    std::fs::write(dir.join("gateway.toml"), config).unwrap();
    let child = Command::new(bin)
        .args(["gateway", "run", "--config"])
        .arg(dir.join("gateway.toml"))
        .arg("--plan")
        .arg(dir.join("plan.json"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let shown = || sim.state.sites[&site_id].channels(sim.state.clock.as_ref());
    let lit = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        shown().iter().filter(|&&v| v > 0).count() > 10
    });
    let stop = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stop.success());
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(lit, "the site lit on the simulator: {log}");
    assert!(out.status.success(), "{log}");
    assert!(log.contains("playing plan version 1"), "{log}");
    // The last packets may still be in the simulator's queue when the process has exited.
    let dark = (0..100).any(|_| {
        let d = shown().iter().all(|&v| v == 0);
        if !d {
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    });
    assert!(dark, "dark after SIGTERM: {:?}\n{log}", shown());
    shutdown.cancel();
    drop(runtime);
}

/// The systemd unit in `deploy/` is one systemd accepts, pointed at this build.
#[test]
fn the_systemd_unit_verifies() {
    let bin = env!("CARGO_BIN_EXE_nightscape");
    let unit = std::fs::read_to_string("deploy/nightscape-gateway.service").unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="));
    let dir = std::env::temp_dir().join(format!("ns-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("nightscape-gateway.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/nightscape", bin)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (.ci/run installs systemd)");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !text.contains(&*path.to_string_lossy()),
        "{text}"
    );
}

/// Commissioning from the command line against a running gateway and the simulator:
/// `discover` polls and probes on its own; `identify` and `channel-test` go through the
/// broker to the gateway, which blinks the fixture on the simulator and acks.
#[test]
fn commissioning_commands_reach_the_simulated_controllers() {
    use std::sync::Arc;
    use std::time::Duration;

    use nightscape_core::clock::Clock;

    let bin = env!("CARGO_BIN_EXE_nightscape");
    let (site, gw) = ("nonsan-city-hall", "cityhall-gw");
    let SimRig {
        runtime,
        clock,
        shutdown,
        sim,
        lib,
        site_id,
        dir,
        data,
        plan: plan_bytes,
        ..
    } = sim_rig(site, gw, "commission", 12);
    nightscape_gateway::store::Store::open(&data)
        .unwrap()
        .save(nightscape_gateway::store::Kind::Plan, &plan_bytes)
        .unwrap();
    let prefix = format!("cli-{}/", std::process::id());
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "gateway = \"{gw}\"\ndata_dir = \"{}\"\ntrusted_keys = [\"{}\"]\nloopback_only = true\nendpoints = \"{}\"\n\n[mqtt]\nhost = \"127.0.0.1\"\nport = 1883\ntopic_prefix = \"{prefix}\"\n",
            data.display(),
            dir.join("city.pub").display(),
            dir.join("endpoints.toml").display()
        ),
    )
    .unwrap();
    let setup =
        nightscape::gateway::setup(nightscape::gateway::read_config(&config).unwrap(), None)
            .unwrap();
    let handle = runtime
        .block_on(nightscape_gateway::runtime::start(
            setup,
            clock.clone() as Arc<dyn Clock>,
            shutdown.clone(),
        ))
        .unwrap();
    let mut status = handle.status.clone();
    runtime
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                status.wait_for(|s| s.connected && s.plan_version == Some(1)),
            )
            .await
            .map(|r| r.is_ok())
        })
        .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(bin)
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, text) = run(&["gateway", "discover"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("Art-Net node"), "{text}");

    let layout = lib.layout(&site_id).unwrap();
    let fixture = &layout.fixtures()[0];
    let (code, text) = run(&[
        "gateway",
        "identify",
        "--fixture",
        fixture.id.as_str(),
        "--seconds",
        "5",
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("done"), "{text}");
    let shown = || sim.state.sites[&site_id].channels(sim.state.clock.as_ref());
    // On (white as the site's limits allow) and off, at 1 Hz, whatever the schedule shows.
    let (mut on, mut off) = (false, false);
    for _ in 0..300 {
        std::thread::sleep(Duration::from_millis(10));
        let own = shown()[fixture.channels.clone()].to_vec();
        on |= own.iter().any(|&v| v > 0);
        off |= own.iter().all(|&v| v == 0);
        if on && off {
            break;
        }
    }
    assert!(on && off, "the fixture blinks on the simulator");

    // A channel test holds one slot of the controller at a level: the first slot of the
    // first fixture's run shows 77 on the simulator (over the blink, which it outranks).
    let map = lib.output_map(&site_id).unwrap();
    let cm = &map.controllers()[0];
    let run0 = &cm.sinks[0].runs[0];
    let (controller, slot) = (cm.controller.to_string(), run0.first.to_string());
    let (code, text) = run(&[
        "gateway",
        "channel-test",
        "--controller",
        &controller,
        "--channel",
        &slot,
        "--level",
        "77",
        "--seconds",
        "5",
    ]);
    assert_eq!(code, Some(0), "{text}");
    let held = (0..300).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        shown()[run0.channels.start] == 77
    });
    assert!(
        held,
        "slot {slot} of `{controller}` held at 77 on the simulator"
    );

    let (code, text) = run(&["gateway", "identify", "--fixture", "no-such-fixture"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no fixture `no-such-fixture`"), "{text}");

    shutdown.cancel();
    let _ =
        runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), handle.done).await });
    // Leave no retained message behind.
    let _ = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-r", "-n", "-t"])
        .arg(format!("{prefix}nightscape/v1/gw/{gw}/state"))
        .status();
}

/// sACN by multicast, as on a site network, inside a private network namespace (loopback
/// only): the gateway with no endpoint for Gyebaek Bridge's receivers sends to their groups
/// out of the loopback interface, and the simulator joined to those groups shows the scene.
#[test]
fn the_gateway_multicasts_sacn_inside_a_private_network() {
    let bin = env!("CARGO_BIN_EXE_nightscape");
    let dir = std::env::temp_dir().join(format!("ns-gw-mcast-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(bin)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let library = format!("{}/scenes", env!("CARGO_MANIFEST_DIR"));
    run(&["keygen", "--out", "city"]);
    run(&[
        "plan",
        "compile",
        "--site",
        "gyebaek-bridge",
        "--key",
        "city.key",
        "--out",
        "plan.json",
        "--library",
        &library,
    ]);
    run(&[
        "plan",
        "overrides",
        "--gateway",
        "gyebaek-gw",
        "--key",
        "city.key",
        "--out",
        "data/overrides.json",
        "--scene",
        "gyebaek-evening-sky",
        "--curfew-exception",
    ]);
    std::fs::write(
        dir.join("gw.toml"),
        "gateway = \"gyebaek-gw\"\ndata_dir = \"data\"\ntrusted_keys = [\"city.pub\"]\nloopback_only = true\nendpoints = \"gw-endpoints.toml\"\n[mqtt]\nhost = \"127.0.0.1\"\n",
    )
    .unwrap();
    // The gateway's endpoint map keeps only the receiver with a unicast address: the two
    // others are reached by multicast.
    let script = r#"set -e
ip link set lo up
ip route add 239.0.0.0/8 dev lo
"$BIN" sim --library "$LIB" --site gyebaek-bridge --ports --multicast \
  --http 127.0.0.1:8098 --endpoints "$DIR/e.toml" 2> "$DIR/sim.log" &
sim=$!
trap 'kill -TERM $sim 2>/dev/null || true' EXIT
for i in $(seq 100); do grep -q "state API" "$DIR/sim.log" && break; sleep 0.1; done
grep -E '^(\[controllers\]|gyebaek-px-south )' "$DIR/e.toml" > "$DIR/gw-endpoints.toml"
"$BIN" gateway run --config "$DIR/gw.toml" --plan "$DIR/plan.json" 2> "$DIR/gw.log" &
gw=$!
sleep 2
curl -s --max-time 5 127.0.0.1:8098/api/sites/gyebaek-bridge > "$DIR/site.json"
kill -TERM $gw
wait $gw
"#;
    let out = Command::new("unshare")
        .args(["-n", "bash", "-c", script])
        .env("BIN", bin)
        .env("LIB", &library)
        .env("DIR", &dir)
        .output()
        .unwrap();
    let log = std::fs::read_to_string(dir.join("gw.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}{}\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log.contains("playing plan version"), "{log}");
    let site: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("site.json")).unwrap()).unwrap();
    for multicast in ["gyebaek-px-north", "gyebaek-piers"] {
        let lit: u64 = site["fixtures"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["controller"] == multicast)
            .flat_map(|f| f["channels"].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_u64())
            .sum();
        assert!(lit > 0, "{multicast}: lit by multicast frames");
    }
    assert!(
        std::fs::read_to_string(dir.join("gw-endpoints.toml"))
            .unwrap()
            .contains("gyebaek-px-south"),
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The simulator of one shipped site on a runtime of its own (on the system clock, as the
/// gateway process runs), a signing key's public half and the simulator's endpoint map in a
/// fresh directory, and the site's plan signed, in effect since a minute ago.
/// The simulator of one site on the real clock, with a key, an endpoint map and a signed
/// plan in a scratch directory.
pub struct SimRig {
    pub runtime: tokio::runtime::Runtime,
    pub clock: std::sync::Arc<nightscape::clock::SystemClock>,
    pub shutdown: tokio_util::sync::CancellationToken,
    pub sim: firmware_sim::Sim,
    pub lib: nightscape_core::ShowLibrary,
    pub site_id: nightscape_core::SiteId,
    pub dir: std::path::PathBuf,
    pub data: std::path::PathBuf,
    pub key: ed25519_dalek::SigningKey,
    pub now: i64,
    pub plan: Vec<u8>,
}

pub fn sim_rig(site: &str, gw: &str, name: &str, seed: u8) -> SimRig {
    use nightscape_core::clock::Clock;
    use nightscape_core::plan;
    use std::sync::Arc;

    let (sources, checked) = nightscape::library::load(std::path::Path::new("scenes")).unwrap();
    let lib = checked.library;
    let site_id: nightscape_core::SiteId = site.parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let clock = Arc::new(nightscape::clock::SystemClock::new());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let sim = runtime
        .block_on(firmware_sim::start(
            firmware_sim::SimConfig {
                library: lib.clone(),
                sites: vec![site_id.clone()],
                bind: firmware_sim::Bind::Ports,
                broker: None,
                multicast: false,
            },
            clock.clone() as Arc<dyn Clock>,
            shutdown.clone(),
        ))
        .unwrap();
    let dir = std::env::temp_dir().join(format!("ns-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    std::fs::write(
        dir.join("city.pub"),
        plan::public_key_text(&key.verifying_key()),
    )
    .unwrap();
    std::fs::write(dir.join("endpoints.toml"), sim.endpoints.to_toml()).unwrap();
    let now = clock.now_ms();
    let p = plan::compile(
        &sources,
        &lib,
        &site_id,
        &gw.parse().unwrap(),
        1,
        now - 60_000,
        now - 60_000,
    )
    .unwrap();
    let plan = serde_json::to_vec(&plan::sign(p, &key)).unwrap();
    SimRig {
        runtime,
        clock,
        shutdown,
        sim,
        lib,
        site_id,
        dir,
        data,
        key,
        now,
        plan,
    }
}
