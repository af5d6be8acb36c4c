#!/usr/bin/env python3
"""Traffic tools for weft's integration tests (busybox lacks UDP and SCTP tools).

  udp-recv PORT SECONDS                  print each datagram received on PORT
  udp-send HOST PORT SRCPORT COUNT GAP   send "pkt<N>" COUNT times from a fixed source port
  sctp-init HOST DPORT [SPORT]           send one raw SCTP INIT (valid CRC32c) to HOST:DPORT
  sniff IFACE PROTO DPORT SECONDS        packet socket: print and exit 0 on the first IPv4 packet
                                         of PROTO to DPORT seen on IFACE; exit 1 on timeout
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


def udp_recv(port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(port)))
    end = time.time() + float(seconds)
    while time.time() < end:
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
        s.sendto(f"pkt{i}".encode(), (host, int(port)))
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


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    rc = {"udp-recv": udp_recv, "udp-send": udp_send, "sctp-init": sctp_init, "sniff": sniff}[cmd](*args)
    sys.exit(rc or 0)
