//! Publishing through Mosquitto (127.0.0.1:1883): every gateway's plan retained at start,
//! only the edited site's gateways republished, gateway messages stored, refused when
//! they lie about who they are.

use std::collections::BTreeMap;
use std::time::Duration;

use nightscape_core::plan::{self, Plan, Signed};
use nightscape_core::wire::{
    self, About, Ack, AckResult, Event, EventKind, FaultChange, FaultCode, Severity,
};
use nightscape_server::auth::Role;
use nightscape_server::mqtt::BrokerConfig;
use nightscape_server::read::SiteStatus;
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::common::*;

fn prefix(name: &str) -> String {
    format!("test/{name}-{}-{}/", std::process::id(), NOW_MS % 1000)
}

/// A client on Mosquitto subscribed to `filter`; messages come out of the channel.
async fn watch(
    prefix: &str,
    filter: &str,
) -> (AsyncClient, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    let mut o = MqttOptions::new(
        format!("watch-{}", prefix.replace('/', "-")),
        "127.0.0.1",
        1883,
    );
    o.set_max_packet_size(2 << 20, 2 << 20);
    let (client, mut eventloop) = AsyncClient::new(o, 100);
    client
        .subscribe(format!("{prefix}{filter}"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                    if tx.send((p.topic, p.payload.to_vec())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    (client, rx)
}

/// Plans received until `quiet` passes with none: gateway → versions.
async fn plans(
    rx: &mut mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    quiet: Duration,
) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    while let Ok(Some((_, payload))) = tokio::time::timeout(quiet, rx.recv()).await {
        let signed: Signed<Plan> = serde_json::from_slice(&payload).unwrap();
        assert!(
            plan::open::<Plan>(
                &payload,
                &key().verifying_key(),
                &signed.document.gateway,
                None
            )
            .is_ok()
        );
        out.entry(signed.document.gateway.to_string())
            .or_default()
            .push(signed.document.version);
    }
    out
}

async fn start(
    name: &str,
    prefix: &str,
) -> (nightscape_server::Server, CancellationToken, TaskTracker) {
    let client = format!("server-{}", prefix.replace('/', "-"));
    running(name, Some(BrokerConfig::local(1883, prefix, client))).await
}

#[tokio::test]
async fn editing_one_site_republishes_only_its_gateways() {
    let prefix = prefix("affected");
    let (_c, mut rx) = watch(&prefix, "nightscape/v1/gw/+/plan").await;
    let (server, shutdown, tracker) = start("affected", &prefix).await;
    let first = plans(&mut rx, Duration::from_secs(3)).await;
    let gateways: usize = shipped_library()
        .iter()
        .filter(|f| f.path.ends_with("site.toml"))
        .count();
    assert!(
        first.len() >= gateways,
        "every gateway's plan is published at start: {first:?}"
    );
    assert!(first.values().all(|v| v.len() == 1), "each once: {first:?}");

    let admin = user(&server.state, "ada", Role::Admin, &[]).await;
    let path = "sites/nonsan-city-hall/scenes/cityhall-late.toml";
    let text = call(
        &server.state,
        request("GET", &format!("/api/library/files/{path}"), &admin, None),
    )
    .await
    .json["text"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = call(
        &server.state,
        request(
            "PUT",
            &format!("/api/library/files/{path}"),
            &admin,
            Some(serde_json::json!({"text": format!("{text}\n# edited\n")})),
        ),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.text);
    let second = plans(&mut rx, Duration::from_secs(2)).await;
    assert_eq!(
        second.keys().collect::<Vec<_>>(),
        vec!["cityhall-gw"],
        "only City Hall's gateway: {second:?}"
    );
    assert!(
        second["cityhall-gw"][0] > first["cityhall-gw"][0],
        "a newer version"
    );

    // Editing another site's file with the same bytes publishes nothing.
    let r = call(
        &server.state,
        request(
            "PUT",
            &format!("/api/library/files/{path}"),
            &admin,
            Some(serde_json::json!({"text": format!("{text}\n# edited\n")})),
        ),
    )
    .await;
    assert!(r.status.is_success());
    assert!(plans(&mut rx, Duration::from_secs(1)).await.is_empty());
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn gateway_messages_are_stored_once_faults_open_and_close_and_impostors_are_refused() {
    let prefix = prefix("intake");
    let (server, shutdown, tracker) = start("intake", &prefix).await;
    let store = server.state.store.clone();
    let mut o = MqttOptions::new(
        format!("fake-gw-{}", prefix.replace('/', "-")),
        "127.0.0.1",
        1883,
    );
    o.set_max_packet_size(2 << 20, 2 << 20);
    let (gw, mut eventloop) = AsyncClient::new(o, 100);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    // Wait for City Hall's plan to be stored.
    let version = loop {
        let v: Option<i64> = sqlx::query_scalar("SELECT plan_version FROM gateways WHERE gateway = 'cityhall-gw' AND plan_published >= plan_version")
            .fetch_optional(store.pool())
            .await
            .unwrap()
            .flatten();
        if let Some(v) = v {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let topic = |g: &str, leaf| wire::topic(&prefix, &g.parse().unwrap(), leaf);
    let ack = Ack {
        schema: wire::SCHEMA,
        gateway: "cityhall-gw".parse().unwrap(),
        about: About::Plan,
        id: version.to_string(),
        result: AckResult::Applied,
        reason: None,
    };
    gw.publish(
        topic("cityhall-gw", wire::Topic::Ack),
        QoS::AtLeastOnce,
        false,
        wire::encode(&ack),
    )
    .await
    .unwrap();
    let event = |id: &str, open: bool| Event {
        schema: wire::SCHEMA,
        gateway: "cityhall-gw".parse().unwrap(),
        at_ms: NOW_MS,
        id: id.into(),
        kind: EventKind::Fault,
        severity: if open {
            Severity::Fault
        } else {
            Severity::Info
        },
        controller: Some("cityhall-art".parse().unwrap()),
        message: if open {
            "unreachable".into()
        } else {
            "answers again".into()
        },
        cue: None,
        fault: Some(FaultChange {
            code: FaultCode::Unreachable,
            open,
        }),
    };
    // The gateway is connected: its state says so.
    let online = wire::State {
        schema: wire::SCHEMA,
        gateway: "cityhall-gw".parse().unwrap(),
        online: true,
        plan_version: Some(version as u64),
        plan_hash: None,
        cue: None,
        overrides: Vec::new(),
        blackout: false,
        uptime_s: 1,
        clock_trusted: true,
    };
    gw.publish(
        topic("cityhall-gw", wire::Topic::State),
        QoS::AtLeastOnce,
        true,
        wire::encode(&online),
    )
    .await
    .unwrap();
    let status = |overview: &[nightscape_server::read::SiteOverview]| {
        let s = overview
            .iter()
            .find(|s| s.site.as_str() == "nonsan-city-hall")
            .unwrap();
        (s.status, s.open_faults, s.unreachable_controllers)
    };
    for e in [event("e1", true), event("e1", true), event("e2", true)] {
        gw.publish(
            topic("cityhall-gw", wire::Topic::Event),
            QoS::AtLeastOnce,
            false,
            wire::encode(&e),
        )
        .await
        .unwrap();
    }
    // An impostor: gateway A's topic, gateway B's name; and junk.
    let mut lie = ack.clone();
    lie.gateway = "memorial-gw".parse().unwrap();
    gw.publish(
        topic("cityhall-gw", wire::Topic::Ack),
        QoS::AtLeastOnce,
        false,
        wire::encode(&lie),
    )
    .await
    .unwrap();
    gw.publish(
        topic("cityhall-gw", wire::Topic::Telemetry),
        QoS::AtLeastOnce,
        false,
        b"{\"junk\": true}".to_vec(),
    )
    .await
    .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let acked: Option<i64> =
            sqlx::query_scalar("SELECT acked_plan FROM gateways WHERE gateway = 'cityhall-gw'")
                .fetch_one(store.pool())
                .await
                .unwrap();
        let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(store.pool())
            .await
            .unwrap();
        let rejected = server.state.metrics.rejected_count("impostor")
            + server.state.metrics.rejected_count("malformed");
        if acked == Some(version) && events == 2 && rejected == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "acked {acked:?}, {events} events, {rejected} refused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let faults = nightscape_server::read::faults(&store).await.unwrap();
    assert_eq!(
        faults.len(),
        1,
        "one open fault however often it is reported: {faults:?}"
    );
    assert_eq!(
        (faults[0].status.as_str(), faults[0].kind.as_str()),
        ("open", "unreachable")
    );
    // Connected, but a controller does not answer: the overview does not call it well.
    assert_eq!(
        status(
            &nightscape_server::read::overview(&server.state)
                .await
                .unwrap()
        ),
        (SiteStatus::Unreachable, 1, 1)
    );
    let memorial: Option<i64> =
        sqlx::query_scalar("SELECT acked_plan FROM gateways WHERE gateway = 'memorial-gw'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(memorial, None, "the impostor's ack changed nothing");

    gw.publish(
        topic("cityhall-gw", wire::Topic::Event),
        QoS::AtLeastOnce,
        false,
        wire::encode(&event("e3", false)),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while nightscape_server::read::faults(&store).await.unwrap()[0].status != "closed" {
        assert!(tokio::time::Instant::now() < deadline, "the fault closes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status(
            &nightscape_server::read::overview(&server.state)
                .await
                .unwrap()
        ),
        (SiteStatus::Ok, 0, 0)
    );
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn a_command_reaches_its_gateway_once_and_its_ack_is_kept() {
    let prefix = prefix("command");
    let (server, shutdown, tracker) = start("command", &prefix).await;
    let (gw, mut cmds) = watch(&prefix, "nightscape/v1/gw/cityhall-gw/cmd").await;
    let operator = user(
        &server.state,
        "olivia",
        Role::Operator,
        &["nonsan-city-hall"],
    )
    .await;
    // The server must be connected and know the gateway (its plan is stored).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let sent = loop {
        let r = call(
            &server.state,
            request(
                "POST",
                "/api/gateways/cityhall-gw/commands",
                &operator,
                Some(serde_json::json!({"action": "identify", "fixture": "wash-1", "seconds": 10})),
            ),
        )
        .await;
        if r.status.is_success() {
            break r.json;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (_, payload) = tokio::time::timeout(Duration::from_secs(5), cmds.recv())
        .await
        .unwrap()
        .unwrap();
    let cmd: wire::Command = wire::decode(&payload).unwrap();
    assert_eq!(cmd.id, sent["id"].as_str().unwrap());
    assert!(matches!(
        cmd.action,
        wire::Action::Identify { seconds: 10, .. }
    ));
    let ack = Ack {
        schema: wire::SCHEMA,
        gateway: "cityhall-gw".parse().unwrap(),
        about: About::Cmd,
        id: cmd.id.clone(),
        result: AckResult::Rejected,
        reason: Some("a blackout is in force".into()),
    };
    gw.publish(
        wire::topic(&prefix, &"cityhall-gw".parse().unwrap(), wire::Topic::Ack),
        QoS::AtLeastOnce,
        false,
        wire::encode(&ack),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let list = call(
            &server.state,
            request("GET", "/api/commands", &operator, None),
        )
        .await
        .json;
        if list[0]["result"] == "rejected" {
            assert_eq!(list[0]["reason"], "a blackout is in force");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Not for another site's operator; nonsense refused before anything is sent.
    let other = user(&server.state, "oscar", Role::Operator, &["chungnyeongtap"]).await;
    let r = call(
        &server.state,
        request(
            "POST",
            "/api/gateways/cityhall-gw/commands",
            &other,
            Some(serde_json::json!({"action": "resync"})),
        ),
    )
    .await;
    assert_eq!(r.status, axum::http::StatusCode::FORBIDDEN);
    let r = call(
        &server.state,
        request(
            "POST",
            "/api/gateways/cityhall-gw/commands",
            &operator,
            Some(serde_json::json!({"action": "identify", "seconds": 10})),
        ),
    )
    .await;
    assert_eq!(
        r.status,
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        r.text
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), cmds.recv())
            .await
            .is_err(),
        "nothing more was sent"
    );
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}
