//! DMX-over-MQTT payloads as a controller on a cellular link receives them.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = nightscape_core::codec::dmx_mqtt::DmxMessage::decode(data);
    });
}
