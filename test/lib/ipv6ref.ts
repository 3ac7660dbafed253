/**
 * IPv6 frames and a reference parse for test/bpf/ipv6.test.ts, written from
 * the kernel's rules (ip6_rcv_core, ipv6_skip_exthdr, ip6_frag_queue,
 * ipv6frag_thdr_truncated) as bpf/lib/ipv6.h states them, in plain
 * TypeScript over a Buffer: what the BPF parse must find in the same frame.
 */

export const NH = { HOP: 0, TCP: 6, UDP: 17, ROUTING: 43, FRAG: 44, ESP: 50, AUTH: 51, ICMP: 58, NONE: 59, DEST: 60, SCTP: 132 } as const;
export const Status = { OK: 0, MALFORMED: 1, UNSUPPORTED: 2, NONLINEAR: 3 } as const;
export const Frag = { NONE: 0, FIRST: 1, LATER: 2 } as const;
export const L6Flag = { HOP: 0x01, ROUTING: 0x02, RT_SEGS: 0x04, DEST: 0x08, FRAG_HDR: 0x10, AUTH: 0x20, NO_NEXT: 0x40 } as const;
export const Cls = { SRC_LINK: 0x01, DST_LINK: 0x02, DST_MCAST: 0x04, NDP: 0x08, MLD: 0x10, ERROR: 0x20, ECHO: 0x40 } as const;
export const MAX_EXT = 8;
const L3 = 14;

/** 'fe80::1' style to 16 bytes */
export function ip6(s: string): Buffer {
  const [head, tail] = s.includes('::') ? s.split('::') : [s, undefined];
  const hs = head ? head.split(':') : [];
  const ts = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? hs : [...hs, ...Array(8 - hs.length - ts.length).fill('0'), ...ts];
  if (groups.length !== 8) throw new Error(`bad IPv6 address ${s}`);
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), 2 * i));
  return b;
}

/** One extension header: kind, and its body past the 2 bytes (next header, length) */
export type Ext =
  | { kind: 'hop' | 'dest'; units?: number; fill?: number }
  | { kind: 'routing'; units?: number; segsLeft?: number; type?: number }
  | { kind: 'frag'; offset: number; more: boolean; id: number }
  | { kind: 'auth'; units?: number };

const KIND_NH: Record<Ext['kind'], number> = { hop: NH.HOP, dest: NH.DEST, routing: NH.ROUTING, frag: NH.FRAG, auth: NH.AUTH };

function extBytes(e: Ext, next: number): Buffer {
  if (e.kind === 'frag') {
    const b = Buffer.alloc(8);
    b[0] = next;
    b.writeUInt16BE((e.offset & 0xfff8) | (e.more ? 1 : 0), 2);
    b.writeUInt32BE(e.id >>> 0, 4);
    return b;
  }
  if (e.kind === 'auth') {
    const units = e.units ?? 1; // (units + 2) * 4 bytes: 12 with an ICV-less SPI + sequence
    const b = Buffer.alloc((units + 2) * 4);
    b[0] = next;
    b[1] = units;
    b.writeUInt32BE(0x100, 4);
    return b;
  }
  const units = e.units ?? 0;
  const b = Buffer.alloc((units + 1) * 8);
  b[0] = next;
  b[1] = units;
  if (e.kind === 'routing') {
    b[2] = e.type ?? 4;
    b[3] = e.segsLeft ?? 0;
  } else {
    b[2] = 1; // PadN over the rest
    b[3] = b.length - 4;
    if (e.fill !== undefined) b.fill(e.fill, 4);
  }
  return b;
}

export interface Upper {
  proto: number;
  bytes: Buffer;
}

export function tcp6(sport: number, dport: number, flags: number, seq: number, ack: number, win: number, data: Buffer = Buffer.alloc(0)): Upper {
  const b = Buffer.alloc(20);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b.writeUInt32BE(seq >>> 0, 4);
  b.writeUInt32BE(ack >>> 0, 8);
  b[12] = 5 << 4;
  b[13] = flags;
  b.writeUInt16BE(win, 14);
  return { proto: NH.TCP, bytes: Buffer.concat([b, data]) };
}

export function udp6(sport: number, dport: number, data: Buffer = Buffer.from('berth')): Upper {
  const b = Buffer.alloc(8);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b.writeUInt16BE(8 + data.length, 4);
  b.writeUInt16BE(0x1234, 6);
  return { proto: NH.UDP, bytes: Buffer.concat([b, data]) };
}

/** ICMPv6 type/code with 4 bytes of rest (echo: id, seq) and a body (errors: the quoted packet) */
export function icmp6(type: number, code = 0, rest = 0, body: Buffer = Buffer.alloc(0)): Upper {
  const b = Buffer.alloc(8);
  b[0] = type;
  b[1] = code;
  b.writeUInt16BE(0xbeef, 2);
  b.writeUInt32BE(rest >>> 0, 4);
  return { proto: NH.ICMP, bytes: Buffer.concat([b, body]) };
}

export const raw6 = (proto: number, bytes: Buffer): Upper => ({ proto, bytes });

export interface Ip6Opts {
  src?: string;
  dst?: string;
  hop?: number;
  /** payload_len as written; default the real length */
  payloadLen?: number;
  version?: number;
}

/** Ethernet + IPv6 + the chain + the upper layer */
export function frame6(o: Ip6Opts, exts: Ext[], up: Upper): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < exts.length; i++) parts.push(extBytes(exts[i], i + 1 < exts.length ? KIND_NH[exts[i + 1].kind] : up.proto));
  parts.push(up.bytes);
  const payload = Buffer.concat(parts);
  const h = Buffer.alloc(40);
  h.writeUInt32BE((((o.version ?? 6) & 0xf) << 28) >>> 0, 0);
  h.writeUInt16BE(o.payloadLen ?? payload.length, 4);
  h[6] = exts.length ? KIND_NH[exts[0].kind] : up.proto;
  h[7] = o.hop ?? 64;
  ip6(o.src ?? '2001:db8:76::10').copy(h, 8);
  ip6(o.dst ?? '2001:db8:76::20').copy(h, 24);
  const e = Buffer.alloc(14);
  Buffer.from([0x02, 0, 0, 0, 0x76, 0x02]).copy(e, 0);
  Buffer.from([0x02, 0, 0, 0, 0x76, 0x01]).copy(e, 6);
  e.writeUInt16BE(0x86dd, 12);
  return Buffer.concat([e, h, payload]);
}

/** What the BPF parse reports, as the test decodes it from the fixture's slot */
export interface Summary {
  status: number;
  stage: number;
  posAfter: number;
  cls: number;
  saddr: string;
  daddr: string;
  hopLimit: number;
  nExt: number;
  flags: number;
  proto: number;
  frag: number;
  fragId: number;
  fragOff: number;
  fragHdrOff: number;
  l3Off: number;
  l4Off: number;
  l3End: number;
  hasPorts: number;
  sport: number;
  dport: number;
  tcpFlags: number;
  tcpSeq: number;
  tcpAck: number;
  tcpEnd: number;
  tcpWin: number;
  icmpType: number;
  icmpCode: number;
  csumOff: number;
  quoteOff: number;
}

/** the fields compared only on an accepted packet */
export const OK_FIELDS: ReadonlyArray<keyof Summary> = [
  'cls', 'saddr', 'daddr', 'hopLimit', 'nExt', 'flags', 'proto', 'frag', 'fragId', 'fragOff', 'fragHdrOff', 'l3Off', 'l4Off',
  'l3End', 'hasPorts', 'sport', 'dport', 'tcpFlags', 'tcpSeq', 'tcpAck', 'tcpEnd', 'tcpWin', 'icmpType', 'icmpCode', 'csumOff',
  'quoteOff',
];

const isMcast = (a: Buffer): boolean => a[0] === 0xff;
const mcScope = (a: Buffer): number => a[1] & 0xf;
const isLinkLocal = (a: Buffer): boolean => a[0] === 0xfe && (a[1] & 0xc0) === 0x80;
const isLoopback = (a: Buffer): boolean => a.subarray(0, 15).every((x) => x === 0) && a[15] === 1;
const isUnspec = (a: Buffer): boolean => a.every((x) => x === 0);
const isLinkScope = (a: Buffer): boolean => (isMcast(a) ? mcScope(a) <= 2 : isLinkLocal(a));
const EXT = new Set<number>([NH.HOP, NH.ROUTING, NH.FRAG, NH.AUTH, NH.DEST]);

function refused(status: number, stage: number, posAfter: number): Summary {
  return { status, stage, posAfter } as Summary;
}

/**
 * The reference parse of an Ethernet + IPv6 frame (null when it is not
 * IPv6). gso: the packet is GSO (payload_len 0 means the rest).
 */
export function refParse(f: Buffer, gso = false): Summary | null {
  if (f.length < L3 || f.readUInt16BE(12) !== 0x86dd) return null;
  if (f.length < L3 + 40) return refused(Status.MALFORMED, 1, L3);
  const saddr = f.subarray(L3 + 8, L3 + 24);
  const daddr = f.subarray(L3 + 24, L3 + 40);
  // ip6_rcv_core
  if (f[L3] >> 4 !== 6) return refused(Status.MALFORMED, 1, L3);
  if (isMcast(saddr)) return refused(Status.MALFORMED, 1, L3);
  if (isLoopback(saddr) || isLoopback(daddr)) return refused(Status.MALFORMED, 1, L3);
  if (isMcast(daddr) && mcScope(daddr) <= 1) return refused(Status.MALFORMED, 1, L3);
  let plen = f.readUInt16BE(L3 + 4);
  if (plen === 0) {
    if (gso) plen = f.length - L3 - 40;
    else if (f[L3 + 6] === NH.HOP) return refused(Status.UNSUPPORTED, 1, L3); // a jumbogram
  }
  if (L3 + 40 + plen > f.length) return refused(Status.MALFORMED, 1, L3);
  const end = L3 + 40 + plen;
  const s: Summary = {
    status: Status.OK, stage: 2, posAfter: 0, cls: 0,
    saddr: saddr.toString('hex'), daddr: daddr.toString('hex'), hopLimit: f[L3 + 7],
    nExt: 0, flags: 0, proto: 0, frag: Frag.NONE, fragId: 0, fragOff: 0, fragHdrOff: 0,
    l3Off: L3, l4Off: 0, l3End: end, hasPorts: 0, sport: 0, dport: 0,
    tcpFlags: 0, tcpSeq: 0, tcpAck: 0, tcpEnd: 0, tcpWin: 0, icmpType: 0, icmpCode: 0, csumOff: 0, quoteOff: 0,
  };
  const bad = (status: number): Summary => refused(status, 2, L3 + 40);
  // ipv6_skip_exthdr, bounded
  let nh = f[L3 + 6];
  let pos = L3 + 40;
  let later = false;
  let nfrag = 0;
  for (let i = 0; EXT.has(nh); i++) {
    if (i === MAX_EXT) return bad(Status.UNSUPPORTED);
    if (nh === NH.HOP && i > 0) return bad(Status.MALFORMED); // only right after the fixed header
    if (pos + 8 > end) return bad(Status.MALFORMED);
    const len = nh === NH.FRAG ? 8 : nh === NH.AUTH ? (f[pos + 1] + 2) * 4 : (f[pos + 1] + 1) * 8;
    if (pos + len > end) return bad(Status.MALFORMED);
    const next = f[pos];
    s.nExt = i + 1;
    if (nh === NH.HOP) s.flags |= L6Flag.HOP;
    else if (nh === NH.DEST) s.flags |= L6Flag.DEST;
    else if (nh === NH.AUTH) s.flags |= L6Flag.AUTH;
    else if (nh === NH.ROUTING) s.flags |= L6Flag.ROUTING | (f[pos + 3] ? L6Flag.RT_SEGS : 0);
    else {
      nfrag++; // a second one: refused once the walk is over (a malformed header met first wins)
      s.flags |= L6Flag.FRAG_HDR;
      s.fragHdrOff = pos;
      s.fragId = f.readUInt32BE(pos + 4);
      const fo = f.readUInt16BE(pos + 2);
      const offset = fo & 0xfff8;
      const more = (fo & 1) === 1;
      if (offset || more) {
        // ip6_frag_queue: the fragment's end in the datagram
        const fend = offset + (end - pos - 8);
        if (fend === offset || fend > 65535 || (more && fend % 8)) return bad(Status.MALFORMED);
        s.fragOff = offset;
        if (offset) {
          s.frag = Frag.LATER;
          later = true;
          nh = next;
          pos += 8;
          break;
        }
        s.frag = Frag.FIRST;
      }
    }
    nh = next;
    pos += len;
  }
  if (nfrag > 1) return bad(Status.UNSUPPORTED);
  s.proto = nh;
  s.l4Off = pos;
  if (nh === NH.NONE) s.flags |= L6Flag.NO_NEXT;
  const room = end - pos;
  if (!later) {
    if (s.frag === Frag.FIRST) {
      const need = nh === NH.TCP ? 20 : nh === NH.UDP ? 8 : nh === NH.ICMP ? 8 : nh === NH.NONE ? 0 : 1;
      if (room < need) return bad(Status.MALFORMED); // ipv6frag_thdr_truncated
    }
    if (nh === NH.TCP && room >= 20) {
      s.sport = f.readUInt16BE(pos);
      s.dport = f.readUInt16BE(pos + 2);
      s.tcpSeq = f.readUInt32BE(pos + 4);
      s.tcpAck = f.readUInt32BE(pos + 8);
      s.tcpFlags = f[pos + 13];
      s.tcpWin = f.readUInt16BE(pos + 14);
      const data = pos + (f[pos + 12] >> 4) * 4;
      s.tcpEnd = (s.tcpSeq + Math.max(0, end - data) + (s.tcpFlags & 0x02 ? 1 : 0) + (s.tcpFlags & 0x01 ? 1 : 0)) >>> 0;
      s.csumOff = pos + 16;
      s.hasPorts = 1;
      pos += 20;
    } else if (nh === NH.UDP && room >= 8) {
      s.sport = f.readUInt16BE(pos);
      s.dport = f.readUInt16BE(pos + 2);
      s.csumOff = pos + 6;
      s.hasPorts = 1;
      pos += 8;
    } else if (nh === NH.ICMP && room >= 8) {
      s.icmpType = f[pos];
      s.icmpCode = f[pos + 1];
      if (s.icmpType >= 1 && s.icmpType <= 4) s.quoteOff = pos + 8;
      else if (s.icmpType === 128 || s.icmpType === 129) {
        s.sport = s.dport = f.readUInt16BE(pos + 4);
        s.csumOff = pos + 2;
        s.hasPorts = 1;
        pos += 8;
      }
    }
  }
  s.posAfter = pos;
  // the classification helpers
  const whole = s.proto === NH.ICMP && s.frag === Frag.NONE && s.icmpType !== 0;
  const t = s.icmpType;
  const ndp = whole && t >= 133 && t <= 137 && s.hopLimit === 255 && s.icmpCode === 0;
  const mld = whole && ((t >= 130 && t <= 132) || t === 143) && s.hopLimit === 1 &&
    (isLinkLocal(saddr) || (t !== 130 && isUnspec(saddr)));
  s.cls = (isLinkScope(saddr) ? Cls.SRC_LINK : 0) | (isLinkScope(daddr) ? Cls.DST_LINK : 0) | (isMcast(daddr) ? Cls.DST_MCAST : 0) |
    (ndp ? Cls.NDP : 0) | (mld ? Cls.MLD : 0) | (s.quoteOff ? Cls.ERROR : 0) | (whole && (t === 128 || t === 129) ? Cls.ECHO : 0);
  return s;
}
