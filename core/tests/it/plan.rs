//! Plans and overrides documents: compile, sign, verify, and every reason to refuse one.
#![allow(clippy::unwrap_used)]

use crate::common;

use ed25519_dalek::SigningKey;
use nightscape_core::model::{GatewayId, Level, SiteId};
use nightscape_core::plan::{
    self, OverrideEntry, OverrideEntryKind, OverridesDocument, PLAN_BUDGET_BYTES, Plan, Rejection,
    canonical, open, open_plan, sign,
};
use nightscape_core::show::check;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn plan_for(sources: &[nightscape_core::show::SourceFile], site: &str, version: u64) -> Plan {
    let checked = check(sources);
    let site = SiteId::new(site).unwrap();
    let gateway = plan::pick_gateway(&checked.library, &site, None).unwrap();
    plan::compile(
        sources,
        &checked.library,
        &site,
        &gateway,
        version,
        1_798_000_000_000,
        1_798_000_000_000,
    )
    .unwrap()
}

#[test]
fn every_gateway_gets_a_plan_that_verifies_within_budget() {
    let sources = common::shipped_library();
    let checked = check(&sources);
    assert_eq!(checked.error_count(), 0);
    let k = key(1);
    let mut biggest = 0;
    for site in checked.library.sites.values() {
        for gateway in &site.gateways {
            let p =
                plan::compile(&sources, &checked.library, &site.id, &gateway.id, 7, 0, 0).unwrap();
            let bytes = serde_json::to_vec(&sign(p.clone(), &k)).unwrap();
            biggest = biggest.max(bytes.len());
            let (opened, lib) =
                open_plan(&bytes, &k.verifying_key(), &gateway.id, Some(6)).unwrap();
            assert_eq!(opened, p);
            // The plan rebuilds the site, its scenes and schedule on its own.
            assert_eq!(lib.sites[&site.id], *site);
            assert_eq!(
                lib.scenes_of(&site.id).count(),
                checked.library.scenes_of(&site.id).count()
            );
            assert_eq!(
                lib.schedules.get(&site.id),
                checked.library.schedules.get(&site.id)
            );
        }
    }
    assert!(
        biggest < PLAN_BUDGET_BYTES / 4,
        "biggest plan {biggest} bytes"
    );
}

#[test]
fn editing_one_site_leaves_another_sites_plan_byte_identical() {
    let sources = common::shipped_library();
    let before = canonical(&plan_for(&sources, "donam-seowon", 3));
    let mut edited = sources.clone();
    let bridge = edited
        .iter_mut()
        .find(|f| f.path == "sites/gyebaek-bridge/site.toml")
        .unwrap();
    bridge.text = bridge
        .text
        .replace("max_output_pct = 85", "max_output_pct = 80");
    let scene = edited
        .iter_mut()
        .find(|f| f.path.ends_with("gyebaek-blue-wave.toml"))
        .unwrap();
    scene.text = scene.text.replace("speed_mps = 2.0", "speed_mps = 1.5");
    assert_eq!(canonical(&plan_for(&edited, "donam-seowon", 3)), before);
    assert_ne!(
        plan_for(&edited, "gyebaek-bridge", 3).content_hash,
        plan_for(&sources, "gyebaek-bridge", 3).content_hash
    );
}

#[test]
fn each_reason_to_refuse_a_plan_is_distinct() {
    let sources = common::shipped_library();
    let p = plan_for(&sources, "donam-seowon", 10);
    let (k, other) = (key(1), key(2));
    let trusted = k.verifying_key();
    let good = serde_json::to_vec(&sign(p.clone(), &k)).unwrap();
    assert!(open_plan(&good, &trusted, &gw("donam-gw"), Some(9)).is_ok());

    let mut unsigned = sign(p.clone(), &k);
    unsigned.signature.clear();
    let unsigned = serde_json::to_vec(&unsigned).unwrap();
    assert_eq!(
        open_plan(&unsigned, &trusted, &gw("donam-gw"), None).unwrap_err(),
        Rejection::Unsigned("plan")
    );

    let foreign = serde_json::to_vec(&sign(p.clone(), &other)).unwrap();
    assert_eq!(
        open_plan(&foreign, &trusted, &gw("donam-gw"), None).unwrap_err(),
        Rejection::BadSignature("plan")
    );

    let mut altered: serde_json::Value = serde_json::from_slice(&good).unwrap();
    altered["document"]["effective_from_ms"] = 0.into();
    let altered = serde_json::to_vec(&altered).unwrap();
    assert_eq!(
        open_plan(&altered, &trusted, &gw("donam-gw"), None).unwrap_err(),
        Rejection::BadSignature("plan")
    );

    assert!(matches!(
        open_plan(&good, &trusted, &gw("gyebaek-gw"), None).unwrap_err(),
        Rejection::WrongGateway { expected, got, .. } if expected.as_str() == "gyebaek-gw" && got.as_str() == "donam-gw"
    ));
    assert_eq!(
        open_plan(&good, &trusted, &gw("donam-gw"), Some(10)).unwrap_err(),
        Rejection::NotNewer {
            kind: "plan",
            current: 10,
            got: 10
        }
    );
    assert_eq!(
        open_plan(&good, &trusted, &gw("donam-gw"), Some(11)).unwrap_err(),
        Rejection::NotNewer {
            kind: "plan",
            current: 11,
            got: 10
        }
    );

    let mut future: serde_json::Value = serde_json::from_slice(&good).unwrap();
    future["document"]["schema"] = 2.into();
    let future = serde_json::to_vec(&future).unwrap();
    assert!(matches!(
        open_plan(&future, &trusted, &gw("donam-gw"), None).unwrap_err(),
        Rejection::UnknownSchema { got: 2, .. }
    ));

    assert!(matches!(
        open_plan(b"{\"document\":", &trusted, &gw("donam-gw"), None).unwrap_err(),
        Rejection::Malformed { .. }
    ));
    assert!(matches!(
        open_plan(b"[]", &trusted, &gw("donam-gw"), None).unwrap_err(),
        Rejection::Malformed { .. }
    ));

    let mut wrong_hash = p.clone();
    wrong_hash.content_hash = "00".repeat(32);
    let wrong_hash = serde_json::to_vec(&sign(wrong_hash, &k)).unwrap();
    assert_eq!(
        open_plan(&wrong_hash, &trusted, &gw("donam-gw"), None).unwrap_err(),
        Rejection::HashMismatch
    );

    // A correctly signed plan whose files do not check is refused too.
    let mut broken = p;
    let site = broken
        .files
        .iter_mut()
        .find(|f| f.path.ends_with("site.toml"))
        .unwrap();
    site.text = site.text.replace("zone = 2", "zone = 9");
    broken.content_hash = plan::content_hash(&broken.files);
    let broken = serde_json::to_vec(&sign(broken, &k)).unwrap();
    assert!(
        matches!(open_plan(&broken, &trusted, &gw("donam-gw"), None).unwrap_err(), Rejection::Invalid(why) if why.contains("zone 9"))
    );
}

#[test]
fn overrides_documents_are_signed_and_checked_the_same_way() {
    let doc = OverridesDocument {
        schema: 1,
        gateway: gw("gyebaek-gw"),
        version: 4,
        issued_at_ms: 1_798_000_000_000,
        overrides: vec![
            OverrideEntry {
                id: "o-1".into(),
                kind: OverrideEntryKind::Blackout,
                scene: None,
                brightness_pct: None,
                from_ms: 1_798_000_000_000,
                until_ms: None,
                by: "kim".into(),
                reason: "bridge inspection".into(),
            },
            OverrideEntry {
                id: "o-2".into(),
                kind: OverrideEntryKind::Scene,
                scene: Some("gyebaek-festival".parse().unwrap()),
                brightness_pct: Some(Level::from_pct(60.0).unwrap()),
                from_ms: 1_798_000_000_000,
                until_ms: Some(1_798_003_600_000),
                by: "lee".into(),
                reason: "concert".into(),
            },
        ],
    };
    let k = key(3);
    let bytes = serde_json::to_vec(&sign(doc.clone(), &k)).unwrap();
    let opened: OverridesDocument =
        open(&bytes, &k.verifying_key(), &gw("gyebaek-gw"), Some(3)).unwrap();
    assert_eq!(opened, doc);
    let list = opened.to_overrides().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(
        open::<OverridesDocument>(&bytes, &k.verifying_key(), &gw("gyebaek-gw"), Some(4))
            .unwrap_err(),
        Rejection::NotNewer {
            kind: "overrides document",
            current: 4,
            got: 4
        }
    );
    assert_eq!(
        open::<OverridesDocument>(&bytes, &key(4).verifying_key(), &gw("gyebaek-gw"), None)
            .unwrap_err(),
        Rejection::BadSignature("overrides document")
    );
    let mut open_ended = doc;
    open_ended.overrides[1].until_ms = None;
    assert!(matches!(
        open_ended.to_overrides(),
        Err(Rejection::Malformed { .. })
    ));
}

#[test]
fn keys_round_trip_through_their_text_form() {
    let k = key(9);
    let secret = plan::secret_key_text(&k);
    let public = plan::public_key_text(&k.verifying_key());
    assert_eq!(
        plan::parse_secret_key(&secret).unwrap().to_bytes(),
        k.to_bytes()
    );
    assert_eq!(plan::parse_public_key(&public).unwrap(), k.verifying_key());
    assert_eq!(
        plan::parse_public_key(&secret).unwrap_err(),
        plan::KeyError::WrongKind {
            found: "secret",
            wanted: "public"
        }
    );
    assert_eq!(
        plan::parse_secret_key("nightscape-ed25519-secret 12").unwrap_err(),
        plan::KeyError::BadHex
    );
    assert_eq!(
        plan::parse_secret_key("hello").unwrap_err(),
        plan::KeyError::NotAKey("secret")
    );
}

fn gw(id: &str) -> GatewayId {
    id.parse().unwrap()
}
