/**
 * `berth trace`: feed one described packet through berth's programs with
 * BPF_PROG_TEST_RUN and show what they decided: the lookups the program
 * makes (read from the same maps beforehand), its return code, the headers
 * it produced, the counter and drop-reason deltas and the conntrack entries
 * it created. A test run is real as far as the maps go: it counts, and it
 * creates conntrack entries in the live table. The entries it created are
 * deleted afterwards (unless keepConntrack), and the output says so; the
 * counter increments stay (they cannot be taken back safely per CPU).
 * Redirects are never carried out by a test run: nothing leaves the host.
 * Both families: an IPv6 --to ([addr]:port, or the address alone) builds an
 * IPv6 frame (ICMPv6 echo for icmp), which the same entry programs hand to
 * their IPv6 paths (veth_ingress6, up_in6); its lookups are the IPv6 maps
 * (berth_ep_by_ip6, berth_host_addr6, the publish entries of '::').
 */
import * as fs from 'node:fs';
import { skbTestContext } from '../platform/native';
import {
  CtEntry,
  CtKey,
  MapName,
  DROP_REASON_NAMES,
  ProgName,
  UplinkProgName,
  PublishValue,
  ctEntryCodec,
  ctKeyCodec,
  endpointCodec,
  endpointMetaCodec,
  hostAddrValueCodec,
  ifindexKeyCodec,
  ip6KeyCodec,
  ipKeyCodec,
  netValueCodec,
  networkKeyCodec,
  publishKeyCodec,
  publishValueCodec,
  uplinkCodec,
} from '../platform/contract';
import { Dataplane } from '../platform/dataplane';
import { addrPortStr, endpointStr, hasPorts, partnerKey, protoNumber, PROTO_NAMES, STATE_NAMES } from '../engine/conntrack';
import { canonicalIPv6, formatIPv6, ipFamily, parseIPv6 } from '../domain/ipv6';
import { V, readCounterTotals, readGlobals } from './stats';
import type { BpfProgram } from '../platform/native';

export interface TraceOptions {
  pinRoot: string;
  /** a container: run berth_veth_ingress with its host veth as ifindex */
  from?: string;
  /** a served interface (an uplink or another): run berth_up_in with it as ifindex (needs src) */
  fromOutside?: string;
  src?: string;
  /** ADDR:PORT (or ADDR for icmp and the protocols without ports) */
  to: string;
  /** tcp, udp, icmp (ICMPv6 when --to is IPv6; icmpv6 too), or a protocol tracked without ports (gre, sctp, ..., or its number); default tcp */
  proto?: string;
  sport?: number;
  /** TCP flags, default SYN */
  tcpFlags?: number;
  keepConntrack?: boolean;
}

export interface Headers {
  smac: string;
  dmac: string;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  proto: string;
  ttl: number;
}

export interface TraceResult {
  program: string;
  /** 4 or 6: the packet's family (the entry program hands IPv6 to its IPv6 path) */
  family: 4 | 6;
  ifindex: number;
  interface: string;
  input: Headers;
  lookups: string[];
  retval: number;
  verdict: string;
  output: Headers | null;
  changed: string[];
  counters: Array<{ interface: string; container: string; direction: string; what: string; packets: number; bytes: number }>;
  globals: Record<string, number>;
  conntrack: Array<{ key: string; rewrite: string; state: string; flags: string[]; outIfindex: number }>;
  conntrackDeleted: number;
  notes: string[];
}

// ---- frames ---------------------------------------------------------------

const macBytes = (s: string): Buffer => Buffer.from(s.split(':').map((h) => parseInt(h, 16)));
const ipBytes = (s: string): Buffer => Buffer.from(s.split('.').map(Number));
const macStr = (b: Buffer, o: number): string => [...b.subarray(o, o + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
const ipStr = (b: Buffer, o: number): string => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
const ip6Bytes = (s: string): Buffer => {
  const n = parseIPv6(s);
  if (n === null) throw new Error(`not an IPv6 address: ${s}`);
  const b = Buffer.alloc(16);
  b.writeBigUInt64BE(n >> 64n, 0);
  b.writeBigUInt64BE(n & 0xffffffffffffffffn, 8);
  return b;
};
const ip6Str = (b: Buffer, o: number): string => formatIPv6((b.readBigUInt64BE(o) << 64n) | b.readBigUInt64BE(o + 8));

/** The IPv6 pseudo header (RFC 8200 8.1) summed with l4. */
function csum6(src: string, dst: string, nh: number, l4: Buffer): number {
  const ph = Buffer.alloc(40);
  ip6Bytes(src).copy(ph, 0);
  ip6Bytes(dst).copy(ph, 16);
  ph.writeUInt32BE(l4.length, 32);
  ph[39] = nh;
  return csum(Buffer.concat([ph, l4]));
}

function csum(buf: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2) sum += buf[buf.length - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

export function buildFrame(h: { smac: string; dmac: string; src: string; dst: string; proto: number; sport: number; dport: number; tcpFlags?: number }): Buffer {
  if (h.dst.includes(':')) return buildFrame6(h);
  const payload = Buffer.from('berth trace');
  let l4: Buffer;
  if (!hasPorts(h.proto)) {
    // a protocol tracked without ports (bpf/lib/generic.h): a minimal header of its own
    if (h.proto === 47) l4 = Buffer.concat([Buffer.from([0, 0, 0x65, 0x58]), payload]); // GRE v0, Ethernet inside
    else if (h.proto === 33 || h.proto === 136) {
      // DCCP-Data (X=1, 16 bytes) or UDP-Lite (8 bytes, full coverage), checksummed over the pseudo header
      const hdr = Buffer.alloc(h.proto === 33 ? 16 : 8);
      hdr.writeUInt16BE(5000, 0);
      hdr.writeUInt16BE(5000, 2);
      if (h.proto === 33) {
        hdr[4] = 4;
        hdr[8] = (2 << 1) | 1;
      }
      l4 = Buffer.concat([hdr, payload]);
      const ph = Buffer.alloc(12);
      ipBytes(h.src).copy(ph, 0);
      ipBytes(h.dst).copy(ph, 4);
      ph[9] = h.proto;
      ph.writeUInt16BE(l4.length, 10);
      l4.writeUInt16BE(csum(Buffer.concat([ph, l4])), 6);
    } else l4 = payload;
  } else if (h.proto === 1) {
    l4 = Buffer.concat([Buffer.from([8, 0, 0, 0]), Buffer.alloc(4), payload]);
    l4.writeUInt16BE(h.sport, 4); // identifier
    l4.writeUInt16BE(1, 6);
    l4.writeUInt16BE(csum(l4), 2);
  } else {
    const hdr = Buffer.alloc(h.proto === 6 ? 20 : 8);
    hdr.writeUInt16BE(h.sport, 0);
    hdr.writeUInt16BE(h.dport, 2);
    if (h.proto === 6) {
      hdr.writeUInt32BE(1, 4);
      hdr[12] = 5 << 4;
      hdr[13] = h.tcpFlags ?? 0x02;
      hdr.writeUInt16BE(64240, 14);
    } else hdr.writeUInt16BE(8 + payload.length, 4);
    l4 = Buffer.concat([hdr, payload]);
    const ph = Buffer.alloc(12);
    ipBytes(h.src).copy(ph, 0);
    ipBytes(h.dst).copy(ph, 4);
    ph[9] = h.proto;
    ph.writeUInt16BE(l4.length, 10);
    l4.writeUInt16BE(csum(Buffer.concat([ph, l4])), h.proto === 6 ? 16 : 6);
  }
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + l4.length, 2);
  ip.writeUInt16BE(0xbe27, 4);
  ip.writeUInt16BE(0x4000, 6);
  ip[8] = 64;
  ip[9] = h.proto;
  ipBytes(h.src).copy(ip, 12);
  ipBytes(h.dst).copy(ip, 16);
  ip.writeUInt16BE(csum(ip), 10);
  const eth = Buffer.alloc(14);
  macBytes(h.dmac).copy(eth, 0);
  macBytes(h.smac).copy(eth, 6);
  eth.writeUInt16BE(0x0800, 12);
  return Buffer.concat([eth, ip, l4]);
}

/**
 * An IPv6 frame: no extension headers; TCP SYN (or the flags given), UDP,
 * ICMPv6 echo request (the identifier from sport), or a protocol without
 * ports (its payload alone). Checksums over the IPv6 pseudo header.
 */
export function buildFrame6(h: { smac: string; dmac: string; src: string; dst: string; proto: number; sport: number; dport: number; tcpFlags?: number }): Buffer {
  const payload = Buffer.from('berth trace');
  let l4: Buffer;
  if (h.proto === 58) {
    l4 = Buffer.concat([Buffer.from([128, 0, 0, 0]), Buffer.alloc(4), payload]);
    l4.writeUInt16BE(h.sport, 4); // identifier
    l4.writeUInt16BE(1, 6);
    l4.writeUInt16BE(csum6(h.src, h.dst, 58, l4), 2);
  } else if (h.proto === 6 || h.proto === 17) {
    const hdr = Buffer.alloc(h.proto === 6 ? 20 : 8);
    hdr.writeUInt16BE(h.sport, 0);
    hdr.writeUInt16BE(h.dport, 2);
    if (h.proto === 6) {
      hdr.writeUInt32BE(1, 4);
      hdr[12] = 5 << 4;
      hdr[13] = h.tcpFlags ?? 0x02;
      hdr.writeUInt16BE(64240, 14);
    } else hdr.writeUInt16BE(8 + payload.length, 4);
    l4 = Buffer.concat([hdr, payload]);
    // UDP over IPv6 must carry a checksum (RFC 8200 8.1): 0 is sent as 0xffff
    l4.writeUInt16BE(csum6(h.src, h.dst, h.proto, l4) || 0xffff, h.proto === 6 ? 16 : 6);
  } else l4 = payload;
  const ip = Buffer.alloc(40);
  ip.writeUInt32BE(0x60000000, 0);
  ip.writeUInt16BE(l4.length, 4);
  ip[6] = h.proto;
  ip[7] = 64;
  ip6Bytes(h.src).copy(ip, 8);
  ip6Bytes(h.dst).copy(ip, 24);
  const eth = Buffer.alloc(14);
  macBytes(h.dmac).copy(eth, 0);
  macBytes(h.smac).copy(eth, 6);
  eth.writeUInt16BE(0x86dd, 12);
  return Buffer.concat([eth, ip, l4]);
}

/** What an IPv6 program left (the trace's own frames have no extension headers, nor does berth add any). */
function parseFrame6(f: Buffer): Headers | null {
  if (f.length < 54) return null;
  const proto = f[20];
  const l4 = 54;
  const ports = !hasPorts(proto) ? [0, 0] : proto === 58 ? (f.length >= l4 + 6 ? [f.readUInt16BE(l4 + 4), f.readUInt16BE(l4 + 4)] : [0, 0]) : f.length >= l4 + 4 ? [f.readUInt16BE(l4), f.readUInt16BE(l4 + 2)] : [0, 0];
  return { dmac: macStr(f, 0), smac: macStr(f, 6), src: ip6Str(f, 22), dst: ip6Str(f, 38), sport: ports[0], dport: ports[1], proto: PROTO_NAMES[proto] ?? String(proto), ttl: f[21] };
}

export function parseFrame(f: Buffer): Headers | null {
  if (f.length >= 14 && f.readUInt16BE(12) === 0x86dd) return parseFrame6(f);
  if (f.length < 34 || f.readUInt16BE(12) !== 0x0800) return null;
  const ihl = (f[14] & 15) * 4;
  const proto = f[23];
  const l4 = 14 + ihl;
  const ports = !hasPorts(proto) ? [0, 0] : proto === 1 ? [f.readUInt16BE(l4 + 4), f.readUInt16BE(l4 + 4)] : f.length >= l4 + 4 ? [f.readUInt16BE(l4), f.readUInt16BE(l4 + 2)] : [0, 0];
  return { dmac: macStr(f, 0), smac: macStr(f, 6), src: ipStr(f, 26), dst: ipStr(f, 30), sport: ports[0], dport: ports[1], proto: PROTO_NAMES[proto] ?? String(proto), ttl: f[22] };
}


export function verdictName(retval: number): string {
  switch (retval >>> 0) {
    case 0xffffffff:
      return 'pass (TC_ACT_UNSPEC: on to the kernel)';
    case 0:
      return 'pass (TC_ACT_OK)';
    case 2:
      return 'drop (TC_ACT_SHOT)';
    case 7:
      return 'redirect (TC_ACT_REDIRECT)';
    default:
      return `return code ${retval >>> 0}`;
  }
}

/** --to: A.B.C.D[:PORT], [V6]:PORT or V6 alone (RFC 5952 text in what is shown). */
function parseTo(to: string, protoName: string, proto: number): { addr: string; port: number; family: 4 | 6 } {
  let m = /^(\d+\.\d+\.\d+\.\d+)(?::(\d{1,5}))?$/.exec(to);
  let family: 4 | 6 = 4;
  if (m && ipFamily(m[1]) !== 4) throw new Error(`--to ${to}: ${m[1]} is not an IPv4 address`);
  if (!m) {
    const b = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(to);
    const bare = !b && to.includes(':') ? canonicalIPv6(to) : null;
    const v6 = b ? canonicalIPv6(b[1]) : bare;
    if (b && !v6) throw new Error(`--to ${to}: ${b[1]} is not an IPv6 address`);
    if (v6) {
      m = [to, v6, b?.[2]] as unknown as RegExpExecArray;
      family = 6;
    }
  }
  if (!m) throw new Error(`--to ${to}: expected ADDR:PORT ([IPV6]:PORT), or ADDR alone for icmp and the protocols without ports`);
  const port = m[2] ? Number(m[2]) : 0;
  if ((proto === 6 || proto === 17) && (!port || port > 65535)) throw new Error(`--to ${to}: a port in 1..65535 is needed for ${protoName}${family === 6 ? ' (IPv6: [ADDR]:PORT)' : ''}`);
  if (!hasPorts(proto) && m[2]) throw new Error(`--to ${to}: ${protoName} is tracked without ports (by addresses and protocol): give --to ADDR`);
  return { addr: m[1], port, family };
}

const keyStr = (k: CtKey): string => `${PROTO_NAMES[k.proto] ?? k.proto} ${endpointStr(k.proto, k.saddr, k.sport)} -> ${endpointStr(k.proto, k.daddr, k.dport)}`;
const CT_FLAG_NAMES: Array<[number, string]> = [
  [1, 'reply'],
  [2, 'hairpin'],
  [4, 'published'],
  [8, 'masquerade'],
];

export async function runTrace(opts: TraceOptions): Promise<TraceResult> {
  if (!!opts.from === !!opts.fromOutside) throw new Error('give exactly one of --from CONTAINER or --from-outside UPLINK');
  const protoName = opts.proto ?? 'tcp';
  let proto = protoNumber(protoName);
  if (proto === undefined) throw new Error(`--proto ${protoName}: ${Object.values(PROTO_NAMES).join(', ')} or a protocol number 0..255`);
  const to = parseTo(opts.to, protoName, proto);
  // icmp to an IPv6 address is ICMPv6 (an echo request); ICMPv6 to IPv4 is no packet
  if (to.family === 6 && proto === 1) proto = 58;
  if (to.family === 4 && proto === 58) throw new Error(`--proto ${protoName}: ICMPv6 needs an IPv6 --to`);
  if (to.family === 6 && proto === 41) throw new Error('--proto ipv6: an IPv6-in-IPv6 packet is not traced; trace the inner packet');
  const v6 = to.family === 6;
  if (opts.src !== undefined) {
    const sf = ipFamily(opts.src);
    if (sf === null) throw new Error(`--src ${opts.src}: not an IPv4 or IPv6 address`);
    if (sf !== to.family) throw new Error(`--src ${opts.src} and --to ${opts.to}: one family for both (IPv${to.family})`);
  }
  const srcOpt = opts.src !== undefined && v6 ? canonicalIPv6(opts.src)! : opts.src;
  if (!hasPorts(proto) && opts.sport !== undefined) throw new Error(`--sport: ${protoName} is tracked without ports`);
  if (!Dataplane.isPinned(opts.pinRoot)) throw new Error(`no berth dataplane pinned at ${opts.pinRoot}`);
  const dp = Dataplane.openPinned(opts.pinRoot);
  try {
    const lookups: string[] = [];
    const notes: string[] = [];
    let prog: BpfProgram;
    let ifindex: number;
    let iface: string;
    let smac: string;
    let dmac: string;
    let src: string;
    const sport = hasPorts(proto) ? opts.sport ?? 40000 + (process.pid % 20000) : 0;
    const dport = proto === 1 || proto === 58 ? sport : hasPorts(proto) ? to.port : 0;

    if (opts.from) {
      let found: { ifindex: number; ifname: string } | undefined;
      for (const [k, v] of await dp.maps.epMeta.dump()) {
        const m = endpointMetaCodec.decode(v);
        if (m.container === opts.from) found = { ifindex: ifindexKeyCodec.decode(k).ifindex, ifname: m.ifname };
      }
      if (!found) throw new Error(`--from ${opts.from}: no such container in the dataplane (see berth status)`);
      const epBuf = dp.maps.epByIfindex.lookup(ifindexKeyCodec.encode({ ifindex: found.ifindex }));
      if (!epBuf) throw new Error(`--from ${opts.from}: no endpoint for ifindex ${found.ifindex}`);
      const ep = endpointCodec.decode(epBuf);
      const netBuf = dp.maps.net.lookup(networkKeyCodec.encode({ network_id: ep.network_id }));
      const net = netBuf ? netValueCodec.decode(netBuf) : undefined;
      ifindex = found.ifindex;
      iface = found.ifname;
      prog = dp.progs.ingress;
      const own6 = ep.addr6 && ep.addr6 !== '::' ? ep.addr6 : undefined;
      if (v6 && !own6 && srcOpt === undefined) throw new Error(`--from ${opts.from}: the container has no IPv6 address (give --src to trace one it does not own)`);
      src = srcOpt ?? (v6 ? own6! : ep.addr);
      smac = ep.mac;
      const epMap = v6 ? dp.maps.epByIp6 : dp.maps.epByIp;
      const dstEpBuf = epMap.lookup(v6 ? ip6KeyCodec.encode({ addr: to.addr }) : ipKeyCodec.encode({ addr: to.addr }));
      const dstEp = dstEpBuf ? endpointCodec.decode(dstEpBuf) : undefined;
      const sameSubnet = v6 ? !!net && inSubnet6(to.addr, net.subnet6, net.mask6) : net && (ipToInt(to.addr) & ipToInt(net.mask)) >>> 0 === ipToInt(net.subnet) >>> 0;
      dmac = sameSubnet && dstEp ? dstEp.mac : net?.gw_mac ?? '02:00:00:00:00:01';
      lookups.push(`source endpoint (berth_ep_by_ifindex ${ifindex}): ${opts.from} ${ep.addr}${own6 ? ` ${own6}` : ''} on network ${ep.network_id}, flags ${ep.flags}`);
      if (v6) lookups.push(`network ${ep.network_id} IPv6 (berth_net): ${net && net.subnet6 && net.subnet6 !== '::' ? `subnet ${net.subnet6}/${prefixLen6(net.mask6)}, gateway ${net.gateway6}` : 'none (an IPv4-only network)'}`);
      lookups.push(`destination ${to.addr} (${v6 ? MapName.EP_BY_IP6 : MapName.EP_BY_IP}): ${dstEp ? `endpoint on ifindex ${dstEp.ifindex}, network ${dstEp.network_id}${dstEp.network_id !== ep.network_id ? ' (another network)' : ''}` : 'no endpoint'}`);
      lookups.push(`destination MAC: ${dmac} (${sameSubnet && dstEp ? "the container's" : "the gateway's"}, as the container's ${v6 ? 'neighbour discovery' : 'ARP'} would give it)`);
    } else {
      const name = opts.fromOutside!;
      if (!opts.src) throw new Error('--from-outside needs --src ADDR (the outside client)');
      if (!fs.existsSync(`/sys/class/net/${name}`)) throw new Error(`--from-outside ${name}: no such interface`);
      ifindex = Number(fs.readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8'));
      iface = name;
      const upBuf = dp.maps.uplink.lookup(ifindexKeyCodec.encode({ ifindex }));
      const served = dp.uplinkAttachments().some((a) => a.ifindex === ifindex && a.kind === 'tc' && a.live);
      if (!served) notes.push(`${name} is not a served interface (berth_up_in is not attached there): what arrives on it never meets this program`);
      const up = upBuf ? uplinkCodec.decode(upBuf) : undefined;
      prog = dp.progs.uplink;
      src = srcOpt!;
      smac = '02:00:00:00:be:27';
      dmac = up?.mac ?? fs.readFileSync(`/sys/class/net/${name}/address`, 'utf8').trim();
      const upAddr6 = up?.addr6 && up.addr6 !== '::' ? up.addr6 : undefined;
      lookups.push(`uplink (berth_uplink ${ifindex}): ${up ? `${up.addr}${v6 ? `, IPv6 ${upAddr6 ?? 'none (no NAT66 source)'}` : ''}, MAC ${up.mac}` : `not an uplink (nothing masquerades to it)${served ? '; served' : ''}`}`);
      const key = v6 ? ip6KeyCodec.encode({ addr: to.addr }) : ipKeyCodec.encode({ addr: to.addr });
      const ha = (v6 ? dp.maps.hostAddr6 : dp.maps.hostAddr).lookup(key);
      lookups.push(`destination ${to.addr} (${v6 ? MapName.HOST_ADDR6 : MapName.HOST_ADDR}): ${ha ? `host address on ifindex ${hostAddrValueCodec.decode(ha).ifindex}` : 'not a host address'}`);
      const ep = (v6 ? dp.maps.epByIp6 : dp.maps.epByIp).lookup(key);
      if (ep) lookups.push(`destination ${to.addr} (${v6 ? MapName.EP_BY_IP6 : MapName.EP_BY_IP}): a container address (not reachable from outside unless published)`);
    }
    if (proto === 6 || proto === 17) {
      let pub: PublishValue | undefined;
      for (const host of [to.addr, v6 ? '::' : '0.0.0.0']) {
        const v = dp.maps.publish.lookup(publishKeyCodec.encode({ host_addr: host, host_port: to.port, proto }));
        if (v) {
          pub = publishValueCodec.decode(v);
          lookups.push(`published port (berth_publish ${addrPortStr(host, to.port)}/${protoName}${v6 ? ', IPv6' : ''}): -> ${addrPortStr(pub.addr, pub.port)}${pub.flags & 1 ? ' (host only)' : ''}`);
          break;
        }
      }
      if (!pub) lookups.push(`published port (berth_publish ${v6 ? '[*]' : '*'}:${to.port}/${protoName}${v6 ? ', IPv6' : ''}): none`);
    }

    const input = { smac, dmac, src, dst: to.addr, sport, dport, proto: PROTO_NAMES[proto] ?? String(proto), ttl: 64 };
    const frame = buildFrame({ smac, dmac, src, dst: to.addr, proto, sport, dport: to.port, tcpFlags: opts.tcpFlags });
    // the family follows the addresses (ctKeyCodec: IPv4 as ::ffff:a.b.c.d, BERTH_AF_INET)
    const origKey: CtKey = { saddr: src, daddr: to.addr, sport, dport, proto };
    const existedBefore = dp.maps.ct.lookup(ctKeyCodec.encode(origKey)) !== null;
    const before = new Map((await readCounterTotals(dp)).map((r) => [`${r.ifindex}/${r.direction}`, r]));
    const g0 = readGlobals(dp);

    const run = await prog.testRun({ data: frame, ctx: skbTestContext(ifindex) });

    const after = await readCounterTotals(dp);
    const g1 = readGlobals(dp);
    const retval = run.retval >>> 0;
    const output = retval === 2 ? null : parseFrame(run.data);
    const changed: string[] = [];
    if (output) {
      for (const k of ['smac', 'dmac', 'src', 'dst', 'sport', 'dport', 'ttl'] as const)
        if (output[k] !== input[k]) changed.push(`${k} ${input[k]} -> ${output[k]}`);
    }
    const counters: TraceResult['counters'] = [];
    for (const r of after) {
      const b = before.get(`${r.ifindex}/${r.direction}`);
      const d = (i: number) => r.vals[i] - (b?.vals[i] ?? 0);
      if (d(V.PASS_P)) counters.push({ interface: r.interface, container: r.container, direction: r.direction, what: 'pass', packets: d(V.PASS_P), bytes: d(V.PASS_B) });
      if (d(V.REDIR_P)) counters.push({ interface: r.interface, container: r.container, direction: r.direction, what: 'redirect', packets: d(V.REDIR_P), bytes: d(V.REDIR_B) });
      for (let i = 1; i < DROP_REASON_NAMES.length; i++)
        if (d(V.drop(i))) counters.push({ interface: r.interface, container: r.container, direction: r.direction, what: `drop: ${DROP_REASON_NAMES[i]}`, packets: d(V.drop(i)), bytes: d(V.drop(i) + 1) });
    }
    const globals: Record<string, number> = {};
    for (const k of Object.keys(g1) as Array<keyof typeof g1>) if (g1[k] !== g0[k]) globals[k] = Number(g1[k] - g0[k]);

    // conntrack: the orig half keyed by the input tuple, the reply half by its rewrite reversed
    const conntrack: TraceResult['conntrack'] = [];
    let deleted = 0;
    const o = dp.maps.ct.lookup(ctKeyCodec.encode(origKey));
    if (o && !existedBefore) {
      const oe = ctEntryCodec.decode(o);
      const halves: Array<[CtKey, CtEntry]> = [[origKey, oe]];
      const rk = partnerKey(oe);
      const r = dp.maps.ct.lookup(ctKeyCodec.encode(rk));
      if (r) halves.push([rk, ctEntryCodec.decode(r)]);
      for (const [k, e] of halves)
        conntrack.push({ key: keyStr(k), rewrite: keyStr(e.rewrite), state: STATE_NAMES[e.state] ?? String(e.state), flags: CT_FLAG_NAMES.filter(([b]) => e.flags & b).map(([, n]) => n), outIfindex: e.out_ifindex });
      if (!opts.keepConntrack) for (const [k] of halves) if (dp.maps.ct.delete(ctKeyCodec.encode(k))) deleted++;
    } else if (o) notes.push('the flow was already in the conntrack table: the trace used (and refreshed) the existing entry');
    if (globals.ct_evicted) notes.push(`making room for this flow evicted ${globals.ct_evicted} unassured flow(s) from the live table (the oldest half-open or unanswered ones): that is real too`);
    notes.push('BPF_PROG_TEST_RUN does not carry out redirects: nothing was sent. The counter increments above are real.');
    if (conntrack.length) notes.push(opts.keepConntrack ? `kept the ${conntrack.length} conntrack entr${conntrack.length === 1 ? 'y' : 'ies'} the trace created (--keep-conntrack)` : `deleted the ${deleted} conntrack entr${deleted === 1 ? 'y' : 'ies'} the trace created in the live table`);
    return {
      // the kernel keeps 15 characters of a program's name
      program: opts.from ? ProgName.VETH_INGRESS : UplinkProgName.TC_INGRESS,
      family: to.family,
      ifindex,
      interface: iface,
      input,
      lookups,
      retval,
      verdict: verdictName(retval),
      output,
      changed,
      counters,
      globals,
      conntrack,
      conntrackDeleted: deleted,
      notes,
    };
  } finally {
    dp.close();
  }
}

/** The prefix length of an IPv6 netmask ('ffff:ffff:ffff:ffff::' -> 64). */
function prefixLen6(mask: string | undefined): number {
  let m = (mask && parseIPv6(mask)) || 0n;
  let n = 0;
  for (; m & (1n << 127n); m = (m << 1n) & ((1n << 128n) - 1n)) n++;
  return n;
}

function inSubnet6(addr: string, subnet: string | undefined, mask: string | undefined): boolean {
  const a = parseIPv6(addr);
  const s = subnet ? parseIPv6(subnet) : null;
  const m = mask ? parseIPv6(mask) : null;
  return a !== null && s !== null && m !== null && s !== 0n && (a & m) === s;
}

function ipToInt(s: string): number {
  return s.split('.').reduce((a, b) => ((a << 8) | Number(b)) >>> 0, 0);
}

export function formatTrace(r: TraceResult): string {
  const h = (x: Headers) => {
    const p = protoNumber(x.proto) ?? 6;
    return `${x.proto} ${endpointStr(p, x.src, x.sport)} -> ${endpointStr(p, x.dst, x.dport)}  ttl ${x.ttl}  ${x.smac} -> ${x.dmac}`;
  };
  const out = [
    `program   ${r.program} on ${r.interface} (ifindex ${r.ifindex})${r.family === 6 ? ', its IPv6 path' : ''}`,
    `input     ${h(r.input)}`,
    '',
    'lookups',
    ...r.lookups.map((l) => `  - ${l}`),
    '',
    `verdict   ${r.verdict}`,
    `output    ${r.output ? h(r.output) : '(dropped)'}`,
  ];
  if (r.changed.length) out.push(`changed   ${r.changed.join(', ')}`);
  out.push('', 'counters (deltas)');
  if (!r.counters.length) out.push('  (none)');
  for (const c of r.counters) out.push(`  ${c.interface}${c.container ? ` (${c.container})` : ''} ${c.direction}: ${c.what} +${c.packets} packet(s), +${c.bytes} bytes`);
  const g = Object.entries(r.globals);
  if (g.length) out.push(`  dataplane: ${g.map(([k, v]) => `${k} +${v}`).join(', ')}`);
  out.push('', 'conntrack entries created');
  if (!r.conntrack.length) out.push('  (none)');
  for (const c of r.conntrack) out.push(`  ${c.key}  =>  ${c.rewrite}  [${c.state}${c.flags.length ? `, ${c.flags.join(', ')}` : ''}] out ifindex ${c.outIfindex}`);
  out.push('', ...r.notes.map((n) => `note: ${n}`));
  return out.join('\n');
}
