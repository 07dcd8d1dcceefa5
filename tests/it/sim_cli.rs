//! `nightscape sim` as an engineer runs it: controllers on loopback, the endpoint map
//! written, the state API answering, a scenario applied, a foreign `Host` and changes
//! without its token refused, a clean stop on SIGTERM.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

fn get(addr: &str, path: &str) -> String {
    request(addr, "GET", path, &format!("Host: {addr}\r\n"), "")
}

/// One request with these header lines (each ending in CRLF): the whole answer.
fn request(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\n{headers}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_simulator_runs_writes_its_endpoint_map_and_stops_cleanly() {
    let dir = std::env::temp_dir().join(format!("nightscape-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let map = dir.join("endpoints.toml");
    let scenario = dir.join("scenario.toml");
    std::fs::write(
        &scenario,
        "[[faults]]\ncontroller = \"donam-path\"\nfault = \"over-temperature\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nightscape"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "sim",
            "--ports",
            "--http",
            "127.0.0.1:0",
            "--site",
            "donam-seowon",
        ])
        .arg("--endpoints")
        .arg(&map)
        .arg("--scenario")
        .arg(&scenario)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut api = None;
    let mut token = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some((_, rest)) = line.split_once("(Authorization: Bearer …): ") {
            token = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.split_once("state API at http://") {
            api = Some(rest.1.trim_end_matches("/api/sites").to_owned());
            break;
        }
    }
    let api = api.expect("the simulator says where its API is");
    let text = std::fs::read_to_string(&map).unwrap();
    assert!(text.contains("donam-path = \"127.0.0.1:"), "{text}");
    assert!(
        !text.contains("10.41."),
        "field addresses never appear: {text}"
    );
    let site = get(&api, "/api/sites/donam-seowon");
    assert!(site.starts_with("HTTP/1.1 200"), "{site}");
    assert!(site.contains("\"id\":\"path-1\""), "{site}");
    let faults = get(&api, "/api/faults");
    assert!(faults.contains("\"over_temperature\":true"), "{faults}");

    // DNS rebinding: a page of another name pointed at loopback is refused, reads too.
    let foreign = request(&api, "GET", "/api/sites", "Host: rebind.example\r\n", "");
    assert!(foreign.starts_with("HTTP/1.1 403"), "{foreign}");
    // A change needs the token the simulator printed, which is kept in its file, mode 600.
    let token = token.expect("the simulator prints its token");
    let kept = std::fs::read_to_string(dir.join("sim-token")).unwrap();
    assert_eq!(kept.trim(), token);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("sim-token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let fault = r#"{"controller": "donam-path", "fault": "offline"}"#;
    let host = format!("Host: {api}\r\n");
    let without = request(&api, "POST", "/api/faults", &host, fault);
    assert!(without.starts_with("HTTP/1.1 401"), "{without}");
    let wrong = format!("{host}Authorization: Bearer not-{token}\r\n");
    let wrong = request(&api, "POST", "/api/faults", &wrong, fault);
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    assert!(!get(&api, "/api/faults").contains("\"offline\":true"));
    let with = format!("{host}Authorization: Bearer {token}\r\n");
    let with = request(&api, "POST", "/api/faults", &with, fault);
    assert!(with.starts_with("HTTP/1.1 204"), "{with}");
    let faults = get(&api, "/api/faults");
    assert!(faults.contains("\"offline\":true"), "{faults}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// sACN multicast and Art-Net broadcast, in a private network namespace where loopback is the
/// only network: the python `sacn` library sends to universe 1's group, the simulator (with
/// `--multicast`) joined it on loopback and shows the level on the north railing; an ArtPoll
/// to the broadcast address is answered by the city hall node, and a broadcast ArtDmx
/// (stupidArtnet) lights its first wash.
#[test]
fn multicast_and_broadcast_reach_the_simulator_inside_a_private_network() {
    let dir = std::env::temp_dir().join(format!("nightscape-mcast-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let script = r#"set -e
ip link set lo up
ip route add 239.0.0.0/8 dev lo
"$BIN" sim --library "$ROOT/scenes" --site gyebaek-bridge --site nonsan-city-hall --ports --multicast \
  --http 127.0.0.1:8097 --endpoints "$DIR/e.toml" 2> "$DIR/sim.log" &
sim=$!
for i in $(seq 100); do grep -q "state API" "$DIR/sim.log" && break; sleep 0.1; done
python3 "$ROOT/firmware-sim/tests/it/python_senders.py" multicast 1 77
python3 "$ROOT/firmware-sim/tests/it/python_senders.py" broadcast 0 > "$DIR/broadcast.txt"
curl -s 127.0.0.1:8097/api/sites/gyebaek-bridge > "$DIR/site.json"
curl -s 127.0.0.1:8097/api/sites/nonsan-city-hall > "$DIR/hall.json"
kill -TERM $sim
wait $sim
"#;
    let out = Command::new("unshare")
        .args(["-n", "bash", "-c", script])
        .env("BIN", env!("CARGO_BIN_EXE_nightscape"))
        .env("ROOT", root)
        .env("DIR", &dir)
        .output()
        .unwrap();
    let log = std::fs::read_to_string(dir.join("sim.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}{}\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let site = std::fs::read_to_string(dir.join("site.json")).unwrap();
    let start = site.find("\"id\":\"rail-n-west\"").unwrap();
    let channels = &site[start..];
    assert!(
        channels.contains("\"channels\":[77,77,77"),
        "{}",
        &channels[..200.min(channels.len())]
    );
    let broadcast = std::fs::read_to_string(dir.join("broadcast.txt")).unwrap();
    assert!(broadcast.contains("poll replies 1"), "{broadcast}");
    let hall = std::fs::read_to_string(dir.join("hall.json")).unwrap();
    let wash = &hall[hall.find("\"id\":\"wash-1\"").unwrap()..];
    assert!(
        wash.contains("\"channels\":[0,0,255,0]"),
        "{}",
        &wash[..120.min(wash.len())]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
