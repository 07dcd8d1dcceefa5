//! The soak: `nightscape up` on a clock running 720 times real time, a night a minute, for
//! `NIGHTSCAPE_SOAK_SECS` of real time (default 60: twelve hours of the city; the
//! documented run is 3600, a month). Every gateway's cue changes, as the server stored
//! them, are compared with the core's `transitions` of its site over the same hours; the
//! process's resident memory is sampled and printed as a curve; the log must have no error.

use std::time::{Duration, Instant};

use nightscape_core::schedule::{epoch_day, local_date};
use nightscape_core::sun::Almanac;
use sqlx::Row;

use crate::system::{body_of, free_port, http, login_as, scratch, spawn_up_with};

/// The clock's start (Korea time) and its factor.
const START: &str = "2027-01-01T12:00";
const START_MS: i64 = 1_798_772_400_000;
const SCALE: f64 = 720.0;
/// One frame at 40 Hz, in the clock's time (18 s).
const FRAME_MS: i64 = (25.0 * SCALE) as i64;
/// Cue changes within this much of either end of the compared span may or may not have
/// reached the store yet; the span leaves them out (virtual time: 1.7 s real).
const EDGE_MS: i64 = 20 * 60_000;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_of_up_at_a_night_a_minute() {
    let secs: u64 = std::env::var("NIGHTSCAPE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let data = scratch("soak");
    let up = spawn_up_with(
        &data,
        free_port(),
        &["--time-scale", &SCALE.to_string(), "--start", START],
    );
    let pid = up.process.0.id();
    let began = Instant::now();
    let session = login_as(&up.http, &up.password).await;
    crate::system::all_in_sync(&up.http, &session).await;

    // Resident memory every 1/20 of the run (at least every 3 s).
    let every = Duration::from_secs((secs / 20).max(3));
    let mut curve: Vec<(u64, u64)> = Vec::new();
    while began.elapsed() < Duration::from_secs(secs) {
        curve.push((began.elapsed().as_secs(), rss_kib(pid)));
        tokio::time::sleep(every.min(Duration::from_secs(secs).saturating_sub(began.elapsed())))
            .await;
    }
    curve.push((began.elapsed().as_secs(), rss_kib(pid)));
    let (_, site_view) = http(&up.sim_http, "GET", "/api/sites/nonsan-city-hall", &[], "").await;
    let now_ms = body_of(&site_view)["at_ms"]
        .as_i64()
        .expect("the simulator's clock");
    // Let the last events reach the store, then stop `up` as ctrl-c does.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_end = rss_kib(pid);
    let mut process = up.process;
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let stopped = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(status)) = process.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    })
    .await
    .unwrap();
    assert!(stopped.is_some(), "up did not stop within 20 s of ctrl-c");

    // What the core says should have happened, site by site, in the span compared.
    let (_, checked) =
        nightscape::library::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenes"))
            .unwrap();
    let lib = checked.library;
    let (from, to) = (START_MS + EDGE_MS, now_ms - EDGE_MS);
    let store = nightscape_server::store::Store::open(&format!(
        "sqlite://{}",
        data.join("server/nightscape.db").display()
    ))
    .await
    .unwrap();
    let mut expected_total = 0;
    let mut late_max = 0i64;
    let mut problems = Vec::new();
    for site in lib.sites.values() {
        let days = epoch_day(local_date(from, &site.time_zone));
        let evaluator = lib
            .evaluator(
                &site.id,
                std::sync::Arc::new(Almanac::new(days - 2, days + 40)),
            )
            .unwrap();
        let (transitions, _) = evaluator.transitions(from, to);
        let want: Vec<i64> = transitions.iter().map(|t| t.at_ms).collect();
        expected_total += want.len();
        for gw in &site.gateways {
            let got: Vec<i64> = sqlx::query(
                "SELECT at_ms FROM events WHERE gateway = $1 AND kind = 'cue' AND at_ms >= $2 AND at_ms < $3 ORDER BY at_ms",
            )
            .bind(gw.id.as_str())
            .bind(from)
            .bind(to + 2 * FRAME_MS)
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<i64, _>("at_ms").unwrap())
            .collect();
            // Each transition is played by the first frame at or after it: the cue change
            // is stamped with that frame's time.
            let mut unmatched: Vec<i64> = got.clone();
            let mut missed = Vec::new();
            for t in &want {
                match unmatched
                    .iter()
                    .position(|g| (*t..t + 2 * FRAME_MS).contains(g))
                {
                    Some(i) => {
                        late_max = late_max.max(unmatched[i] - t);
                        unmatched.remove(i);
                    }
                    None => missed.push(*t),
                }
            }
            let extra: Vec<i64> = unmatched
                .into_iter()
                .filter(|g| (from + 2 * FRAME_MS..to).contains(g))
                .collect();
            if !missed.is_empty() || !extra.is_empty() {
                problems.push(format!("{}: missed {missed:?}, extra {extra:?}", gw.id));
            }
        }
    }
    store.close().await;

    let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    let warnings = log.lines().filter(|l| l.contains(" WARN ")).count();

    let hours = (now_ms - START_MS) as f64 / 3_600_000.0;
    println!(
        "soak: {secs} s real, {hours:.1} h of the city ({:.1} nights); {expected_total} transitions compared over {:.1} h, played at most {:.2} frames late; {} gateways wrong; {} errors, {warnings} warnings in the log",
        hours / 24.0,
        (to - from) as f64 / 3_600_000.0,
        late_max as f64 / FRAME_MS as f64,
        problems.len(),
        errors.len()
    );
    println!("resident memory (real seconds, MiB):");
    for (t, kib) in &curve {
        println!("  {t:>5} {:>7.1}", *kib as f64 / 1024.0);
    }
    println!("  end   {:>7.1}", rss_end as f64 / 1024.0);
    assert!(
        problems.is_empty(),
        "transitions not played as listed: {problems:#?}"
    );
    assert!(expected_total > 0, "the span held no transition");
    assert!(errors.is_empty(), "errors in the log: {errors:#?}");
    // Flat: after the first quarter (start-up, caches filled), the resident set grows by
    // less than a tenth.
    let settled = curve[curve.len() / 4].1;
    let peak_late = curve[curve.len() * 3 / 4..]
        .iter()
        .map(|(_, k)| *k)
        .max()
        .unwrap_or(0)
        .max(rss_end);
    assert!(
        peak_late <= settled + settled / 10,
        "resident memory grew from {settled} KiB to {peak_late} KiB"
    );
}
