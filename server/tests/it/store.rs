//! The store on both databases.

use nightscape_core::clock::Clock;
use nightscape_server::store::{Audit, Store, generation};

use crate::common::*;

#[tokio::test]
async fn library_versions_faults_and_audit_behave_alike_on_sqlite_and_postgresql() {
    for db in Db::both("store").await {
        let store = Store::open(&db.url).await.unwrap();
        // Migrations run once: opening again is harmless.
        let store2 = Store::open(&db.url).await.unwrap();
        let g0 = generation(&store).await.unwrap();
        let audit = Audit {
            actor: "ada",
            action: "library.put",
            target: "library:zones.toml".into(),
            before: None,
            after: Some(serde_json::json!("x")),
        };
        store
            .write_library(
                &[("zones.toml".into(), Some("# 한국어 텍스트\n".into()))],
                "ada",
                5,
                &[audit],
            )
            .await
            .unwrap();
        let files = store2.library().await.unwrap();
        assert_eq!(files.len(), 1, "{}", db.label);
        assert_eq!(files[0].text, "# 한국어 텍스트\n");
        assert_eq!(
            generation(&store).await.unwrap(),
            g0 + 1,
            "{}: a change bumps the generation",
            db.label
        );
        let log = store.audit_log(10).await.unwrap();
        assert_eq!(
            (log[0].actor.as_str(), log[0].action.as_str()),
            ("ada", "library.put")
        );

        let mut last = 0;
        for _ in 0..5 {
            let v = store.next_version(1).await.unwrap();
            assert!(
                v > last,
                "{}: versions increase ({v} after {last})",
                db.label
            );
            last = v;
        }
        let v2 = store2.next_version(1).await.unwrap();
        assert!(
            v2 > last,
            "{}: a second pool draws from the same sequence",
            db.label
        );
        // Raised to the time at a start, never lowered: above versions made by
        // `plan compile` (the time in milliseconds by default).
        store.raise_versions(1_795_777_200_000).await.unwrap();
        let v3 = store2.next_version(1).await.unwrap();
        assert_eq!(v3, 1_795_777_200_001, "{}", db.label);
        store.raise_versions(10).await.unwrap();
        assert!(store.next_version(1).await.unwrap() > v3, "{}", db.label);

        let open = "INSERT INTO faults (gateway, source, kind, status, message, opened_at_ms) VALUES ('g', 'c', 'status', 'open', 'm', 1) \
                    ON CONFLICT (gateway, source, kind) WHERE status <> 'closed' DO NOTHING";
        sqlx::query(open).execute(store.pool()).await.unwrap();
        sqlx::query(open).execute(store.pool()).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM faults")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(n, 1, "{}: one open fault per source and kind", db.label);
        sqlx::query("UPDATE faults SET status = 'closed'")
            .execute(store.pool())
            .await
            .unwrap();
        sqlx::query(open).execute(store.pool()).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM faults")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(
            n, 2,
            "{}: a closed fault does not block a new one",
            db.label
        );
        store.close().await;
        store2.close().await;
        db.drop_now().await;
    }
}

#[tokio::test]
async fn failed_logins_are_counted_in_the_store_so_every_replica_sees_them() {
    use nightscape_server::auth;
    for db in Db::both("logins").await {
        let (a, b) = (
            Store::open(&db.url).await.unwrap(),
            Store::open(&db.url).await.unwrap(),
        );
        let key = auth::address_key("192.0.2.7");
        let clean = auth::Failures::default();
        let wait = async |s: &Store, key: &str, now: i64| {
            auth::login_wait(auth::failures(s, key, now).await.unwrap(), clean, now)
        };
        for i in 0..auth::MAX_FAILURES {
            assert_eq!(wait(&a, &key, 1_000 + i).await, None, "{}", db.label);
            // Alternate replicas.
            let s = if i % 2 == 0 { &a } else { &b };
            auth::failed(s, std::slice::from_ref(&key), 1_000 + i)
                .await
                .unwrap();
        }
        assert_eq!(
            wait(&b, &key, 2_000).await,
            Some(auth::WINDOW_MS - 1_000),
            "{}",
            db.label
        );
        let other = auth::address_key("192.0.2.8");
        assert_eq!(wait(&b, &other, 2_000).await, None);
        assert_eq!(
            wait(&a, &key, 1_000 + auth::WINDOW_MS + 10).await,
            None,
            "{}: the window passes",
            db.label
        );
        auth::succeeded(&a, &key).await.unwrap();
        assert_eq!(wait(&b, &key, 2_000).await, None);
        a.close().await;
        b.close().await;
        db.drop_now().await;
    }
}

/// Two replicas both receive every telemetry message (each has its own subscription): the
/// energy of each slice of time is counted once, as by one server, on both databases.
#[tokio::test]
async fn two_replicas_count_each_telemetry_slice_of_energy_once() {
    use nightscape_core::wire::{self, PowerSource, Telemetry};
    use nightscape_server::intake::Intake;
    use nightscape_server::mqtt::{Inbound, Up};
    for db in Db::both("energy").await {
        let (state, clock) = app_state(&db.url).await;
        state.publisher.round().await.unwrap();
        let gateway: nightscape_core::GatewayId = "cityhall-gw".parse().unwrap();
        // Ten minutes of telemetry every 10 s at 600 W: 100 Wh.
        let messages: Vec<Vec<u8>> = (0..=60)
            .map(|k| {
                wire::encode(&Telemetry {
                    schema: wire::SCHEMA,
                    gateway: gateway.clone(),
                    at_ms: NOW_MS + k * 10_000,
                    controllers: Vec::new(),
                    frames: 400,
                    late_frames: 0,
                    frame_rate_hz: 40.0,
                    jitter_p99_ms: 0.5,
                    max_frame_ms: 26.0,
                    power_w: 600.0,
                    power_source: PowerSource::Measured,
                    cue: None,
                    clock_trusted: true,
                    clock_offset_ms: 0,
                })
            })
            .collect();
        let topic = wire::topic("", &gateway, wire::Topic::Telemetry);
        let replica = || {
            let (tx, rx) = tokio::sync::mpsc::channel(100);
            let intake = Intake::new(
                state.store.clone(),
                state.publisher.clone(),
                state.metrics.clone(),
                clock.clone(),
                String::new(),
            );
            (tx, tokio::spawn(intake.run(rx)))
        };
        let (a, a_done) = replica();
        let (b, b_done) = replica();
        for m in &messages {
            for r in [&a, &b] {
                r.send(Up::Message(Inbound {
                    topic: topic.clone(),
                    payload: m.clone(),
                }))
                .await
                .unwrap();
            }
        }
        drop((a, b));
        a_done.await.unwrap();
        b_done.await.unwrap();
        let wh: f64 = sqlx::query_scalar("SELECT wh FROM energy WHERE site = 'nonsan-city-hall'")
            .fetch_one(state.store.pool())
            .await
            .unwrap();
        let cursor: Option<i64> =
            sqlx::query_scalar("SELECT energy_at_ms FROM gateways WHERE gateway = 'cityhall-gw'")
                .fetch_one(state.store.pool())
                .await
                .unwrap();
        let metrics = state.metrics.render();
        assert!(
            (wh - 100.0).abs() < 1e-6,
            "{}: cursor {cursor:?} (from {NOW_MS}); {metrics}; {wh} Wh counted for 100 Wh of telemetry received by two replicas",
            db.label
        );
        db.drop_now().await;
    }
}

/// A restart of the same build with nothing changed does not compile the city's plans
/// again (10,000 took 15 s, and the first round waited on it); a library change or another
/// build does.
#[tokio::test]
async fn a_restart_with_nothing_changed_keeps_the_stored_plans() {
    for db in Db::both("compiled").await {
        let (state, clock) = app_state(&db.url).await;
        let first = state.publisher.round().await.unwrap();
        assert!(first.compiled, "{}: the first start compiles", db.label);
        assert!(!first.new_plans.is_empty(), "{}", db.label);
        let again = state.publisher.round().await.unwrap();
        assert!(!again.compiled, "{}: nothing changed", db.label);

        // The same build started again on the same store.
        let (restarted, _) = app_state(&db.url).await;
        let round = restarted.publisher.round().await.unwrap();
        assert!(
            !round.compiled && round.new_plans.is_empty(),
            "{}: plans kept as stored",
            db.label
        );

        // A library change: compiled, and only the changed site's gateway gets a plan.
        let path = "sites/nonsan-city-hall/scenes/cityhall-late.toml";
        let text = restarted
            .store
            .library()
            .await
            .unwrap()
            .into_iter()
            .find(|f| f.path == path)
            .unwrap()
            .text;
        restarted
            .store
            .write_library(
                &[(path.into(), Some(format!("{text}\n# edited\n")))],
                "test",
                clock.now_ms(),
                &[],
            )
            .await
            .unwrap();
        let round = restarted.publisher.round().await.unwrap();
        assert!(round.compiled, "{}", db.label);
        assert_eq!(
            round
                .new_plans
                .iter()
                .map(|g| g.as_str())
                .collect::<Vec<_>>(),
            ["cityhall-gw"],
            "{}",
            db.label
        );

        // Plans another build compiled are compiled again.
        sqlx::query("UPDATE plans_compiled SET build = 'another build'")
            .execute(restarted.store.pool())
            .await
            .unwrap();
        let (upgraded, _) = app_state(&db.url).await;
        let round = upgraded.publisher.round().await.unwrap();
        assert!(round.compiled, "{}: another build's plans", db.label);
        assert!(
            round.new_plans.is_empty(),
            "{}: and found unchanged",
            db.label
        );
        db.drop_now().await;
    }
}
