//! Plans and overrides on disk: atomic saves, the previous good copy, damaged files.

use ed25519_dalek::SigningKey;
use nightscape_core::plan::{self, OverrideEntry, OverrideEntryKind, OverridesDocument};
use nightscape_core::{GatewayId, check};
use nightscape_gateway::store::{Copy, Kind, Store};

use crate::{shipped_library, temp_dir};

fn signed_plan(version: u64, key: &SigningKey) -> Vec<u8> {
    let sources = shipped_library();
    let checked = check(&sources);
    let site = "donam-seowon".parse().unwrap();
    let gateway = "donam-gw".parse().unwrap();
    let p = plan::compile(&sources, &checked.library, &site, &gateway, version, 0, 0).unwrap();
    serde_json::to_vec(&plan::sign(p, key)).unwrap()
}

fn gw() -> GatewayId {
    "donam-gw".parse().unwrap()
}

#[test]
fn the_current_plan_plays_and_a_damaged_one_falls_back_to_the_previous() {
    let key = SigningKey::from_bytes(&[7; 32]);
    let trusted = [key.verifying_key()];
    let store = Store::open(&temp_dir("plans")).unwrap();
    let nothing = store.load_plan(&trusted, &gw());
    assert!(nothing.plan.is_none());
    // A first start is not damage: nothing to report.
    assert!(nothing.problems.is_empty(), "{:?}", nothing.problems);

    store.save(Kind::Plan, &signed_plan(1, &key)).unwrap();
    store.save(Kind::Plan, &signed_plan(2, &key)).unwrap();
    let loaded = store.load_plan(&trusted, &gw());
    let (p, lib, copy) = loaded.plan.unwrap();
    assert_eq!((p.version, copy), (2, Copy::Current));
    assert!(lib.sites.contains_key(&"donam-seowon".parse().unwrap()));
    assert!(loaded.problems.is_empty());

    // Truncated on disk: version 1 plays, and the problem is told.
    let current = store.path(Kind::Plan, Copy::Current);
    let bytes = std::fs::read(&current).unwrap();
    std::fs::write(&current, &bytes[..bytes.len() / 2]).unwrap();
    let loaded = store.load_plan(&trusted, &gw());
    let (p, _, copy) = loaded.plan.unwrap();
    assert_eq!((p.version, copy), (1, Copy::Previous));
    assert!(
        loaded.problems[0].contains("plan.json: malformed plan"),
        "{:?}",
        loaded.problems
    );

    // Signed by a key the gateway does not trust: refused, the previous plays.
    store
        .save(
            Kind::Plan,
            &signed_plan(3, &SigningKey::from_bytes(&[8; 32])),
        )
        .unwrap();
    std::fs::write(store.path(Kind::Plan, Copy::Previous), signed_plan(2, &key)).unwrap();
    let loaded = store.load_plan(&trusted, &gw());
    assert_eq!(loaded.plan.unwrap().0.version, 2);
    assert!(
        loaded.problems[0].contains("signature"),
        "{:?}",
        loaded.problems
    );
}

#[test]
fn a_power_cut_at_any_step_of_a_save_leaves_a_plan_to_play() {
    let key = SigningKey::from_bytes(&[7; 32]);
    let trusted = [key.verifying_key()];
    let dir = temp_dir("cut");
    let store = Store::open(&dir).unwrap();
    store.save(Kind::Plan, &signed_plan(1, &key)).unwrap();
    // Cut after the temporary file was written: the old current plays.
    std::fs::write(dir.join("plan.json.tmp"), &signed_plan(2, &key)[..100]).unwrap();
    assert_eq!(store.load_plan(&trusted, &gw()).plan.unwrap().0.version, 1);
    // Cut after current became previous, before the new one became current.
    std::fs::rename(
        store.path(Kind::Plan, Copy::Current),
        store.path(Kind::Plan, Copy::Previous),
    )
    .unwrap();
    let loaded = store.load_plan(&trusted, &gw());
    let (p, _, copy) = loaded.plan.unwrap();
    assert_eq!((p.version, copy), (1, Copy::Previous));
    // The next save completes over the leftovers.
    store.save(Kind::Plan, &signed_plan(2, &key)).unwrap();
    assert_eq!(store.load_plan(&trusted, &gw()).plan.unwrap().0.version, 2);
}

#[test]
fn a_latched_blackout_is_read_back_after_a_restart() {
    let key = SigningKey::from_bytes(&[7; 32]);
    let store = Store::open(&temp_dir("overrides")).unwrap();
    let doc = OverridesDocument {
        schema: 1,
        gateway: gw(),
        version: 5,
        issued_at_ms: 1_798_000_000_000,
        overrides: vec![OverrideEntry {
            id: "o-1".into(),
            kind: OverrideEntryKind::Blackout,
            scene: None,
            brightness_pct: None,
            from_ms: 1_798_000_000_000,
            until_ms: None,
            by: "kim".into(),
            reason: "inspection".into(),
        }],
    };
    store
        .save(
            Kind::Overrides,
            &serde_json::to_vec(&plan::sign(doc.clone(), &key)).unwrap(),
        )
        .unwrap();
    let loaded = store.load_overrides(&[key.verifying_key()], &gw());
    let (back, copy) = loaded.overrides.unwrap();
    assert_eq!((back, copy), (doc, Copy::Current));
    // Addressed to this gateway only.
    let other: GatewayId = "gyebaek-gw".parse().unwrap();
    let refused = store.load_overrides(&[key.verifying_key()], &other);
    assert!(refused.overrides.is_none());
    assert!(
        refused.problems[0].contains("not this one"),
        "{:?}",
        refused.problems
    );
}

#[test]
fn the_sacn_source_id_is_made_once_and_kept() {
    let dir = temp_dir("cid-kept");
    let store = Store::open(&dir).unwrap();
    let cid = store.cid().unwrap();
    assert_eq!(store.cid().unwrap(), cid);
    assert_eq!(cid[6] >> 4, 4, "a version 4 UUID");
    std::fs::write(dir.join("sacn-cid"), "garbage").unwrap();
    let fresh = store.cid().unwrap();
    assert_ne!(fresh, cid);
    assert_eq!(Store::open(&dir).unwrap().cid().unwrap(), fresh);
}
