//! The Modbus TCP driver: one task per controller, owning its connection.
//!
//! It takes the controller's channel levels from a watch channel (the executor's latest
//! frame) and brings the device there with the core's profile codec: the start-up sequence
//! on every new connection and after the device rebooted (its uptime dropped), then only
//! the registers that changed, and everything again every `refresh`. Every request has a
//! deadline; tokio-modbus's connection is not reusable after one passes, so a timeout or a
//! transport error drops the connection and the task reconnects with back-off and jitter.
//! It polls status, power and uptime and publishes the controller's health.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nightscape_core::ControllerId;
use nightscape_core::codec::modbus::{self, Exception, Poll, Readings, Request};
use nightscape_core::model::Profile;
use tokio::sync::watch;
use tokio_modbus::client::{Context, Reader, Writer};
use tokio_modbus::prelude::*;
use tokio_util::sync::CancellationToken;

/// What the driver is to show: the controller's channels (one byte each, in the profile's
/// numbering) and the fade the controller should make, when it fades itself. No channels
/// means no frame yet: the driver connects and reads the device, but writes nothing until
/// the first frame, so its start-up sequence carries the intended levels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Levels {
    pub channels: Vec<u8>,
    pub fade: Option<Duration>,
}

/// How the driver talks to one controller.
#[derive(Debug, Clone)]
pub struct Settings {
    pub controller: ControllerId,
    pub addr: SocketAddr,
    pub unit: u8,
    pub profile: Arc<Profile>,
    /// Whether the controller fades (its fade register set per cue), not the gateway.
    pub controller_fades: bool,
    /// Longest wait for any one answer.
    pub deadline: Duration,
    /// How often status, power and uptime are read.
    pub poll_every: Duration,
}

/// What the driver knows about its controller.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Health {
    pub reachable: bool,
    /// Failed requests (timeouts, transport errors, exceptions) since start.
    pub errors: u64,
    pub last_error: Option<String>,
    /// Full rewrites after the device lost its levels (a reboot seen by its uptime).
    pub rewrites: u64,
    pub readings: Readings,
    /// The level registers the device holds, as far as the driver knows.
    pub written: Option<Vec<u16>>,
}

/// Refused writes are sent again after this, doubling up to [`RETRY_MOST`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MOST: Duration = Duration::from_secs(60);

/// 0–99 from the operating system's randomness (0 if it has none to give).
pub(crate) fn jitter_percent() -> u32 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    u32::from_le_bytes(b) % 100
}

/// Why a connection was given up.
#[derive(Debug)]
enum Lost {
    Shutdown,
    Failed(String),
}

/// Runs the driver until `shutdown`.
pub async fn run(
    settings: Settings,
    mut levels: watch::Receiver<Levels>,
    health: watch::Sender<Health>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let connected = tokio::select! {
            () = shutdown.cancelled() => return,
            c = tokio::time::timeout(
                settings.deadline,
                tcp::connect_slave(settings.addr, Slave(settings.unit)),
            ) => c,
        };
        let lost = match connected {
            Ok(Ok(ctx)) => {
                let mut answered = false;
                let lost = serve(
                    &settings,
                    ctx,
                    &mut levels,
                    &health,
                    &shutdown,
                    &mut answered,
                )
                .await;
                // A device that takes connections but answers nothing is not "back".
                if answered {
                    backoff = Duration::from_millis(100);
                }
                lost
            }
            Ok(Err(e)) => Lost::Failed(format!("connect: {e}")),
            Err(_) => Lost::Failed(format!("connect: no answer in {:?}", settings.deadline)),
        };
        match lost {
            Lost::Shutdown => return,
            Lost::Failed(why) => {
                health.send_modify(|h| {
                    h.reachable = false;
                    h.errors += 1;
                    h.last_error = Some(why.clone());
                    h.written = None;
                });
                tracing::warn!(controller = %settings.controller, "Modbus: {why}; again in {backoff:?}");
            }
        }
        // Random jitter (up to half the back-off), so a site's drivers do not reconnect in
        // step.
        let wait = backoff + backoff.mul_f64(f64::from(jitter_percent()) / 200.0);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// One connection's life: writes and polls until it fails or the gateway stops.
async fn serve(
    s: &Settings,
    mut ctx: Context,
    levels: &mut watch::Receiver<Levels>,
    health: &watch::Sender<Health>,
    shutdown: &CancellationToken,
    answered: &mut bool,
) -> Lost {
    let profile = &s.profile;
    // Writes answered with an exception are sent again after this (doubling to a minute).
    let mut retry_after = RETRY_FIRST;
    let mut retry_at: Option<Instant> = None;
    let mut refresh_refused = false;
    // A new connection may be to a device that lost power: start it up.
    let mut written: Option<Vec<u16>> = None;
    let mut last_fade: Option<Duration> = None;
    let mut last_uptime: Option<Duration>;
    let mut desired: Vec<u16> = Vec::new();
    // Read the device first: its uptime now is what a later reboot is seen against (a
    // reboot just after the start-up writes would otherwise go unnoticed).
    match poll(s, &mut ctx, health).await {
        Ok(readings) => {
            *answered |= health.borrow().reachable;
            last_uptime = readings.uptime;
            health.send_modify(|h| h.readings = readings);
        }
        Err(lost) => return lost,
    }
    // The start-up sequence switches the device on after its levels: they must be the
    // levels meant, not a placeholder from before the executor's first frame.
    tokio::select! {
        () = shutdown.cancelled() => return Lost::Shutdown,
        first = levels.wait_for(|l| !l.channels.is_empty()) => {
            if first.is_err() {
                return Lost::Shutdown;
            }
        }
    }
    let mut next_poll = Instant::now() + s.poll_every;
    let refresh_at = || profile.write.refresh.map(|r| Instant::now() + r);
    let mut next_refresh = refresh_at();
    loop {
        let frame = levels.borrow_and_update().clone();
        modbus::level_registers_into(profile, &frame.channels, &mut desired);
        let fade = s.controller_fades.then_some(frame.fade).flatten();
        if retry_at.is_some_and(|at| Instant::now() >= at) {
            // The pause is over: what was refused goes again now (below), once.
            retry_at = None;
        }
        let refresh_due = written.is_some()
            && (refresh_refused || next_refresh.is_some_and(|at| Instant::now() >= at));
        let mut requests = match &written {
            None => modbus::start_up(profile, fade, &desired),
            Some(_) if refresh_due => modbus::plan_writes(profile, None, &desired),
            Some(before) => modbus::plan_writes(profile, Some(before), &desired),
        };
        // The fade register goes first, also before a refresh, so the levels that follow
        // fade (or not) as the cue says.
        if written.is_some()
            && s.controller_fades
            && fade != last_fade
            && let Some(write) = modbus::fade_write(profile, fade.unwrap_or_default())
        {
            requests.insert(0, write);
        }
        if retry_at.is_some_and(|at| Instant::now() < at) {
            // Waiting to send again what the device refused; levels keep changing meanwhile.
            requests.clear();
        }
        let mut refused = false;
        for request in &requests {
            match write(s, &mut ctx, request, health).await {
                Err(lost) => return lost,
                Ok(true) => *answered = true,
                Ok(false) => refused = true,
            }
            if !profile.write.min_interval.is_zero() {
                tokio::time::sleep(profile.write.min_interval).await;
            }
        }
        if refused {
            // Not written: the same registers (the whole refresh, if it was one) go again
            // after a pause — the device may be busy, or a bridge may have lost its serial
            // line for a moment.
            retry_at = Some(Instant::now() + retry_after);
            retry_after = (retry_after * 2).min(RETRY_MOST);
            refresh_refused = refresh_due;
        } else if !requests.is_empty() {
            if refresh_due {
                next_refresh = refresh_at();
                refresh_refused = false;
            }
            retry_at = None;
            retry_after = RETRY_FIRST;
            written = Some(desired.clone());
            last_fade = fade;
            health.send_modify(|h| h.written = written.clone());
        }
        if Instant::now() >= next_poll {
            next_poll = Instant::now() + s.poll_every;
            let readings = match poll(s, &mut ctx, health).await {
                Ok(r) => r,
                Err(lost) => return lost,
            };
            *answered |= health.borrow().reachable;
            // Uptime going backwards: the device rebooted and lost its levels.
            if let (Some(before), Some(now)) = (last_uptime, readings.uptime)
                && modbus::rebooted(before, now)
            {
                tracing::warn!(controller = %s.controller, "rebooted (uptime {before:?} → {now:?}); writing everything again");
                written = None;
                health.send_modify(|h| h.rewrites += 1);
            }
            last_uptime = readings.uptime.or(last_uptime);
            health.send_modify(|h| h.readings = readings);
            if written.is_none() {
                continue;
            }
        }
        let wake = retry_at.map_or(next_poll, |r| r.min(next_poll));
        let until_poll = wake.saturating_duration_since(Instant::now());
        tokio::select! {
            () = shutdown.cancelled() => return Lost::Shutdown,
            changed = levels.changed() => if changed.is_err() { return Lost::Shutdown },
            () = tokio::time::sleep(until_poll) => {}
        }
    }
}

/// One write with its deadline: `Ok(true)` when taken, `Ok(false)` when refused with an
/// exception (counted; the connection stays); a timeout or a transport error ends the
/// connection.
async fn write(
    s: &Settings,
    ctx: &mut Context,
    request: &Request,
    health: &watch::Sender<Health>,
) -> Result<bool, Lost> {
    let sent = match request {
        Request::WriteSingle { register, value } => {
            tokio::time::timeout(
                s.deadline,
                ctx.write_single_register(register.get(), *value),
            )
            .await
        }
        Request::WriteMultiple { start, values } => {
            tokio::time::timeout(
                s.deadline,
                ctx.write_multiple_registers(start.get(), values),
            )
            .await
        }
    };
    match sent {
        Err(_) => Err(Lost::Failed(format!(
            "write: no answer in {:?}",
            s.deadline
        ))),
        Ok(Err(e)) => Err(Lost::Failed(format!("write: {e}"))),
        Ok(Ok(Err(code))) => {
            let exception = Exception::from_code(code.into());
            health.send_modify(|h| {
                h.errors += 1;
                h.last_error = Some(format!("write to {:?}: {exception}", request.registers()));
            });
            Ok(false)
        }
        Ok(Ok(Ok(()))) => {
            answered(health);
            Ok(true)
        }
    }
}

/// What one read brought back.
#[derive(Debug)]
pub(crate) enum ReadOutcome {
    Values(Vec<u16>),
    /// The device answered with an exception (the connection is still good).
    Exception(Exception),
    /// A timeout or transport error: the connection is not usable any more.
    Lost(String),
}

/// One read of a poll plan, from the table it names, with its deadline.
pub(crate) async fn read(ctx: &mut Context, r: &modbus::Read, deadline: Duration) -> ReadOutcome {
    let (start, count) = (r.start.get(), r.count);
    let answer = match r.table {
        nightscape_core::addr::RegisterTable::Input => {
            tokio::time::timeout(deadline, ctx.read_input_registers(start, count)).await
        }
        nightscape_core::addr::RegisterTable::Holding => {
            tokio::time::timeout(deadline, ctx.read_holding_registers(start, count)).await
        }
    };
    match answer {
        Err(_) => ReadOutcome::Lost(format!("read: no answer in {deadline:?}")),
        Ok(Err(e)) => ReadOutcome::Lost(format!("read: {e}")),
        Ok(Ok(Err(code))) => ReadOutcome::Exception(Exception::from_code(code.into())),
        Ok(Ok(Ok(values))) => ReadOutcome::Values(values),
    }
}

/// A request was answered: the controller is reachable (a connection alone does not say
/// so; a device that accepts connections and answers nothing is not).
fn answered(health: &watch::Sender<Health>) {
    health.send_if_modified(|h| !std::mem::replace(&mut h.reachable, true));
}

/// Reads status, power and uptime (what the profile has) with deadlines.
async fn poll(
    s: &Settings,
    ctx: &mut Context,
    health: &watch::Sender<Health>,
) -> Result<Readings, Lost> {
    let plan = Poll::new(&s.profile, false);
    let mut answers = Vec::with_capacity(plan.reads.len());
    for r in &plan.reads {
        match read(ctx, r, s.deadline).await {
            ReadOutcome::Lost(why) => return Err(Lost::Failed(why)),
            ReadOutcome::Exception(exception) => {
                health.send_modify(|h| {
                    h.errors += 1;
                    h.last_error = Some(format!("read of {:?}: {exception}", r.registers()));
                });
                answers.push(None);
            }
            ReadOutcome::Values(values) => {
                answered(health);
                answers.push(Some(values));
            }
        }
    }
    Ok(plan.readings(&s.profile, &answers))
}
