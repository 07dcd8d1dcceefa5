//! A rogue gateway against the broker's access control made by `nightscape server mqtt-acl`,
//! on a private Mosquitto using it: gateway A's credentials cannot publish on gateway B's
//! topics, cannot read B's plan, and cannot publish a plan (not even its own); anonymous and
//! wrong-password clients are refused; and what A may do still works, so the refusals are
//! the ACL's and not a broken setup. (A forged plan or overrides document reaching a gateway
//! anyway is refused by the gateway with an ack naming why: `gateway/tests/it/running.rs`.)

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

use crate::system::scratch;

/// A connected client: its handle and every message it receives.
struct Client {
    handle: AsyncClient,
    got: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
}

/// Connects as `user` (or anonymously); `Err` with the broker's refusal.
async fn connect(port: u16, name: &str, login: Option<(&str, &str)>) -> Result<Client, String> {
    let mut o = MqttOptions::new(name, "127.0.0.1", port);
    // Real plans are larger than rumqttc's default limit of 10 KiB.
    o.set_max_packet_size(1 << 20, 1 << 20);
    if let Some((user, password)) = login {
        o.set_credentials(user, password);
    }
    let (handle, mut eventloop) = AsyncClient::new(o, 100);
    let (tx, got) = mpsc::unbounded_channel();
    let (ready_tx, ready) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready_tx = Some(ready_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(r) = ready_tx.take() {
                        let _ = r.send(Ok(()));
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(e) => {
                    if let Some(r) = ready_tx.take() {
                        let _ = r.send(Err(e.to_string()));
                    }
                    return;
                }
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(5), ready).await {
        Ok(Ok(Ok(()))) => Ok(Client { handle, got }),
        Ok(Ok(Err(e))) => Err(e),
        _ => Err("no answer from the broker".into()),
    }
}

impl Client {
    /// Everything received within `wait`.
    async fn drain(&mut self, wait: Duration) -> Vec<(String, Vec<u8>)> {
        let mut all = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, self.got.recv()).await {
            all.push(m);
        }
        all
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_cannot_touch_another_gateways_topics_nor_publish_a_plan() {
    let dir = scratch("rogue");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nightscape"))
        .args(["server", "mqtt-acl", "--library"])
        .arg(root.join("scenes"))
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = |user: &str| {
        std::fs::read_to_string(dir.join("secrets").join(user))
            .unwrap()
            .trim()
            .to_owned()
    };
    let broker = crate::mosquitto::start(
        &dir,
        &format!(
            "allow_anonymous false\npassword_file {}\nacl_file {}\nuser root\n",
            dir.join("passwd").display(),
            dir.join("acl").display()
        ),
    );
    let port = broker.port;
    let gw = |id: &str, leaf: &str| format!("nightscape/v1/gw/{id}/{leaf}");

    // Nobody gets in without the password the command wrote.
    assert!(connect(port, "anon", None).await.is_err(), "anonymous");
    assert!(
        connect(port, "guess", Some(("cityhall-gw", "not-its-password")))
            .await
            .is_err(),
        "a wrong password"
    );

    // The server publishes both gateways' plans, retained, and listens to every state.
    let server_password = secret("nightscape-server");
    let mut server = connect(
        port,
        "server",
        Some(("nightscape-server", server_password.as_str())),
    )
    .await
    .expect("the server's credentials");
    server
        .handle
        .subscribe("nightscape/v1/gw/+/state", QoS::AtLeastOnce)
        .await
        .unwrap();
    for id in ["cityhall-gw", "gyebaek-gw"] {
        server
            .handle
            .publish(
                gw(id, "plan"),
                QoS::AtLeastOnce,
                true,
                format!("plan of {id}").into_bytes(),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Gateway A, with its own credentials.
    let a_password = secret("cityhall-gw");
    let mut a = connect(port, "a", Some(("cityhall-gw", a_password.as_str())))
        .await
        .expect("A's credentials");
    a.handle
        .subscribe(gw("cityhall-gw", "plan"), QoS::AtLeastOnce)
        .await
        .unwrap();
    a.handle
        .subscribe(gw("gyebaek-gw", "plan"), QoS::AtLeastOnce)
        .await
        .unwrap();
    a.handle
        .subscribe("nightscape/v1/gw/+/plan", QoS::AtLeastOnce)
        .await
        .unwrap();
    let read = a.drain(Duration::from_secs(1)).await;
    assert!(
        read.iter()
            .any(|(t, p)| *t == gw("cityhall-gw", "plan") && p == b"plan of cityhall-gw"),
        "A reads its own plan: {read:?}"
    );
    assert!(
        read.iter().all(|(t, _)| *t == gw("cityhall-gw", "plan")),
        "and nothing of B's: {read:?}"
    );

    // A writes its own state (allowed), B's state, and a plan for itself and for B.
    a.handle
        .publish(
            gw("cityhall-gw", "state"),
            QoS::AtLeastOnce,
            false,
            "A's state",
        )
        .await
        .unwrap();
    a.handle
        .publish(
            gw("gyebaek-gw", "state"),
            QoS::AtLeastOnce,
            false,
            "forged state of B",
        )
        .await
        .unwrap();
    for id in ["cityhall-gw", "gyebaek-gw"] {
        a.handle
            .publish(gw(id, "plan"), QoS::AtLeastOnce, true, "a forged plan")
            .await
            .unwrap();
    }
    let states = server.drain(Duration::from_secs(1)).await;
    assert!(
        states
            .iter()
            .any(|(t, p)| *t == gw("cityhall-gw", "state") && p == b"A's state"),
        "A's own state arrives: {states:?}"
    );
    assert!(
        states.iter().all(|(t, _)| *t != gw("gyebaek-gw", "state")),
        "B's state cannot be written by A: {states:?}"
    );
    let echoed = a.drain(Duration::from_millis(500)).await;
    assert!(
        echoed.is_empty(),
        "A's forged plan was not delivered: {echoed:?}"
    );

    // B and a fresh A see the server's plans, retained, not the forgeries.
    for id in ["gyebaek-gw", "cityhall-gw"] {
        let password = secret(id);
        let mut fresh = connect(port, &format!("fresh-{id}"), Some((id, password.as_str())))
            .await
            .expect("its credentials");
        fresh
            .handle
            .subscribe(gw(id, "plan"), QoS::AtLeastOnce)
            .await
            .unwrap();
        let got = fresh.drain(Duration::from_secs(1)).await;
        assert_eq!(
            got,
            vec![(gw(id, "plan"), format!("plan of {id}").into_bytes())],
            "{id} reads the server's plan only"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Regression: `mqtt-acl` wrote `passwd` as root with mode 600, and a stock Mosquitto started
/// as root drops to its own user (`mosquitto`, made by Debian's package) before reading it,
/// so it stopped with "Unable to open pwfile". With `--group mosquitto` the files are that
/// group's, mode 640, and the real broker, started as root without a `user` setting, starts
/// and takes the server's credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_mosquitto_dropping_to_its_own_user_reads_the_files_of_mqtt_acl_group() {
    use std::os::unix::fs::MetadataExt;
    if nix::unistd::geteuid().as_raw() != 0 {
        eprintln!("skipped: only a broker started as root drops to its own user");
        return;
    }
    let gid = nix::unistd::Group::from_name("mosquitto")
        .ok()
        .flatten()
        .expect("the `mosquitto` group of Debian's package (.ci/run installs it)")
        .gid
        .as_raw();
    // scratch() is under /tmp with mode 755, so the broker's user can reach the files.
    let dir = scratch("rogue-group");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nightscape"))
        .args(["server", "mqtt-acl", "--group", "mosquitto", "--library"])
        .arg(root.join("scenes"))
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in ["passwd", "acl"] {
        let meta = std::fs::metadata(dir.join(file)).unwrap();
        assert_eq!(
            (meta.mode() & 0o777, meta.gid()),
            (0o640, gid),
            "{file}: the broker's group may read it, nobody else"
        );
    }
    let secret = std::fs::metadata(dir.join("secrets/nightscape-server")).unwrap();
    assert_eq!(
        secret.mode() & 0o777,
        0o600,
        "a client's password stays private"
    );

    // No `user` setting: as root, Mosquitto drops to `mosquitto` before it reads the files.
    let broker = crate::mosquitto::start(
        &dir,
        &format!(
            "allow_anonymous false\npassword_file {}\nacl_file {}\n",
            dir.join("passwd").display(),
            dir.join("acl").display()
        ),
    );
    let password = std::fs::read_to_string(dir.join("secrets/nightscape-server")).unwrap();
    let server = connect(
        broker.port,
        "server",
        Some(("nightscape-server", password.trim())),
    )
    .await;
    assert!(
        server.is_ok(),
        "the server's credentials: {:?}",
        server.err()
    );
    assert!(
        connect(broker.port, "guess", Some(("nightscape-server", "wrong")))
            .await
            .is_err(),
        "a wrong password"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every event id the server stored.
async fn stored_event_ids(http: &str, session: &[(&'static str, String)]) -> Vec<String> {
    let (_, reply) = crate::system::http(http, "GET", "/api/events", session, "").await;
    crate::system::body_of(&reply)
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect()
}

fn event(gateway: &str, id: &str) -> Vec<u8> {
    use nightscape_core::wire::{self, Event, EventKind, Severity};
    wire::encode(&Event {
        schema: wire::SCHEMA,
        gateway: gateway.parse().expect("a gateway id"),
        at_ms: 1_795_777_200_000,
        id: id.to_owned(),
        kind: EventKind::Clock,
        severity: Severity::Info,
        controller: None,
        message: format!("{id} from a test"),
        cue: None,
        fault: None,
    })
}

/// Regression: `up`'s embedded broker took anonymous clients, and any client could read every
/// plan, write any gateway's events and drive any DMX-over-MQTT controller. With Mosquitto
/// installed `up` runs a private one with the users and ACL of `server mqtt-acl` (files mode
/// 600 in its data directory): anonymous clients are refused; a gateway's credentials read its
/// own plan only (not another's, not through `+` or `#`) and cannot write another gateway's
/// event, which the server would otherwise store; and the whole city still comes up in sync,
/// its cellular DMX controller lit through the broker as its own user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_s_broker_keeps_each_gateway_to_its_own_topics() {
    use std::os::unix::fs::PermissionsExt;
    let data = scratch("rogue-up");
    let port = crate::system::free_port();
    let up = crate::system::spawn_up_with(&data, port, &[]);
    assert!(
        up.banner.contains("Mosquitto") && up.banner.contains("each client only its own topics"),
        "Mosquitto is installed (.ci/run), so `up` runs it and says so:\n{}",
        up.banner
    );
    let session = crate::system::login_as(&up.http, &up.password).await;
    crate::system::all_in_sync(&up.http, &session).await;
    for file in ["broker/passwd", "broker/acl", "broker/secrets/cityhall-gw"] {
        let mode = std::fs::metadata(data.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }

    assert!(connect(port, "anon", None).await.is_err(), "anonymous");
    assert!(
        connect(port, "guess", Some(("cityhall-gw", "not-its-password")))
            .await
            .is_err(),
        "a wrong password"
    );

    let secret = |user: &str| {
        std::fs::read_to_string(data.join("broker/secrets").join(user))
            .unwrap()
            .trim()
            .to_owned()
    };
    let gw = |id: &str, leaf: &str| format!("nightscape/v1/gw/{id}/{leaf}");
    let a_password = secret("cityhall-gw");
    let mut a = connect(port, "rogue-a", Some(("cityhall-gw", a_password.as_str())))
        .await
        .expect("A's credentials");
    for filter in [
        gw("cityhall-gw", "plan"),
        gw("gyebaek-gw", "plan"),
        "nightscape/v1/gw/+/plan".to_owned(),
        "nightscape/v1/gw/+/event".to_owned(),
        "#".to_owned(),
    ] {
        a.handle.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    }
    let read = a.drain(Duration::from_secs(2)).await;
    assert!(
        read.iter().any(|(t, _)| *t == gw("cityhall-gw", "plan")),
        "A reads its own plan, retained: {:?}",
        read.iter().map(|(t, _)| t).collect::<Vec<_>>()
    );
    assert!(
        read.iter().all(|(t, _)| *t == gw("cityhall-gw", "plan")),
        "and nothing else, through no filter: {:?}",
        read.iter().map(|(t, _)| t).collect::<Vec<_>>()
    );

    // A forges an event of B's, and sends one of its own; only its own is stored.
    let run = std::process::id();
    let (forged, own) = (format!("forged-{run}"), format!("own-{run}"));
    a.handle
        .publish(
            gw("gyebaek-gw", "event"),
            QoS::AtLeastOnce,
            false,
            event("gyebaek-gw", &forged),
        )
        .await
        .unwrap();
    a.handle
        .publish(
            gw("cityhall-gw", "event"),
            QoS::AtLeastOnce,
            false,
            event("cityhall-gw", &own),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let ids = loop {
        let ids = stored_event_ids(&up.http, &session).await;
        if ids.contains(&own) || tokio::time::Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(ids.contains(&own), "A's own event is stored: {ids:?}");
    assert!(
        !ids.contains(&forged),
        "B's event forged by A is not: {ids:?}"
    );

    // The simulator's DMX-over-MQTT controller, logged in as its own user, takes frames.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, reply) = crate::system::http(&up.sim_http, "GET", "/api/stats", &[], "").await;
        let stats = crate::system::body_of(&reply);
        if stats["by_protocol"]["dmx-mqtt"]["accepted"].as_u64() > Some(0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no DMX-over-MQTT frame reached the simulator: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The simulator's API takes a fault only with the token `up` printed (kept in its data
    // directory, mode 600), and nothing from a page of another host name.
    let kept = std::fs::read_to_string(data.join("sim-token")).unwrap();
    assert_eq!(kept.trim(), up.sim_token);
    let fault = r#"{"controller": "cityhall-art", "fault": "output-fault"}"#;
    let bearer = |token: &str| [("authorization", format!("Bearer {token}"))];
    let (status, _) = crate::system::http(&up.sim_http, "POST", "/api/faults", &[], fault).await;
    assert_eq!(status, 401, "no token");
    let wrong = bearer("0123456789abcdef0123456789abcdef");
    let (status, _) = crate::system::http(&up.sim_http, "POST", "/api/faults", &wrong, fault).await;
    assert_eq!(status, 401, "a wrong token");
    let right = bearer(&up.sim_token);
    let (status, _) = crate::system::http(&up.sim_http, "POST", "/api/faults", &right, fault).await;
    assert_eq!(status, 204, "the token");
    let (_, reply) = crate::system::http(&up.sim_http, "GET", "/api/faults", &[], "").await;
    assert!(reply.contains("\"output_fault\":true"), "{reply}");
    let mut foreign = std::net::TcpStream::connect(&up.sim_http).unwrap();
    std::io::Write::write_all(
        &mut foreign,
        b"GET /api/sites HTTP/1.1\r\nHost: rebind.example:8090\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut foreign, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    drop(up);
    let _ = std::fs::remove_dir_all(&data);
}

/// Without Mosquitto (`--broker embedded`), rumqttd still refuses anonymous clients and wrong
/// passwords, and holds each user to its own client id, so no one takes over another's
/// session; it says at start that topic access is not enforced. The city still comes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_s_embedded_broker_refuses_anonymous_and_borrowed_client_ids() {
    let data = scratch("rogue-up-embedded");
    let port = crate::system::free_port();
    let up = crate::system::spawn_up_with(&data, port, &["--broker", "embedded"]);
    assert!(
        up.banner.contains("embedded (rumqttd)")
            && up.banner.contains("NOT enforced")
            && up.banner.contains("install mosquitto"),
        "{}",
        up.banner
    );
    let session = crate::system::login_as(&up.http, &up.password).await;
    crate::system::all_in_sync(&up.http, &session).await;
    let a_password = std::fs::read_to_string(data.join("broker/secrets/cityhall-gw")).unwrap();
    let a_password = a_password.trim();
    assert!(connect(port, "anon", None).await.is_err(), "anonymous");
    assert!(
        connect(
            port,
            "nightscape-gw-cityhall-gw",
            Some(("cityhall-gw", "wrong"))
        )
        .await
        .is_err(),
        "a wrong password"
    );
    assert!(
        connect(port, "rogue-a", Some(("cityhall-gw", a_password)))
            .await
            .is_err(),
        "A's password with a client id not A's"
    );
    assert!(
        connect(
            port,
            "nightscape-gw-gyebaek-gw",
            Some(("cityhall-gw", a_password))
        )
        .await
        .is_err(),
        "A's password with B's client id"
    );
    drop(up);
    let _ = std::fs::remove_dir_all(&data);
}
