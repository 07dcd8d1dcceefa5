//! Art-Net packets as the simulator and the gateway's poll replies receive them.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = nightscape_core::codec::artnet::decode(data);
    });
}
