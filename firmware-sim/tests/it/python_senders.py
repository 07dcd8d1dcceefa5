"""Reference senders from PyPI against the simulator: `sacn` (two sources, priorities 100
and 150, the higher one stopping first) and `stupidArtnet` (one ArtDmx frame).

    python_senders.py sacn HOST UNIVERSE
    python_senders.py artnet HOST PORT UNIVERSE
    python_senders.py multicast UNIVERSE LEVEL   (inside a private network namespace only)
    python_senders.py broadcast PORT_ADDRESS      (likewise: ArtPoll and ArtDmx to 127.255.255.255)
    python_senders.py paho TOPIC                  (one DMX frame through the broker on 127.0.0.1:1883)
"""
import sys
import time


def sacn_sources(host, universe):
    import sacn

    def source(name, priority, level):
        # Never multicast (no universe discovery, unicast output); never bind 5568.
        s = sacn.sACNsender(bind_address="127.0.0.1", bind_port=0, source_name=name,
                            fps=30, universeDiscovery=False)
        s.start()
        s.activate_output(universe)
        s[universe].multicast = False
        s[universe].destination = host
        s[universe].priority = priority
        s[universe].dmx_data = (level,) * 510
        return s

    low = source("reference low", 100, 10)
    high = source("reference high", 150, 200)
    time.sleep(1.5)
    high.deactivate_output(universe)  # three packets with stream-terminated set
    high.stop()
    print("high stopped", flush=True)
    time.sleep(1.5)
    low.deactivate_output(universe)
    low.stop()
    print("low stopped", flush=True)


def artnet_frame(host, port, universe):
    from stupidArtnet import StupidArtnet

    a = StupidArtnet(host, universe, 512, 30, True, False, None, False, port)
    frame = bytearray(512)
    frame[0:4] = bytes([0, 255, 0, 0])
    a.set(frame)
    a.show()
    a.close()
    print("frame sent", flush=True)


def sacn_multicast(universe, level):
    import sacn

    s = sacn.sACNsender(bind_address="127.0.0.1", bind_port=0, source_name="reference multicast",
                        fps=30, universeDiscovery=False)
    s.start()
    s.activate_output(universe)
    s[universe].multicast = True
    s[universe].dmx_data = (level,) * 510
    time.sleep(1.0)
    s.stop()
    print("multicast sent", flush=True)


def artnet_broadcast(universe):
    import socket
    from stupidArtnet import StupidArtnet

    # ArtPoll to everyone; every node answers with its ArtPollReply.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2.0)
    s.sendto(b"Art-Net\x00" + bytes([0x00, 0x20, 0x00, 0x0E, 0x00, 0x00]), ("127.255.255.255", 6454))
    replies = 0
    try:
        while True:
            data, _ = s.recvfrom(1500)
            if data[:10] == b"Art-Net\x00\x00\x21":
                replies += 1
    except socket.timeout:
        pass
    print(f"poll replies {replies}", flush=True)
    a = StupidArtnet("127.255.255.255", universe, 512, 30, True, True)
    frame = bytearray(512)
    frame[0:4] = bytes([0, 0, 255, 0])
    a.set(frame)
    a.show()
    a.close()
    print("broadcast frame sent", flush=True)


def paho_frame(topic):
    import paho.mqtt.publish as publish

    publish.single(topic, payload=bytes([1, 10, 20, 30, 40]), qos=1, hostname="127.0.0.1", port=1883)
    print("published", flush=True)


if sys.argv[1] == "paho":
    paho_frame(sys.argv[2])
elif sys.argv[1] == "broadcast":
    artnet_broadcast(int(sys.argv[2]))
elif sys.argv[1] == "sacn":
    sacn_sources(sys.argv[2], int(sys.argv[3]))
elif sys.argv[1] == "multicast":
    sacn_multicast(int(sys.argv[2]), int(sys.argv[3]))
else:
    artnet_frame(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
