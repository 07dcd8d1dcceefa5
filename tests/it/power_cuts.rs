//! Power cuts: `kill -9` of a real `nightscape gateway run` process, again and again, at
//! random moments while the server's documents arrive and are written (a burst of plans
//! and overrides documents, the kill somewhere inside it), against the simulator with
//! City Hall's real drivers. After every cut:
//! - the data directory, read back as the gateway reads it at start, holds a complete,
//!   verified plan and overrides document, each one the server published, and never older
//!   than the last one the gateway acknowledged (an ack means it is on disk);
//! - the restarted process catches up: it plays the latest plan and overrides document
//!   and the cue they say;
//! - every fifth cut falls while a latched blackout is in force (plans still arriving):
//!   the simulated fixtures stay dark from the restart on, not one frame lit.
//!
//! `NIGHTSCAPE_POWER_CUTS` sets the number of cuts (the suite's default is 25; the
//! documented run is 1,000).
// Helpers outside #[test] functions too: a failed call is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nightscape_core::GatewayId;
use nightscape_core::plan::{
    self, OverrideEntry, OverrideEntryKind, OverridesDocument, Plan, Signed,
};
use nightscape_core::wire::{self, Ack, AckResult, State, Topic};
use nightscape_gateway::store::Store;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

use crate::gateway_cli::sim_rig;
use crate::system::Reaped;

const SITE: &str = "nonsan-city-hall";
const GW: &str = "cityhall-gw";
const SCENES: [&str; 2] = ["cityhall-blue-hour", "cityhall-civic-white"];

/// A small deterministic generator (xorshift), seeded per run and printed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// What the test published, in order, and what the gateway acknowledged.
#[derive(Default)]
struct Ledger {
    plans: Vec<u64>,
    /// Overrides versions with the scene they play (`None`: a blackout).
    overrides: Vec<(u64, Option<&'static str>)>,
    acked_plan: u64,
    acked_overrides: u64,
}

/// The switch that stops the gateway's saves between their two renames (see
/// `nightscape_gateway::store::TEST_PAUSE_BETWEEN_RENAMES`), beside the configuration.
fn pause_switch(config: &Path) -> std::path::PathBuf {
    config.with_file_name("pause-between-renames")
}

fn spawn_gateway(config: &Path, log: &Path) -> Reaped {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_nightscape"))
        .args(["gateway", "run", "--config"])
        .arg(config)
        .env(
            nightscape_gateway::store::TEST_PAUSE_BETWEEN_RENAMES,
            pause_switch(config),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(Reaped)
        .unwrap()
}

/// A finished process to stand in for the gateway while a watcher thread holds it.
fn placeholder() -> Reaped {
    let mut c = Command::new("true").spawn().unwrap();
    let _ = c.wait();
    Reaped(c)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

#[test]
fn a_thousand_power_cuts_leave_a_verified_document_and_a_dark_blackout() {
    let cuts: usize = std::env::var("NIGHTSCAPE_POWER_CUTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(25);
    let seed = std::env::var("NIGHTSCAPE_POWER_CUTS_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| (u64::from(std::process::id()) * 2_654_435_761) | 1);
    let mut rng = Rng(seed);
    let rig = sim_rig(SITE, GW, "power-cuts", 21);
    let gw: GatewayId = GW.parse().unwrap();
    let prefix = format!("cuts-{}/", std::process::id());
    let config = rig.dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "gateway = \"{GW}\"\ndata_dir = \"{}\"\ntrusted_keys = [\"{}\"]\nsafe_state = \"hold\"\nloopback_only = true\nendpoints = \"{}\"\n\n[mqtt]\nhost = \"127.0.0.1\"\nport = 1883\ntopic_prefix = \"{prefix}\"\n",
            rig.data.display(),
            rig.dir.join("city.pub").display(),
            rig.dir.join("endpoints.toml").display()
        ),
    )
    .unwrap();
    let log = rig.dir.join("gateway.log");
    let trusted = [rig.key.verifying_key()];
    let base: Signed<Plan> = serde_json::from_slice(&rig.plan).unwrap();
    let now = rig.now;
    let plan_bytes = |version: u64| {
        let mut p = base.document.clone();
        p.version = version;
        serde_json::to_vec(&plan::sign(p, &rig.key)).unwrap()
    };
    let overrides_bytes = |version: u64, scene: Option<&str>| {
        let entry = |id: String, kind, scene: Option<&str>| OverrideEntry {
            id,
            kind,
            scene: scene.map(|s| s.parse().unwrap()),
            brightness_pct: None,
            from_ms: now - 60_000,
            // Only a blackout is latched (open-ended).
            until_ms: (kind != OverrideEntryKind::Blackout).then_some(now + 86_400_000),
            by: "test".into(),
            reason: "power cuts".into(),
        };
        let overrides = match scene {
            Some(s) => vec![
                entry(format!("cut-{version}"), OverrideEntryKind::Scene, Some(s)),
                // Whatever the hour: past the curfew, only an exception lights.
                entry(
                    format!("cut-{version}-curfew"),
                    OverrideEntryKind::CurfewException,
                    None,
                ),
            ],
            None => vec![entry(
                format!("cut-{version}"),
                OverrideEntryKind::Blackout,
                None,
            )],
        };
        let doc = OverridesDocument {
            schema: plan::OVERRIDES_SCHEMA,
            gateway: GW.parse().unwrap(),
            version,
            issued_at_ms: now - 60_000,
            overrides,
        };
        serde_json::to_vec(&plan::sign(doc, &rig.key)).unwrap()
    };

    // The server's side: a client publishing retained documents and reading acks and state.
    let mut options = MqttOptions::new(
        format!("cuts-server-{}", std::process::id()),
        "127.0.0.1",
        1883,
    );
    options.set_max_packet_size(1 << 22, 1 << 22);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<(String, Vec<u8>)>();
    rig.runtime.spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = seen_tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    let topic = |leaf| wire::topic(&prefix, &gw, leaf);
    rig.runtime.block_on(async {
        for leaf in [Topic::Ack, Topic::State] {
            client
                .subscribe(topic(leaf), QoS::AtLeastOnce)
                .await
                .unwrap();
        }
    });
    let publish = |leaf, bytes: Vec<u8>| {
        rig.runtime
            .block_on(client.publish(topic(leaf), QoS::AtLeastOnce, true, bytes))
            .unwrap();
    };
    let mut ledger = Ledger::default();
    let mut last_state: Option<State> = None;
    // Takes what arrived: acks move the acknowledged versions; the latest state is kept.
    let mut drain = |ledger: &mut Ledger, last_state: &mut Option<State>| {
        while let Ok((t, body)) = seen.try_recv() {
            if t == topic(Topic::Ack) {
                let ack: Ack = wire::decode(&body).unwrap();
                // A document whose PUBACK a cut lost comes again after the restart, behind a
                // newer one already on disk: refusing it as not newer is right (seen in CI).
                let stale = ack
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.contains("not newer than"));
                assert!(ack.result != AckResult::Rejected || stale, "{ack:?}");
                let v: u64 = ack.id.parse().unwrap_or(0);
                match ack.about {
                    wire::About::Plan => ledger.acked_plan = ledger.acked_plan.max(v),
                    wire::About::Overrides => {
                        ledger.acked_overrides = ledger.acked_overrides.max(v);
                    }
                    wire::About::Cmd => {}
                }
            } else if t == topic(Topic::State) {
                *last_state = wire::decode(&body).ok();
            }
        }
    };
    let shown = || rig.sim.state.sites[&rig.site_id].channels(rig.sim.state.clock.as_ref());
    let mut version = 1u64;
    let mut next_version = || {
        version += 1;
        version
    };

    // The first documents, then the gateway.
    let v = next_version();
    publish(Topic::Plan, plan_bytes(v));
    ledger.plans.push(v);
    let v = next_version();
    publish(Topic::Overrides, overrides_bytes(v, Some(SCENES[0])));
    ledger.overrides.push((v, Some(SCENES[0])));
    let mut gateway = spawn_gateway(&config, &log);

    let (mut half_written, mut fell_back, mut dark_checks, mut dark_samples) = (0, 0, 0, 0);
    let (mut cut_writing, mut cut_renaming) = (0, 0);
    // Boots that found no complete, verified plan or overrides document to play.
    let mut blank_or_corrupt = 0;
    // Cuts made on purpose between the two renames, and those whose boot fell back to the
    // previous copy (all of them, or the fall-back path is broken).
    let (mut paused_cuts, mut paused_fell_back) = (0, 0);
    let mut catch_up = Vec::new();
    let started = Instant::now();
    for cut in 0..cuts {
        let blackout_cycle = cut % 5 == 4;
        // The gateway has caught up with everything published before the burst.
        let caught_up = Instant::now();
        loop {
            drain(&mut ledger, &mut last_state);
            if ledger.acked_plan == *ledger.plans.last().unwrap()
                && ledger.acked_overrides == ledger.overrides.last().unwrap().0
            {
                break;
            }
            assert!(
                caught_up.elapsed() < Duration::from_secs(20),
                "cut {cut}: the gateway did not acknowledge the latest documents"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        if blackout_cycle {
            // A latched blackout in force (acknowledged: on disk) and dark on the fixtures.
            let v = next_version();
            publish(Topic::Overrides, overrides_bytes(v, None));
            ledger.overrides.push((v, None));
            let t = Instant::now();
            loop {
                drain(&mut ledger, &mut last_state);
                if ledger.acked_overrides == v && shown().iter().all(|&c| c == 0) {
                    break;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(20),
                    "cut {cut}: blackout not dark"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        // A burst of documents with the cut inside it. One cut in three falls a few
        // milliseconds after a document is sent; one in three the instant a temporary
        // copy appears (the document half-written); one in three in the instant between
        // the current copy becoming the previous one and the new one taking its place.
        // Every fifth cut (the third of five) is made on purpose at that instant: the
        // gateway's save stops between its renames and the power goes then.
        let burst = 1 + rng.below(6);
        let kill_after = rng.below(burst);
        let paused = cut % 5 == 2;
        let moment = if paused { 3 } else { rng.below(3) };
        let switch = pause_switch(&config);
        let reached = switch.with_file_name("pause-between-renames.reached");
        if paused {
            std::fs::write(&switch, b"").unwrap();
        }
        let watch = (moment > 0).then(|| {
            let data = rig.data.clone();
            let reached = reached.clone();
            let mut child = std::mem::replace(&mut gateway, placeholder());
            std::thread::spawn(move || {
                let t = Instant::now();
                let limit = Duration::from_millis(if moment == 3 { 10_000 } else { 400 });
                let caught = loop {
                    let hit = moment == 3 && reached.exists()
                        || ["plan", "overrides"].iter().any(|stem| {
                            if moment == 1 {
                                data.join(format!("{stem}.json.tmp")).exists()
                            } else {
                                !data.join(format!("{stem}.json")).exists()
                                    && data.join(format!("{stem}.prev.json")).exists()
                            }
                        });
                    if hit || t.elapsed() > limit {
                        break hit;
                    }
                };
                child.0.kill().unwrap();
                (child, caught)
            })
        });
        for k in 0..burst {
            let v = next_version();
            if blackout_cycle || rng.below(2) == 0 {
                publish(Topic::Plan, plan_bytes(v));
                ledger.plans.push(v);
            } else {
                let scene = SCENES[rng.below(2) as usize];
                publish(Topic::Overrides, overrides_bytes(v, Some(scene)));
                ledger.overrides.push((v, Some(scene)));
            }
            std::thread::sleep(Duration::from_micros(rng.below(6_000)));
            if k == kill_after && watch.is_none() {
                gateway.0.kill().unwrap();
            }
        }
        if let Some(watch) = watch {
            let (child, caught) = watch.join().unwrap();
            gateway = child;
            assert!(
                caught || !paused,
                "cut {cut}: the save never stopped between its renames"
            );
            if caught {
                *[&mut cut_writing, &mut cut_renaming, &mut paused_cuts][moment as usize - 1] += 1;
            }
        }
        gateway.0.wait().unwrap();
        let _ = std::fs::remove_file(&switch);
        let _ = std::fs::remove_file(&reached);
        // Acks sent before the cut are still on their way.
        std::thread::sleep(Duration::from_millis(30));
        drain(&mut ledger, &mut last_state);

        // The data directory as the gateway reads it at start.
        half_written += std::fs::read_dir(&rig.data)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            })
            .count();
        let store = Store::open(&rig.data).unwrap();
        let loaded = store.load_plan(&trusted, &gw);
        let loaded_o = store.load_overrides(&trusted, &gw);
        blank_or_corrupt += usize::from(loaded.plan.is_none() || loaded_o.overrides.is_none());
        let (p, _, _) = loaded
            .plan
            .unwrap_or_else(|| panic!("cut {cut}: no plan on disk: {:?}", loaded.problems));
        let (o, _) = loaded_o
            .overrides
            .unwrap_or_else(|| panic!("cut {cut}: no overrides on disk: {:?}", loaded_o.problems));
        let fell = !loaded.problems.is_empty() || !loaded_o.problems.is_empty();
        fell_back += usize::from(fell);
        if paused {
            assert!(
                fell,
                "cut {cut}: cut between the renames, yet the current copy was there"
            );
            paused_fell_back += 1;
        }
        assert!(
            ledger.plans.contains(&p.version),
            "cut {cut}: plan {}",
            p.version
        );
        assert!(
            p.version >= ledger.acked_plan,
            "cut {cut}: plan {} on disk, {} acknowledged",
            p.version,
            ledger.acked_plan
        );
        assert!(
            ledger.overrides.iter().any(|(v, _)| *v == o.version),
            "cut {cut}: overrides {}",
            o.version
        );
        assert!(
            o.version >= ledger.acked_overrides,
            "cut {cut}: overrides {} on disk, {} acknowledged",
            o.version,
            ledger.acked_overrides
        );

        // The restart: caught up with the latest documents and playing what they say.
        let (want_plan, (want_o, want_scene)) = (
            *ledger.plans.last().unwrap(),
            *ledger.overrides.last().unwrap(),
        );
        last_state = None;
        let restart = Instant::now();
        gateway = spawn_gateway(&config, &log);
        let playing = |s: &State| {
            s.online
                && s.plan_version == Some(want_plan)
                && s.overrides.contains(&format!("cut-{want_o}"))
                && match want_scene {
                    None => s.blackout,
                    Some(scene) => {
                        !s.blackout
                            && s.cue
                                .as_ref()
                                .and_then(|c| c.scene.as_ref())
                                .is_some_and(|c| c.as_str() == scene)
                    }
                }
        };
        let mut settled_at = None;
        loop {
            drain(&mut ledger, &mut last_state);
            if blackout_cycle {
                dark_samples += 1;
                let lit = shown().iter().filter(|&&c| c != 0).count();
                assert_eq!(
                    lit, 0,
                    "cut {cut}: {lit} channels lit under the latched blackout"
                );
            }
            if settled_at.is_none() && last_state.as_ref().is_some_and(playing) {
                settled_at = Some(Instant::now());
                catch_up.push(restart.elapsed());
            }
            // Under a blackout, watch the fixtures a while longer after it settled.
            if settled_at
                .is_some_and(|t| !blackout_cycle || t.elapsed() > Duration::from_millis(300))
            {
                break;
            }
            assert!(
                restart.elapsed() < Duration::from_secs(20),
                "cut {cut}: not caught up after the restart: {last_state:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        dark_checks += usize::from(blackout_cycle);
    }
    drop(gateway);
    rig.runtime.block_on(async {
        for leaf in [Topic::Plan, Topic::Overrides] {
            let _ = client
                .publish(topic(leaf), QoS::AtLeastOnce, true, Vec::new())
                .await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    catch_up.sort();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("panicked"), "the gateway panicked: {log}");
    println!(
        "{cuts} power cuts in {:.0} s (seed {seed}): {} plans and {} overrides documents published; {blank_or_corrupt} blank or corrupt boots; {cut_writing} cuts aimed at a half-written document ({half_written} landed: a temporary copy left behind) and {cut_renaming} at the instant between its renames; {paused_cuts} cut there on purpose; {fell_back} boots fell back to the previous copy ({paused_fell_back} of them the cuts on purpose); restart to caught up p50 {:?}, p99 {:?}, max {:?}; {dark_checks} cuts under a latched blackout, the fixtures dark at all {dark_samples} samples",
        started.elapsed().as_secs_f64(),
        ledger.plans.len(),
        ledger.overrides.len(),
        percentile(&catch_up, 0.5),
        percentile(&catch_up, 0.99),
        catch_up.last().copied().unwrap_or_default(),
    );
    assert_eq!(blank_or_corrupt, 0);
    // The fall-back path ran in every run that had a fifth cut, once per cut on purpose.
    assert_eq!(paused_cuts, (cuts + 2) / 5);
    assert_eq!(paused_fell_back, paused_cuts);
    assert_eq!(catch_up.len(), cuts, "every restart caught up");
    // Documented: p50 73 ms, max 195 ms (1,000 cuts); a catch-up of a second is a
    // regression, not noise.
    let p99 = percentile(&catch_up, 0.99);
    assert!(
        p99 <= Duration::from_secs(1),
        "restart to caught up p99 {p99:?}"
    );
}
