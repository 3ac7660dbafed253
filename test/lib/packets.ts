/**
 * Crafted frames for BPF_PROG_TEST_RUN: Ethernet + IPv4 (+ options) + UDP /
 * TCP / ICMP with correct checksums, and ARP. Every builder takes explicit
 * fields so that a test says what it sends.
 */
import { ipv6Bytes } from '../../src/platform/codec';

export const MAC = (s: string): Buffer => Buffer.from(s.split(':').map((h) => parseInt(h, 16)));
export const IP = (s: string): Buffer => Buffer.from(s.split('.').map(Number));

export function checksum(buf: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2) sum += buf[buf.length - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

export function eth(dst: string, src: string, proto: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(14);
  MAC(dst).copy(h, 0);
  MAC(src).copy(h, 6);
  h.writeUInt16BE(proto, 12);
  return Buffer.concat([h, payload]);
}

export interface Ipv4Opts {
  src: string;
  dst: string;
  proto: number;
  ttl?: number;
  /** raw options bytes (padded to 4 by the caller) */
  options?: Buffer;
  /** override IHL (for malformed headers) */
  ihl?: number;
  /** flags+fragment offset field */
  frag?: number;
}

export function ipv4(o: Ipv4Opts, payload: Buffer): Buffer {
  const opts = o.options ?? Buffer.alloc(0);
  const h = Buffer.alloc(20 + opts.length);
  h[0] = 0x40 | (o.ihl ?? (20 + opts.length) / 4);
  h.writeUInt16BE(h.length + payload.length, 2);
  h.writeUInt16BE(0x1234, 4);
  h.writeUInt16BE(o.frag ?? 0x4000, 6);
  h[8] = o.ttl ?? 64;
  h[9] = o.proto;
  IP(o.src).copy(h, 12);
  IP(o.dst).copy(h, 16);
  opts.copy(h, 20);
  h.writeUInt16BE(checksum(h), 10);
  return Buffer.concat([h, payload]);
}

function pseudo(src: string, dst: string, proto: number, len: number): Buffer {
  const p = Buffer.alloc(12);
  IP(src).copy(p, 0);
  IP(dst).copy(p, 4);
  p[9] = proto;
  p.writeUInt16BE(len, 10);
  return p;
}

export function udp(src: string, dst: string, sport: number, dport: number, data: Buffer = Buffer.from('berth')): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt16BE(8 + data.length, 4);
  const seg = Buffer.concat([h, data]);
  seg.writeUInt16BE(checksum(Buffer.concat([pseudo(src, dst, 17, seg.length), seg])) || 0xffff, 6);
  return seg;
}

export interface TcpSeq {
  /** default 1000 */
  seq?: number;
  /** default 0 */
  ack?: number;
  /** default 65535 */
  win?: number;
  /** raw TCP option bytes (a multiple of 4, at most 40; the data offset follows) */
  tcpOptions?: Buffer;
}

export function tcp(src: string, dst: string, sport: number, dport: number, flags = 0x02, data: Buffer = Buffer.alloc(0), s: TcpSeq = {}): Buffer {
  const opts = s.tcpOptions ?? Buffer.alloc(0);
  const h = Buffer.alloc(20 + opts.length);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt32BE((s.seq ?? 1000) >>> 0, 4);
  h.writeUInt32BE((s.ack ?? 0) >>> 0, 8);
  h[12] = (h.length / 4) << 4;
  opts.copy(h, 20);
  h[13] = flags;
  h.writeUInt16BE(s.win ?? 65535, 14);
  const seg = Buffer.concat([h, data]);
  seg.writeUInt16BE(checksum(Buffer.concat([pseudo(src, dst, 6, seg.length), seg])), 16);
  return seg;
}

export function icmpEcho(id = 1, seq = 1): Buffer {
  const h = Buffer.alloc(16);
  h[0] = 8;
  h.writeUInt16BE(id, 4);
  h.writeUInt16BE(seq, 6);
  h.writeUInt16BE(checksum(h), 2);
  return h;
}

/** A whole UDP/IPv4/Ethernet frame. */
export function udpFrame(o: { smac: string; dmac: string; src: string; dst: string; sport?: number; dport?: number }): Buffer {
  return eth(o.dmac, o.smac, 0x0800, ipv4({ src: o.src, dst: o.dst, proto: 17 }, udp(o.src, o.dst, o.sport ?? 40000, o.dport ?? 53)));
}

export function arpRequest(smac: string, sip: string, tip: string): Buffer {
  const a = Buffer.alloc(28);
  a.writeUInt16BE(1, 0);
  a.writeUInt16BE(0x0800, 2);
  a[4] = 6;
  a[5] = 4;
  a.writeUInt16BE(1, 6);
  MAC(smac).copy(a, 8);
  IP(sip).copy(a, 14);
  IP(tip).copy(a, 24);
  return eth('ff:ff:ff:ff:ff:ff', smac, 0x0806, a);
}

/**
 * A whole Ethernet + IPv6 + UDP or TCP frame (no extension headers), the
 * transport checksum over the IPv6 pseudo-header (RFC 8200 8.1).
 */
export function ipv6Frame(o: { smac: string; dmac: string; src: string; dst: string; proto: 6 | 17; sport: number; dport: number; hop?: number; tcpFlags?: number; data?: Buffer }): Buffer {
  const src = ipv6Bytes(o.src);
  const dst = ipv6Bytes(o.dst);
  if (!src || !dst) throw new Error(`not IPv6: ${o.src} -> ${o.dst}`);
  const data = o.data ?? Buffer.from('berth');
  const l4 = Buffer.alloc(o.proto === 6 ? 20 : 8);
  l4.writeUInt16BE(o.sport, 0);
  l4.writeUInt16BE(o.dport, 2);
  if (o.proto === 6) {
    l4.writeUInt32BE(1000, 4);
    l4[12] = 5 << 4;
    l4[13] = o.tcpFlags ?? 0x10;
    l4.writeUInt16BE(65535, 14);
  } else {
    l4.writeUInt16BE(8 + data.length, 4);
  }
  const seg = Buffer.concat([l4, data]);
  const ph = Buffer.alloc(40);
  src.copy(ph, 0);
  dst.copy(ph, 16);
  ph.writeUInt32BE(seg.length, 32);
  ph[39] = o.proto;
  seg.writeUInt16BE(checksum(Buffer.concat([ph, seg])) || (o.proto === 17 ? 0xffff : 0), o.proto === 6 ? 16 : 6);
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000, 0);
  h.writeUInt16BE(seg.length, 4);
  h[6] = o.proto;
  h[7] = o.hop ?? 64;
  src.copy(h, 8);
  dst.copy(h, 24);
  return eth(o.dmac, o.smac, 0x86dd, Buffer.concat([h, seg]));
}
