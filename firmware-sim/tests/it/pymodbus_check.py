"""A pymodbus client (the reference Modbus implementation in Python) against a simulated
ns-led-v1 controller: the writes a gateway makes, the readings it takes, and the exceptions
the device answers. Exits 1 with the first difference."""
import sys

from pymodbus.client import ModbusTcpClient

host, port = sys.argv[1], int(sys.argv[2])
c = ModbusTcpClient(host, port=port, timeout=3, retries=0)
assert c.connect(), "cannot connect"


def ok(rr, what):
    assert not rr.isError(), f"{what}: {rr}"
    return rr


ok(c.write_registers(0, [1, 255, 0], device_id=1), "enable, master, fade")
ok(c.write_registers(0x100, [0xFF80, 0x4000], device_id=1), "levels")
levels = ok(c.read_holding_registers(0x100, count=2, device_id=1), "read levels").registers
assert levels == [0xFF80, 0x4000], levels
ok(c.write_register(1, 128, device_id=1), "master alone (FC06)")
inputs = ok(c.read_input_registers(0, count=4, device_id=1), "status, power, uptime").registers
assert inputs[0] == 0, f"status {inputs}"
assert inputs[1] > 0, f"power {inputs}"
past = c.read_holding_registers(0x300, count=1, device_id=1)
assert past.isError() and past.exception_code == 2, f"past the map: {past}"
many = c.write_registers(0x100, [0] * 121, device_id=1)
assert many.isError() and many.exception_code == 3, f"too many registers: {many}"
coils = c.read_coils(0, count=1, device_id=1)
assert coils.isError() and coils.exception_code == 1, f"a function it lacks: {coils}"
c.close()
print("pymodbus agrees")
