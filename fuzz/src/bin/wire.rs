//! MQTT messages: what the server reads from gateways (state, acks, telemetry, events) and
//! what a gateway reads as commands, and the topics they come on.
use nightscape_core::wire::{Ack, Command, Event, State, Telemetry, decode, parse_topic};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = decode::<State>(data);
        let _ = decode::<Ack>(data);
        let _ = decode::<Telemetry>(data);
        let _ = decode::<Event>(data);
        let _ = decode::<Command>(data);
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = parse_topic("", text);
        }
    });
}
