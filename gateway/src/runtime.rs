//! The running gateway: one task tree that plays the plan kept on disk and whatever the
//! broker sends, with or without a network.
//!
//! At start it reads its data directory (the plan, the overrides — a latched blackout among
//! them —, the last trusted wall time, the sACN source id and the undelivered events) and
//! plays at once what should be playing now. Frames are paced on tokio's monotonic clock
//! at the configured rate; the wall time each frame renders comes from the [`Clock`]
//! through the trust rules of [`crate::trust`], so a virtual or scaled clock plays a month
//! of nights at full frame rate. Every frame goes through the executor to the Art-Net and
//! sACN sender, the DMX-over-MQTT publisher and one Modbus driver task per controller; the
//! sender's packets are prepared after one tick and leave at the next, so they go out on
//! the tick whatever rendering cost (one frame of latency, constant).
//!
//! A plan or overrides document from the broker is opened like the one on disk, acked
//! applied or rejected with its reason, kept atomically, and played from its
//! `effective_from`; a command (identify, channel test, resync) is acked, and an expired one
//! is acked `expired`. Whatever changes the output is rendered and sent at once, not at the
//! next frame. Events (cue changes, faults, refused documents, clock steps) go to the broker
//! when it is there and to the on-disk journal when it is not, and are delivered after the
//! next connection. On shutdown the outputs go to the configured safe state.

use std::io;
use std::ops::Range;
use std::sync::Arc;

use std::time::Duration;
use tracing::Instrument;

use ed25519_dalek::VerifyingKey;
use nightscape_core::clock::Clock;
use nightscape_core::endpoints::EndpointMap;
use nightscape_core::model::{Output, StatusBit};
use nightscape_core::plan::{self, OverridesDocument, Plan, Rejection};
use nightscape_core::schedule::Cue;
use nightscape_core::wire::{
    self, About, Ack, AckResult, Action, ActiveCue, Command, ControllerHealth, Event, EventKind,
    FaultChange, FaultCode, PowerSource, Severity, Telemetry, Topic,
};
use nightscape_core::{ControllerId, GatewayId, ShowLibrary};
use rumqttc::AsyncClient;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::agent::{self, Inbound, Outbound};
use crate::config::{Config, SafeState};
use crate::dmx::Sender;
use crate::dmx_mqtt::Publisher;
use crate::executor::Executor;
use crate::guard::{self, Destination, GuardError};
use crate::journal::{self, Journal};
use crate::modbus::{self, Health, Levels};
use crate::store::{Copy, Kind, Store, open_with_any};
use crate::trust::{Note, WallTime};

/// Telemetry is published this often.
pub const TELEMETRY_EVERY: Duration = Duration::from_secs(10);
/// The retained state is published on every change and at least this often.
pub const STATE_EVERY: Duration = Duration::from_secs(60);
/// Controller health is looked at (and journaled events delivered) this often.
const HEALTH_EVERY: Duration = Duration::from_millis(250);
/// Journaled events handed to the broker per health tick.
const DELIVER_PER_TICK: usize = 100;
/// The last trusted wall time is written this often.
const TRUSTED_SAVE_EVERY: Duration = Duration::from_secs(60);
/// Every Modbus request's deadline, and how often status, power and uptime are read.
const MODBUS_DEADLINE: Duration = Duration::from_secs(1);
const MODBUS_POLL: Duration = Duration::from_secs(2);
/// A Modbus controller unreachable this long has a fault opened.
const UNREACHABLE_FAULT_AFTER: Duration = Duration::from_secs(3);
/// Art-Net nodes are polled this often by default; one silent for [`ART_MISSED_FAULT`] polls in a row
/// has a fault opened.
pub const ART_POLL_EVERY: Duration = Duration::from_secs(10);
const ART_MISSED_FAULT: u32 = 3;
/// After a switch-on, measured power is compared with the expected after this long.
const LIT_CHECK_AFTER: Duration = Duration::from_secs(15);
/// Measured below this share of the expected power: "did not light".
const LIT_SHARE: f64 = 0.2;
/// How long a dark safe state waits for the Modbus controllers to take their zeros.
const DARK_WAIT: Duration = Duration::from_secs(2);

/// What the gateway is started with.
#[derive(Debug, Clone)]
pub struct Setup {
    pub config: Config,
    /// Keys that may sign plans and overrides (read from `config.trusted_keys`).
    pub trusted: Vec<VerifyingKey>,
    /// Read from `config.endpoints`.
    pub endpoints: Option<EndpointMap>,
    /// Read from `config.mqtt.password_file`.
    pub password: Option<String>,
    /// Read from `config.mqtt.ca_file` (PEM): TLS to the broker.
    pub ca: Option<Vec<u8>>,
    /// Connect to the broker; without it the gateway plays what it has (`--plan`).
    pub connect: bool,
    /// A signed plan to play first (checked as one from the broker).
    pub plan: Option<Vec<u8>>,
    /// How often Art-Net nodes are polled for their health ([`ART_POLL_EVERY`]).
    pub art_poll_every: Duration,
    /// Drive the plan's controllers. Without, the gateway plays, keeps, acks and reports
    /// as ever but sends nothing and paces its frames by the runtime's timer instead of a
    /// thread of its own: thousands of them fit in one process (the scale proof).
    pub drive: bool,
}

/// What the gateway is doing, for the command line, `up` and tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub plan_version: Option<u64>,
    /// A plan accepted and waiting for its `effective_from`.
    pub pending_version: Option<u64>,
    pub overrides_version: Option<u64>,
    pub cue: Option<ActiveCue>,
    /// Wall time (as played) the cue started.
    pub cue_since_ms: Option<i64>,
    pub blackout: bool,
    pub frames: u64,
    pub connected: bool,
    pub clock_trusted: bool,
    /// Events waiting in the journal for the broker.
    pub journaled: usize,
    pub universes: usize,
    pub controllers: Vec<ControllerHealth>,
    /// The last document or command refused, and why.
    pub last_refusal: Option<String>,
    /// Messages dropped for being over the broker connection's size limit.
    pub oversized: u64,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {dir}: {error}")]
    Data { dir: String, error: io::Error },
    #[error("the plan given: {0}")]
    Plan(String),
    #[error(transparent)]
    Guard(#[from] GuardError),
    #[error("mqtt.ca_file is set but no CA certificate was read from it")]
    Tls,
}

/// A started gateway.
#[derive(Debug)]
pub struct Handle {
    pub status: watch::Receiver<Status>,
    /// Ends after `shutdown`, once the outputs are in their safe state.
    pub done: JoinHandle<()>,
}

/// One Modbus controller's driver, seen from the frame loop.
#[derive(Debug)]
struct ModbusOut {
    map_index: usize,
    id: ControllerId,
    levels: watch::Sender<Levels>,
    health: watch::Receiver<Health>,
    buf: Vec<u8>,
    /// The controller makes the fades itself: it is given each cue's target and fade, up
    /// to the longest fade it can make (longer ones the gateway makes, the register at 0).
    controller_fades: bool,
    longest_fade: Duration,
    has_meter: bool,
    /// Rated watts and layout index of the fixtures it drives.
    fixtures: Vec<(f64, usize)>,
    unreachable_since: Option<Instant>,
    fault_open: bool,
    status_faults: Vec<StatusBit>,
    rewrites: u64,
    dark_fault_open: bool,
}

/// Everything a plan drives.
#[derive(Debug)]
struct Outputs {
    dmx: Option<Sender>,
    mqtt: Option<Publisher>,
    modbus: Vec<ModbusOut>,
    /// Art-Net nodes, polled every [`ART_POLL_EVERY`] for their health.
    art_nodes: Vec<ArtNode>,
    art_polls: watch::Receiver<Option<Vec<ControllerId>>>,
    stop: CancellationToken,
}

/// An Art-Net node, seen from its polls.
#[derive(Debug)]
struct ArtNode {
    id: ControllerId,
    /// Polls in a row without an answer.
    missed: u32,
    answered_once: bool,
    fault_open: bool,
}

/// The plan in force.
#[derive(Debug)]
struct Playing {
    plan: Plan,
    /// The site, its profiles and its controllers' destinations, for commissioning.
    site: Arc<nightscape_core::Site>,
    profiles: Arc<
        std::collections::BTreeMap<nightscape_core::ProfileId, nightscape_core::model::Profile>,
    >,
    to: std::collections::BTreeMap<ControllerId, Destination>,
    exec: Executor,
    outputs: Outputs,
    /// Rated watts and layout index of every fixture driven by this gateway's non-metered
    /// controllers (DMX ones included).
    estimated: Vec<(f64, usize)>,
}

/// A commissioning overlay on the frame.
#[derive(Debug, Clone)]
enum Overlay {
    /// Blink these layout channels at 1 Hz between dark and their bytes for full white.
    Blink(Vec<(Range<usize>, Vec<u8>)>),
    /// Hold one layout channel at a level.
    Set { channel: usize, level: u8 },
}

/// Frame statistics since the last telemetry.
#[derive(Debug, Default)]
struct FrameStats {
    frames: u64,
    late: u64,
    intervals_ms: Vec<f32>,
    last: Option<Instant>,
    since: Option<Instant>,
}

struct Gateway {
    id: GatewayId,
    config: Config,
    trusted: Vec<VerifyingKey>,
    endpoints: Option<EndpointMap>,
    clock: Arc<dyn Clock>,
    store: Store,
    journal: Journal,
    wall: WallTime,
    cid: [u8; 16],
    client: Option<AsyncClient>,
    outbound: Option<mpsc::Sender<Outbound>>,
    connected: bool,
    playing: Option<Playing>,
    /// A plan accepted and waiting for its `effective_from`, with its bytes.
    pending: Option<(Plan, ShowLibrary, Vec<u8>)>,
    /// The current plan copy on disk was damaged at start (the previous one plays).
    current_damaged: bool,
    /// Why sending DMX over IP fails, while it does.
    send_failing: Option<String>,
    overrides: Option<OverridesDocument>,
    overlays: Vec<(i64, Overlay)>,
    /// The frame as sent: the executor's channels with overlays on top.
    out: Vec<u8>,
    /// The same for controllers that fade themselves: the cue's target.
    out_target: Vec<u8>,
    now_ms: i64,
    stats: FrameStats,
    total_frames: u64,
    status: watch::Sender<Status>,
    started: std::time::Instant,
    lit_check: Option<Instant>,
    event_seq: u64,
    art_poll_every: Duration,
    drive: bool,
}

/// Starts the gateway; it runs until `shutdown`. Everything it logs is inside a
/// `gateway{id=…}` span, so the logs of several gateways in one process (`up`) say whose
/// they are.
pub async fn start(
    setup: Setup,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<Handle, StartError> {
    let span = tracing::info_span!("gateway", id = %setup.config.gateway);
    start_in_span(setup, clock, shutdown).instrument(span).await
}

async fn start_in_span(
    setup: Setup,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<Handle, StartError> {
    let config = setup.config.clone();
    if config.mqtt.ca_file.is_some() && setup.ca.is_none() && setup.connect {
        return Err(StartError::Tls);
    }
    let data = |error: io::Error| StartError::Data {
        dir: config.data_dir.display().to_string(),
        error,
    };
    let store = Store::open(&config.data_dir).map_err(data)?;
    let cid = store.cid().map_err(data)?;
    let (journal, journal_problems) = Journal::open(&config.data_dir, journal::CAPACITY);
    let (status, status_rx) = watch::channel(Status::default());
    let agent_stop = CancellationToken::new();
    let (inbound_tx, inbound) = mpsc::channel(32);
    let (connected_tx, connected_rx) = watch::channel(false);
    let (client, outbound, agent_task) = if setup.connect {
        let settings = agent::Settings {
            gateway: config.gateway.clone(),
            mqtt: config.mqtt.clone(),
            password: setup.password.clone(),
            ca: setup.ca.clone(),
            keep_alive: Duration::from_secs(15),
            socket: crate::sieve::socket_path(&config.data_dir, config.gateway.as_str()),
        };
        let mqtt = agent::client(&settings);
        let client = mqtt.0.clone();
        let (out_tx, out_rx) = mpsc::channel(256);
        let task = tokio::spawn(
            agent::run(
                settings,
                mqtt,
                inbound_tx,
                out_rx,
                connected_tx,
                agent_stop.clone(),
            )
            .in_current_span(),
        );
        (Some(client), Some(out_tx), Some(task))
    } else {
        (None, None, None)
    };
    let mut gw = Gateway {
        id: config.gateway.clone(),
        trusted: setup.trusted,
        endpoints: setup.endpoints,
        clock,
        wall: WallTime::new(store.trusted_time()),
        store,
        journal,
        cid,
        client,
        outbound,
        connected: false,
        playing: None,
        pending: None,
        current_damaged: false,
        send_failing: None,
        overrides: None,
        overlays: Vec::new(),
        out: Vec::new(),
        out_target: Vec::new(),
        now_ms: 0,
        stats: FrameStats::default(),
        total_frames: 0,
        status,
        started: std::time::Instant::now(),
        lit_check: None,
        event_seq: 0,
        art_poll_every: setup.art_poll_every.max(Duration::from_millis(100)),
        drive: setup.drive,
        config,
    };
    // A provisional time to choose the plan by; the clock is judged (and believed or not)
    // only once the plan's issue time is known, so a wild clock at start is not taken in.
    gw.now_ms = gw
        .wall
        .clone()
        .observe(gw.clock.now_ms(), gw.clock.monotonic(), None)
        .0;
    gw.boot(setup.plan).await?;
    gw.read_clock();
    for p in journal_problems {
        gw.event(EventKind::Gateway, Severity::Warning, None, p);
    }
    let done = tokio::spawn(
        async move {
            gw.run(inbound, connected_rx, shutdown).await;
            agent_stop.cancel();
            if let Some(task) = agent_task {
                let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
            }
        }
        .in_current_span(),
    );
    Ok(Handle {
        status: status_rx,
        done,
    })
}

fn active(cue: &Cue) -> ActiveCue {
    ActiveCue {
        scene: cue.scene.clone(),
        brightness_pct: cue.brightness,
        cause: (&cue.cause).into(),
    }
}

fn describe(cue: &ActiveCue) -> String {
    let what = match &cue.scene {
        Some(scene) => format!("scene `{scene}` at {}", cue.brightness_pct),
        None => "dark".to_string(),
    };
    let why = match &cue.cause {
        wire::Cause::Idle => "no rule".to_string(),
        wire::Cause::Rule { rule } => format!("rule `{rule}`"),
        wire::Cause::Curfew { .. } => "curfew".to_string(),
        wire::Cause::Override => "override".to_string(),
        wire::Cause::Blackout => "blackout".to_string(),
    };
    format!("{what} ({why})")
}

fn percentile(values: &mut [f32], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f32::total_cmp);
    let i = ((values.len() - 1) as f64 * p).round() as usize;
    f64::from(values[i.min(values.len() - 1)])
}

/// Estimated draw of some fixtures (rated watts and layout index) from the layout channels:
/// each fixture's emitter drive in linear light (the core's [`Layout::fixture_drive`]) times
/// its rating.
///
/// [`Layout::fixture_drive`]: nightscape_core::Layout::fixture_drive
fn watts(layout: &nightscape_core::Layout, fixtures: &[(f64, usize)], channels: &[u8]) -> f64 {
    fixtures
        .iter()
        .filter_map(|&(w, i)| Some(w * layout.fixture_drive(i, channels)?))
        .sum()
}

impl Gateway {
    /// Reads the clocks through the trust rules; reports what changed.
    fn read_clock(&mut self) {
        let issued = self.playing.as_ref().map(|p| p.plan.issued_at_ms);
        let (now, note) = self
            .wall
            .observe(self.clock.now_ms(), self.clock.monotonic(), issued);
        self.now_ms = now;
        if let Some(note) = note {
            let (severity, message) = match note {
                Note::Untrusted { reads_ms, floor_ms } => (
                    Severity::Fault,
                    format!(
                        "the clock reads {reads_ms} ms, which cannot be right (the last trusted time is {floor_ms} ms, or it is years past the plan); playing by the monotonic clock"
                    ),
                ),
                Note::Trusted => (Severity::Info, "the clock is trusted again".to_string()),
                Note::Stepped { by_ms } => (
                    Severity::Warning,
                    format!(
                        "the clock stepped by {by_ms} ms; the schedule is evaluated at the new time"
                    ),
                ),
            };
            self.event(EventKind::Clock, severity, None, message);
        }
    }

    fn plan_version(&self) -> Option<u64> {
        self.playing.as_ref().map(|p| p.plan.version)
    }

    /// What to play at start: the plan given, else the one on disk (the previous one when
    /// the current is damaged, or not yet in effect).
    async fn boot(&mut self, given: Option<Vec<u8>>) -> Result<(), StartError> {
        let loaded_overrides = self.store.load_overrides(&self.trusted, &self.id);
        for p in loaded_overrides.problems {
            self.event(EventKind::Overrides, Severity::Warning, None, p);
        }
        if let Some((doc, _)) = loaded_overrides.overrides {
            self.overrides = Some(doc);
        }
        if let Some(bytes) = given {
            let (plan, lib) = open_with_any(&self.trusted, |k| {
                plan::open_plan(&bytes, k, &self.id, None)
            })
            .map_err(|e| StartError::Plan(e.to_string()))?;
            let site = lib
                .sites
                .get(&plan.site)
                .ok_or_else(|| StartError::Plan(format!("no site `{}`", plan.site)))?;
            self.destinations(site)?;
            self.play(plan, lib).await.map_err(StartError::Plan)?;
            self.publish_status();
            return Ok(());
        }
        let loaded = self.store.load_plan(&self.trusted, &self.id);
        let damaged = !loaded.problems.is_empty();
        for p in loaded.problems {
            self.event(EventKind::Plan, Severity::Fault, None, p);
        }
        let Some((plan, lib, copy)) = loaded.plan else {
            // Perhaps only a plan waiting for its time (the first one a gateway got).
            if let Ok(Some(next)) = self.store.open_next_plan(&self.trusted, &self.id) {
                self.pending = Some(next);
            }
            self.event(
                EventKind::Plan,
                Severity::Warning,
                None,
                "no plan in force on disk: dark until one arrives or comes into effect".into(),
            );
            self.publish_status();
            return Ok(());
        };
        if damaged {
            self.event(
                EventKind::Plan,
                Severity::Warning,
                None,
                format!("playing the previous good plan, version {}", plan.version),
            );
        }
        // The damaged current copy must not push the good one out when the next plan comes.
        self.current_damaged = copy == Copy::Previous;
        // A plan accepted but not yet due waits beside it.
        match self.store.open_next_plan(&self.trusted, &self.id) {
            Ok(Some((next, next_lib, bytes))) if next.version > plan.version => {
                self.pending = Some((next, next_lib, bytes));
            }
            Ok(_) => {}
            Err(e) => self.event(
                EventKind::Plan,
                Severity::Warning,
                None,
                format!("a plan waiting for its time could not be read: {e}"),
            ),
        }
        if let Err(e) = self.play(plan, lib).await {
            self.event(EventKind::Plan, Severity::Fault, None, e);
        }
        self.publish_status();
        Ok(())
    }

    /// Makes `plan` the one in force: the executor moves to it, the outputs are built anew.
    async fn play(&mut self, plan: Plan, lib: ShowLibrary) -> Result<(), String> {
        let site = lib
            .sites
            .get(&plan.site)
            .ok_or_else(|| format!("the plan has no site `{}`", plan.site))?;
        let to = self.destinations(site).map_err(|e| e.to_string())?;
        let map = lib
            .output_map(&plan.site)
            .ok_or_else(|| format!("the plan's site `{}` has no output map", plan.site))?;
        // Everything that can fail comes first; the plan in force plays on until then.
        let mut outputs = self.outputs(&lib, &plan, &map, &to).await?;
        let mut carried = None;
        let exec = match self.playing.take() {
            Some(mut old) => match old.exec.change_plan(&lib, &plan.site, self.now_ms) {
                Ok(()) => {
                    old.outputs.stop.cancel();
                    carried = Some((
                        std::mem::take(&mut old.outputs.modbus),
                        std::mem::take(&mut old.outputs.art_nodes),
                    ));
                    if let (Some(new), Some(before)) = (&mut outputs.dmx, &old.outputs.dmx) {
                        new.carry_sequences(before);
                    }
                    old.exec
                }
                Err(e) => {
                    outputs.stop.cancel();
                    self.playing = Some(old);
                    return Err(e.to_string());
                }
            },
            None => match Executor::new(&lib, &plan.site, self.now_ms) {
                Ok(exec) => exec,
                Err(e) => {
                    outputs.stop.cancel();
                    return Err(e.to_string());
                }
            },
        };
        let controller_fades = site.controllers.iter().any(|c| {
            to.contains_key(&c.id)
                && matches!(
                    c.output,
                    Output::Modbus {
                        fade_by: nightscape_core::model::FadeBy::Controller,
                        ..
                    }
                )
        });
        let mut exec = if controller_fades {
            exec.with_targets()
        } else {
            exec
        };
        exec.set_overrides(self.current_overrides());
        // The old drivers are stopped: now the new ones connect (a device may take only one).
        start_modbus(&mut outputs, &lib, &plan, exec.map(), &to);
        // Open faults stay open across a plan change or resync, so they close when fixed.
        if let Some((modbus, art)) = carried {
            for m in &mut outputs.modbus {
                if let Some(old) = modbus.iter().find(|o| o.id == m.id) {
                    m.fault_open = old.fault_open;
                    m.status_faults.clone_from(&old.status_faults);
                    m.dark_fault_open = old.dark_fault_open;
                    m.rewrites = 0;
                }
            }
            for n in &mut outputs.art_nodes {
                if let Some(old) = art.iter().find(|o| o.id == n.id) {
                    n.missed = old.missed;
                    n.answered_once = old.answered_once;
                    n.fault_open = old.fault_open;
                }
            }
        }
        let map = exec.map();
        let mut estimated = Vec::new();
        let metered: Vec<&ControllerId> = outputs
            .modbus
            .iter()
            .filter(|m| m.has_meter)
            .map(|m| &m.id)
            .collect();
        for cm in map.controllers() {
            if !to.contains_key(&cm.controller) || metered.contains(&&cm.controller) {
                continue;
            }
            for run in cm.sinks.iter().flat_map(|s| s.runs.iter()) {
                // A fixture spread over several universes counts once.
                if !estimated.iter().any(|&(_, i)| i == run.fixture) {
                    let w = site.fixtures.get(run.fixture).map_or(0.0, |f| f.power_w);
                    estimated.push((w, run.fixture));
                }
            }
        }
        self.overlays.clear();
        self.event(
            EventKind::Plan,
            Severity::Info,
            None,
            format!(
                "playing plan version {} for site `{}` ({} universes, {} Modbus controllers)",
                plan.version,
                plan.site,
                outputs.dmx.as_ref().map_or(0, Sender::universes)
                    + outputs.mqtt.as_ref().map_or(0, Publisher::universes),
                outputs.modbus.len()
            ),
        );
        self.playing = Some(Playing {
            site: Arc::new(site.clone()),
            profiles: Arc::new(lib.profiles.clone()),
            to,
            plan,
            exec,
            outputs,
            estimated,
        });
        Ok(())
    }

    /// Builds the senders (the Modbus drivers start in [`start_modbus`]).
    async fn outputs(
        &self,
        lib: &ShowLibrary,
        plan: &Plan,
        map: &nightscape_core::OutputMap,
        to: &std::collections::BTreeMap<ControllerId, Destination>,
    ) -> Result<Outputs, String> {
        let site = &lib.sites[&plan.site];
        let stop = CancellationToken::new();
        let udp = to
            .values()
            .any(|d| matches!(d, Destination::Udp(_) | Destination::Multicast { .. }));
        let dmx = if udp {
            let sender = Sender::new(
                site,
                map,
                to,
                self.cid,
                &format!("Nightscape {}", self.id),
                self.config.loopback_only,
            )
            .await
            .map_err(|e| format!("cannot open the DMX socket: {e}"))?;
            Some(sender)
        } else {
            None
        };
        let mqtt = self.client.as_ref().map(|_| {
            Publisher::new(map, &self.config.mqtt.topic_prefix, |c| {
                to.get(c) == Some(&Destination::Broker)
            })
        });
        // The Art-Net nodes' health: polled on a task of its own, answers on a watch.
        let nodes: Vec<(ControllerId, std::net::SocketAddr)> = site
            .controllers
            .iter()
            .filter(|c| matches!(c.output, Output::ArtNet { .. }))
            .filter_map(|c| match to.get(&c.id) {
                Some(Destination::Udp(addr)) => Some((c.id.clone(), *addr)),
                _ => None,
            })
            .collect();
        let (polls_tx, art_polls) = watch::channel(None);
        if !nodes.is_empty() {
            let (stop, loopback_only) = (stop.clone(), self.config.loopback_only);
            let art_poll_every = self.art_poll_every;
            let nodes = nodes.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(art_poll_every);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = every.tick() => {}
                    }
                    let found = crate::commission::poll_art_net(
                        &nodes,
                        loopback_only,
                        (art_poll_every / 2).min(Duration::from_secs(1)),
                    )
                    .await;
                    let answered = found
                        .into_iter()
                        .filter(|f| !f.silent())
                        .map(|f| f.controller)
                        .collect();
                    polls_tx.send_replace(Some(answered));
                }
            });
        }
        Ok(Outputs {
            dmx,
            mqtt,
            modbus: Vec::new(),
            art_nodes: nodes
                .into_iter()
                .map(|(id, _)| ArtNode {
                    id,
                    missed: 0,
                    answered_once: false,
                    fault_open: false,
                })
                .collect(),
            art_polls,
            stop,
        })
    }

    /// Where each controller of `site` is sent (the guard, with this gateway's settings).
    fn destinations(
        &self,
        site: &nightscape_core::Site,
    ) -> Result<std::collections::BTreeMap<ControllerId, Destination>, GuardError> {
        if !self.drive {
            return Ok(std::collections::BTreeMap::new());
        }
        guard::destinations_via(
            site,
            &self.id,
            self.endpoints.as_ref(),
            self.config.loopback_only,
            self.config.multicast_interface,
        )
    }

    fn current_overrides(&self) -> Vec<nightscape_core::schedule::Override> {
        self.overrides
            .as_ref()
            .and_then(|d| d.to_overrides().ok())
            .unwrap_or_default()
    }

    async fn run(
        &mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut connected: watch::Receiver<bool>,
        shutdown: CancellationToken,
    ) {
        let period = Duration::from_secs(1) / self.config.frame_rate_hz.clamp(1, 44);
        let metronome_stop = CancellationToken::new();
        let _stop_metronome = metronome_stop.clone().drop_guard();
        // Without outputs nothing needs the thread's precise pacing.
        let mut ticks = if self.drive {
            metronome(period, metronome_stop).unwrap_or_else(|e| {
                tracing::error!(
                    "cannot start the frame clock thread: {e}; using the runtime's timer"
                );
                tokio_ticks(period)
            })
        } else {
            tokio_ticks(period)
        };
        let mut health = tokio::time::interval(HEALTH_EVERY);
        health.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut telemetry = tokio::time::interval(TELEMETRY_EVERY);
        telemetry.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut state = tokio::time::interval(STATE_EVERY);
        state.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut save_time = tokio::time::interval(TRUSTED_SAVE_EVERY);
        save_time.set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.event(
            EventKind::Gateway,
            Severity::Info,
            None,
            format!("started at {} Hz", self.config.frame_rate_hz),
        );
        // The first frame leaves at once; from then on each is prepared after the last left.
        self.frame(true).await;
        let mut agent_alive = true;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                message = inbound.recv(), if self.outbound.is_some() && agent_alive => {
                    match message {
                        Some(message) => self.on_message(message).await,
                        // The agent is gone (it never is while the gateway runs): play on.
                        None => agent_alive = false,
                    }
                }
                changed = connected.changed(), if self.outbound.is_some() && agent_alive => {
                    if changed.is_err() {
                        agent_alive = false;
                    } else {
                        self.connected = *connected.borrow_and_update();
                        if self.connected {
                            self.send_state();
                        }
                        self.publish_status();
                    }
                }
                _ = health.tick() => {
                    self.check_health();
                    self.deliver_journal();
                    self.publish_status();
                }
                _ = telemetry.tick() => self.send_telemetry(period),
                _ = state.tick() => self.send_state(),
                _ = save_time.tick() => self.save_trusted_time(),
                // Frames last: a frame loop that cannot keep up must not starve the rest.
                due = ticks.recv() => {
                    let Some(due) = due else { break };
                    let now = Instant::now();
                    if let Some(last) = self.stats.last {
                        let interval = now.duration_since(last);
                        self.stats.intervals_ms.push(
                            (interval.as_secs_f64() * 1000.0 - period.as_secs_f64() * 1000.0).abs() as f32,
                        );
                    }
                    if now.duration_since(due) > period {
                        self.stats.late += 1;
                    }
                    self.stats.last = Some(now);
                    // The frame prepared after the last tick leaves now; the next is prepared.
                    self.flush_prepared().await;
                    self.frame(false).await;
                }
            }
        }
        self.stop().await;
    }

    /// Sends the DMX-over-IP packets the last paced frame prepared.
    async fn flush_prepared(&mut self) {
        let Some(dmx) = self.playing.as_mut().and_then(|p| p.outputs.dmx.as_mut()) else {
            return;
        };
        let failing = dmx.flush().await.err().map(|e| e.to_string());
        self.note_send(failing);
    }

    /// A change in whether DMX over IP can be sent: a fault opened or closed once, not a
    /// line at every frame.
    fn note_send(&mut self, failing: Option<String>) {
        if failing == self.send_failing {
            return;
        }
        let (severity, message) = match &failing {
            Some(e) => (Severity::Fault, format!("DMX over IP cannot be sent: {e}")),
            None => (Severity::Info, "DMX over IP is sent again".to_string()),
        };
        let open = failing.is_some();
        self.send_failing = failing;
        self.fault_event(severity, None, message, FaultCode::Send, open);
    }

    /// One frame: the wall time, a pending plan due, the executor, overlays, the outputs.
    /// DMX over IP is sent at once when `now` (a command, a document: it must not wait for
    /// the tick), else prepared for the next tick.
    async fn frame(&mut self, now: bool) {
        self.read_clock();
        if self
            .pending
            .as_ref()
            .is_some_and(|(p, _, _)| p.effective_from_ms <= self.now_ms)
            && let Some((plan, lib, bytes)) = self.pending.take()
        {
            let version = plan.version;
            if let Err(e) = self.take_plan(plan, lib, &bytes).await {
                self.event(
                    EventKind::Plan,
                    Severity::Fault,
                    None,
                    format!("plan version {version} could not start: {e}"),
                );
            }
        }
        let now_ms = self.now_ms;
        let Some(playing) = self.playing.as_mut() else {
            return;
        };
        let changed = playing.exec.tick(now_ms).map(active);
        if playing
            .exec
            .cue()
            .is_some_and(|c| c.cause == nightscape_core::schedule::Cause::Blackout)
        {
            // A blackout ends commissioning: nothing blinks or stays lit through it.
            self.overlays.clear();
        }
        // Only why it plays changed (the state says so; nothing shows differently).
        let cause_changed = playing.exec.cause_changed();
        self.overlays.retain(|(until, _)| *until > now_ms);
        self.out.clear();
        self.out.extend_from_slice(playing.exec.channels());
        overlay(&self.overlays, now_ms, &mut self.out);
        let targets = playing.outputs.modbus.iter().any(|m| m.controller_fades);
        if targets {
            self.out_target.clear();
            self.out_target
                .extend_from_slice(playing.exec.target_channels());
            overlay(&self.overlays, now_ms, &mut self.out_target);
        }
        let map = playing.exec.map();
        let mut send_change = None;
        if let Some(dmx) = playing.outputs.dmx.as_mut() {
            dmx.prepare(map, &self.out);
            if now {
                send_change = Some(dmx.flush().await.err().map(|e| e.to_string()));
            }
        }
        if let (Some(publisher), Some(client)) = (playing.outputs.mqtt.as_mut(), &self.client) {
            publisher.publish(client, map, &self.out);
        }
        let target_fade = playing.exec.target_fade();
        for m in &mut playing.outputs.modbus {
            let (source, fade) = match (m.controller_fades, target_fade <= m.longest_fade) {
                (true, true) => (&self.out_target, Some(target_fade)),
                // Longer than the controller can fade: the gateway fades, the register at 0.
                (true, false) => (&self.out, Some(Duration::ZERO)),
                (false, _) => (&self.out, None),
            };
            map.controllers()[m.map_index].sinks[0].gather(source, &mut m.buf);
            let buf = &m.buf;
            m.levels.send_if_modified(|l| {
                if l.channels == *buf && l.fade == fade {
                    false
                } else {
                    l.channels.clone_from(buf);
                    l.fade = fade;
                    true
                }
            });
        }
        self.stats.frames += 1;
        self.total_frames += 1;
        if let Some(failing) = send_change {
            self.note_send(failing);
        }
        if let Some(cue) = changed {
            let lit =
                cue.scene.is_some() && cue.brightness_pct > nightscape_core::model::Level::ZERO;
            self.lit_check = lit.then(|| Instant::now() + LIT_CHECK_AFTER);
            let message = format!("now {}", describe(&cue));
            let mut e = self.make_event(EventKind::Cue, Severity::Info, None, message);
            e.cue = Some(cue);
            self.emit(e);
            self.send_state();
            self.publish_status();
        } else if cause_changed {
            self.send_state();
            self.publish_status();
        }
    }

    async fn on_message(&mut self, message: Inbound) {
        // The frame prepared for the next tick goes now: what follows replaces it, and its
        // universes are already counted as sent.
        self.flush_prepared().await;
        match message {
            Inbound::Plan(bytes) => self.on_plan(&bytes).await,
            Inbound::Overrides(bytes) => self.on_overrides(&bytes),
            Inbound::Command(bytes) => self.on_command(&bytes).await,
            Inbound::Oversized { topic, bytes } => self.on_oversized(&topic, bytes),
        }
        // What changed leaves now, not at the next frame.
        self.frame(true).await;
    }

    async fn on_plan(&mut self, bytes: &[u8]) {
        let opened = open_with_any(&self.trusted, |k| plan::open_plan(bytes, k, &self.id, None));
        let (plan, lib) = match opened {
            Ok(p) => p,
            Err(e) => return self.refuse(About::Plan, version_of(bytes), e.to_string()),
        };
        let newest = self
            .pending
            .as_ref()
            .map(|(p, _, _)| p)
            .or(self.playing.as_ref().map(|p| &p.plan));
        if let Some(newest) = newest {
            if plan.version == newest.version && plan.content_hash == newest.content_hash {
                // The retained plan again (after a reconnect): nothing to do but say so.
                return self.ack(
                    About::Plan,
                    plan.version.to_string(),
                    AckResult::Applied,
                    None,
                );
            }
            if plan.version <= newest.version {
                let why = Rejection::NotNewer {
                    kind: "plan",
                    current: newest.version,
                    got: plan.version,
                };
                return self.refuse(About::Plan, plan.version.to_string(), why.to_string());
            }
        }
        let Some(site) = lib.sites.get(&plan.site) else {
            return self.refuse(
                About::Plan,
                plan.version.to_string(),
                format!("the plan has no site `{}`", plan.site),
            );
        };
        if let Err(e) = self.destinations(site) {
            return self.refuse(About::Plan, plan.version.to_string(), e.to_string());
        }
        let version = plan.version;
        if plan.effective_from_ms > self.now_ms {
            // Kept beside the plan in force (which stays the current copy) until it is due.
            if let Err(e) = self.store.save(Kind::NextPlan, bytes) {
                return self.refuse(
                    About::Plan,
                    version.to_string(),
                    format!("the plan could not be kept on disk: {e}"),
                );
            }
            let reason = format!("in effect from {} ms", plan.effective_from_ms);
            self.pending = Some((plan, lib, bytes.to_vec()));
            self.ack(
                About::Plan,
                version.to_string(),
                AckResult::Applied,
                Some(reason),
            );
        } else {
            // The server should not publish a plan that drops a scene an override in force
            // names; if it does, the plan is taken (it is the city's) and the ack says so.
            let orphaned: Vec<String> = self
                .overrides
                .iter()
                .flat_map(|d| d.overrides.iter())
                .filter(|o| o.until_ms.is_none_or(|u| u > self.now_ms))
                .filter_map(|o| o.scene.as_ref().map(|scene| (o, scene)))
                .filter(|(_, scene)| !lib.scenes.contains_key(*scene))
                .map(|(o, scene)| {
                    format!(
                        "override `{}` names scene `{scene}`, which this plan lacks: it shows dark",
                        o.id
                    )
                })
                .collect();
            match self.take_plan(plan, lib, bytes).await {
                Ok(None) if !orphaned.is_empty() => {
                    let warning = orphaned.join("; ");
                    self.event(EventKind::Plan, Severity::Warning, None, warning.clone());
                    self.ack(
                        About::Plan,
                        version.to_string(),
                        AckResult::Applied,
                        Some(warning),
                    );
                }
                Ok(None) => self.ack(About::Plan, version.to_string(), AckResult::Applied, None),
                Ok(Some(warning)) => self.ack(
                    About::Plan,
                    version.to_string(),
                    AckResult::Applied,
                    Some(warning),
                ),
                Err(e) => self.refuse(About::Plan, version.to_string(), e),
            }
        }
        self.send_state();
    }

    /// Plays `plan` and then keeps it as the current copy (the one in force becoming the
    /// previous); a later plan waiting for its time stays waiting. A plan that cannot play
    /// changes nothing, on disk or on the wire. `Ok(Some(_))`: playing, but not kept.
    async fn take_plan(
        &mut self,
        plan: Plan,
        lib: ShowLibrary,
        bytes: &[u8],
    ) -> Result<Option<String>, String> {
        let version = plan.version;
        self.play(plan, lib).await?;
        if self
            .pending
            .as_ref()
            .is_some_and(|(p, _, _)| p.version <= version)
        {
            self.pending = None;
        }
        let saved = if self.current_damaged {
            self.store.save_over(Kind::Plan, bytes)
        } else {
            self.store.save(Kind::Plan, bytes)
        };
        if saved.is_ok() {
            self.current_damaged = false;
        }
        let kept = saved.and_then(|()| {
            if self.pending.is_none() {
                self.store.remove(Kind::NextPlan)
            } else {
                Ok(())
            }
        });
        match kept {
            Ok(()) => Ok(None),
            Err(e) => {
                let why = format!(
                    "plan version {version} plays but could not be kept on disk ({e}); after a restart the previous plan plays"
                );
                self.event(EventKind::Plan, Severity::Fault, None, why.clone());
                Ok(Some(why))
            }
        }
    }

    fn on_overrides(&mut self, bytes: &[u8]) {
        let current = self.overrides.as_ref().map(|d| d.version);
        let opened = open_with_any(&self.trusted, |k| {
            plan::open::<OverridesDocument>(bytes, k, &self.id, None)
        });
        let doc = match opened {
            Ok(d) => d,
            Err(e) => return self.refuse(About::Overrides, version_of(bytes), e.to_string()),
        };
        let id = doc.version.to_string();
        if current == Some(doc.version) && self.overrides.as_ref() == Some(&doc) {
            return self.ack(About::Overrides, id, AckResult::Applied, None);
        }
        if let Some(current) = current
            && doc.version <= current
        {
            let why = Rejection::NotNewer {
                kind: "overrides document",
                current,
                got: doc.version,
            };
            return self.refuse(About::Overrides, id, why.to_string());
        }
        let overrides = match doc.to_overrides() {
            Ok(o) => o,
            Err(e) => return self.refuse(About::Overrides, id, e.to_string()),
        };
        if let Some(p) = &self.playing
            && let Some(unknown) = doc
                .overrides
                .iter()
                .filter_map(|o| o.scene.as_ref())
                .find(|scene| !p.exec.has_scene(scene))
        {
            let why = format!(
                "scene `{unknown}` is not in plan version {} (the site would go dark)",
                p.plan.version
            );
            return self.refuse(About::Overrides, id, why);
        }
        if let Err(e) = self.store.save(Kind::Overrides, bytes) {
            return self.refuse(
                About::Overrides,
                id,
                format!("the overrides could not be kept on disk: {e}"),
            );
        }
        if let Some(p) = self.playing.as_mut() {
            p.exec.set_overrides(overrides);
        }
        self.event(
            EventKind::Overrides,
            Severity::Info,
            None,
            format!(
                "overrides version {} applied ({} entries)",
                doc.version,
                doc.overrides.len()
            ),
        );
        self.overrides = Some(doc);
        self.ack(About::Overrides, id, AckResult::Applied, None);
        self.send_state();
    }

    async fn on_command(&mut self, bytes: &[u8]) {
        let command: Command = match wire::decode(bytes) {
            Ok(c) => c,
            Err(e) => {
                let id = serde_json::from_slice::<serde_json::Value>(bytes)
                    .ok()
                    .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(String::from))
                    .unwrap_or_else(|| "?".into());
                return self.refuse(
                    About::Cmd,
                    id,
                    format!("not a command this gateway reads: {e}"),
                );
            }
        };
        if command.expires_ms < self.now_ms {
            self.event(
                EventKind::Command,
                Severity::Warning,
                None,
                format!("command `{}` arrived expired", command.id),
            );
            return self.ack(About::Cmd, command.id, AckResult::Expired, None);
        }
        if command.action == (Action::Discover {}) {
            return self.discover(command.id);
        }
        match self.run_command(&command.action).await {
            Ok(what) => {
                self.event(
                    EventKind::Command,
                    Severity::Info,
                    None,
                    format!("command `{}`: {what}", command.id),
                );
                self.ack(About::Cmd, command.id, AckResult::Applied, None);
            }
            Err(why) => self.refuse(About::Cmd, command.id, why),
        }
    }

    /// Runs a command; says what it did, or why not.
    pub(crate) async fn run_command(&mut self, action: &Action) -> Result<String, String> {
        // The bounds are the gateway's own check too: a command does not have to come from
        // a server that checked it.
        action.check()?;
        let now_ms = self.now_ms;
        let Some(playing) = self.playing.as_mut() else {
            return Err("no plan plays yet".into());
        };
        let blackout = playing
            .exec
            .cue()
            .is_some_and(|c| c.cause == nightscape_core::schedule::Cause::Blackout);
        if blackout && !matches!(action, Action::Resync {}) {
            return Err("a blackout is in force; release it before commissioning".into());
        }
        let layout = playing.exec.layout();
        let map = playing.exec.map();
        let until = |seconds: u32| now_ms + i64::from(seconds) * 1000;
        match action {
            Action::Identify {
                fixture,
                controller,
                seconds,
            } => {
                let mut ranges = Vec::new();
                if let Some(f) = fixture {
                    let i = layout
                        .fixture_index(f)
                        .ok_or_else(|| format!("no fixture `{f}` on this site"))?;
                    ranges.push(layout.fixtures()[i].channels.clone());
                }
                if let Some(c) = controller {
                    let cm = map
                        .controller(c)
                        .ok_or_else(|| format!("no controller `{c}` on this site"))?;
                    ranges.extend(
                        cm.sinks
                            .iter()
                            .flat_map(|s| s.runs.iter())
                            .map(|r| r.channels.clone()),
                    );
                }
                if ranges.is_empty() {
                    return Err("identify needs a fixture or a controller".into());
                }
                // "On" is full white as the site's limits allow it (the zone's caps hold for a
                // blinking fixture too), encoded once.
                let mut white = nightscape_core::Frame::new(layout);
                white
                    .pixels
                    .fill(nightscape_core::colour::Rgb::new(1.0, 1.0, 1.0));
                let mut on = vec![0; layout.channel_count()];
                nightscape_core::render::encode(
                    layout,
                    &white,
                    nightscape_core::model::Level::FULL,
                    &mut on,
                );
                let ranges = ranges
                    .into_iter()
                    .filter_map(|r| on.get(r.clone()).map(|bytes| (r, bytes.to_vec())))
                    .collect();
                self.overlays
                    .push((until(*seconds), Overlay::Blink(ranges)));
                Ok(format!("identify for {seconds} s"))
            }
            Action::ChannelTest {
                controller,
                universe,
                channel,
                level,
                seconds,
            } => {
                let cm = map
                    .controller(controller)
                    .ok_or_else(|| format!("no controller `{controller}` on this site"))?;
                let sink = cm
                    .sinks
                    .iter()
                    .find(|s| match (universe, s.address) {
                        (None, _) => true,
                        (Some(u), nightscape_core::output::SinkAddress::Universe(x)) => {
                            x.number() == *u
                        }
                        (Some(_), _) => false,
                    })
                    .ok_or_else(|| {
                        format!("controller `{controller}` has no universe {universe:?}")
                    })?;
                let position = u32::from(*channel);
                let run = sink
                    .runs
                    .iter()
                    .find(|r| r.positions().contains(&position))
                    .ok_or_else(|| {
                        format!("channel {channel} of controller `{controller}` carries no fixture")
                    })?;
                let layout_channel =
                    run.channels.start + (position - u32::from(run.first)) as usize;
                self.overlays.push((
                    until(*seconds),
                    Overlay::Set {
                        channel: layout_channel,
                        level: *level,
                    },
                ));
                Ok(format!("channel {channel} at {level} for {seconds} s"))
            }
            Action::Discover {} => Err("discover runs on its own task".into()),
            Action::Resync {} => {
                // Rebuild every output: Modbus controllers are written in full again.
                let plan = playing.plan.clone();
                let (plan2, lib) = self
                    .store
                    .open_plan(&self.trusted, &self.id, Copy::Current)
                    .ok()
                    .filter(|(p, _)| p.version == plan.version)
                    .ok_or(
                        "the plan in force is not the one on disk; resync waits for the next plan",
                    )?;
                self.play(plan2, lib).await?;
                self.send_state();
                Ok("state republished, every controller rewritten".into())
            }
        }
    }

    /// Polls and probes the plan's controllers on a task of its own (frames go on); the
    /// findings come back as an event and the ack says how many answered.
    fn discover(&mut self, id: String) {
        let Some(p) = &self.playing else {
            return self.refuse(About::Cmd, id, "no plan plays yet".into());
        };
        let (site, profiles, to) = (p.site.clone(), p.profiles.clone(), p.to.clone());
        let (Some(outbound), loopback_only) = (self.outbound.clone(), self.config.loopback_only)
        else {
            return;
        };
        self.event_seq += 1;
        let (gateway, at_ms, seq) = (self.id.clone(), self.now_ms, self.event_seq);
        tokio::spawn(async move {
            let findings = crate::commission::discover(
                &site,
                &profiles,
                &to,
                loopback_only,
                Duration::from_secs(2),
            )
            .await;
            let silent = findings.iter().filter(|f| f.silent()).count();
            let message = format!(
                "command `{id}`: discovery\n{}",
                crate::commission::report(&findings)
            );
            let severity = if silent > 0 {
                Severity::Warning
            } else {
                Severity::Info
            };
            let event = new_event(
                &gateway,
                at_ms,
                seq,
                EventKind::Command,
                severity,
                None,
                message,
            );
            let _ = outbound.send(Outbound::Event(event)).await;
            let _ = outbound
                .send(Outbound::Ack(Ack {
                    schema: wire::SCHEMA,
                    gateway,
                    about: About::Cmd,
                    id,
                    result: AckResult::Applied,
                    reason: Some(format!(
                        "{} controllers, {silent} did not answer",
                        findings.len()
                    )),
                }))
                .await;
        });
    }

    fn ack(&mut self, about: About, id: String, result: AckResult, reason: Option<String>) {
        self.send(Outbound::Ack(Ack {
            schema: wire::SCHEMA,
            gateway: self.id.clone(),
            about,
            id,
            result,
            reason,
        }));
    }

    /// A message the sieve dropped for its size: counted, and an event names it (it was
    /// acknowledged to the broker, so it does not come again).
    fn on_oversized(&mut self, topic: &str, bytes: usize) {
        let leaf = wire::parse_topic(&self.config.mqtt.topic_prefix, topic).map(|(_, l)| l);
        let kind = match leaf {
            Some(Topic::Plan) => EventKind::Plan,
            Some(Topic::Overrides) => EventKind::Overrides,
            Some(Topic::Cmd) => EventKind::Command,
            _ => EventKind::Gateway,
        };
        let why = format!(
            "a message of {bytes} bytes on `{topic}` is over the {}-byte limit: dropped",
            crate::agent::MAX_PACKET
        );
        tracing::warn!("{why}");
        self.event(kind, Severity::Warning, None, why.clone());
        self.status.send_modify(|s| {
            s.oversized += 1;
            s.last_refusal = Some(why);
        });
    }

    fn refuse(&mut self, about: About, id: String, why: String) {
        tracing::warn!("refused {about:?} `{id}`: {why}");
        let kind = match about {
            About::Plan => EventKind::Plan,
            About::Overrides => EventKind::Overrides,
            About::Cmd => EventKind::Command,
        };
        self.event(
            kind,
            Severity::Warning,
            None,
            format!("refused `{id}`: {why}"),
        );
        self.status
            .send_modify(|s| s.last_refusal = Some(why.clone()));
        self.ack(about, id, AckResult::Rejected, Some(why));
    }

    fn send(&mut self, message: Outbound) {
        let Some(out) = &self.outbound else {
            return;
        };
        match out.try_send(message) {
            Ok(()) => {}
            // An event is kept for later rather than lost; the rest is sent again anyway
            // (state, telemetry) or answered again when the document comes again (acks).
            Err(
                mpsc::error::TrySendError::Full(Outbound::Event(e))
                | mpsc::error::TrySendError::Closed(Outbound::Event(e)),
            ) => {
                if let Err(err) = self.journal.push(e) {
                    tracing::error!("the event journal cannot be written: {err}");
                }
            }
            Err(_) => tracing::warn!("the MQTT agent is not keeping up; a message was dropped"),
        }
    }

    fn make_event(
        &mut self,
        kind: EventKind,
        severity: Severity,
        controller: Option<ControllerId>,
        message: String,
    ) -> Event {
        self.event_seq += 1;
        new_event(
            &self.id,
            self.now_ms,
            self.event_seq,
            kind,
            severity,
            controller,
            message,
        )
    }

    /// A fault of `controller` (or of the gateway) opening or closing.
    fn fault_event(
        &mut self,
        severity: Severity,
        controller: Option<ControllerId>,
        message: String,
        code: FaultCode,
        open: bool,
    ) {
        let mut e = self.make_event(EventKind::Fault, severity, controller, message);
        e.fault = Some(FaultChange { code, open });
        self.emit(e);
    }

    fn event(
        &mut self,
        kind: EventKind,
        severity: Severity,
        controller: Option<ControllerId>,
        message: String,
    ) {
        let e = self.make_event(kind, severity, controller, message);
        self.emit(e);
    }

    /// To the broker when connected (and nothing older waits), else to the journal.
    fn emit(&mut self, e: Event) {
        match e.severity {
            Severity::Fault => tracing::error!("{:?}: {}", e.kind, e.message),
            Severity::Warning => tracing::warn!("{:?}: {}", e.kind, e.message),
            Severity::Info => tracing::info!("{:?}: {}", e.kind, e.message),
        }
        if self.connected && self.journal.is_empty() {
            self.send(Outbound::Event(e));
        } else if let Err(err) = self.journal.push(e) {
            tracing::error!("the event journal cannot be written: {err}");
        }
    }

    fn deliver_journal(&mut self) {
        if !self.connected || self.journal.is_empty() && self.journal.dropped() == 0 {
            return;
        }
        let (events, dropped) = match self.journal.take(DELIVER_PER_TICK) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!("the event journal cannot be rewritten: {e}");
                return;
            }
        };
        if dropped > 0 {
            let e = self.make_event(
                EventKind::Gateway,
                Severity::Warning,
                None,
                format!("{dropped} events were dropped while offline (the journal was full)"),
            );
            self.send(Outbound::Event(e));
        }
        for e in events {
            self.send(Outbound::Event(e));
        }
    }

    fn state(&self) -> wire::State {
        let cue = self.playing.as_ref().and_then(|p| p.exec.cue()).map(active);
        wire::State {
            schema: wire::SCHEMA,
            gateway: self.id.clone(),
            online: true,
            plan_version: self.plan_version(),
            plan_hash: self.playing.as_ref().map(|p| p.plan.content_hash.clone()),
            blackout: cue
                .as_ref()
                .is_some_and(|c| c.cause == wire::Cause::Blackout),
            cue,
            overrides: self
                .overrides
                .as_ref()
                .map(|d| {
                    d.overrides
                        .iter()
                        .filter(|o| {
                            o.from_ms <= self.now_ms && o.until_ms.is_none_or(|u| u > self.now_ms)
                        })
                        .map(|o| o.id.clone())
                        .collect()
                })
                .unwrap_or_default(),
            uptime_s: self.started.elapsed().as_secs(),
            clock_trusted: self.wall.trusted(),
        }
    }

    fn send_state(&mut self) {
        if self.outbound.is_some() {
            let state = self.state();
            self.send(Outbound::State(state));
        }
    }

    fn controller_health(&self) -> Vec<ControllerHealth> {
        let Some(p) = &self.playing else {
            return Vec::new();
        };
        p.outputs
            .modbus
            .iter()
            .map(|m| {
                let h = m.health.borrow();
                ControllerHealth {
                    controller: m.id.clone(),
                    faults: h
                        .readings
                        .status
                        .as_ref()
                        .map(|s| s.faults.clone())
                        .unwrap_or_default(),
                    reachable: h.reachable,
                    errors: h.errors,
                    last_error: h.last_error.clone(),
                    power_w: h.readings.power_w,
                    uptime_s: h.readings.uptime.map(|u| u.as_secs()),
                }
            })
            .chain(p.outputs.art_nodes.iter().map(|n| ControllerHealth {
                controller: n.id.clone(),
                faults: Vec::new(),
                reachable: n.answered_once && n.missed == 0,
                errors: u64::from(n.missed),
                last_error: (n.missed > 0).then(|| format!("{} ArtPolls unanswered", n.missed)),
                power_w: None,
                uptime_s: None,
            }))
            .collect()
    }

    fn publish_status(&self) {
        let cue = self.playing.as_ref().and_then(|p| p.exec.cue()).map(active);
        let status = Status {
            plan_version: self.plan_version(),
            pending_version: self.pending.as_ref().map(|(p, _, _)| p.version),
            overrides_version: self.overrides.as_ref().map(|d| d.version),
            blackout: cue
                .as_ref()
                .is_some_and(|c| c.cause == wire::Cause::Blackout),
            cue_since_ms: self.status.borrow().cue_since_ms,
            cue,
            frames: self.total_frames,
            connected: self.connected,
            clock_trusted: self.wall.trusted(),
            journaled: self.journal.len(),
            universes: self.playing.as_ref().map_or(0, |p| {
                p.outputs.dmx.as_ref().map_or(0, Sender::universes)
                    + p.outputs.mqtt.as_ref().map_or(0, Publisher::universes)
            }),
            controllers: self.controller_health(),
            last_refusal: self.status.borrow().last_refusal.clone(),
            oversized: self.status.borrow().oversized,
        };
        self.status.send_if_modified(|s| {
            let since = if s.cue != status.cue {
                Some(self.now_ms)
            } else {
                s.cue_since_ms
            };
            let next = Status {
                cue_since_ms: since,
                ..status
            };
            if *s == next {
                false
            } else {
                *s = next;
                true
            }
        });
    }

    /// Opens and closes controller faults from the drivers' health.
    fn check_health(&mut self) {
        let now = Instant::now();
        let lit_due = self.lit_check.is_some_and(|at| now >= at);
        if lit_due {
            self.lit_check = None;
        }
        let mut events = Vec::new();
        let Some(p) = self.playing.as_mut() else {
            return;
        };
        let channels = p.exec.channels();
        if p.outputs.art_polls.has_changed().unwrap_or(false)
            && let Some(answered) = p.outputs.art_polls.borrow_and_update().clone()
        {
            for node in &mut p.outputs.art_nodes {
                if answered.contains(&node.id) {
                    node.missed = 0;
                    node.answered_once = true;
                    if node.fault_open {
                        node.fault_open = false;
                        events.push((
                            Severity::Info,
                            node.id.clone(),
                            "answers ArtPoll again".to_string(),
                            Some((FaultCode::Unreachable, false)),
                        ));
                    }
                } else {
                    node.missed += 1;
                    if node.missed >= ART_MISSED_FAULT && !node.fault_open {
                        node.fault_open = true;
                        events.push((
                            Severity::Fault,
                            node.id.clone(),
                            format!(
                                "unreachable: no ArtPollReply to {} polls in a row",
                                node.missed
                            ),
                            Some((FaultCode::Unreachable, true)),
                        ));
                    }
                }
            }
        }
        for m in &mut p.outputs.modbus {
            let h = m.health.borrow().clone();
            if h.reachable {
                m.unreachable_since = None;
                if m.fault_open {
                    m.fault_open = false;
                    events.push((
                        Severity::Info,
                        m.id.clone(),
                        "reachable again; output restored".to_string(),
                        Some((FaultCode::Unreachable, false)),
                    ));
                }
            } else {
                let since = *m.unreachable_since.get_or_insert(now);
                if !m.fault_open && now.duration_since(since) >= UNREACHABLE_FAULT_AFTER {
                    m.fault_open = true;
                    let why = h
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "no connection".into());
                    events.push((
                        Severity::Fault,
                        m.id.clone(),
                        format!("unreachable: {why}"),
                        Some((FaultCode::Unreachable, true)),
                    ));
                }
            }
            if h.rewrites > m.rewrites {
                m.rewrites = h.rewrites;
                events.push((
                    Severity::Warning,
                    m.id.clone(),
                    "the controller restarted (its uptime went back); every level was written again".to_string(),
                    None,
                ));
            }
            let faults = h
                .readings
                .status
                .as_ref()
                .map(|s| s.faults.clone())
                .unwrap_or_default();
            if faults != m.status_faults {
                let (severity, message) = if faults.is_empty() {
                    (Severity::Info, "status healthy again".to_string())
                } else {
                    let names: Vec<&str> = faults.iter().map(|b| b.name()).collect();
                    (
                        Severity::Fault,
                        format!("status reports {}", names.join(", ")),
                    )
                };
                let open = !faults.is_empty();
                m.status_faults = faults;
                events.push((
                    severity,
                    m.id.clone(),
                    message,
                    Some((FaultCode::Status, open)),
                ));
            }
            if lit_due && m.has_meter && h.reachable {
                let expected = watts(p.exec.layout(), &m.fixtures, channels);
                let measured = h.readings.power_w.unwrap_or(0.0);
                if expected > 1.0 && measured < expected * LIT_SHARE {
                    m.dark_fault_open = true;
                    events.push((
                        Severity::Fault,
                        m.id.clone(),
                        format!(
                            "did not light: {measured:.0} W measured, {expected:.0} W expected"
                        ),
                        Some((FaultCode::DidNotLight, true)),
                    ));
                } else if m.dark_fault_open {
                    m.dark_fault_open = false;
                    events.push((
                        Severity::Info,
                        m.id.clone(),
                        format!("lit: {measured:.0} W measured"),
                        Some((FaultCode::DidNotLight, false)),
                    ));
                }
            }
        }
        for (severity, controller, message, fault) in events {
            match fault {
                Some((code, open)) => {
                    self.fault_event(severity, Some(controller), message, code, open);
                }
                None => self.event(EventKind::Fault, severity, Some(controller), message),
            }
        }
    }

    fn send_telemetry(&mut self, period: Duration) {
        let stats = std::mem::take(&mut self.stats);
        let last = stats.last;
        let elapsed = stats.since.map_or(TELEMETRY_EVERY, |s| s.elapsed());
        self.stats.since = Some(Instant::now());
        self.stats.last = last;
        if self.outbound.is_none() {
            return;
        }
        let mut intervals = stats.intervals_ms;
        let jitter_p99_ms = percentile(&mut intervals, 0.99);
        let max_frame_ms = intervals
            .last()
            .map_or(0.0, |&j| f64::from(j) + period.as_secs_f64() * 1000.0);
        let (power_w, power_source) = match &self.playing {
            None => (0.0, PowerSource::Estimated),
            Some(p) => {
                let channels = p.exec.channels();
                let mut measured = 0.0;
                let mut metered = 0;
                for m in p.outputs.modbus.iter().filter(|m| m.has_meter) {
                    if let Some(w) = m.health.borrow().readings.power_w {
                        measured += w;
                        metered += 1;
                    } else {
                        measured += watts(p.exec.layout(), &m.fixtures, channels);
                    }
                }
                let estimated = watts(p.exec.layout(), &p.estimated, channels);
                let source = match (metered > 0, !p.estimated.is_empty()) {
                    (true, false) => PowerSource::Measured,
                    (true, true) => PowerSource::Mixed,
                    (false, _) => PowerSource::Estimated,
                };
                (measured + estimated, source)
            }
        };
        let telemetry = Telemetry {
            schema: wire::SCHEMA,
            gateway: self.id.clone(),
            at_ms: self.now_ms,
            controllers: self.controller_health(),
            frames: stats.frames,
            late_frames: stats.late,
            frame_rate_hz: stats.frames as f64 / elapsed.as_secs_f64().max(1e-3),
            jitter_p99_ms,
            max_frame_ms,
            power_w,
            power_source,
            cue: self.playing.as_ref().and_then(|p| p.exec.cue()).map(active),
            clock_trusted: self.wall.trusted(),
            clock_offset_ms: self.wall.offset_ms(),
        };
        self.send(Outbound::Telemetry(telemetry));
    }

    /// Keeps the last trusted time, off the frame thread (a sync to disk can take long).
    fn save_trusted_time(&self) {
        if self.wall.trusted() {
            let (store, ms) = (self.store.clone(), self.wall.last_trusted_ms());
            tokio::task::spawn_blocking(move || {
                if let Err(e) = store.save_trusted_time(ms) {
                    tracing::warn!("cannot keep the trusted time: {e}");
                }
            });
        }
    }

    /// The safe state: dark sends zeros everywhere first; hold leaves the last look.
    async fn stop(&mut self) {
        let dark = self.config.safe_state == SafeState::Dark;
        if self.wall.trusted()
            && let Err(e) = self.store.save_trusted_time(self.wall.last_trusted_ms())
        {
            tracing::warn!("cannot keep the trusted time: {e}");
        }
        if let Some(p) = self.playing.as_mut() {
            if dark {
                let zeros = vec![0u8; p.exec.channels().len()];
                let map = p.exec.map();
                for m in &p.outputs.modbus {
                    m.levels.send_modify(|l| {
                        l.channels.fill(0);
                        // A controller that fades goes dark at once too.
                        if m.controller_fades {
                            l.fade = Some(Duration::ZERO);
                        }
                    });
                }
                if let (Some(publisher), Some(client)) = (p.outputs.mqtt.as_mut(), &self.client) {
                    tokio::time::sleep(Duration::from_millis(120)).await;
                    publisher.publish(client, map, &zeros);
                }
                let deadline = Instant::now() + DARK_WAIT;
                for m in &mut p.outputs.modbus {
                    let mut health = m.health.clone();
                    let _ = tokio::time::timeout_at(
                        deadline,
                        health.wait_for(|h| {
                            !h.reachable
                                || h.written
                                    .as_ref()
                                    .is_some_and(|w| w.iter().all(|&v| v == 0))
                        }),
                    )
                    .await;
                }
            }
            if let Some(dmx) = p.outputs.dmx.as_mut()
                && let Err(e) = dmx.stop(dark).await
            {
                tracing::warn!("DMX stop: {e}");
            }
            p.outputs.stop.cancel();
        }
        self.event(
            EventKind::Gateway,
            Severity::Info,
            None,
            format!("stopped; outputs {}", if dark { "dark" } else { "holding" }),
        );
    }
}

/// Starts a driver per Modbus controller of the plan that the gateway reaches.
fn start_modbus(
    outputs: &mut Outputs,
    lib: &ShowLibrary,
    plan: &Plan,
    map: &nightscape_core::OutputMap,
    to: &std::collections::BTreeMap<ControllerId, Destination>,
) {
    let Some(site) = lib.sites.get(&plan.site) else {
        return;
    };
    let stop = &outputs.stop;
    for (map_index, cm) in map.controllers().iter().enumerate() {
        let Some(Destination::Tcp(addr)) = to.get(&cm.controller) else {
            continue;
        };
        let c = &site.controllers[cm.index];
        let Output::Modbus {
            unit,
            profile,
            fade_by,
            ..
        } = &c.output
        else {
            continue;
        };
        let controller_fades = *fade_by == nightscape_core::model::FadeBy::Controller;
        let Some(profile) = lib.profiles.get(profile) else {
            continue;
        };
        let profile = Arc::new(profile.clone());
        let channels = usize::from(profile.levels.channels);
        // Zeros until the executor's first frame. An empty `Levels` would make the driver
        // wait for that frame before switching the device on (the driver's contract), but
        // doing so here made the flaky-controllers proof see controllers at their default
        // health at the start of its first phase, not yet understood: the switch-on order
        // stays open (see the issue's note).
        let (levels_tx, levels_rx) = watch::channel(Levels {
            channels: vec![0; channels],
            fade: None,
        });
        let (health_tx, health_rx) = watch::channel(Health::default());
        let settings = modbus::Settings {
            controller: c.id.clone(),
            addr: *addr,
            unit: *unit,
            profile: profile.clone(),
            // Either the controller fades (its fade register set per cue, the target
            // written once) or the gateway does (the register kept at 0): never both.
            controller_fades,
            deadline: MODBUS_DEADLINE,
            poll_every: MODBUS_POLL,
        };
        tokio::spawn(
            modbus::run(settings, levels_rx, health_tx, stop.child_token()).in_current_span(),
        );
        let mut fixtures: Vec<(f64, usize)> = Vec::new();
        for r in cm.sinks.iter().flat_map(|s| s.runs.iter()) {
            if !fixtures.iter().any(|&(_, i)| i == r.fixture) {
                let w = site.fixtures.get(r.fixture).map_or(0.0, |f| f.power_w);
                fixtures.push((w, r.fixture));
            }
        }
        outputs.modbus.push(ModbusOut {
            map_index,
            id: c.id.clone(),
            levels: levels_tx,
            health: health_rx,
            buf: vec![0; channels],
            controller_fades,
            longest_fade: nightscape_core::codec::modbus::longest_fade(&profile)
                .unwrap_or_default(),
            has_meter: profile.power.is_some(),
            fixtures,
            unreachable_since: None,
            fault_open: false,
            status_faults: Vec::new(),
            rewrites: 0,
            dark_fault_open: false,
        });
    }
}

/// Commissioning overlays on top of a frame's layout channels.
fn overlay(overlays: &[(i64, Overlay)], now_ms: i64, channels: &mut [u8]) {
    for (_, overlay) in overlays {
        match overlay {
            Overlay::Blink(ranges) => {
                let on = now_ms.rem_euclid(1000) < 500;
                for (r, white) in ranges {
                    if let Some(s) = channels.get_mut(r.clone()) {
                        if on {
                            s.copy_from_slice(white);
                        } else {
                            s.fill(0);
                        }
                    }
                }
            }
            Overlay::Set { channel, level } => {
                if let Some(v) = channels.get_mut(*channel) {
                    *v = *level;
                }
            }
        }
    }
}

/// An event with an id unique to this gateway (time, randomness, sequence).
fn new_event(
    gateway: &GatewayId,
    at_ms: i64,
    seq: u64,
    kind: EventKind,
    severity: Severity,
    controller: Option<ControllerId>,
    message: String,
) -> Event {
    let mut salt = [0u8; 4];
    let _ = getrandom::fill(&mut salt);
    Event {
        schema: wire::SCHEMA,
        gateway: gateway.clone(),
        at_ms,
        id: format!("{at_ms:x}-{}-{seq}", plan::hex(&salt)),
        kind,
        severity,
        controller,
        message,
        cue: None,
        fault: None,
    }
}

/// Frame ticks (each with the instant it was due) from a thread of its own: tokio's timer
/// has millisecond resolution, which alone makes about ±1 ms of jitter at 44 Hz; the
/// operating system's high-resolution sleep keeps the interval within tens of microseconds.
/// A tick the frame loop has not taken when the next is due is dropped (counted late by
/// the interval it leaves).
fn metronome(period: Duration, stop: CancellationToken) -> io::Result<mpsc::Receiver<Instant>> {
    let (tx, rx) = mpsc::channel(1);
    std::thread::Builder::new()
        .name("frame-clock".into())
        .spawn(move || {
            let mut next = std::time::Instant::now();
            while !stop.is_cancelled() && !tx.is_closed() {
                let now = std::time::Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
                let _ = tx.try_send(Instant::from_std(next));
                next += period;
                let now = std::time::Instant::now();
                if next < now {
                    // Far behind (a stalled machine): start again from now, not in a burst.
                    next = now + period;
                }
            }
        })?;
    Ok(rx)
}

/// The same from the runtime's timer (when no thread can be started).
fn tokio_ticks(period: Duration) -> mpsc::Receiver<Instant> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            let due = interval.tick().await;
            if tx.try_send(due).is_err() && tx.is_closed() {
                return;
            }
        }
    });
    rx
}

/// The version a refused document claims, for its ack (`?` when it has none).
fn version_of(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("document")?.get("version")?.as_u64())
        .map_or_else(|| "?".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut v = vec![3.0, 1.0, 2.0, 100.0];
        assert_eq!(percentile(&mut v, 0.0), 1.0);
        assert_eq!(percentile(&mut v, 1.0), 100.0);
        assert_eq!(percentile(&mut [], 0.99), 0.0);
    }

    #[test]
    fn a_refused_documents_version_is_read_when_it_has_one() {
        assert_eq!(version_of(br#"{"document":{"version":7}}"#), "7");
        assert_eq!(version_of(b"garbage"), "?");
    }
}
