//! Signed plan documents as a gateway receives them (and the library inside one).
use nightscape_core::plan::open_plan;

fn main() {
    // A fixed key: the fuzzer cannot sign, so it explores everything up to the signature.
    let trusted = nightscape_core::plan::parse_secret_key(&format!(
        "nightscape-ed25519-secret {}",
        "07".repeat(32)
    ))
    .unwrap_or_else(|e| panic!("the fixed key: {e}"))
    .verifying_key();
    let gateway = "cityhall-gw".parse().unwrap_or_else(|e| panic!("{e:?}"));
    afl::fuzz!(|data: &[u8]| {
        let _ = open_plan(data, &trusted, &gateway, None);
    });
}
