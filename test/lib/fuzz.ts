/**
 * The pieces of the packet fuzzer (test/bpf/fuzz.test.ts) that know nothing
 * of berth's maps: a seeded PRNG, frame builders on numeric addresses, a
 * parser that reads a frame the way bpf/lib/parse.h and l4.h do, one's
 * complement checksums computed from scratch, and the mutator.
 *
 * Everything random comes from one Rng, so a seed gives the same packets in
 * the same order on every run.
 */

// ---- PRNG -----------------------------------------------------------------

const rotl = (x: number, k: number): number => ((x << k) | (x >>> (32 - k))) >>> 0;

/** 32-bit FNV-1a of a string, for deriving per-stream seeds from a label. */
export function hashLabel(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h >>> 0;
}

/** xoshiro128** (Blackman and Vigna), its state filled by splitmix32 from the seed. */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    let x = seed >>> 0;
    const next = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** A seed for an independent stream named `label`, derived from `seed`. */
  static derive(seed: number, label: string): number {
    return (Math.imul((seed >>> 0) ^ 0x5bd1e995, 0x9e3779b1) ^ hashLabel(label)) >>> 0;
  }

  u32(): number {
    const r = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return r;
  }

  /** 0 <= n < max (max <= 2^32) */
  int(max: number): number {
    return Math.floor((this.u32() / 4294967296) * max);
  }

  /** lo <= n <= hi */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.u32() < p * 4294967296;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** One of the items, by weight. */
  weighted<T>(items: ReadonlyArray<readonly [number, T]>): T {
    let total = 0;
    for (const [w] of items) total += w;
    let r = this.u32() / 4294967296 * total;
    for (const [w, v] of items) {
      if (r < w) return v;
      r -= w;
    }
    return items[items.length - 1][1];
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i += 4) {
      const v = this.u32();
      b[i] = v & 0xff;
      if (i + 1 < n) b[i + 1] = (v >>> 8) & 0xff;
      if (i + 2 < n) b[i + 2] = (v >>> 16) & 0xff;
      if (i + 3 < n) b[i + 3] = v >>> 24;
    }
    return b;
  }
}

// ---- addresses ------------------------------------------------------------

export const ip4 = (s: string): number => s.split('.').reduce((a, o) => ((a << 8) | Number(o)) >>> 0, 0);
export const ip4str = (n: number): string => `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
export const macBuf = (s: string): Buffer => Buffer.from(s.replace(/:/g, ''), 'hex');
export const macStr = (b: Buffer, off = 0): string => [...b.subarray(off, off + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');

// ---- checksums ------------------------------------------------------------

/** Sum of the big-endian 16-bit words of b[start, end) (an odd last byte padded), added to acc. */
export function sum16(b: Buffer, start: number, end: number, acc = 0): number {
  let i = start;
  for (; i + 1 < end; i += 2) acc += (b[i] << 8) | b[i + 1];
  if (i < end) acc += b[i] << 8;
  return acc;
}

/** End-around carry down to 16 bits. */
export function fold(acc: number): number {
  while (acc > 0xffff) acc = (acc & 0xffff) + Math.floor(acc / 65536);
  return acc;
}

/** The checksum field value that makes a sum `acc` (taken with the field at 0) valid. */
export const csumOf = (acc: number): number => ~fold(acc) & 0xffff;

/** A sum taken with the checksum field in place, as a residue: 0 means valid (one's complement -0 and +0 alike). */
export const residue = (acc: number): number => fold(acc) % 0xffff;

/** The IPv4 pseudo header's sum (addresses, protocol, length). */
export const pseudoSum = (src: number, dst: number, proto: number, len: number): number =>
  (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + proto + (len & 0xffff);

// ---- builders -------------------------------------------------------------

export const ETH_IP = 0x0800;
export const ETH_IPV6 = 0x86dd;
export const ETH_ARP = 0x0806;
export const ETH_VLAN = 0x8100;
export const TCP = 6;
export const UDP = 17;
export const ICMP = 1;
/** protocols besides TCP and UDP whose checksum covers the pseudo header, at offset 6 (bpf/lib/l4.h) */
export const DCCP = 33;
export const UDPLITE = 136;
export const GRE = 47;
export const SCTP = 132;
const pseudoCsum = (proto: number): boolean => proto === DCCP || proto === UDPLITE;
/** Bytes of a DCCP / UDP-Lite segment its checksum covers (RFC 4340 9.2, RFC 3828 3.1), or -1 when the header says none can be right. */
function coverage(proto: number, seg: Buffer, at: number, len: number): number {
  if (proto === UDPLITE) {
    if (len < 8) return -1;
    const cov = seg.readUInt16BE(at + 4);
    return cov === 0 ? len : cov < 8 || cov > len ? -1 : cov;
  }
  if (len < 12) return -1;
  const doff = seg[at + 4] * 4;
  if (doff < 12 || doff > len) return -1;
  const cscov = seg[at + 5] & 0x0f;
  return cscov === 0 ? len : Math.min(len, doff + (cscov - 1) * 4);
}

export function ethFrame(dmac: Buffer, smac: Buffer, type: number, payload: Buffer, vlan?: number): Buffer {
  const hl = vlan === undefined ? 14 : 18;
  const f = Buffer.alloc(hl + payload.length);
  dmac.copy(f, 0);
  smac.copy(f, 6);
  if (vlan === undefined) {
    f.writeUInt16BE(type, 12);
  } else {
    f.writeUInt16BE(ETH_VLAN, 12);
    f.writeUInt16BE(vlan & 0xfff, 14);
    f.writeUInt16BE(type, 16);
  }
  payload.copy(f, hl);
  return f;
}

export interface Ipv4Spec {
  src: number;
  dst: number;
  proto: number;
  ttl?: number;
  tos?: number;
  id?: number;
  /** flags and fragment offset, as on the wire (default DF) */
  frag?: number;
  /** options, a multiple of 4 bytes */
  options?: Buffer;
}

export function ipv4Packet(o: Ipv4Spec, l4: Buffer): Buffer {
  const opts = o.options ?? Buffer.alloc(0);
  const hl = 20 + opts.length;
  const p = Buffer.alloc(hl + l4.length);
  p[0] = 0x40 | (hl >> 2);
  p[1] = o.tos ?? 0;
  p.writeUInt16BE(p.length, 2);
  p.writeUInt16BE(o.id ?? 0x1234, 4);
  p.writeUInt16BE(o.frag ?? 0x4000, 6);
  p[8] = o.ttl ?? 64;
  p[9] = o.proto;
  p.writeUInt32BE(o.src, 12);
  p.writeUInt32BE(o.dst, 16);
  opts.copy(p, 20);
  p.writeUInt16BE(csumOf(sum16(p, 0, hl)), 10);
  l4.copy(p, hl);
  return p;
}

export function tcpSegment(src: number, dst: number, sport: number, dport: number, flags: number, payload: Buffer, seq = 1000): Buffer {
  const s = Buffer.alloc(20 + payload.length);
  s.writeUInt16BE(sport, 0);
  s.writeUInt16BE(dport, 2);
  s.writeUInt32BE(seq >>> 0, 4);
  s.writeUInt32BE(flags & 0x10 ? 7777 : 0, 8);
  s[12] = 5 << 4;
  s[13] = flags;
  s.writeUInt16BE(64240, 14);
  payload.copy(s, 20);
  s.writeUInt16BE(csumOf(sum16(s, 0, s.length, pseudoSum(src, dst, TCP, s.length))), 16);
  return s;
}

/** noCsum: checksum 0, "none" (RFC 768). A computed 0 is sent as 0xffff. */
export function udpDatagram(src: number, dst: number, sport: number, dport: number, payload: Buffer, noCsum = false): Buffer {
  const s = Buffer.alloc(8 + payload.length);
  s.writeUInt16BE(sport, 0);
  s.writeUInt16BE(dport, 2);
  s.writeUInt16BE(s.length, 4);
  payload.copy(s, 8);
  if (!noCsum) s.writeUInt16BE(csumOf(sum16(s, 0, s.length, pseudoSum(src, dst, UDP, s.length))) || 0xffff, 6);
  return s;
}

/** DCCP-Data with 48-bit sequence numbers (X=1, a 16-byte header), its checksum over `cscov` (0: all). */
export function dccpPacket(src: number, dst: number, sport: number, dport: number, payload: Buffer, cscov = 0): Buffer {
  const s = Buffer.alloc(16 + payload.length);
  s.writeUInt16BE(sport, 0);
  s.writeUInt16BE(dport, 2);
  s[4] = 4;
  s[5] = cscov & 0x0f;
  s[8] = (2 << 1) | 1;
  s.writeUIntBE(0x0a0b0c0d0e0f, 10, 6);
  payload.copy(s, 16);
  s.writeUInt16BE(csumOf(sum16(s, 0, coverage(DCCP, s, 0, s.length), pseudoSum(src, dst, DCCP, s.length))), 6);
  return s;
}

/** UDP-Lite, its checksum over the first `cov` bytes (0: all). */
export function udpLiteDatagram(src: number, dst: number, sport: number, dport: number, payload: Buffer, cov = 0): Buffer {
  const s = Buffer.alloc(8 + payload.length);
  s.writeUInt16BE(sport, 0);
  s.writeUInt16BE(dport, 2);
  s.writeUInt16BE(cov, 4);
  payload.copy(s, 8);
  s.writeUInt16BE(csumOf(sum16(s, 0, coverage(UDPLITE, s, 0, s.length), pseudoSum(src, dst, UDPLITE, s.length))), 6);
  return s;
}

export function icmpMessage(type: number, code: number, rest: number, body: Buffer): Buffer {
  const m = Buffer.alloc(8 + body.length);
  m[0] = type;
  m[1] = code;
  m.writeUInt32BE(rest >>> 0, 4);
  body.copy(m, 8);
  m.writeUInt16BE(csumOf(sum16(m, 0, m.length)), 2);
  return m;
}

export const icmpEcho = (type: 0 | 8, id: number, seq: number, payload: Buffer): Buffer =>
  icmpMessage(type, 0, ((id & 0xffff) << 16) | (seq & 0xffff), payload);

// ---- parsing, as the BPF programs do ----------------------------------------

export const FRAG_NONE = 0;
export const FRAG_FIRST = 1;
export const FRAG_LATER = 2;

export interface Inner {
  off: number;     // quoted IPv4 header
  ihl: number;     // bytes
  l4: number;      // quoted transport header
  proto: number;
  saddr: number;
  daddr: number;
  /** the quoted tuple's ports (ICMP echo: the identifier twice) */
  sport: number;
  dport: number;
}

export interface Parsed {
  len: number;
  ethType: number;
  unicast: boolean;
  /**
   * An IPv4 datagram berth_parse_ipv4 accepts, as the kernel's ip_rcv does:
   * ethertype IPv4, version 4, IHL >= 5 with the options in the frame, the
   * header checksum right, tot_len from the header to no further than the
   * frame's end. The fields below are read even when it is not.
   */
  ip: boolean;
  version: number;
  ihl: number;     // bytes
  totLen: number;
  /** offset of the datagram's end (14 + tot_len), when ip */
  end: number;
  ttl: number;
  proto: number;
  saddr: number;
  daddr: number;
  fragField: number;
  frag: number;    // FRAG_*
  l4: number;      // offset of the transport header
  /** berth_parse_l4's has_ports: a TCP/UDP header or an ICMP echo header inside the datagram, not a later fragment */
  hasPorts: boolean;
  /** berth_parse_l4's generic: another protocol, any fragment (DCCP, UDP-Lite: with room for the checksum unless a later fragment); tracked with ports 0 */
  generic: boolean;
  sport: number;
  dport: number;
  tcpFlags: number;
  icmpType: number;
  /** offset of the transport checksum when hasPorts, or of a generic DCCP / UDP-Lite packet's; 0 for none */
  csumOff: number;
  /** an ICMP error berth_nat_icmp_error would look at */
  inner?: Inner;
}

const isEcho = (t: number): boolean => t === 0 || t === 8;
export const isIcmpError = (t: number): boolean => t === 3 || t === 11 || t === 12;

export function parse(b: Buffer): Parsed {
  const p: Parsed = {
    len: b.length, ethType: b.length >= 14 ? b.readUInt16BE(12) : -1, unicast: b.length >= 1 && (b[0] & 1) === 0,
    ip: false, version: 0, ihl: 0, totLen: 0, end: 0, ttl: 0, proto: -1, saddr: 0, daddr: 0, fragField: 0, frag: FRAG_NONE,
    l4: 0, hasPorts: false, generic: false, sport: 0, dport: 0, tcpFlags: 0, icmpType: -1, csumOff: 0,
  };
  if (p.ethType !== ETH_IP || b.length < 34) return p;
  const ihl = (b[14] & 15) * 4;
  p.version = b[14] >> 4;
  p.ihl = ihl;
  p.totLen = b.readUInt16BE(16);
  p.fragField = b.readUInt16BE(20);
  p.ttl = b[22];
  p.proto = b[23];
  p.saddr = b.readUInt32BE(26);
  p.daddr = b.readUInt32BE(30);
  p.l4 = 14 + ihl;
  if (p.version !== 4 || ihl < 20 || 14 + ihl > b.length) return p;
  if (p.totLen < ihl || 14 + p.totLen > b.length) return p;
  if (residue(sum16(b, 14, 14 + ihl)) !== 0) return p;
  p.ip = true;
  p.end = 14 + p.totLen;
  if (p.fragField & 0x1fff) {
    p.frag = FRAG_LATER;
    p.generic = p.proto !== TCP && p.proto !== UDP && p.proto !== ICMP; // its tuple needs no transport header
    return p;
  }
  p.frag = p.fragField & 0x2000 ? FRAG_FIRST : FRAG_NONE;
  const l4 = p.l4;
  if (p.proto === TCP) {
    if (l4 + 20 > p.end) return p;
    p.sport = b.readUInt16BE(l4);
    p.dport = b.readUInt16BE(l4 + 2);
    p.tcpFlags = b[l4 + 13];
    p.csumOff = l4 + 16;
  } else if (p.proto === UDP) {
    if (l4 + 8 > p.end) return p;
    p.sport = b.readUInt16BE(l4);
    p.dport = b.readUInt16BE(l4 + 2);
    p.csumOff = l4 + 6;
  } else if (p.proto === ICMP) {
    if (l4 + 8 > p.end) return p;
    p.icmpType = b[l4];
    if (!isEcho(p.icmpType)) {
      p.inner = parseInner(b, p);
      return p;
    }
    p.sport = p.dport = b.readUInt16BE(l4 + 4);
    p.csumOff = l4 + 2;
  } else {
    if (pseudoCsum(p.proto)) {
      if (l4 + 8 > p.end) return p;
      p.csumOff = l4 + 6;
    }
    p.generic = true;
    return p;
  }
  p.hasPorts = true;
  return p;
}

/** The quoted packet of an ICMP error, under berth_nat_icmp_error's conditions (all of it inside the error's datagram). */
function parseInner(b: Buffer, p: Parsed): Inner | undefined {
  if (p.frag !== FRAG_NONE || !isIcmpError(p.icmpType)) return undefined;
  const off = p.l4 + 8;
  if (off + 20 > b.length) return undefined;
  const ihl = (b[off] & 15) * 4;
  if (b[off] >> 4 !== 4 || ihl < 20) return undefined;
  if (b.readUInt16BE(off + 6) & 0x1fff) return undefined;
  const l4 = off + ihl;
  if (l4 + 8 > p.end) return undefined;
  const proto = b[off + 9];
  let sport: number, dport: number;
  if (proto === TCP || proto === UDP) {
    sport = b.readUInt16BE(l4);
    dport = b.readUInt16BE(l4 + 2);
  } else if (proto === ICMP) {
    if (!isEcho(b[l4])) return undefined;
    sport = dport = b.readUInt16BE(l4 + 4);
  } else {
    sport = dport = 0; // another protocol: the generic tuple
  }
  return { off, ihl, l4, proto, saddr: b.readUInt32BE(off + 12), daddr: b.readUInt32BE(off + 16), sport, dport };
}

/**
 * The transport checksum of the datagram in b is right (TCP, UDP, ICMP; a
 * UDP checksum of 0 counts as right: there is none). `p` gives the offsets
 * (a parse of the same layout) and the addresses come from b itself.
 */
export function l4ChecksumValid(b: Buffer, p: Parsed): boolean {
  if (!p.ip || p.frag !== FRAG_NONE) return false;
  const end = p.end;
  const segLen = p.totLen - p.ihl;
  const src = b.readUInt32BE(26);
  const dst = b.readUInt32BE(30);
  if (p.proto === TCP) return segLen >= 20 && residue(sum16(b, p.l4, end, pseudoSum(src, dst, TCP, segLen))) === 0;
  if (p.proto === UDP) {
    if (segLen < 8) return false;
    if (b.readUInt16BE(p.l4 + 6) === 0) return true;
    return residue(sum16(b, p.l4, end, pseudoSum(src, dst, UDP, segLen))) === 0;
  }
  if (p.proto === ICMP) return segLen >= 8 && residue(sum16(b, p.l4, end)) === 0;
  if (pseudoCsum(p.proto)) {
    const cov = coverage(p.proto, b, p.l4, segLen);
    return cov > 0 && residue(sum16(b, p.l4, p.l4 + cov, pseudoSum(src, dst, p.proto, segLen))) === 0;
  }
  return false;
}

/** Set the IPv4 header checksum right, whatever else the header says (when its IHL fits the frame). */
export function fixIpChecksum(b: Buffer): void {
  if (b.length < 34 || b.readUInt16BE(12) !== ETH_IP) return;
  const ihl = (b[14] & 15) * 4;
  if (ihl < 20 || 14 + ihl > b.length) return;
  b.writeUInt16BE(0, 24);
  b.writeUInt16BE(csumOf(sum16(b, 14, 14 + ihl)), 24);
}

/** Set the transport checksum right over the datagram tot_len describes, as far as the frame holds it. */
export function fixL4Checksum(b: Buffer): void {
  if (b.length < 34 || b.readUInt16BE(12) !== ETH_IP) return;
  const ihl = (b[14] & 15) * 4;
  const l4 = 14 + ihl;
  if (ihl < 20 || l4 > b.length || b.readUInt16BE(20) & 0x1fff) return;
  const proto = b[23];
  const end = Math.min(b.length, 14 + Math.max(b.readUInt16BE(16), ihl));
  const segLen = end - l4;
  const at = proto === TCP ? l4 + 16 : proto === UDP || pseudoCsum(proto) ? l4 + 6 : proto === ICMP ? l4 + 2 : -1;
  if (at < 0 || at + 2 > end) return;
  b.writeUInt16BE(0, at);
  const cov = pseudoCsum(proto) ? coverage(proto, b, l4, segLen) : segLen;
  if (cov < 0) return;
  const acc = proto === ICMP ? sum16(b, l4, end) : sum16(b, l4, l4 + cov, pseudoSum(b.readUInt32BE(26), b.readUInt32BE(30), proto, segLen));
  let c = csumOf(acc);
  if (proto === UDP && c === 0) c = 0xffff;
  b.writeUInt16BE(c, at);
}

// ---- the mutator ------------------------------------------------------------

/** Offsets worth aiming at, from the frame as built (before any mutation). */
interface Layout {
  l3: number;
  l4: number;
  /** quoted header of an ICMP error, or -1 */
  inner: number;
  innerL4: number;
  proto: number;
}

function layoutOf(b: Buffer): Layout {
  const et = b.length >= 14 ? b.readUInt16BE(12) : 0;
  const l3 = et === ETH_VLAN ? 18 : 14;
  const ihl = b.length > l3 ? Math.max(20, (b[l3] & 15) * 4) : 20;
  const l4 = l3 + ihl;
  const proto = b.length > l3 + 9 ? b[l3 + 9] : 0;
  let inner = -1;
  let innerL4 = -1;
  if (proto === ICMP && b.length > l4 + 8 && isIcmpError(b[l4])) {
    inner = l4 + 8;
    innerL4 = inner + Math.max(20, (b[inner] & 15) * 4);
  }
  return { l3, l4, inner, innerL4, proto };
}

const BOUNDARY8 = [0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x0f, 0x10, 0x3f, 0x40, 0x45, 0x46, 0x4f, 0x7f, 0x80, 0xfe, 0xff];
const BOUNDARY16 = [0x0000, 0x0001, 0x0002, 0x0007, 0x0008, 0x0014, 0x0015, 0x003f, 0x0043, 0x0044, 0x00ff, 0x0100, 0x7fff, 0x8000, 0xfffe, 0xffff];
const PROTOS = [0, 1, 2, 4, 6, 17, 41, 47, 50, 51, 58, 132, 136, 255];
const FRAGS = [0x0000, 0x2000, 0x4000, 0x6000, 0x8000, 0x0001, 0x2001, 0x1fff, 0x3fff, 0x4001, 0x00b9, 0xffff];
const ETHTYPES = [ETH_IP, ETH_IP, ETH_IPV6, ETH_ARP, ETH_VLAN, 0x88a8, 0x8847, 0x0000, 0x05dc, 0xffff];
const MAX_FRAME = 3712; // the largest frame BPF_PROG_TEST_RUN takes here

type Mutation = (r: Rng, b: Buffer, l: Layout) => Buffer;

const put16 = (b: Buffer, off: number, v: number): void => {
  if (off >= 0 && off + 2 <= b.length) b.writeUInt16BE(v & 0xffff, off);
};
const put8 = (b: Buffer, off: number, v: number): void => {
  if (off >= 0 && off < b.length) b[off] = v & 0xff;
};
/** An offset, most often inside the headers where the programs look. */
const hotOffset = (r: Rng, b: Buffer, l: Layout): number =>
  r.chance(0.8) ? r.int(Math.min(b.length, (l.innerL4 > 0 ? l.innerL4 : l.l4) + 24)) : r.int(b.length);

/** The 16-bit fields the programs read or rewrite. */
function fields16(b: Buffer, l: Layout): number[] {
  const f = [12, l.l3 + 2, l.l3 + 4, l.l3 + 6, l.l3 + 10, l.l4, l.l4 + 2, l.l4 + 4, l.l4 + 6];
  if (l.proto === TCP) f.push(l.l4 + 12, l.l4 + 16);
  if (l.inner > 0) f.push(l.inner + 2, l.inner + 6, l.inner + 10, l.innerL4, l.innerL4 + 2, l.innerL4 + 4, l.innerL4 + 6);
  return f.filter((o) => o + 2 <= b.length);
}

function truncateAt(b: Buffer, n: number): Buffer {
  return b.subarray(0, Math.max(0, Math.min(b.length, n)));
}

export const MUTATIONS: ReadonlyArray<readonly [string, number, Mutation]> = [
  ['bitflip', 10, (r, b, l) => {
    const n = r.chance(0.7) ? 1 : r.range(2, 8);
    for (let i = 0; i < n && b.length; i++) b[hotOffset(r, b, l)] ^= 1 << r.int(8);
    return b;
  }],
  ['byte', 8, (r, b, l) => {
    if (b.length) b[hotOffset(r, b, l)] = r.chance(0.7) ? r.pick(BOUNDARY8) : r.int(256);
    return b;
  }],
  ['field16', 10, (r, b, l) => {
    const fs = fields16(b, l);
    if (!fs.length) return b;
    const off = r.pick(fs);
    const cur = b.readUInt16BE(off);
    put16(b, off, r.weighted([[6, r.pick(BOUNDARY16)], [2, cur + 1], [2, cur - 1], [2, r.int(65536)], [1, b.length - l.l3], [1, cur ^ 0x8000]]));
    return b;
  }],
  ['ihl', 5, (r, b, l) => {
    put8(b, l.l3, (b[l.l3] & 0xf0) | r.int(16));
    return b;
  }],
  ['version', 3, (r, b, l) => {
    put8(b, l.l3, (b[l.l3] & 0x0f) | (r.pick([0, 4, 5, 6, 7, 15]) << 4));
    return b;
  }],
  ['proto', 5, (r, b, l) => {
    put8(b, l.l3 + 9, r.pick(PROTOS));
    return b;
  }],
  ['frag', 6, (r, b, l) => {
    put16(b, l.l3 + 6, r.chance(0.8) ? r.pick(FRAGS) : r.int(65536));
    return b;
  }],
  ['totlen', 6, (r, b, l) => {
    const ihl = b.length > l.l3 ? (b[l.l3] & 15) * 4 : 20;
    const real = b.length - l.l3;
    put16(b, l.l3 + 2, r.pick([0, 1, ihl - 1, ihl, ihl + 1, ihl + 7, ihl + 8, ihl + 19, ihl + 20, real - 1, real + 1, real + 64, 1500, 1501, 0xffff, r.int(65536)]));
    return b;
  }],
  ['ttl', 3, (r, b, l) => {
    put8(b, l.l3 + 8, r.pick([0, 1, 2, 255]));
    return b;
  }],
  ['csum', 6, (r, b, l) => {
    const at = r.pick([l.l3 + 10, l.proto === TCP ? l.l4 + 16 : l.proto === UDP ? l.l4 + 6 : l.l4 + 2, l.inner > 0 ? l.inner + 10 : l.l3 + 10]);
    if (at + 2 <= b.length) put16(b, at, r.chance(0.3) ? r.pick([0, 0xffff]) : b.readUInt16BE(at) ^ (1 + r.int(0xffff)));
    return b;
  }],
  ['tcpflags', 2, (r, b, l) => {
    put8(b, l.l4 + 13, r.chance(0.5) ? r.pick([0x01, 0x02, 0x04, 0x10, 0x11, 0x12, 0x14, 0x18, 0x29, 0x3f, 0xff, 0]) : r.int(256));
    return b;
  }],
  ['icmptype', 3, (r, b, l) => {
    put8(b, l.l4, r.pick([0, 3, 4, 5, 8, 11, 12, 13, 14, 255]));
    if (r.chance(0.5)) put8(b, l.l4 + 1, r.pick([0, 1, 3, 4, 13, 255]));
    return b;
  }],
  ['inner', 6, (r, b, l) => {
    if (l.inner < 0) return b;
    const what = r.int(6);
    if (what === 0) put8(b, l.inner, r.pick([0x44, 0x45, 0x46, 0x4f, 0x55, 0x65, 0x05]));
    else if (what === 1) put8(b, l.inner + 9, r.pick(PROTOS));
    else if (what === 2) put16(b, l.inner + 6, r.pick(FRAGS));
    else if (what === 3) put16(b, r.pick([l.innerL4, l.innerL4 + 2, l.innerL4 + 4]), r.pick(BOUNDARY16));
    else if (what === 4) put8(b, l.innerL4, r.pick([0, 3, 8, 11, 255]));
    else put16(b, l.inner + 2, r.pick(BOUNDARY16));
    return b;
  }],
  ['mac', 3, (r, b) => {
    put8(b, 0, r.pick([0xff, 0x01, 0x33, 0x03, 0x02, 0x00]));
    return b;
  }],
  ['ethtype', 3, (r, b) => {
    put16(b, 12, r.pick(ETHTYPES));
    return b;
  }],
  ['truncate', 10, (r, b, l) => {
    const cuts = [14, l.l3, l.l3 + 19, l.l3 + 20, l.l4 - 1, l.l4, l.l4 + 1, l.l4 + 4, l.l4 + 7, l.l4 + 8, l.l4 + 13, l.l4 + 19, l.l4 + 20];
    if (l.inner > 0) cuts.push(l.inner, l.inner + 19, l.inner + 20, l.innerL4, l.innerL4 + 4, l.innerL4 + 6, l.innerL4 + 7, l.innerL4 + 8);
    const at = r.chance(0.8) ? r.pick(cuts) + r.pick([0, 0, 0, -1, 1]) : r.int(b.length + 1);
    return truncateAt(b, at);
  }],
  ['extend', 3, (r, b) => {
    // now and then past a 1500-byte MTU: bytes past tot_len never make a datagram too big (lib/hop.h, lib/hop6.h)
    const n = r.pick([1, 2, 3, 4, 8, 18, 64, r.range(1, 400), Math.max(1, 1514 - b.length + r.range(1, 200))]);
    return Buffer.concat([b, r.chance(0.5) ? Buffer.alloc(n) : r.bytes(n)]).subarray(0, MAX_FRAME);
  }],
  ['junk', 4, (r, b, l) => {
    if (!b.length) return b;
    const at = hotOffset(r, b, l);
    const n = Math.min(b.length - at, r.range(1, 16));
    r.bytes(n).copy(b, at);
    return b;
  }],
  ['v6', 10, (r, b) => {
    // the IPv6 header's fields and its chain (nothing on other frames)
    if (b.length < 54 || b.readUInt16BE(12) !== ETH_IPV6) return b;
    const what = r.int(7);
    if (what === 5) {
      // cut at the transport header, a quoted header or its ports (no extension headers assumed)
      return truncateAt(b, r.pick([54, 62, 74, 94, 102, 106, 110]) + r.pick([0, 0, -1, 1]));
    }
    if (what === 6) {
      // an 8-byte destination options header slipped in before whatever came next, payload_len grown (mostly)
      const opt = Buffer.from([b[20], 0, 1, 4, 0, 0, 0, 0]);
      const out = Buffer.concat([b.subarray(0, 54), opt, b.subarray(54)]).subarray(0, MAX_FRAME);
      out[20] = r.pick([60, 60, 0]);
      if (r.chance(0.8)) put16(out, 18, out.readUInt16BE(18) + 8);
      return out;
    }
    if (what === 0) put8(b, 20, r.pick([0, 6, 17, 43, 44, 50, 51, 58, 59, 60, 255]));
    else if (what === 1) put16(b, 18, r.pick([0, 1, 7, 8, 20, b.length - 54 - 1, b.length - 54 + 1, 0xffff, r.int(65536)]));
    else if (what === 2) put8(b, 21, r.pick([0, 1, 2, 255]));
    else if (what === 3) put8(b, 14, (b[14] & 0x0f) | (r.pick([4, 5, 7, 0]) << 4));
    else {
      // the first extension header's (or upper layer's) first bytes: next header, length, fragment offset
      const at = 54 + r.int(4);
      put8(b, at, r.pick([0, 1, 6, 17, 44, 58, 60, 255, r.int(256)]));
    }
    return b;
  }],
  ['options', 2, (r, b, l) => {
    // grow the IP header by 4..40 bytes of options, lengths left as they were
    const ihl = b.length > l.l3 ? (b[l.l3] & 15) * 4 : 20;
    const n = 4 * r.range(1, 10);
    const opt = r.chance(0.5) ? Buffer.alloc(n, r.pick([0, 1])) : r.bytes(n);
    const out = Buffer.concat([b.subarray(0, l.l3 + ihl), opt, b.subarray(l.l3 + ihl)]);
    if (out.length > l.l3) put8(out, l.l3, (out[l.l3] & 0xf0) | Math.min(15, (ihl + n) >> 2));
    return out.subarray(0, MAX_FRAME);
  }],
];

const TOTAL_WEIGHT = MUTATIONS.reduce((a, [, w]) => a + w, 0);

function pickMutation(r: Rng): readonly [string, number, Mutation] {
  let x = r.u32() / 4294967296 * TOTAL_WEIGHT;
  for (const m of MUTATIONS) {
    if (x < m[1]) return m;
    x -= m[1];
  }
  return MUTATIONS[MUTATIONS.length - 1];
}

/**
 * 1 to 6 mutations of a copy of `frame` (most often one or two), then, now
 * and then, the checksums made right again so that a lie in a length or a
 * field gets past the header checksum check to the code behind it. Returns the new
 * frame and the names of what was done.
 */
export function mutate(r: Rng, frame: Buffer): { frame: Buffer; ops: string[] } {
  let b: Buffer = Buffer.from(frame);
  const ops: string[] = [];
  const n = r.weighted([[50, 1], [30, 2], [12, 3], [8, r.range(4, 6)]]);
  for (let i = 0; i < n; i++) {
    const [name, , fn] = pickMutation(r);
    b = fn(r, b, layoutOf(b));
    ops.push(name);
  }
  if (r.chance(0.6)) {
    fixIpChecksum(b);
    ops.push('fix-ip');
  }
  if (r.chance(0.25)) {
    fixL4Checksum(b);
    fixL4Checksum6(b);
    ops.push('fix-l4');
  }
  return { frame: b, ops };
}

/** A frame of random bytes, sometimes dressed as IPv4 so that it gets past the Ethernet check. */
export function randomFrame(r: Rng): Buffer {
  const b = r.bytes(r.weighted([[5, r.range(14, 64)], [3, r.range(64, 200)], [1, r.range(200, 1500)]]));
  if (r.chance(0.6) && b.length >= 34) {
    b[0] &= 0xfe; // unicast
    b.writeUInt16BE(ETH_IP, 12);
    b[14] = r.chance(0.7) ? 0x45 : 0x40 | r.int(16);
    if (r.chance(0.5)) b[23] = r.pick([1, 6, 17]);
    if (r.chance(0.5)) b.writeUInt16BE(r.chance(0.5) ? 0 : 0x4000, 20);
    if (r.chance(0.5)) b.writeUInt16BE(b.length - 14, 16);
    if (r.chance(0.5)) fixIpChecksum(b);
  }
  return b;
}

// ---- IPv6, as bpf/lib/ipv6.h and nat6.h read it -------------------------------

export const ICMP6 = 58;
const EXT6 = new Set([0, 43, 44, 51, 60]);

/** 16 bytes at b[off] as eight uncompressed groups (test/lib/ipv6ref.ts's ip6() reads it back). */
export const ip6s = (b: Buffer, off = 0): string => {
  const w: string[] = [];
  for (let i = 0; i < 16; i += 2) w.push(b.readUInt16BE(off + i).toString(16));
  return w.join(':');
};

export interface Parsed6 {
  /** an IPv6 header with the payload inside the frame and a chain of at most 8 extension headers ending in an upper layer */
  ok: boolean;
  /** offset of the datagram's end (54 + payload_len) */
  end: number;
  hop: number;
  proto: number;
  l4: number;
  /** FRAG_NONE / FIRST / LATER (an atomic fragment, offset 0 without M, is NONE) */
  frag: number;
  fragId: number;
  /** a whole TCP/UDP header or an ICMPv6 echo header inside the datagram, offset 0 */
  hasPorts: boolean;
  sport: number;
  dport: number;
  icmpType: number;
  csumOff: number;
  /** an ICMPv6 error (1-4) quoting an IPv6 header right followed by TCP, UDP or an echo, 8 bytes of it inside the datagram */
  inner?: { off: number; l4: number; proto: number; sport: number; dport: number };
}

export function parse6(b: Buffer): Parsed6 {
  const p: Parsed6 = { ok: false, end: 0, hop: 0, proto: -1, l4: 0, frag: FRAG_NONE, fragId: 0, hasPorts: false, sport: 0, dport: 0, icmpType: -1, csumOff: 0 };
  if (b.length < 54 || b.readUInt16BE(12) !== ETH_IPV6 || b[14] >> 4 !== 6) return p;
  p.end = 54 + b.readUInt16BE(18);
  p.hop = b[21];
  if (p.end > b.length) return p;
  let nh = b[20];
  let off = 54;
  for (let n = 0; EXT6.has(nh); n++) {
    if (n >= 8 || off + 8 > p.end || (nh === 0 && n > 0)) return p;
    if (nh === 44) {
      const fo = b.readUInt16BE(off + 2);
      p.fragId = b.readUInt32BE(off + 4);
      p.frag = fo & 0xfff8 ? FRAG_LATER : fo & 1 ? FRAG_FIRST : FRAG_NONE;
      nh = b[off];
      off += 8;
      continue;
    }
    const len = nh === 51 ? (b[off + 1] + 2) * 4 : (b[off + 1] + 1) * 8;
    nh = b[off];
    off += len;
  }
  if (off > p.end) return p;
  p.ok = true;
  p.proto = nh;
  p.l4 = off;
  if (p.frag === FRAG_LATER) return p;
  if (nh === TCP && off + 20 <= p.end) p.csumOff = off + 16;
  else if (nh === UDP && off + 8 <= p.end) p.csumOff = off + 6;
  else if (nh === ICMP6 && off + 8 <= p.end) {
    p.csumOff = off + 2;
    p.icmpType = b[off];
    if (p.icmpType >= 1 && p.icmpType <= 4) {
      p.inner = inner6(b, p);
      return p;
    }
    if (p.icmpType !== 128 && p.icmpType !== 129) return p;
    p.sport = p.dport = b.readUInt16BE(off + 4);
    p.hasPorts = true;
    return p;
  } else return p;
  p.sport = b.readUInt16BE(off);
  p.dport = b.readUInt16BE(off + 2);
  p.hasPorts = true;
  return p;
}

function inner6(b: Buffer, p: Parsed6): Parsed6['inner'] {
  if (p.frag !== FRAG_NONE) return undefined;
  const off = p.l4 + 8;
  const l4 = off + 40;
  if (l4 + 8 > p.end || b[off] >> 4 !== 6) return undefined;
  const proto = b[off + 6];
  if (proto === TCP || proto === UDP) return { off, l4, proto, sport: b.readUInt16BE(l4), dport: b.readUInt16BE(l4 + 2) };
  if (proto === ICMP6 && (b[l4] === 128 || b[l4] === 129)) return { off, l4, proto, sport: b.readUInt16BE(l4 + 4), dport: b.readUInt16BE(l4 + 4) };
  return undefined;
}

/** The IPv6 pseudo header's sum (RFC 8200 8.1) with the addresses of b itself. */
export const pseudoSum6 = (b: Buffer, proto: number, len: number): number => sum16(b, 22, 54, proto + (len >>> 16) + (len & 0xffff));

/** The upper-layer checksum of an unfragmented IPv6 datagram is right (a UDP checksum of 0 is not: IPv6 requires one). */
export function l4ChecksumValid6(b: Buffer, p: Parsed6): boolean {
  if (!p.ok || p.frag !== FRAG_NONE || !p.csumOff) return false;
  if (p.proto === UDP && b.readUInt16BE(p.csumOff) === 0) return false;
  return residue(sum16(b, p.l4, p.end, pseudoSum6(b, p.proto, p.end - p.l4))) === 0;
}

/** Set the upper-layer checksum of an unfragmented IPv6 datagram right (as far as the frame holds it). */
export function fixL4Checksum6(b: Buffer): void {
  const p = parse6(b);
  if (!p.ok || p.frag !== FRAG_NONE || !p.csumOff) return;
  b.writeUInt16BE(0, p.csumOff);
  let c = csumOf(sum16(b, p.l4, p.end, pseudoSum6(b, p.proto, p.end - p.l4)));
  if (p.proto === UDP && c === 0) c = 0xffff;
  b.writeUInt16BE(c, p.csumOff);
}
