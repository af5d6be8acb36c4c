#!/usr/bin/env python3
"""Traffic tools for weft's integration tests (busybox lacks UDP and SCTP tools).

  udp-recv PORT SECONDS [COUNT]          print each datagram received on PORT (exit after COUNT)
  udp-send HOST PORT SRCPORT COUNT GAP   send "pkt<N>" COUNT times from a fixed source port
  udp-bcast ADDR PORT COUNT GAP          send "bcast<N>" to a broadcast address COUNT times
  sctp-init HOST DPORT [SPORT]           send one raw SCTP INIT (valid CRC32c) to HOST:DPORT
  sniff IFACE PROTO DPORT SECONDS        packet socket: print and exit 0 on the first IPv4 packet
                                         of PROTO to DPORT seen on IFACE; exit 1 on timeout
  arp-sniff IFACE IP SECONDS              exit 0 on a gratuitous ARP for IP seen on IFACE
  dns-query SERVER NAME [A|PTR] [udp|tcp] [ID]
                                         print "RCODE n" and each answer's address or name
  dns-server IP NAME ADDR SECONDS [DELAY]
                                         answer NAME with ADDR (A, UDP) and NXDOMAIN otherwise,
                                         each answer DELAY seconds late ("never": no answers)
  dns-spoof SRC DST PORTS ID NAME ADDR SECONDS
                                         raw IPv4: forged answers "NAME is ADDR" with ID, from
                                         SRC:53 to every port of DST in PORTS (FIRST-LAST), again
                                         and again for SECONDS; print how many were sent
  arp-spoof IFACE CLAIM_IP TARGET_IP TARGET_MAC SECONDS
                                         packet socket: tell TARGET "CLAIM_IP is at my MAC" (ARP
                                         replies, ten a second) for SECONDS
  udp-forge IFACE SRC_MAC SRC_IP DST_MAC DST_IP PORT TEXT
                                         packet socket: one UDP datagram TEXT with any source MAC
                                         ("own": IFACE's) and source address
  dns-flood SERVER COUNT SECONDS         COUNT queries for distinct names as fast as possible,
                                         then count the answers for SECONDS by RCODE
  dns-garbage SERVER                     send malformed, truncated and oversized queries, then
                                         check the server still answers a good one
"""
import socket
import struct
import sys
import time


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def udp_recv(port, seconds, count="0"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(port)))
    print(f"bound {port}", flush=True)
    end, left = time.time() + float(seconds), int(count) or -1
    while time.time() < end and left != 0:
        left -= 1
        s.settimeout(max(0.01, end - time.time()))
        try:
            data, peer = s.recvfrom(2048)
        except socket.timeout:
            break
        print(f"{data.decode().strip()} from {peer[0]}:{peer[1]}", flush=True)


def udp_send(host, port, sport, count, gap):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(sport)))
    for i in range(int(count)):
        try:
            s.sendto(f"pkt{i}".encode(), (host, int(port)))
        except OSError:
            pass  # an ICMP error from a moment without a mapping: a real flow goes on
        time.sleep(float(gap))


def udp_bcast(addr, port, count, gap):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    for i in range(int(count)):
        s.sendto(f"bcast{i}".encode(), (addr, int(port)))
        time.sleep(float(gap))


def sctp_init(host, dport, sport="40001"):
    # INIT chunk: type 1, flags 0, length 20, initiate tag, a_rwnd, out streams, in streams, TSN
    chunk = struct.pack("!BBHIIHHI", 1, 0, 20, 0x1234ABCD, 65535, 10, 10, 1)
    header = struct.pack("!HHII", int(sport), int(dport), 0, 0)
    packet = header + chunk
    checksum = crc32c(packet)
    packet = header[:8] + struct.pack("<I", checksum) + chunk
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
    s.sendto(packet, (host, 0))


def sniff(iface, proto, dport, seconds):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    s.bind((iface, 0))
    end = time.time() + float(seconds)
    while time.time() < end:
        s.settimeout(max(0.01, end - time.time()))
        try:
            frame = s.recv(65535)
        except socket.timeout:
            break
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != int(proto) or len(ip) < ihl + 4:
            continue
        sport, dp = struct.unpack("!HH", ip[ihl:ihl + 4])
        if dp == int(dport):
            src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
            print(f"got proto {ip[9]} {src}:{sport} -> {dst}:{dp}", flush=True)
            return 0
    return 1


def arp_sniff(iface, ip, seconds):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    s.bind((iface, 0))
    want = socket.inet_aton(ip)
    end = time.time() + float(seconds)
    print("listening", flush=True)
    while time.time() < end:
        s.settimeout(max(0.01, end - time.time()))
        try:
            f = s.recv(2048)
        except socket.timeout:
            break
        if len(f) >= 42 and f[28:32] == want and f[38:42] == want:
            print(f"garp {ip} from {f[22:28].hex(':')}", flush=True)
            return 0
    return 1


def _qname(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def _query(name, qtype, qid=0x1234):
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + _qname(name) + struct.pack("!HH", qtype, 1)


def _skip_name(msg, off):
    while True:
        n = msg[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += n + 1


def _read_name(msg, off):
    labels = []
    while True:
        n = msg[off]
        if n == 0:
            break
        if n & 0xC0 == 0xC0:
            off = ((n & 0x3F) << 8) | msg[off + 1]
            continue
        labels.append(msg[off + 1:off + 1 + n].decode())
        off += n + 1
    return ".".join(labels) + "."


def _ask(server, packet, proto, timeout=4):
    if proto == "tcp":
        s = socket.create_connection((server, 53), timeout=timeout)
        s.sendall(struct.pack("!H", len(packet)) + packet)
        ln = struct.unpack("!H", s.recv(2))[0]
        data = b""
        while len(data) < ln:
            data += s.recv(ln - len(data))
        return data
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    s.sendto(packet, (server, 53))
    return s.recv(65535)


def dns_query(server, name, qtype="A", proto="udp", qid="0x1234"):
    t = {"A": 1, "PTR": 12, "AAAA": 28}[qtype]
    msg = _ask(server, _query(name, t, int(qid, 0)), proto)
    rcode = msg[3] & 0x0F
    print(f"RCODE {rcode}", flush=True)
    an = struct.unpack("!H", msg[6:8])[0]
    off = _skip_name(msg, 12) + 4
    for _ in range(an):
        off = _skip_name(msg, off)
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        if rtype == 1:
            print(socket.inet_ntoa(msg[off:off + 4]), flush=True)
        elif rtype == 12:
            print(_read_name(msg, off), flush=True)
        off += rdlen
    return 0 if rcode == 0 else 1


def dns_server(ip, name, addr, seconds, delay="0"):
    import threading
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, 53))
    print(f"bound {ip}:53", flush=True)
    end = time.time() + float(seconds)
    while time.time() < end:
        s.settimeout(max(0.01, end - time.time()))
        try:
            q, peer = s.recvfrom(512)
        except socket.timeout:
            break
        if delay == "never":
            continue
        if float(delay) > 0:
            threading.Timer(float(delay), _serve_one, (s, q, peer, name, addr)).start()
        else:
            _serve_one(s, q, peer, name, addr)


def _serve_one(s, q, peer, name, addr):
    qend = _skip_name(q, 12) + 4
    asked = _read_name(q, 12).rstrip(".").lower()
    if asked == name.lower():
        ans = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(addr)
        r = q[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0) + q[12:qend] + ans
    else:
        r = q[:2] + struct.pack("!HHHHH", 0x8183, 1, 0, 0, 0) + q[12:qend]
    s.sendto(r, peer)
    print(f"served {asked} to {peer[0]}", flush=True)


def dns_spoof(src, dst, ports, qid, name, addr, seconds):
    first, last = (int(p) for p in ports.split("-"))
    qend = 12 + len(_qname(name)) + 4
    msg = (struct.pack("!HHHHHH", int(qid, 0), 0x8180, 1, 1, 0, 0) + _query(name, 1)[12:qend]
           + b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(addr))
    ulen = 8 + len(msg)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 0, 0, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    # UDP checksum 0: none (allowed over IPv4).
    packets = [(ip + struct.pack("!HHHH", 53, p, ulen, 0) + msg) for p in range(first, last + 1)]
    sent, end = 0, time.time() + float(seconds)
    while time.time() < end:
        for pkt in packets:
            s.sendto(pkt, (dst, 0))
        sent += len(packets)
    print(f"sent {sent}", flush=True)


def _mac(s):
    return bytes.fromhex(s.replace(":", ""))


def _own_mac(iface):
    with open(f"/sys/class/net/{iface}/address") as f:
        return _mac(f.read().strip())


def _csum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def arp_spoof(iface, claim_ip, target_ip, target_mac, seconds):
    own, dst = _own_mac(iface), _mac(target_mac)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, own, socket.inet_aton(claim_ip), dst, socket.inet_aton(target_ip))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    end, sent = time.time() + float(seconds), 0
    while time.time() < end:
        s.send(dst + own + b"\x08\x06" + arp)
        sent += 1
        time.sleep(0.1)
    print(f"sent {sent}", flush=True)


def udp_forge(iface, src_mac, src_ip, dst_mac, dst_ip, port, text):
    smac = _own_mac(iface) if src_mac == "own" else _mac(src_mac)
    payload = text.encode()
    udp = struct.pack("!HHHH", 40001, int(port), 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    s.send(_mac(dst_mac) + smac + b"\x08\x00" + ip + udp)
    print("sent", flush=True)


def dns_flood(server, count, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    count = int(count)
    for i in range(count):
        s.sendto(_query(f"f{i}.flood.test", 1, i & 0xFFFF), (server, 53))
    codes, end = {}, time.time() + float(seconds)
    while time.time() < end:
        s.settimeout(max(0.01, end - time.time()))
        try:
            m = s.recv(4096)
        except socket.timeout:
            break
        codes[m[3] & 0x0F] = codes.get(m[3] & 0x0F, 0) + 1
    print(f"sent {count} " + " ".join(f"rcode{c}={n}" for c, n in sorted(codes.items())), flush=True)


def dns_garbage(server):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bad = [b"", b"\x00", b"\x12\x34\x01\x00\x00\x01", b"\xff" * 12 + b"\x3fabc",
           _query("a" * 60 + ".x", 1)[:-3], b"\x00" * 4096, _query("x", 1) * 200]
    for b in bad:
        s.sendto(b, (server, 53))
    t = socket.create_connection((server, 53), timeout=2)
    t.sendall(b"\xff\xff" + b"\x00" * 10)  # claims 65535 bytes, sends 10, then closes
    t.close()
    return dns_query(server, "localhost-probe-does-not-exist.invalid", "A") and 0


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    rc = {"udp-recv": udp_recv, "udp-send": udp_send, "udp-bcast": udp_bcast, "sctp-init": sctp_init, "sniff": sniff,
          "arp-sniff": arp_sniff, "dns-query": dns_query, "dns-server": dns_server, "dns-garbage": dns_garbage, "dns-spoof": dns_spoof, "dns-flood": dns_flood,
          "arp-spoof": arp_spoof, "udp-forge": udp_forge}[cmd](*args)
    sys.exit(rc or 0)
