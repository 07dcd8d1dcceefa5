//! Modbus answers as a controller might send them to the gateway's reads and writes, and
//! requests as the simulator receives them.
use nightscape_core::addr::{RegisterAddr, RegisterTable};
use nightscape_core::codec::modbus::{Read, Request, write_answer};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((&first, pdu)) = data.split_first() else {
            return;
        };
        let read = Read {
            table: if first & 1 == 0 {
                RegisterTable::Holding
            } else {
                RegisterTable::Input
            },
            start: RegisterAddr::from_u16(u16::from(first)),
            count: u16::from(first >> 1).clamp(1, 125),
        };
        let _ = read.answer(pdu);
        if let Ok(request) = Request::from_pdu(pdu) {
            let _ = write_answer(&request, pdu);
        }
        let _ = Request::from_pdu(data);
    });
}
