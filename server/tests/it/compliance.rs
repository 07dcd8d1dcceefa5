//! The compliance report from planted histories: cue events and the gateway's state and
//! telemetry taken through the intake at chosen instants of a virtual clock, then the
//! report through the API (and the site page), on SQLite and PostgreSQL.
//!
//! Nonsan City Hall (zone 3: curfew 00:00, cap 90 %). The night of 2026-12-07 runs from
//! sunset 17:16 to sunrise 07:29 the next morning.

use std::sync::Arc;

use axum::http::StatusCode;
use nightscape_core::clock::{Clock, VirtualClock};
use nightscape_core::wire::{self, ActiveCue, PowerSource, State, Telemetry};
use nightscape_server::intake::Intake;
use nightscape_server::mqtt::Inbound;
use nightscape_server::{AppState, auth};
use serde_json::{Value, json};

use crate::common::*;

const GW: &str = "cityhall-gw";
const MIN: i64 = 60_000;

/// An instant in Korea: `kst("12-08T00:47")`.
fn kst(text: &str) -> i64 {
    format!("2026-{text}:00+09:00")
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_millisecond()
}

/// The site's gateway as the intake hears it, on the test's virtual clock.
struct Gateway {
    state: Arc<AppState>,
    clock: Arc<VirtualClock>,
    intake: Intake,
    events: u32,
}

impl Gateway {
    async fn new(db: &Db) -> Gateway {
        let (state, clock) = app_state(&db.url).await;
        // The gateways' rows come with the first publishing round.
        state.publisher.round().await.unwrap();
        let intake = Intake::new(
            state.store.clone(),
            state.publisher.clone(),
            state.metrics.clone(),
            clock.clone(),
            String::new(),
        );
        Gateway {
            state,
            clock,
            intake,
            events: 0,
        }
    }

    async fn take(&mut self, at_ms: i64, leaf: wire::Topic, payload: Vec<u8>) {
        self.clock.set_wall(at_ms);
        let topic = wire::topic("", &GW.parse().unwrap(), leaf);
        self.intake.take_all(&[Inbound { topic, payload }]).await;
    }

    /// Telemetry every minute from `from` to `to` (inclusive), as a connected gateway sends.
    async fn heard(&mut self, from: i64, to: i64) {
        let mut t = from;
        while t <= to {
            let m = wire::encode(&Telemetry {
                schema: wire::SCHEMA,
                gateway: GW.parse().unwrap(),
                at_ms: t,
                controllers: Vec::new(),
                frames: 400,
                late_frames: 0,
                frame_rate_hz: 40.0,
                jitter_p99_ms: 0.5,
                max_frame_ms: 26.0,
                power_w: 100.0,
                power_source: PowerSource::Estimated,
                cue: None,
                clock_trusted: true,
                clock_offset_ms: 0,
            });
            self.take(t, wire::Topic::Telemetry, m).await;
            t += MIN;
        }
    }

    /// The gateway's state: `online: false` is its last will, sent by the broker.
    async fn state(&mut self, at_ms: i64, online: bool) {
        let m = wire::encode(&State {
            schema: wire::SCHEMA,
            gateway: GW.parse().unwrap(),
            online,
            plan_version: None,
            plan_hash: None,
            cue: None,
            overrides: Vec::new(),
            blackout: false,
            uptime_s: 0,
            clock_trusted: true,
        });
        self.take(at_ms, wire::Topic::State, m).await;
    }

    /// A cue event taken live at `at_ms` (or, journaled, later: `taken_ms`).
    async fn cue(&mut self, at_ms: i64, taken_ms: i64, scene: Option<&str>, pct: f64) {
        self.events += 1;
        let e = wire::Event {
            schema: wire::SCHEMA,
            gateway: GW.parse().unwrap(),
            at_ms,
            id: format!("cue-{}", self.events),
            kind: wire::EventKind::Cue,
            severity: wire::Severity::Info,
            controller: None,
            message: "cue".into(),
            cue: Some(ActiveCue {
                scene: scene.map(|s| s.parse().unwrap()),
                brightness_pct: nightscape_core::model::Level::from_pct(pct).unwrap(),
                cause: wire::Cause::Idle,
            }),
            fault: None,
        };
        self.take(taken_ms, wire::Topic::Event, wire::encode(&e))
            .await;
    }

    /// A viewer's token, issued now on the virtual clock (tokens expire).
    async fn viewer(&mut self) -> As {
        self.events += 1;
        let name = format!("viewer-{}", self.events);
        let now = self.clock.now_ms();
        let store = &self.state.store;
        let role = nightscape_server::auth::Role::Viewer;
        auth::put_user(
            store,
            &name,
            Some("a-long-password-1"),
            role,
            &[],
            "test",
            now,
        )
        .await
        .unwrap();
        As::Bearer(
            auth::issue_token(store, &name, "test", now, now + 86_400_000)
                .await
                .unwrap(),
        )
    }

    /// The night of 2026-12-07 as the API reports it now.
    async fn night(&mut self, db: &Db) -> Value {
        let viewer = self.viewer().await;
        let r = call(
            &self.state,
            request(
                "GET",
                "/api/sites/nonsan-city-hall/compliance?from=2026-12-07&to=2026-12-07",
                &viewer,
                None,
            ),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}: {}", db.label, r.text);
        r.json[0].clone()
    }
}

fn minutes(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// Milliseconds in minutes as the report rounds them (to a tenth).
fn rounded(ms: i64) -> f64 {
    (ms as f64 / 6_000.0).round() / 10.0
}

/// Regression: a 30 s override at 10:08 the morning after (daylight) showed the night of
/// 12-07 as 112 minutes lit after curfew — the report ran noon to noon and carried the cue
/// in force, asked for during the override, to the next noon.
#[tokio::test]
async fn a_daytime_override_counts_nothing_at_night() {
    for db in Db::both("comp-daytime").await {
        let mut gw = Gateway::new(&db).await;
        gw.cue(kst("12-07T12:00"), kst("12-07T12:00"), None, 0.0)
            .await;
        gw.heard(kst("12-07T12:00"), kst("12-08T10:08")).await;
        gw.cue(
            kst("12-08T10:08"),
            kst("12-08T10:08"),
            Some("cityhall-civic-white"),
            100.0,
        )
        .await;
        // Asked for while the override plays…
        gw.clock.set_wall(kst("12-08T10:08") + 15_000);
        let night = gw.night(&db).await;
        assert_eq!(
            (
                minutes(&night, "lit_minutes"),
                minutes(&night, "lit_after_curfew_minutes"),
                minutes(&night, "not_reported_minutes"),
                &night["status"],
                &night["reported"],
            ),
            (0.0, 0.0, 0.0, &json!("over"), &json!(true)),
            "{}: {night}",
            db.label
        );
        // …and after it.
        gw.cue(
            kst("12-08T10:08") + 30_000,
            kst("12-08T10:08") + 30_000,
            None,
            0.0,
        )
        .await;
        gw.heard(kst("12-08T10:09"), kst("12-08T13:00")).await;
        let night = gw.night(&db).await;
        assert_eq!(
            (
                minutes(&night, "lit_minutes"),
                minutes(&night, "lit_after_curfew_minutes")
            ),
            (0.0, 0.0),
            "{}: {night}",
            db.label
        );
        db.drop_now().await;
    }
}

/// Regression: tonight, asked for before it happened, showed 1,440 minutes lit and 720
/// after curfew — the cue in force was carried to the next noon. Now the night counts up to
/// now, says it is in progress, and the site page says so too.
#[tokio::test]
async fn a_night_in_progress_counts_only_up_to_now_and_is_marked() {
    for db in Db::both("comp-tonight").await {
        let mut gw = Gateway::new(&db).await;
        gw.cue(
            kst("12-07T17:00"),
            kst("12-07T17:00"),
            Some("cityhall-civic-white"),
            100.0,
        )
        .await;
        gw.heard(kst("12-07T16:00"), kst("12-08T01:30")).await;
        let now = kst("12-08T01:30");
        assert_eq!(gw.clock.now_ms(), now);
        let night = gw.night(&db).await;
        let sunset = night["night_from_ms"].as_i64().unwrap();
        assert_eq!(night["status"], "in-progress", "{}: {night}", db.label);
        assert_eq!(night["counted_to_ms"], json!(now), "{}: {night}", db.label);
        assert_eq!(
            (
                minutes(&night, "lit_minutes"),
                minutes(&night, "lit_after_curfew_minutes"),
                minutes(&night, "not_reported_minutes"),
            ),
            (rounded(now - sunset), 90.0, 0.0),
            "{}: {night}",
            db.label
        );
        // The default range ends with tonight, since the sun has set.
        let viewer = gw.viewer().await;
        let r = call(
            &gw.state,
            request(
                "GET",
                "/api/sites/nonsan-city-hall/compliance",
                &viewer,
                None,
            ),
        )
        .await;
        let last = r.json.as_array().and_then(|a| a.last()).cloned();
        assert_eq!(
            last.as_ref().map(|n| (&n["date"], &n["status"])),
            Some((&json!("2026-12-07"), &json!("in-progress"))),
            "{}: {}",
            db.label,
            r.text
        );
        // The site page, Korean first.
        let admin = login(&gw.state, "admin", ADMIN_PASSWORD).await;
        for (lang, words) in [
            ("ko", "진행 중 — 01:30까지 집계"),
            ("en", "in progress — counted up to 01:30"),
        ] {
            let page = call(
                &gw.state,
                request(
                    "GET",
                    &format!("/sites/nonsan-city-hall?lang={lang}"),
                    &admin,
                    None,
                ),
            )
            .await;
            assert_eq!(page.status, StatusCode::OK, "{}", db.label);
            assert!(
                page.text.contains(words),
                "{}: the page does not say `{words}`",
                db.label
            );
        }
        // Before sunset the next day, that night has not begun.
        gw.clock.set_wall(kst("12-08T16:00"));
        let viewer = gw.viewer().await;
        let r = call(
            &gw.state,
            request(
                "GET",
                "/api/sites/nonsan-city-hall/compliance?from=2026-12-07&to=2026-12-08",
                &viewer,
                None,
            ),
        )
        .await;
        assert_eq!(
            (
                &r.json[0]["status"],
                &r.json[1]["status"],
                &r.json[1]["lit_minutes"]
            ),
            (&json!("over"), &json!("not-begun"), &json!(0.0)),
            "{}: {}",
            db.label,
            r.text
        );
        db.drop_now().await;
    }
}

/// The gateway lost its connection at 23:10 (its last will reached the server at 23:11:30)
/// and came back at 02:40. It played on and its journal delivered the cue it changed to
/// meanwhile, but nothing shows what it did in between: that part is not reported, and not
/// counted as lit.
#[tokio::test]
async fn a_gateway_offline_part_of_the_night_is_not_reported_not_lit() {
    for db in Db::both("comp-offline").await {
        let mut gw = Gateway::new(&db).await;
        gw.cue(
            kst("12-07T17:00"),
            kst("12-07T17:00"),
            Some("cityhall-civic-white"),
            80.0,
        )
        .await;
        gw.heard(kst("12-07T16:00"), kst("12-07T23:10")).await;
        gw.state(kst("12-07T23:11") + 30_000, false).await;
        gw.state(kst("12-08T02:40"), true).await;
        // Journaled while offline: 50 % from 01:00, delivered on return.
        gw.cue(
            kst("12-08T01:00"),
            kst("12-08T02:40"),
            Some("cityhall-late"),
            50.0,
        )
        .await;
        gw.heard(kst("12-08T02:41"), kst("12-08T09:00")).await;
        gw.cue(kst("12-08T07:40"), kst("12-08T07:40"), None, 0.0)
            .await;
        gw.clock.set_wall(kst("12-08T12:00"));
        let night = gw.night(&db).await;
        let (sunset, sunrise) = (
            night["night_from_ms"].as_i64().unwrap(),
            night["night_to_ms"].as_i64().unwrap(),
        );
        assert_eq!(
            (
                &night["status"],
                minutes(&night, "not_reported_minutes"),
                minutes(&night, "lit_minutes"),
                minutes(&night, "lit_after_curfew_minutes"),
            ),
            (
                &json!("over"),
                210.0,
                rounded(kst("12-07T23:10") - sunset + sunrise - kst("12-08T02:40")),
                rounded(sunrise - kst("12-08T02:40")),
            ),
            "{}: {night}",
            db.label
        );
        db.drop_now().await;
    }
}

/// Lit from 18:00, dimmed to 50 % at 22:00, dark at 00:47: 407 minutes lit, 47 after the
/// midnight curfew, exactly; the 100 % cue was held to the 90 % cap.
#[tokio::test]
async fn a_real_after_curfew_stretch_is_counted_to_the_minute() {
    for db in Db::both("comp-curfew").await {
        let mut gw = Gateway::new(&db).await;
        gw.cue(kst("12-07T12:00"), kst("12-07T12:00"), None, 0.0)
            .await;
        gw.heard(kst("12-07T12:00"), kst("12-08T08:00")).await;
        for (at, scene, pct) in [
            ("12-07T18:00", Some("cityhall-civic-white"), 100.0),
            ("12-07T22:00", Some("cityhall-late"), 50.0),
            ("12-08T00:47", None, 0.0),
        ] {
            gw.cue(kst(at), kst("12-08T08:00"), scene, pct).await;
        }
        gw.clock.set_wall(kst("12-08T12:00"));
        let night = gw.night(&db).await;
        assert_eq!(
            (
                &night["status"],
                minutes(&night, "lit_minutes"),
                minutes(&night, "lit_after_curfew_minutes"),
                minutes(&night, "not_reported_minutes"),
                minutes(&night, "max_output_pct"),
                &night["clamped"],
            ),
            (&json!("over"), 407.0, 47.0, 0.0, 90.0, &json!(true)),
            "{}: {night}",
            db.label
        );
        db.drop_now().await;
    }
}
