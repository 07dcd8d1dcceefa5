//! sACN (E1.31) packets as the simulator receives them.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = nightscape_core::codec::sacn::decode(data);
    });
}
