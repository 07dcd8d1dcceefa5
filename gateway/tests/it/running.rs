//! The whole gateway running: plans and overrides published on the machine's Mosquitto
//! under a prefix of this run, the simulator's controllers on loopback, a virtual clock.
//! What the simulator shows is checked against the executor's frame at the same instant.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use firmware_sim::faults::{Fault, FaultKind};
use nightscape_core::clock::{Clock, VirtualClock};
use nightscape_core::endpoints::EndpointMap;
use nightscape_core::plan::{self, OverrideEntry, OverrideEntryKind, OverridesDocument};
use nightscape_core::schedule::epoch_day;
use nightscape_core::sun::Almanac;
use nightscape_core::wire::{self, Ack, AckResult, Event, EventKind, Severity, Topic};
use nightscape_core::{GatewayId, ShowLibrary, SiteId, SourceFile, check};
use nightscape_gateway::config::Config;
use nightscape_gateway::executor::Executor;
use nightscape_gateway::runtime::{Handle, Setup, StartError, Status, start};
use nightscape_gateway::store::{Kind, Store};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::agent::{next_on, observer};
use crate::{shipped_library, start_sim_with, temp_dir};

/// 2026-12-24 19:30 in Seoul.
const EVENING: i64 = 1_798_108_200_000;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn prefix(name: &str) -> String {
    format!("gwrun-{}-{name}/", std::process::id())
}

fn config(gw: &str, dir: &Path, prefix: &str, port: u16) -> Config {
    Config::local(gw.parse().unwrap(), dir.to_path_buf(), port, prefix)
}

fn setup(config: Config, endpoints: Option<&EndpointMap>, connect: bool) -> Setup {
    Setup {
        config,
        trusted: vec![key().verifying_key()],
        endpoints: endpoints.cloned(),
        password: None,
        ca: None,
        connect,
        plan: None,
        art_poll_every: Duration::from_millis(300),
        drive: true,
    }
}

fn signed_plan(
    sources: &[SourceFile],
    lib: &ShowLibrary,
    site: &str,
    gw: &str,
    version: u64,
    effective_from: i64,
) -> Vec<u8> {
    let p = plan::compile(
        sources,
        lib,
        &site.parse().unwrap(),
        &gw.parse().unwrap(),
        version,
        EVENING - 86_400_000,
        effective_from,
    )
    .unwrap();
    serde_json::to_vec(&plan::sign(p, &key())).unwrap()
}

fn signed_overrides(gw: &str, version: u64, entries: Vec<OverrideEntry>) -> Vec<u8> {
    let doc = OverridesDocument {
        schema: plan::OVERRIDES_SCHEMA,
        gateway: gw.parse().unwrap(),
        version,
        issued_at_ms: EVENING - 1000,
        overrides: entries,
    };
    serde_json::to_vec(&plan::sign(doc, &key())).unwrap()
}

fn blackout() -> OverrideEntry {
    OverrideEntry {
        id: "mourning".into(),
        kind: OverrideEntryKind::Blackout,
        scene: None,
        brightness_pct: None,
        from_ms: EVENING - 60_000,
        until_ms: None,
        by: "admin".into(),
        reason: "national mourning".into(),
    }
}

/// A client for publishing what the server would, retained.
async fn publisher() -> AsyncClient {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut o = MqttOptions::new(format!("srv-{}-{n}", std::process::id()), "127.0.0.1", 1883);
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut events) = AsyncClient::new(o, 64);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    client
}

async fn publish(client: &AsyncClient, prefix: &str, gw: &str, leaf: Topic, bytes: Vec<u8>) {
    let gw: GatewayId = gw.parse().unwrap();
    let retain = leaf != Topic::Cmd;
    client
        .publish(
            wire::topic(prefix, &gw, leaf),
            QoS::AtLeastOnce,
            retain,
            bytes,
        )
        .await
        .unwrap();
}

/// Leaves no retained message of this run on the machine's broker.
async fn clear(client: &AsyncClient, prefix: &str, gws: &[&str]) {
    for gw in gws {
        for leaf in [Topic::Plan, Topic::Overrides, Topic::State] {
            publish(client, prefix, gw, leaf, Vec::new()).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

async fn ack_of(
    seen: &mut mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    prefix: &str,
    gw: &str,
    id: &str,
) -> Ack {
    let topic = wire::topic(prefix, &gw.parse().unwrap(), Topic::Ack);
    let bytes = next_on(seen, &topic, |b| {
        wire::decode::<Ack>(b).is_ok_and(|a| a.id == id)
    })
    .await;
    wire::decode(&bytes).unwrap()
}

/// What the executor renders for `site` of `plan_bytes` at `at`.
fn expected(plan_bytes: &[u8], gw: &str, at: i64, overrides: &[u8]) -> Vec<u8> {
    let (p, lib) = plan::open_plan(
        plan_bytes,
        &key().verifying_key(),
        &gw.parse().unwrap(),
        None,
    )
    .unwrap();
    let mut exec = Executor::new(&lib, &p.site, at).unwrap();
    if !overrides.is_empty() {
        let doc: OverridesDocument = plan::open(
            overrides,
            &key().verifying_key(),
            &gw.parse().unwrap(),
            None,
        )
        .unwrap();
        exec.set_overrides(doc.to_overrides().unwrap());
    }
    exec.tick(at);
    exec.channels().to_vec()
}

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn wait_status(handle: &Handle, what: &str, ok: impl Fn(&Status) -> bool) -> Status {
    let mut rx = handle.status.clone();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| ok(s)))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}: {:?}", handle.status.borrow()))
        .unwrap()
        .clone()
}

async fn stop(handle: Handle, shutdown: &CancellationToken) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), handle.done)
        .await
        .unwrap()
        .unwrap();
}

fn journal(dir: &Path) -> Vec<Event> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| wire::decode::<Event>(l.as_bytes()).ok())
        .collect()
}

#[tokio::test]
async fn published_plans_light_the_simulated_fixtures_of_each_protocol() {
    let sources = shipped_library();
    let lib = check(&sources).library;
    let prefix = prefix("four");
    let sites = [
        ("donam-seowon", "donam-gw"),        // Modbus TCP
        ("nonsan-city-hall", "cityhall-gw"), // Art-Net
        ("gyebaek-bridge", "gyebaek-gw"),    // sACN
        ("ganggyeong-office", "office-gw"),  // DMX over MQTT
    ];
    let names: Vec<&str> = sites.iter().map(|(s, _)| *s).collect();
    let (sim, clock, sim_stop) = start_sim_with(&lib, &names, Some(&prefix)).await;
    clock.advance(Duration::from_millis((EVENING - clock.now_ms()) as u64));
    let (_obs, mut seen) = observer(&prefix).await;
    let server = publisher().await;
    let shutdown = CancellationToken::new();
    let mut handles = Vec::new();
    for (site, gw) in sites {
        let bytes = signed_plan(&sources, &lib, site, gw, 1, 0);
        publish(&server, &prefix, gw, Topic::Plan, bytes.clone()).await;
        let cfg = config(gw, &temp_dir("four"), &prefix, 1883);
        let h = start(
            setup(cfg, Some(&sim.endpoints), true),
            clock.clone() as Arc<dyn Clock>,
            shutdown.clone(),
        )
        .await
        .unwrap();
        let ack = ack_of(&mut seen, &prefix, gw, "1").await;
        assert_eq!(ack.result, AckResult::Applied, "{gw}: {:?}", ack.reason);
        handles.push((site, h, expected(&bytes, gw, EVENING, &[])));
    }
    for (site, h, want) in &handles {
        assert!(want.iter().any(|&v| v > 0), "{site} is lit at the evening");
        let site_id: SiteId = site.parse().unwrap();
        let shown = || sim.state.sites[&site_id].channels(sim.state.clock.as_ref());
        wait_until(&format!("{site} on the simulator"), || shown() == *want).await;
        let status = h.status.borrow().clone();
        assert_eq!(status.plan_version, Some(1));
        assert!(status.connected);
    }
    for (_, h, _) in handles {
        stop(h, &shutdown).await;
    }
    clear(
        &server,
        &prefix,
        &sites.iter().map(|(_, g)| *g).collect::<Vec<_>>(),
    )
    .await;
    sim_stop.cancel();
}

#[tokio::test]
async fn a_blackout_stays_dark_through_a_restart_without_network() {
    let sources = shipped_library();
    let lib = check(&sources).library;
    let prefix = prefix("blackout");
    let (site, gw) = ("nonsan-city-hall", "cityhall-gw");
    let (sim, clock, sim_stop) = start_sim_with(&lib, &[site], None).await;
    clock.advance(Duration::from_millis((EVENING - clock.now_ms()) as u64));
    let (_obs, mut seen) = observer(&prefix).await;
    let server = publisher().await;
    let dir = temp_dir("blackout");
    let plan_bytes = signed_plan(&sources, &lib, site, gw, 3, 0);
    publish(&server, &prefix, gw, Topic::Plan, plan_bytes.clone()).await;
    let shutdown = CancellationToken::new();
    let h = start(
        setup(config(gw, &dir, &prefix, 1883), Some(&sim.endpoints), true),
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        ack_of(&mut seen, &prefix, gw, "3").await.result,
        AckResult::Applied
    );
    let site_id: SiteId = site.parse().unwrap();
    let shown = || sim.state.sites[&site_id].channels(sim.state.clock.as_ref());
    wait_until("lit", || shown().iter().any(|&v| v > 0)).await;

    // An engineer is identifying a fixture when the blackout comes: it must not blink on.
    let fixture = lib.layout(&site_id).unwrap().fixtures()[0].id.clone();
    publish(
        &server,
        &prefix,
        gw,
        Topic::Cmd,
        format!(
            r#"{{"schema":1,"id":"id-1","expires_ms":{},"action":"identify","fixture":"{fixture}","controller":null,"seconds":600}}"#,
            EVENING + 60_000
        )
        .into_bytes(),
    )
    .await;
    assert_eq!(
        ack_of(&mut seen, &prefix, gw, "id-1").await.result,
        AckResult::Applied
    );
    // The blackout: acked, and dark at once (no fade).
    let overrides = signed_overrides(gw, 1, vec![blackout()]);
    publish(&server, &prefix, gw, Topic::Overrides, overrides).await;
    let ack = ack_of(&mut seen, &prefix, gw, "1").await;
    assert_eq!(
        (ack.about, ack.result),
        (wire::About::Overrides, AckResult::Applied)
    );
    wait_until("dark", || shown().iter().all(|&v| v == 0)).await;
    // And stays dark through the blink's on-phases (the virtual clock moves a few seconds).
    for _ in 0..8 {
        clock.advance(Duration::from_millis(250));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(
            shown().iter().all(|&v| v == 0),
            "no blink through a blackout"
        );
    }
    let status = h.status.borrow().clone();
    assert!(status.blackout, "{status:?}");
    stop(h, &shutdown).await;

    // Power back, no network at all: still dark, from the disk alone.
    let shutdown = CancellationToken::new();
    let h = start(
        setup(config(gw, &dir, &prefix, 1), Some(&sim.endpoints), false),
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .await
    .unwrap();
    let status = wait_status(&h, "frames", |s| s.frames > 3).await;
    assert_eq!(status.plan_version, Some(3));
    assert!(status.blackout, "{status:?}");
    assert!(shown().iter().all(|&v| v == 0));
    stop(h, &shutdown).await;

    // And a newer plan does not lift it: only releasing it does.
    let shutdown = CancellationToken::new();
    let h = start(
        setup(config(gw, &dir, &prefix, 1883), Some(&sim.endpoints), true),
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .await
    .unwrap();
    publish(
        &server,
        &prefix,
        gw,
        Topic::Plan,
        signed_plan(&sources, &lib, site, gw, 4, 0),
    )
    .await;
    assert_eq!(
        ack_of(&mut seen, &prefix, gw, "4").await.result,
        AckResult::Applied
    );
    let status = wait_status(&h, "plan 4", |s| s.plan_version == Some(4)).await;
    assert!(status.blackout);
    assert!(shown().iter().all(|&v| v == 0));
    publish(
        &server,
        &prefix,
        gw,
        Topic::Overrides,
        signed_overrides(gw, 2, vec![]),
    )
    .await;
    assert_eq!(
        ack_of(&mut seen, &prefix, gw, "2").await.result,
        AckResult::Applied
    );
    // The rule's scene fades in (on the virtual clock).
    clock.advance(Duration::from_secs(60));
    wait_until("lit again", || shown().iter().any(|&v| v > 0)).await;
    stop(h, &shutdown).await;
    clear(&server, &prefix, &[gw]).await;
    sim_stop.cancel();
}

#[tokio::test]
async fn damaged_or_half_written_plans_on_disk_leave_the_previous_good_one_playing() {
    let sources = shipped_library();
    let lib = check(&sources).library;
    let (site, gw) = ("nonsan-city-hall", "cityhall-gw");
    let (sim, clock, sim_stop) = start_sim_with(&lib, &[site], None).await;
    clock.advance(Duration::from_millis((EVENING - clock.now_ms()) as u64));
    let site_id: SiteId = site.parse().unwrap();

    // A crash between writing the new plan and renaming it: the old one is current.
    let dir = temp_dir("halfway");
    let store = Store::open(&dir).unwrap();
    store
        .save(Kind::Plan, &signed_plan(&sources, &lib, site, gw, 1, 0))
        .unwrap();
    let v2 = signed_plan(&sources, &lib, site, gw, 2, 0);
    std::fs::write(dir.join("plan.json.tmp"), &v2[..v2.len() / 2]).unwrap();
    let shutdown = CancellationToken::new();
    let h = start(
        setup(config(gw, &dir, "", 1), Some(&sim.endpoints), false),
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .await
    .unwrap();
    let status = wait_status(&h, "frames", |s| s.frames > 2).await;
    assert_eq!(status.plan_version, Some(1));
    let shown = || sim.state.sites[&site_id].channels(sim.state.clock.as_ref());
    let want = expected(
        &signed_plan(&sources, &lib, site, gw, 1, 0),
        gw,
        EVENING,
        &[],
    );
    wait_until("plan 1 shown", || shown() == want).await;
    stop(h, &shutdown).await;

    // A truncated current plan: the previous plays, and an event says why.
    let dir = temp_dir("truncated");
    let store = Store::open(&dir).unwrap();
    store
        .save(Kind::Plan, &signed_plan(&sources, &lib, site, gw, 1, 0))
        .unwrap();
    store.save(Kind::Plan, &v2).unwrap();
    std::fs::write(dir.join("plan.json"), &v2[..v2.len() - 100]).unwrap();
    let shutdown = CancellationToken::new();
    let h = start(
        setup(config(gw, &dir, "", 1), Some(&sim.endpoints), false),
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .await
    .unwrap();
    let status = wait_status(&h, "frames", |s| s.frames > 2).await;
    assert_eq!(status.plan_version, Some(1));
    stop(h, &shutdown).await;
    let events = journal(&dir);
    let complaint = events
        .iter()
        .find(|e| e.kind == EventKind::Plan && e.severity == Severity::Fault)
        .expect("an event names the damaged plan");
    assert!(
        complaint.message.contains("plan.json"),
        "{}",
        complaint.message
    );
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("previous good plan, version 1")),
        "{events:?}"
    );
    sim_stop.cancel();
}

#[tokio::test]
async fn the_loopback_guard_refuses_field_addresses_and_names_the_controller() {
    let sources = shipped_library();
    let lib = check(&sources).library;
    let prefix = prefix("guard");
    let (site, gw) = ("donam-seowon", "donam-gw");
    let (_obs, mut seen) = observer(&prefix).await;
    let server = publisher().await;
    let clock = Arc::new(VirtualClock::new(EVENING));
    let shutdown = CancellationToken::new();
    let h = start(
        setup(config(gw, &temp_dir("guard"), &prefix, 1883), None, true),
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .await
    .unwrap();
    let bytes = signed_plan(&sources, &lib, site, gw, 1, 0);
    publish(&server, &prefix, gw, Topic::Plan, bytes.clone()).await;
    let ack = ack_of(&mut seen, &prefix, gw, "1").await;
    assert_eq!(ack.result, AckResult::Rejected);
    let reason = ack.reason.unwrap();
    assert!(
        reason.contains("donam-") && reason.contains("loopback"),
        "{reason}"
    );
    assert_eq!(h.status.borrow().plan_version, None, "nothing plays");
    stop(h, &shutdown).await;

    // The same plan given on the command line does not start.
    let mut s = setup(config(gw, &temp_dir("guard"), &prefix, 1), None, false);
    s.plan = Some(bytes);
    let err = start(s, clock as Arc<dyn Clock>, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, StartError::Guard(_)), "{err}");
    assert!(err.to_string().contains("donam-"), "{err}");
    clear(&server, &prefix, &[gw]).await;
}

#[tokio::test]
async fn refused_documents_and_commands_are_acked_with_their_reason_and_change_nothing() {
    let sources = shipped_library();
    let lib = check(&sources).library;
    let prefix = prefix("refused");
    let (site, gw) = ("nonsan-city-hall", "cityhall-gw");
    let (sim, clock, sim_stop) = start_sim_with(&lib, &[site], None).await;
    clock.advance(Duration::from_millis((EVENING - clock.now_ms()) as u64));
    let (_obs, mut seen) = observer(&prefix).await;
    let server = publisher().await;
    let shutdown = CancellationToken::new();
    let good = signed_plan(&sources, &lib, site, gw, 5, 0);
    publish(&server, &prefix, gw, Topic::Plan, good.clone()).await;
    let h = start(
        setup(
            config(gw, &temp_dir("refused"), &prefix, 1883),
            Some(&sim.endpoints),
            true,
        ),
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        ack_of(&mut seen, &prefix, gw, "5").await.result,
        AckResult::Applied
    );
    let site_id: SiteId = site.parse().unwrap();
    let shown = || sim.state.sites[&site_id].channels(sim.state.clock.as_ref());
    let want = expected(&good, gw, EVENING, &[]);
    wait_until("plan 5 shown", || shown() == want).await;

    let other_key = SigningKey::from_bytes(&[9; 32]);
    let forged = {
        let (p, _) =
            plan::open_plan(&good, &key().verifying_key(), &gw.parse().unwrap(), None).unwrap();
        let mut p = p;
        p.version = 6;
        serde_json::to_vec(&plan::sign(p, &other_key)).unwrap()
    };
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (forged, "6", "signature"),
        (
            signed_plan(&sources, &lib, site, gw, 4, 0),
            "4",
            "not newer",
        ),
        (
            signed_plan(&sources, &lib, "donam-seowon", "donam-gw", 7, 0),
            "7",
            "for gateway `donam-gw`",
        ),
        (
            b"{\"document\":{\"schema\":1,\"version\":8}".to_vec(),
            "?",
            "malformed",
        ),
    ];
    for (bytes, id, why) in cases {
        publish(&server, &prefix, gw, Topic::Plan, bytes).await;
        let ack = ack_of(&mut seen, &prefix, gw, id).await;
        assert_eq!(ack.result, AckResult::Rejected, "{id}");
        let reason = ack.reason.unwrap_or_default();
        assert!(reason.contains(why), "{id}: {reason}");
    }
    // Commands: unknown, expired, and a good one.
    publish(
        &server,
        &prefix,
        gw,
        Topic::Cmd,
        br#"{"schema":1,"id":"c1","expires_ms":0,"action":"self-destruct"}"#.to_vec(),
    )
    .await;
    assert_eq!(
        ack_of(&mut seen, &prefix, gw, "c1").await.result,
        AckResult::Rejected
    );
    // The gateway holds commands to their bounds itself (seen: an identify of 999,999 s was
    // acked applied and blinked on), and an action without fields refuses unknown ones too
    // (seen: resync took them).
    let controller = &lib.sites[&site.parse::<SiteId>().unwrap()].controllers[0].id;
    let bad_commands = [
        (
            "c1-long",
            format!(
                r#"{{"schema":1,"id":"c1-long","expires_ms":{},"action":"identify","fixture":null,"controller":"{controller}","seconds":999999}}"#,
                EVENING + 60_000
            ),
            "give 1 to 3600, not 999999",
        ),
        (
            "c1-extra",
            format!(
                r#"{{"schema":1,"id":"c1-extra","expires_ms":{},"action":"resync","force":true}}"#,
                EVENING + 60_000
            ),
            "unknown field `force`",
        ),
    ];
    for (id, text, why) in bad_commands {
        publish(&server, &prefix, gw, Topic::Cmd, text.into_bytes()).await;
        let ack = ack_of(&mut seen, &prefix, gw, id).await;
        assert_eq!(ack.result, AckResult::Rejected, "{id}: {ack:?}");
        let reason = ack.reason.unwrap_or_default();
        assert!(reason.contains(why), "{id}: {reason}");
    }
    publish(
        &server,
        &prefix,
        gw,
        Topic::Cmd,
        format!(
            r#"{{"schema":1,"id":"c2","expires_ms":{},"action":"resync"}}"#,
            EVENING - 1
        )
        .into_bytes(),
    )
    .await;
    assert_eq!(
        ack_of(&mut seen, &prefix, gw, "c2").await.result,
        AckResult::Expired
    );
    publish(
        &server,
        &prefix,
        gw,
        Topic::Cmd,
        format!(
            r#"{{"schema":1,"id":"c3","expires_ms":{},"action":"resync"}}"#,
            EVENING + 60_000
        )
        .into_bytes(),
    )
    .await;
    assert_eq!(
        ack_of(&mut seen, &prefix, gw, "c3").await.result,
        AckResult::Applied
    );

    // Discovery from the broker: the findings come back as an event, the ack counts them.
    publish(
        &server,
        &prefix,
        gw,
        Topic::Cmd,
        format!(
            r#"{{"schema":1,"id":"c4","expires_ms":{},"action":"discover"}}"#,
            EVENING + 60_000
        )
        .into_bytes(),
    )
    .await;
    let event_topic = wire::topic(&prefix, &gw.parse().unwrap(), Topic::Event);
    next_on(&mut seen, &event_topic, |b| {
        wire::decode::<Event>(b).is_ok_and(|e| e.message.contains("Art-Net node"))
    })
    .await;
    let ack = ack_of(&mut seen, &prefix, gw, "c4").await;
    assert_eq!(ack.result, AckResult::Applied);
    assert!(
        ack.reason
            .as_deref()
            .unwrap_or_default()
            .contains("0 did not answer"),
        "{ack:?}"
    );

    let status = h.status.borrow().clone();
    assert_eq!(status.plan_version, Some(5));
    wait_until("plan 5 still shown", || shown() == want).await;
    stop(h, &shutdown).await;
    clear(&server, &prefix, &[gw]).await;
    sim_stop.cancel();
}

#[tokio::test]
async fn a_modbus_controller_offline_or_rebooted_gets_its_output_back() {
    let sources = shipped_library();
    let lib = check(&sources).library;
    let prefix = prefix("modbus");
    let (site, gw) = ("donam-seowon", "donam-gw");
    let (sim, clock, sim_stop) = start_sim_with(&lib, &[site], None).await;
    clock.advance(Duration::from_millis((EVENING - clock.now_ms()) as u64));
    let (_obs, mut seen) = observer(&prefix).await;
    let server = publisher().await;
    let bytes = signed_plan(&sources, &lib, site, gw, 1, 0);
    publish(&server, &prefix, gw, Topic::Plan, bytes.clone()).await;
    let shutdown = CancellationToken::new();
    let h = start(
        setup(
            config(gw, &temp_dir("modbus"), &prefix, 1883),
            Some(&sim.endpoints),
            true,
        ),
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        ack_of(&mut seen, &prefix, gw, "1").await.result,
        AckResult::Applied
    );
    let site_id: SiteId = site.parse().unwrap();
    let shown = || sim.state.sites[&site_id].channels(sim.state.clock.as_ref());
    let want = expected(&bytes, gw, EVENING, &[]);
    wait_until("lit", || shown() == want).await;

    let victim = sim.state.sites[&site_id].controllers[0].id.clone();
    let event_topic = wire::topic(&prefix, &gw.parse().unwrap(), Topic::Event);
    let fault_event = |text: &'static str| {
        let victim = victim.clone();
        move |b: &[u8]| {
            wire::decode::<Event>(b).is_ok_and(|e| {
                e.kind == EventKind::Fault
                    && e.controller.as_ref() == Some(&victim)
                    && e.message.contains(text)
            })
        }
    };
    sim.state
        .apply(&Fault {
            controller: victim.clone(),
            kind: FaultKind::Offline,
        })
        .unwrap();
    next_on(&mut seen, &event_topic, fault_event("unreachable")).await;
    sim.state.clear(Some(&victim));
    next_on(&mut seen, &event_topic, fault_event("reachable again")).await;
    wait_until("restored after offline", || shown() == want).await;

    // A reboot loses the device's levels; the driver sees its uptime drop and writes
    // everything again, with no change of levels to prompt it.
    sim.state
        .apply(&Fault {
            controller: victim.clone(),
            kind: FaultKind::Reboot { down_ms: 0 },
        })
        .unwrap();
    next_on(&mut seen, &event_topic, fault_event("restarted")).await;
    wait_until("restored after reboot", || shown() == want).await;
    stop(h, &shutdown).await;
    clear(&server, &prefix, &[gw]).await;
    sim_stop.cancel();
}

/// The public holidays of 2027's first quarter as the government publishes them (관공서의
/// 공휴일에 관한 규정, with the lunar dates of KASI's 월력요항 for 2027), written here
/// independently of the library's calendar file.
const KR_PUBLIC_HOLIDAYS_2027_Q1: [&str; 6] = [
    "2027-01-01", // 신정
    "2027-02-06", // 설날 연휴
    "2027-02-07", // 설날
    "2027-02-08", // 설날 연휴
    "2027-02-09", // 대체공휴일 (설날 on a Sunday)
    "2027-03-01", // 삼일절
];

/// The month's transitions checked against references outside the core, so the proof is
/// not only self-consistent (the transitions come from the core's evaluator and the
/// expected output from the gateway's executor). For sites whose evening starts at sunset
/// (or sunset + 10 min): the first transition after local noon each day is within a
/// minute of NREL's SPA sunset (the `solar-positioning` crate) at the site's place; and
/// City Hall plays its holiday scene from sunset exactly on the government's holidays.
fn check_against_references(lib: &ShowLibrary, from: i64, to: i64) {
    use solar_positioning::{Horizon, Location, SolarEvents};
    const DELTA_T: f64 = 69.0;
    let jd = |ms: i64| ms as f64 / 86_400_000.0 + 2_440_587.5;
    let ms = |jd: f64| ((jd - 2_440_587.5) * 86_400_000.0).round() as i64;
    let mut nights = 0;
    for (site, offset_min) in [
        ("nonsan-city-hall", 0),
        ("gyebaek-bridge", 0),
        ("nonsan-arts-center", 0),
        ("donam-seowon", 10),
    ] {
        let site = &lib.sites[&site.parse::<SiteId>().unwrap()];
        let days = epoch_day(nightscape_core::schedule::local_date(from, &site.time_zone));
        let evaluator = lib
            .evaluator(&site.id, Arc::new(Almanac::new(days - 2, days + 40)))
            .unwrap();
        let mut seen_dates = std::collections::BTreeSet::new();
        for t in evaluator.transitions(from, to).0 {
            let local = site
                .time_zone
                .to_datetime(jiff::Timestamp::from_millisecond(t.at_ms).unwrap());
            if local.hour() < 12 || !seen_dates.insert(local.date()) {
                continue;
            }
            let spa = SolarEvents::new()
                .next_set_from_julian(
                    jd(t.at_ms - 43_200_000),
                    jd(t.at_ms + 43_200_000),
                    Location {
                        latitude: site.location.lat,
                        longitude: site.location.lon,
                    },
                    DELTA_T,
                    Horizon::SunriseSunset,
                )
                .unwrap()
                .map(ms)
                .unwrap();
            let off = t.at_ms - (spa + offset_min * 60_000);
            assert!(
                off.abs() <= 60_000,
                "{} on {}: the evening starts at {local}, {} s from SPA's sunset{}",
                site.id,
                local.date(),
                off / 1000,
                if offset_min > 0 { " + 10 min" } else { "" }
            );
            if site.id.as_str() == "nonsan-city-hall" {
                let holiday =
                    KR_PUBLIC_HOLIDAYS_2027_Q1.contains(&local.date().to_string().as_str());
                let scene = t.cue.scene.as_ref().map(|s| s.as_str());
                assert_eq!(
                    scene == Some("cityhall-blue-hour"),
                    holiday,
                    "City Hall on {} ({}): {scene:?} from sunset",
                    local.date(),
                    if holiday {
                        "a public holiday"
                    } else {
                        "not a holiday"
                    }
                );
            }
            nights += 1;
        }
    }
    assert!(
        nights >= 4,
        "{nights} nights checked against the references"
    );
    println!("{nights} site-nights checked against SPA's sunset and the government's holidays");
}

/// How many nights the city plays offline: `NIGHTSCAPE_MONTH_DAYS` (the documented run is
/// 30; the test suite's default is 4).
fn month_days() -> i64 {
    std::env::var("NIGHTSCAPE_MONTH_DAYS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(4)
}

/// One site's gateway in the offline month.
struct Offline {
    site: SiteId,
    gw: String,
    /// The plan's library, to compute what the outputs should be.
    lib: ShowLibrary,
    handle: Handle,
    status: tokio::sync::watch::Receiver<Status>,
    dir: std::path::PathBuf,
    /// Layout channels fed over DMX-over-MQTT: they need the broker, so they are dark.
    needs_broker: Vec<bool>,
}

/// What a gateway shows: the scene and brightness when lit, nothing when dark.
fn lit(
    c: &Option<wire::ActiveCue>,
) -> Option<(nightscape_core::SceneId, nightscape_core::model::Level)> {
    c.as_ref().and_then(|c| {
        c.scene
            .clone()
            .filter(|_| c.brightness_pct.get() > 0.0)
            .map(|s| (s, c.brightness_pct))
    })
}

/// Waits until every gateway has made two frames at the clock's present reading.
async fn two_frames(city: &mut [Offline]) {
    let seen: Vec<u64> = city
        .iter_mut()
        .map(|g| g.status.borrow_and_update().frames)
        .collect();
    for (g, seen) in city.iter_mut().zip(seen) {
        tokio::time::timeout(
            Duration::from_secs(5),
            g.status.wait_for(|s| s.frames >= seen + 2),
        )
        .await
        .unwrap()
        .unwrap();
    }
}

/// Starts `site`'s first gateway with its plan on disk and the broker down (`dead_port`),
/// driving the simulator's controllers; channels fed over DMX-over-MQTT are marked.
async fn start_offline(
    sources: &[SourceFile],
    lib: &ShowLibrary,
    site: &nightscape_core::Site,
    sim: &firmware_sim::Sim,
    clock: &Arc<VirtualClock>,
    dead_port: u16,
    shutdown: &CancellationToken,
) -> Offline {
    let map = lib.output_map(&site.id).unwrap();
    let mut needs_broker = vec![false; lib.layout(&site.id).unwrap().channel_count()];
    for cm in map.controllers() {
        if matches!(
            site.controllers[cm.index].output,
            nightscape_core::model::Output::DmxMqtt { .. }
        ) {
            let mut mask = vec![0u8; needs_broker.len()];
            for sink in &cm.sinks {
                sink.scatter(&[1; 512], &mut mask);
            }
            for (n, m) in needs_broker.iter_mut().zip(mask) {
                *n |= m != 0;
            }
        }
    }
    let gw = site.gateways[0].id.to_string();
    let dir = temp_dir("offline");
    let plan = signed_plan(sources, lib, site.id.as_str(), &gw, 1, 0);
    Store::open(&dir).unwrap().save(Kind::Plan, &plan).unwrap();
    let mut cfg = config(&gw, &dir, "", dead_port);
    cfg.frame_rate_hz = 44;
    let handle = start(
        setup(cfg, Some(&sim.endpoints), true),
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .await
    .unwrap();
    Offline {
        site: site.id.clone(),
        status: handle.status.clone(),
        lib: plan::open_plan(&plan, &key().verifying_key(), &gw.parse().unwrap(), None)
            .unwrap()
            .1,
        gw,
        handle,
        dir,
        needs_broker,
    }
}

impl Offline {
    /// What the plan says the site's channels are at `t` (those that need the broker dark).
    fn expected_at(&self, t: i64) -> Vec<u8> {
        let mut exec = Executor::new(&self.lib, &self.site, t).unwrap();
        exec.tick(t);
        exec.channels()
            .iter()
            .zip(&self.needs_broker)
            .map(|(v, dark)| if *dark { 0 } else { *v })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_without_broker_plays_every_transition_of_the_city_on_time() {
    let sources = shipped_library();
    let lib = check(&sources).library;
    // From 2027-01-01 12:00 in Seoul.
    let from = 1_798_772_400_000;
    let to = from + month_days() * 86_400_000;
    let all: Vec<String> = lib.sites.keys().map(ToString::to_string).collect();
    let names: Vec<&str> = all.iter().map(String::as_str).collect();
    assert_eq!(names.len(), 12, "the seed city");
    let (sim, clock, sim_stop) = start_sim_with(&lib, &names, None).await;
    clock.advance(Duration::from_millis((from - clock.now_ms()) as u64));
    // The broker is down all month (nothing listens on the port).
    let dead_port = free_port();
    let shutdown = CancellationToken::new();
    // Every transition of the city in time order: (when, which gateway, the cue).
    let mut transitions = Vec::new();
    let mut city = Vec::new();
    for site in lib.sites.values() {
        let days = epoch_day(nightscape_core::schedule::local_date(from, &site.time_zone));
        let evaluator = lib
            .evaluator(&site.id, Arc::new(Almanac::new(days - 2, days + 40)))
            .unwrap();
        assert_eq!(
            site.gateways.len(),
            1,
            "one gateway a site in the seed city"
        );
        for t in evaluator.transitions(from, to).0 {
            transitions.push((t.at_ms, city.len(), t.cue));
        }
        city.push(start_offline(&sources, &lib, site, &sim, &clock, dead_port, &shutdown).await);
    }
    transitions.sort_by_key(|(at, i, _)| (*at, *i));
    check_against_references(&lib, from, to);
    two_frames(&mut city).await;
    let longest_fade = lib
        .scenes
        .values()
        .map(|s| s.fade.as_millis() as i64)
        .max()
        .unwrap_or(0);

    let mut outputs_checked = 0;
    let mut k = 0;
    while k < transitions.len() {
        let at = transitions[k].0;
        let now_here: Vec<_> = transitions[k..]
            .iter()
            .take_while(|t| t.0 == at)
            .cloned()
            .collect();
        k += now_here.len();
        // Just before: what played still plays.
        clock.advance(Duration::from_millis((at - 1 - clock.now_ms()) as u64));
        let before: Vec<_> = city.iter().map(|g| lit(&g.status.borrow().cue)).collect();
        two_frames(&mut city).await;
        for (g, was) in city.iter().zip(&before) {
            assert_eq!(
                &lit(&g.status.borrow().cue),
                was,
                "{}: nothing shows differently 1 ms before {at}",
                g.gw
            );
        }
        // At the instant: each transition's cue, starting then.
        clock.advance(Duration::from_millis(1));
        for (_, i, cue) in &now_here {
            let want = wire::ActiveCue {
                scene: cue.scene.clone(),
                brightness_pct: cue.brightness,
                cause: (&cue.cause).into(),
            };
            let g = &mut city[*i];
            let got = tokio::time::timeout(
                Duration::from_secs(5),
                g.status.wait_for(|s| s.cue.as_ref() == Some(&want)),
            )
            .await
            .unwrap_or_else(|_| panic!("{}: transition at {at} not played: {:?}", g.gw, want))
            .unwrap()
            .clone();
            assert_eq!(got.cue_since_ms, Some(at), "{}", g.gw);
        }
        // Where the city is quiet for a while after, once every fade is done, what the
        // simulated controllers output is what the plan says, at every site. A controller
        // that fades itself runs its fade on the clock from when its driver's write
        // arrives, so the clock moves on until it is done.
        let next = transitions.get(k).map_or(to, |t| t.0);
        if next - at > longest_fade + 3 * 60_000 {
            clock.advance(Duration::from_millis((longest_fade + 1000) as u64));
            for g in &city {
                let shown = || sim.state.sites[&g.site].channels(sim.state.clock.as_ref());
                // What the plan says at the clock's reading (made again when it moves).
                let mut made: Option<(i64, Vec<u8>)> = None;
                let mut want = || -> Vec<u8> {
                    let t = clock.now_ms();
                    if made.as_ref().is_none_or(|(at, _)| *at != t) {
                        made = Some((t, g.expected_at(t)));
                    }
                    made.as_ref().map(|(_, c)| c.clone()).unwrap_or_default()
                };
                for i in 1..=400 {
                    if shown() == want() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    // Still moving after half a second of frames at a still clock: a
                    // controller fading on its own clock; let its fade run.
                    if i % 50 == 0 && clock.now_ms() + 10_000 < next - 60_000 {
                        clock.advance(Duration::from_millis(10_000));
                    }
                }
                let (shown, want) = (shown(), want());
                let differ = shown.iter().zip(&want).filter(|(a, b)| a != b).count();
                assert_eq!(
                    differ,
                    0,
                    "{}: output after the fades of {at}: {differ} of {} channels differ",
                    g.gw,
                    want.len()
                );
            }
            outputs_checked += 1;
        }
    }
    for (i, g) in city.into_iter().enumerate() {
        stop(g.handle, &shutdown).await;
        // The journal kept every cue change for the server: the first, then each transition.
        let cues: Vec<i64> = journal(&g.dir)
            .into_iter()
            .filter(|e| e.kind == EventKind::Cue)
            .map(|e| e.at_ms)
            .skip(1)
            .collect();
        let want: Vec<i64> = transitions
            .iter()
            .filter(|t| t.1 == i)
            .map(|t| t.0)
            .collect();
        assert_eq!(cues, want, "{}: none missed, none extra", g.gw);
    }
    println!(
        "{} days, 12 sites: {} transitions each played at its millisecond, 0 missed, 0 extra; every site's output checked at {outputs_checked} quiet moments",
        month_days(),
        transitions.len()
    );
    let _ = sim;
    sim_stop.cancel();
}

/// A private Mosquitto on `port` of loopback, stopped when dropped.
struct PrivateBroker(std::process::Child);

impl PrivateBroker {
    fn start(port: u16, dir: &Path) -> PrivateBroker {
        PrivateBroker::with(port, dir, "")
    }

    /// With more configuration after the first listener (more listeners, TLS).
    fn with(port: u16, dir: &Path, more: &str) -> PrivateBroker {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings false\nallow_anonymous true\npersistence false\nlistener {port} 127.0.0.1\n{more}"
            ),
        )
        .unwrap();
        let child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto is installed (.ci/run installs it)");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        PrivateBroker(child)
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn events_made_while_the_broker_was_away_are_delivered_when_it_returns() {
    let sources = shipped_library();
    let lib = check(&sources).library;
    let (site, gw) = ("nonsan-city-hall", "cityhall-gw");
    let (sim, clock, sim_stop) = start_sim_with(&lib, &[site], None).await;
    // An afternoon, then two evenings and mornings: cue changes while nobody listens.
    let from = 1_798_772_400_000;
    clock.advance(Duration::from_millis((from - clock.now_ms()) as u64));
    let dir = temp_dir("journal");
    Store::open(&dir)
        .unwrap()
        .save(Kind::Plan, &signed_plan(&sources, &lib, site, gw, 1, 0))
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let prefix = prefix("journal");
    let shutdown = CancellationToken::new();
    let h = start(
        setup(config(gw, &dir, &prefix, port), Some(&sim.endpoints), true),
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .await
    .unwrap();
    wait_status(&h, "first frame", |s| s.frames > 0).await;
    for _ in 0..8 {
        clock.advance(Duration::from_secs(6 * 3600));
        let frames = h.status.borrow().frames;
        wait_status(&h, "frames", |s| s.frames > frames + 2).await;
    }
    let kept = journal(&dir);
    assert!(
        kept.iter().filter(|e| e.kind == EventKind::Cue).count() >= 4,
        "{kept:?}"
    );
    assert!(h.status.borrow().journaled >= kept.len());

    // Offline long enough that the gateway's next attempt is over a second away, so the
    // observer below is subscribed before the gateway reconnects.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The broker comes up: every kept event arrives, and the journal empties.
    let _broker = PrivateBroker::start(port, &dir);
    let (_obs, mut seen) = crate::agent::observer_on(&prefix, port).await;
    let topic = wire::topic(&prefix, &gw.parse().unwrap(), Topic::Event);
    let mut missing: std::collections::BTreeSet<String> =
        kept.iter().map(|e| e.id.clone()).collect();
    while !missing.is_empty() {
        let bytes = next_on(&mut seen, &topic, |_| true).await;
        let e: Event = wire::decode(&bytes).unwrap();
        missing.remove(&e.id);
    }
    wait_status(&h, "journal empty", |s| s.connected && s.journaled == 0).await;
    assert!(journal(&dir).is_empty());
    stop(h, &shutdown).await;
    sim_stop.cancel();
}

#[tokio::test]
async fn a_controller_that_fades_itself_gets_the_target_and_the_fade_once() {
    let sources = shipped_library();
    let lib = check(&sources).library;
    let prefix = prefix("ctlfade");
    // The council's ns-led-v1 controller fades itself (fade_by = "controller"), up to 60 s.
    let (site, gw) = ("nonsan-council", "council-gw");
    let site_id: SiteId = site.parse().unwrap();
    let fading: Vec<_> = lib.sites[&site_id]
        .controllers
        .iter()
        .filter(|c| {
            matches!(
                c.output,
                nightscape_core::model::Output::Modbus {
                    fade_by: nightscape_core::model::FadeBy::Controller,
                    ..
                }
            )
        })
        .map(|c| c.id.clone())
        .collect();
    assert!(!fading.is_empty());
    let (sim, clock, sim_stop) = start_sim_with(&lib, &[site], None).await;
    clock.advance(Duration::from_millis((EVENING - clock.now_ms()) as u64));
    let (_obs, mut seen) = observer(&prefix).await;
    let server = publisher().await;
    let plan_bytes = signed_plan(&sources, &lib, site, gw, 1, 0);
    publish(&server, &prefix, gw, Topic::Plan, plan_bytes.clone()).await;
    let shutdown = CancellationToken::new();
    let h = start(
        setup(
            config(gw, &temp_dir("ctlfade"), &prefix, 1883),
            Some(&sim.endpoints),
            true,
        ),
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        ack_of(&mut seen, &prefix, gw, "1").await.result,
        AckResult::Applied
    );
    let shown = || sim.state.sites[&site_id].channels(sim.state.clock.as_ref());
    let before = expected(&plan_bytes, gw, EVENING, &[]);
    wait_until("the evening look", || shown() == before).await;

    // Another scene by override: the cue's fade goes to the dimmers' fade register and the
    // target levels are written once; the gateway does not fade them frame by frame.
    let scene = lib
        .scenes_of(&site_id)
        .map(|s| s.id.clone())
        .find(|s| {
            Some(s)
                != h.status
                    .borrow()
                    .cue
                    .as_ref()
                    .and_then(|c| c.scene.as_ref())
        })
        .unwrap();
    let fade = lib.scenes[&scene].fade;
    assert!(
        fade >= Duration::from_secs(1),
        "{scene} fades over {fade:?}"
    );
    let entry = OverrideEntry {
        id: "show".into(),
        kind: OverrideEntryKind::Scene,
        scene: Some(scene.clone()),
        brightness_pct: None,
        from_ms: EVENING - 1000,
        until_ms: Some(EVENING + 3_600_000),
        by: "operator".into(),
        reason: "test".into(),
    };
    let device = |id: &nightscape_core::ControllerId| {
        let c = sim.state.sites[&site_id]
            .controllers
            .iter()
            .find(|c| &c.id == id)
            .unwrap();
        c.with_device(|d| match d {
            firmware_sim::state::Device::Modbus(m) => m.view(Duration::ZERO),
            firmware_sim::state::Device::Dmx(_) => unreachable!("{id} is a Modbus controller"),
        })
    };
    let levels_before: std::collections::BTreeMap<_, _> = fading
        .iter()
        .map(|id| (id.clone(), device(id).fading_to))
        .collect();
    let overrides = signed_overrides(gw, 1, vec![entry]);
    publish(&server, &prefix, gw, Topic::Overrides, overrides.clone()).await;
    assert_eq!(
        ack_of(&mut seen, &prefix, gw, "1").await.result,
        AckResult::Applied
    );
    // The driver writes the fade register first, then the levels; the devices' fades start
    // when the levels arrive, so both must be there before the clock moves.
    wait_until("the fade register and the new levels set", || {
        fading.iter().all(|id| {
            let d = device(id);
            d.fade_ms == fade.as_millis() as u64 && d.fading_to != levels_before[id]
        })
    })
    .await;
    // The virtual clock has not moved: the devices are at the start of their own fade, and
    // the gateway wrote the target once (no frame-by-frame writes while nothing moves).
    let accepted = || -> u64 {
        sim.state.sites[&site_id]
            .controllers
            .iter()
            .filter(|c| fading.contains(&c.id))
            .map(|c| c.counters.view().accepted)
            .sum()
    };
    let writes = accepted();
    // Through the fade on the virtual clock, in steps: the devices fade on their own.
    for _ in 0..10 {
        clock.advance(fade / 10);
        let frames = h.status.borrow().frames;
        wait_status(&h, "frames", |s| s.frames > frames + 2).await;
    }
    clock.advance(Duration::from_millis(100));
    let after_fade = expected(
        &plan_bytes,
        gw,
        EVENING + fade.as_millis() as i64 + 200,
        &overrides,
    );
    wait_until("the override's look after the fade", || {
        shown() == after_fade
    })
    .await;
    // Polls only (status, power, uptime every 2 s), no level writes during the fade.
    let polls_at_most = 3 * 2 * fading.len() as u64;
    assert!(
        accepted() - writes <= polls_at_most,
        "{} requests during the fade",
        accepted() - writes
    );
    stop(h, &shutdown).await;
    clear(&server, &prefix, &[gw]).await;
    sim_stop.cancel();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA and a broker certificate for 127.0.0.1 signed by it, made with the openssl tool.
fn certificates(dir: &Path, name: &str) -> std::path::PathBuf {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ca = format!("{name}-ca");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &format!("{ca}.key"),
        "-out",
        &format!("{ca}.pem"),
        "-days",
        "2",
        "-subj",
        &format!("/CN={ca}"),
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &format!("{name}.key"),
        "-out",
        &format!("{name}.csr"),
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName = IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &format!("{name}.csr"),
        "-CA",
        &format!("{ca}.pem"),
        "-CAkey",
        &format!("{ca}.key"),
        "-CAcreateserial",
        "-out",
        &format!("{name}.pem"),
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    // Mosquitto started as root reads its files as its own user.
    use std::os::unix::fs::PermissionsExt;
    for f in [
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("{ca}.pem"),
    ] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    dir.join(format!("{ca}.pem"))
}

#[tokio::test]
async fn the_broker_is_reached_over_tls_and_a_wrong_ca_is_refused() {
    let sources = shipped_library();
    let lib = check(&sources).library;
    // The town office's one controller takes DMX over MQTT: nothing but the broker is
    // reached, over TLS.
    let (site, gw) = ("ganggyeong-office", "office-gw");
    let dir = temp_dir("tls");
    let ca = certificates(&dir, "broker");
    let other_ca = certificates(&dir, "stranger");
    let (plain, tls) = (free_port(), free_port());
    let _broker = PrivateBroker::with(
        plain,
        &dir,
        &format!(
            "listener {tls} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            ca.display(),
            dir.join("broker.pem").display(),
            dir.join("broker.key").display()
        ),
    );
    let prefix = prefix("tls");
    let (_obs, mut seen) = crate::agent::observer_on(&prefix, plain).await;
    let mut o = MqttOptions::new(
        format!("srv-tls-{}", std::process::id()),
        "127.0.0.1",
        plain,
    );
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (server, mut events) = AsyncClient::new(o, 64);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    publish(
        &server,
        &prefix,
        gw,
        Topic::Plan,
        signed_plan(&sources, &lib, site, gw, 1, 0),
    )
    .await;

    // The right CA: connected over TLS, the plan arrives, the ack goes out.
    let clock = Arc::new(VirtualClock::new(EVENING));
    let shutdown = CancellationToken::new();
    let mut s = setup(config(gw, &temp_dir("tls-gw"), &prefix, tls), None, true);
    s.ca = Some(std::fs::read(&ca).unwrap());
    s.config.mqtt.ca_file = Some(ca.clone());
    let h = start(s, clock.clone() as Arc<dyn Clock>, shutdown.clone())
        .await
        .unwrap();
    let ack = ack_of(&mut seen, &prefix, gw, "1").await;
    assert_eq!(ack.result, AckResult::Applied, "{ack:?}");
    assert!(h.status.borrow().connected);
    stop(h, &shutdown).await;

    // A CA the broker's certificate does not chain to: never connected.
    let shutdown = CancellationToken::new();
    let mut s = setup(config(gw, &temp_dir("tls-gw"), &prefix, tls), None, true);
    s.ca = Some(std::fs::read(&other_ca).unwrap());
    s.config.mqtt.ca_file = Some(other_ca);
    let h = start(s, clock as Arc<dyn Clock>, shutdown.clone())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!h.status.borrow().connected);
    stop(h, &shutdown).await;
}

#[tokio::test]
async fn a_plan_waits_for_its_effective_time_also_across_a_restart() {
    let sources = shipped_library();
    let lib = check(&sources).library;
    let prefix = prefix("effective");
    let (site, gw) = ("nonsan-city-hall", "cityhall-gw");
    let (sim, clock, sim_stop) = start_sim_with(&lib, &[site], None).await;
    clock.advance(Duration::from_millis((EVENING - clock.now_ms()) as u64));
    let (_obs, mut seen) = observer(&prefix).await;
    let server = publisher().await;
    let dir = temp_dir("effective");
    publish(
        &server,
        &prefix,
        gw,
        Topic::Plan,
        signed_plan(&sources, &lib, site, gw, 1, 0),
    )
    .await;
    let shutdown = CancellationToken::new();
    let h = start(
        setup(config(gw, &dir, &prefix, 1883), Some(&sim.endpoints), true),
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        ack_of(&mut seen, &prefix, gw, "1").await.result,
        AckResult::Applied
    );
    // Version 2 takes effect in a minute: accepted and kept, version 1 plays meanwhile.
    let from = EVENING + 60_000;
    publish(
        &server,
        &prefix,
        gw,
        Topic::Plan,
        signed_plan(&sources, &lib, site, gw, 2, from),
    )
    .await;
    let ack = ack_of(&mut seen, &prefix, gw, "2").await;
    assert_eq!(ack.result, AckResult::Applied);
    assert!(ack.reason.unwrap_or_default().contains("in effect from"));
    let status = wait_status(&h, "pending", |s| s.pending_version == Some(2)).await;
    assert_eq!(status.plan_version, Some(1));
    stop(h, &shutdown).await;

    // A restart before then, without network: still version 1, version 2 waiting.
    let shutdown = CancellationToken::new();
    let h = start(
        setup(config(gw, &dir, &prefix, 1), Some(&sim.endpoints), false),
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .await
    .unwrap();
    let status = wait_status(&h, "frames", |s| s.frames > 2).await;
    assert_eq!(
        (status.plan_version, status.pending_version),
        (Some(1), Some(2))
    );
    clock.advance(Duration::from_millis(59_000));
    let status = wait_status(&h, "frames", |s| s.frames > status.frames + 2).await;
    assert_eq!(status.plan_version, Some(1), "not a moment early");
    clock.advance(Duration::from_millis(1_000));
    let status = wait_status(&h, "version 2", |s| s.plan_version == Some(2)).await;
    assert_eq!(status.pending_version, None);
    stop(h, &shutdown).await;
    clear(&server, &prefix, &[gw]).await;
    sim_stop.cancel();
}

#[tokio::test]
async fn a_switch_on_that_draws_no_power_opens_a_did_not_light_fault() {
    let sources = shipped_library();
    let lib = check(&sources).library;
    let prefix = prefix("dark");
    // The council's ns-led-v1 controller has a power meter.
    let (site, gw) = ("nonsan-council", "council-gw");
    let site_id: SiteId = site.parse().unwrap();
    let controller = lib.sites[&site_id].controllers[0].id.clone();
    let (sim, clock, sim_stop) = start_sim_with(&lib, &[site], None).await;
    clock.advance(Duration::from_millis((EVENING - clock.now_ms()) as u64));
    // The meter reads nothing: the lamps are out although the levels are written.
    sim.state
        .apply(&Fault {
            controller: controller.clone(),
            kind: FaultKind::PowerDrift { factor: 0.01 },
        })
        .unwrap();
    let (_obs, mut seen) = observer(&prefix).await;
    let server = publisher().await;
    let bytes = signed_plan(&sources, &lib, site, gw, 1, 0);
    assert!(
        expected(&bytes, gw, EVENING, &[]).iter().any(|&v| v > 0),
        "lit at the evening"
    );
    publish(&server, &prefix, gw, Topic::Plan, bytes).await;
    let shutdown = CancellationToken::new();
    let h = start(
        setup(
            config(gw, &temp_dir("dark"), &prefix, 1883),
            Some(&sim.endpoints),
            true,
        ),
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .await
    .unwrap();
    let event_topic = wire::topic(&prefix, &gw.parse().unwrap(), Topic::Event);
    // The check runs 15 s after the switch-on (real time: lamps take a moment to strike).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    let e = loop {
        let (topic, bytes) = tokio::time::timeout_at(deadline, seen.recv())
            .await
            .expect("a did-not-light fault within 25 s")
            .unwrap();
        if topic != event_topic {
            continue;
        }
        let e: Event = wire::decode(&bytes).unwrap();
        if e.kind == EventKind::Fault && e.message.starts_with("did not light") {
            break e;
        }
    };
    assert_eq!(e.controller, Some(controller));
    assert_eq!(e.severity, Severity::Fault);
    stop(h, &shutdown).await;
    clear(&server, &prefix, &[gw]).await;
    sim_stop.cancel();
}

#[tokio::test]
async fn an_art_net_node_that_stops_answering_polls_has_a_fault() {
    let sources = shipped_library();
    let lib = check(&sources).library;
    let prefix = prefix("artpoll");
    let (site, gw) = ("nonsan-city-hall", "cityhall-gw");
    let site_id: SiteId = site.parse().unwrap();
    let node = lib.sites[&site_id].controllers[0].id.clone();
    let (sim, clock, sim_stop) = start_sim_with(&lib, &[site], None).await;
    clock.advance(Duration::from_millis((EVENING - clock.now_ms()) as u64));
    let (_obs, mut seen) = observer(&prefix).await;
    let server = publisher().await;
    publish(
        &server,
        &prefix,
        gw,
        Topic::Plan,
        signed_plan(&sources, &lib, site, gw, 1, 0),
    )
    .await;
    let shutdown = CancellationToken::new();
    let h = start(
        setup(
            config(gw, &temp_dir("artpoll"), &prefix, 1883),
            Some(&sim.endpoints),
            true,
        ),
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .await
    .unwrap();
    // Polled every 300 ms here (10 s on a site): the node answers and shows as reachable.
    wait_status(&h, "the node reachable", |s| {
        s.controllers
            .iter()
            .any(|c| c.controller == node && c.reachable)
    })
    .await;
    sim.state
        .apply(&Fault {
            controller: node.clone(),
            kind: FaultKind::Offline,
        })
        .unwrap();
    let event_topic = wire::topic(&prefix, &gw.parse().unwrap(), Topic::Event);
    let about = |text: &'static str| {
        let node = node.clone();
        move |b: &[u8]| {
            wire::decode::<Event>(b).is_ok_and(|e| {
                e.kind == EventKind::Fault
                    && e.controller.as_ref() == Some(&node)
                    && e.message.contains(text)
            })
        }
    };
    next_on(&mut seen, &event_topic, about("no ArtPollReply")).await;
    sim.state.clear(Some(&node));
    next_on(&mut seen, &event_topic, about("answers ArtPoll again")).await;
    stop(h, &shutdown).await;
    clear(&server, &prefix, &[gw]).await;
    sim_stop.cancel();
}

/// Waits (up to 30 s) until every site's simulated output is what its plan says. A
/// controller that fades itself runs its fade on the clock from when its driver's write
/// arrives, so after each half second still wrong the clock moves on ten seconds.
async fn settle(
    city: &[Offline],
    sim: &firmware_sim::Sim,
    clock: &VirtualClock,
) -> Result<(), String> {
    let mut wrong = Vec::new();
    for i in 1..=3000 {
        let t = clock.now_ms();
        wrong = city
            .iter()
            .filter(|g| {
                sim.state.sites[&g.site].channels(sim.state.clock.as_ref()) != g.expected_at(t)
            })
            .map(|g| g.gw.clone())
            .collect();
        if wrong.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        if i % 50 == 0 {
            clock.advance(Duration::from_millis(10_000));
        }
    }
    Err(format!("not as planned: {wrong:?}"))
}

/// A night of flaky Modbus controllers: every Modbus controller of the city, all at once,
/// gets slow answers, lost requests, exception answers, a power loss and a reboot, one
/// after the other, while the night goes on (the clock moves 80 minutes at each). Faults
/// open where they should (an unreachable controller) and every one opened is closed again;
/// after each, every site's simulated output is what the plan says; and the same gateways'
/// frame loops, which feed their sACN and Art-Net controllers, keep their rate throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_night_of_flaky_modbus_controllers() {
    use nightscape_core::model::Output;

    let sources = shipped_library();
    let lib = check(&sources).library;
    let flaky_sites: Vec<&nightscape_core::Site> = lib
        .sites
        .values()
        .filter(|s| {
            s.controllers
                .iter()
                .any(|c| matches!(c.output, Output::Modbus { .. }))
        })
        .collect();
    let names: Vec<&str> = flaky_sites.iter().map(|s| s.id.as_str()).collect();
    let (sim, clock, sim_stop) = start_sim_with(&lib, &names, None).await;
    clock.advance(Duration::from_millis((EVENING - clock.now_ms()) as u64));
    let dead_port = free_port();
    let shutdown = CancellationToken::new();
    let mut city = Vec::new();
    for site in &flaky_sites {
        city.push(start_offline(&sources, &lib, site, &sim, &clock, dead_port, &shutdown).await);
    }
    let modbus: Vec<(usize, nightscape_core::ControllerId)> = flaky_sites
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            s.controllers
                .iter()
                .filter(|c| matches!(c.output, Output::Modbus { .. }))
                .map(move |c| (i, c.id.clone()))
        })
        .collect();
    let dmx_sites: Vec<usize> = flaky_sites
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            s.controllers
                .iter()
                .any(|c| matches!(c.output, Output::Sacn { .. } | Output::ArtNet { .. }))
        })
        .map(|(i, _)| i)
        .collect();
    assert!(
        !dmx_sites.is_empty(),
        "some of these gateways also send sACN or Art-Net"
    );
    settle(&city, &sim, &clock).await.unwrap();

    let phases = [
        ("slow answers (400 ms)", FaultKind::Latency { ms: 400 }),
        ("a third of requests lost", FaultKind::Drop { share: 0.3 }),
        (
            "half the requests answered with exception 4",
            FaultKind::Exception {
                code: 4,
                share: 0.5,
            },
        ),
        ("power lost", FaultKind::Offline),
        ("a reboot", FaultKind::Reboot { down_ms: 0 }),
    ];
    let mut report = Vec::new();
    for (name, kind) in phases {
        clock.advance(Duration::from_millis(80 * 60_000));
        let frames_before: Vec<u64> = city.iter().map(|g| g.status.borrow().frames).collect();
        let began = std::time::Instant::now();
        for (_, c) in &modbus {
            sim.state
                .apply(&Fault {
                    controller: c.clone(),
                    kind: kind.clone(),
                })
                .unwrap();
        }
        // Six seconds of it, looking at the gateways' view of their controllers. A power
        // loss lasts until every controller has been unreachable long enough for its fault
        // to open (3 s after it is seen; seeing it takes a request's timeout, longer on a
        // busy machine), at most 30 s.
        let mut ever_unreachable = std::collections::BTreeMap::new();
        let fault_time = Duration::from_secs(4);
        loop {
            for g in &city {
                for h in &g.status.borrow().controllers {
                    if !h.reachable {
                        ever_unreachable
                            .entry(h.controller.clone())
                            .or_insert_with(|| {
                                eprintln!(
                                    "{name}: unreachable after {:?}: {h:?}",
                                    began.elapsed(),
                                );
                                std::time::Instant::now()
                            });
                    }
                }
            }
            let faults_due = matches!(kind, FaultKind::Offline)
                && (ever_unreachable.len() < modbus.len()
                    || ever_unreachable.values().any(|t| t.elapsed() < fault_time));
            if began.elapsed() >= Duration::from_secs(6)
                && (!faults_due || began.elapsed() >= Duration::from_secs(30))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let elapsed = began.elapsed().as_secs_f64();
        let rates: Vec<f64> = dmx_sites
            .iter()
            .map(|&i| (city[i].status.borrow().frames - frames_before[i]) as f64 / elapsed)
            .collect();
        sim.state.clear(None);
        let restored = settle(&city, &sim, &clock).await;
        let restored_ok = restored.is_ok();
        let lowest = rates.iter().copied().fold(f64::INFINITY, f64::min);
        report.push(format!(
            "{name}: {} of {} controllers seen unreachable; output restored: {restored_ok}; frames per second of the sACN/Art-Net gateways at least {lowest:.1}",
            ever_unreachable.len(),
            modbus.len()
        ));
        if let Err(e) = restored {
            panic!("{name}: after it, {e}");
        }
        assert!(
            lowest >= 40.0,
            "{name}: a gateway's frame loop fell to {lowest:.1} Hz"
        );
        match kind {
            FaultKind::Latency { .. } => assert!(
                ever_unreachable.is_empty(),
                "{name}: slow answers within the deadline made {:?} unreachable",
                ever_unreachable.keys().collect::<Vec<_>>()
            ),
            FaultKind::Offline => assert_eq!(
                ever_unreachable.len(),
                modbus.len(),
                "{name}: every controller is seen unreachable"
            ),
            _ => {}
        }
    }
    // Every fault opened was closed again; each controller had its power-loss fault, and
    // each reboot was seen.
    for g in city {
        stop(g.handle, &shutdown).await;
        let events = journal(&g.dir);
        let mut open = std::collections::BTreeMap::new();
        for e in events.iter().filter(|e| e.kind == EventKind::Fault) {
            if let (Some(c), Some(f)) = (&e.controller, e.fault) {
                *open.entry((c.clone(), f.code.as_str())).or_insert(0i32) +=
                    if f.open { 1 } else { -1 };
            }
        }
        let left: Vec<_> = open.iter().filter(|(_, n)| **n != 0).collect();
        assert!(
            left.is_empty(),
            "{}: faults left open or closed twice: {left:?}",
            g.gw
        );
        for (_, c) in modbus.iter().filter(|(i, _)| flaky_sites[*i].id == g.site) {
            let about = |text: &str| {
                events
                    .iter()
                    .any(|e| e.controller.as_ref() == Some(c) && e.message.contains(text))
            };
            assert!(about("unreachable"), "{c}: no unreachable fault");
            assert!(about("reachable again"), "{c}: the fault did not close");
            // A reboot is seen by the uptime it reads; a device without one is rewritten
            // on its refresh (its output came back above) but cannot be told to have rebooted.
            let site = &lib.sites[&g.site];
            let has_uptime = site.controllers.iter().any(|x| {
                &x.id == c
                    && matches!(&x.output, Output::Modbus { profile, .. }
                        if lib.profiles.get(profile).is_some_and(|p| p.uptime.is_some()))
            });
            if has_uptime {
                assert!(about("restarted"), "{c}: the reboot was not seen");
            }
        }
    }
    println!(
        "a night of flaky Modbus controllers ({} controllers at {} sites):\n  {}",
        modbus.len(),
        flaky_sites.len(),
        report.join("\n  ")
    );
    sim_stop.cancel();
}

#[tokio::test]
async fn an_oversized_message_is_dropped_and_the_gateway_stays_connected() {
    // Seen: a 2 MiB payload on a gateway's plan topic put it in a reconnect loop every
    // ~250 ms for as long as the broker kept the message — the persistent session sent it
    // again at each reconnect, a retained one came back at each subscribe — and plans,
    // commands and acks were lost meanwhile. On the machine's stock Mosquitto: a retained
    // 2 MiB message at QoS 0 waiting on the overrides topic when the gateway subscribes, and
    // a 2 MiB message at QoS 1 on its plan topic once it is connected; then a valid plan.
    let sources = shipped_library();
    let lib = check(&sources).library;
    let prefix = prefix("oversized");
    let (site, gw) = ("nonsan-city-hall", "cityhall-gw");
    let gw_id: GatewayId = gw.parse().unwrap();
    let (sim, clock, sim_stop) = start_sim_with(&lib, &[site], None).await;
    clock.advance(Duration::from_millis((EVENING - clock.now_ms()) as u64));
    let (_obs, mut seen) = crate::agent::observer_with(&prefix, 1883, 8 << 20).await;
    let big = {
        let mut o = MqttOptions::new(format!("big-{}", std::process::id()), "127.0.0.1", 1883);
        o.set_max_packet_size(8 << 20, 8 << 20);
        let (client, mut events) = AsyncClient::new(o, 16);
        tokio::spawn(async move { while events.poll().await.is_ok() {} });
        client
    };
    let two_mib = vec![b'x'; 2 << 20];
    big.publish(
        wire::topic(&prefix, &gw_id, Topic::Overrides),
        QoS::AtMostOnce,
        true,
        two_mib.clone(),
    )
    .await
    .unwrap();
    let overrides_topic = wire::topic(&prefix, &gw_id, Topic::Overrides);
    next_on(&mut seen, &overrides_topic, |b| b.len() == two_mib.len()).await;

    let shutdown = CancellationToken::new();
    let dir = temp_dir("oversized");
    let h = start(
        setup(config(gw, &dir, &prefix, 1883), Some(&sim.endpoints), true),
        clock.clone() as Arc<dyn Clock>,
        shutdown.clone(),
    )
    .await
    .unwrap();
    let event_topic = wire::topic(&prefix, &gw_id, Topic::Event);
    let dropped_on = |topic: &str| {
        let topic = topic.to_owned();
        move |b: &[u8]| {
            wire::decode::<Event>(b).is_ok_and(|e| {
                e.message.contains(&topic)
                    && e.message
                        .contains(&format!("of {} bytes", (2 << 20) + 7 + topic.len()))
            })
        }
    };
    next_on(&mut seen, &event_topic, dropped_on(&overrides_topic)).await;
    wait_status(&h, "connected", |s| s.connected).await;

    let plan_topic = wire::topic(&prefix, &gw_id, Topic::Plan);
    big.publish(&plan_topic, QoS::AtLeastOnce, false, two_mib.clone())
        .await
        .unwrap();
    next_on(&mut seen, &event_topic, |b| {
        wire::decode::<Event>(b).is_ok_and(|e| {
            e.message.contains(&plan_topic) && e.message.contains("over the 1048576-byte limit")
        })
    })
    .await;
    // Acknowledged at the protocol level and the connection kept: a valid plan is applied
    // within 5 s.
    let server = publisher().await;
    let sent = std::time::Instant::now();
    publish(
        &server,
        &prefix,
        gw,
        Topic::Plan,
        signed_plan(&sources, &lib, site, gw, 3, 0),
    )
    .await;
    let ack = tokio::time::timeout(Duration::from_secs(5), ack_of(&mut seen, &prefix, gw, "3"))
        .await
        .expect("the plan acked within 5 s");
    assert_eq!(ack.result, AckResult::Applied);
    println!(
        "plan applied {:?} after the oversized messages",
        sent.elapsed()
    );
    let status = h.status.borrow().clone();
    assert!(status.connected);
    // Each was dropped once: the QoS 1 one was acknowledged, so the broker did not send it
    // again, and there was no reconnect to bring the retained one back.
    assert_eq!(status.oversized, 2, "{status:?}");
    stop(h, &shutdown).await;
    clear(&server, &prefix, &[gw]).await;
    sim_stop.cancel();
}
