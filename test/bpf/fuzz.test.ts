// Fuzzing the TC programs through BPF_PROG_TEST_RUN: valid frames of every
// kind the programs handle, the same frames mutated (test/lib/fuzz.ts), and
// random frames, BERTH_FUZZ_COUNT of them (default 1,000,000) through each of
// berth_veth_ingress, berth_veth_egress, berth_up_in, berth_br_out and
// berth_br_in, on the real object, the real verifier and a realistic state
// (four networks, one icc=false, one internal, one routed; seven endpoints;
// bridges; host addresses; an uplink; published ports, one on 127.0.0.1, two
// container ports of the routed network; a policy rule; nineteen flows made
// by real packets: masquerade of TCP, UDP, ICMP echo, GRE, SCTP, DCCP and
// UDP-Lite, published, hairpin, routed; and seven IPv6 flows (NAT66,
// bpf/lib/nat6_path.h): masquerade of TCP, UDP and ICMPv6 echo to the
// uplink's addr6, [::] publishes of TCP and UDP, a hairpin within a network
// and one from another). Around the v6 flows it generates whole packets,
// first and later fragments, extension-header chains, hop limits 1 and 2,
// UDP checksums of 0 and ICMPv6 errors quoting the flows, mutated like the
// rest (plus mutations of the IPv6 header and chain).
//
// The oracle, for every output:
//   - a drop (TC_ACT_SHOT) is fine;
//   - a pass (TC_ACT_UNSPEC / TC_ACT_OK) must leave every byte as it came;
//   - a redirect (TC_ACT_REDIRECT) must be of a well-formed IPv4 datagram
//     (what the kernel's ip_rcv accepts: version, IHL, header checksum,
//     tot_len) and be the input's own packet with only the destination MAC
//     set to the receiving container's (container to container), or the
//     input rewritten to the `rewrite` tuple of the conntrack half the maps
//     hold for its tuple after the run (for an ICMP error: for the tuple it
//     quotes), with the MACs and TTL that half says and every other byte as
//     it came. Checksums are recomputed here from scratch: the IPv4 header's
//     (and a quoted header's) valid; the transport's valid whenever the
//     input's was (berth cannot verify it: a container's packets carry
//     CHECKSUM_PARTIAL) and in every case changed by exactly what the
//     rewrite changed; a UDP checksum of 0 stays 0. A protocol tracked
//     without ports (GRE, SCTP, ...: lib/generic.h) has its addresses
//     rewritten and nothing else past the IPv4 header but the checksum of
//     DCCP and UDP-Lite, held to the same rules as TCP's;
//     an IPv6 redirect (every network is dual stack here) either container
//     to container (only at the veth ingress, on one icc network, from the
//     sender's own or a link-local address, unchanged but the destination
//     container's MAC) or a NAT66 translation (judge6): the input rewritten
//     to the `rewrite` tuple, an AF_INET6 key, of the conntrack half the maps
//     hold for its v6 tuple (a later fragment: for the ports a first
//     fragment of its id carried; an ICMPv6 error: for the tuple it quotes,
//     the quoted addresses and ports rewritten back, the outer source only
//     when it is the quoted destination), with the MACs that half says and
//     the hop limit decremented (not for an error), every other byte as it
//     came (never a packet of hop limit <= 1 but an error); its TCP/UDP/ICMPv6
//     checksum, pseudo-header included, changed by
//     exactly what the rewrite changed and valid whenever the input's was; a
//     UDP checksum of 0 never translated; at the veth ingress only from the
//     container's own addr6;
//   - "fails closed": a pass or a redirect that a choke point forbids (a
//     spoofed source, isolation, icc, leaving an internal network, a
//     loopback or container address from an uplink, a denied client, traffic
//     forwarded into a network, an unknown or foreign source leaving one) is
//     a failure, and so is any other return code. A routed network may be
//     entered from elsewhere (not from another network) by ICMP, by an
//     unfragmented TCP/UDP packet to one of its published container ports or
//     of a tuple whose routed reply half the maps hold, and nothing else; a
//     packet to its container on an uplink may pass (its bridge decides),
//     never be redirected. What berth passes as no
//     well-formed datagram the kernel drops itself;
//   - after every round of 8192 packets, both halves of every flow agree
//     with each other; then conntrack goes back to the seeded flows, so that
//     new flows keep being created, and its record of unassured flows is
//     emptied: a round creates fewer flows than that record holds, so no
//     flow is evicted under a packet that used it (the oracle judges each
//     redirect by the flow the maps hold after the run).
// Anything else is reported with the seed, the program, the packet's index
// in its stream, the mutations, and the packet in hex. BERTH_FUZZ_SEED
// repeats a run (the packets depend on the seed alone); BERTH_FUZZ_PROGRAMS=a,b
// runs some of the programs.
//
// Interfaces: test packets need real ifindexes (the kernel looks up the
// ctx's ifindex), and the masquerade route lookup needs a route and a
// forwarding input device. The test makes its own veth pairs and bridges
// (bfz<pid>..., no address but the uplink's, deleted in teardown).
import t, { Test } from 'tap';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { Dataplane } from '../../src/platform/dataplane';
import {
  CtFlags,
  DROP_REASON_NAMES,
  Direction,
  EndpointFlags,
  MapName,
  OutKind,
  PolicyAction,
  PublishFlags,
  bridgeCodec,
  counterKeyCodec,
  ctEntryCodec,
  ctKeyCodec,
  fragKeyCodec,
  fragPortsCodec,
  endpointCodec,
  hostAddrValueCodec,
  ifindexKeyCodec,
  ip6KeyCodec,
  ipKeyCodec,
  netValueCodec,
  networkKeyCodec,
  policyRuleCodec,
  publishKeyCodec,
  publishValueCodec,
  sumGlobalStats,
  sumPerCpuCounters,
  uplinkCodec,
  zeroPerCpuCounters,
} from '../../src/platform/contract';
import { le32 } from '../../src/platform/codec';
import { Ext, Upper, frame6, icmp6, ip6 as ip6Buf, tcp6, udp6 } from '../lib/ipv6ref';
import { BpfMap, BpfProgram, TestRunBatchResult, native, skbTestContext } from '../../src/platform/native';
import {
  ETH_ARP,
  ETH_IP,
  ETH_IPV6,
  DCCP,
  FRAG_LATER,
  FRAG_NONE,
  GRE,
  ICMP,
  SCTP,
  UDPLITE,
  Parsed,
  Rng,
  TCP,
  UDP,
  csumOf,
  ethFrame,
  fixL4Checksum,
  icmpEcho,
  icmpMessage,
  ip4,
  ip4str,
  ipv4Packet,
  l4ChecksumValid,
  macBuf,
  macStr,
  mutate,
  parse,
  pseudoSum,
  randomFrame,
  residue,
  sum16,
  tcpSegment,
  udpDatagram,
  dccpPacket,
  udpLiteDatagram,
  FRAG_FIRST,
  ICMP6,
  Parsed6,
  fixL4Checksum6,
  ip6s,
  l4ChecksumValid6,
  parse6,
} from '../lib/fuzz';

t.setTimeout(40 * 60 * 1000);

const TC_ACT_UNSPEC = -1;
const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
const TC_ACT_REDIRECT = 7;

const COUNT = Number(process.env.BERTH_FUZZ_COUNT ?? 1_000_000);
const parseSeed = (s: string | undefined): number | undefined => (s === undefined || s === '' ? undefined : Number(s) >>> 0);
const SEED = parseSeed(process.env.BERTH_FUZZ_SEED) ?? ((Date.now() ^ (process.pid << 12)) >>> 0);
const ONLY = process.env.BERTH_FUZZ_PROGRAMS ? new Set(process.env.BERTH_FUZZ_PROGRAMS.split(',')) : undefined;
/** packets per testRunBatch() call, and calls in flight at once (each on a libuv pool thread) */
const BATCH = Number(process.env.BERTH_FUZZ_BATCH ?? 256);
const PARALLEL = Number(process.env.BERTH_FUZZ_PARALLEL ?? 3);
/** packets per round: conntrack goes back to the seeded flows after each */
const ROUND = 8192;
const MAX_FAILURES = 25;

// ---- the topology ------------------------------------------------------------

// Interface names are the process's own; everything a packet carries (addresses,
// MACs) comes from the seed, so that a seed gives the same packets. (Two runs
// with the same seed at once would share the uplink's /24: fewer masquerade
// routes found, never a false failure.)
const tag = String(process.pid);
const X = 1 + (Rng.derive(SEED, 'uplink subnet') % 250);
const M = 100 + (Rng.derive(SEED, 'container subnets') % 100);
const devMac = (i: number): string => `02:bf:${X.toString(16).padStart(2, '0')}:${M.toString(16).padStart(2, '0')}:00:${i.toString(16).padStart(2, '0')}`;
const IF = {
  u0: `bfz${tag}u0`, u1: `bfz${tag}u1`,
  c0: `bfz${tag}c0`, c1: `bfz${tag}c1`, c2: `bfz${tag}c2`, c3: `bfz${tag}c3`, c4: `bfz${tag}c4`, c5: `bfz${tag}c5`, c6: `bfz${tag}c6`, c7: `bfz${tag}c7`,
  b1: `bfz${tag}b1`, b2: `bfz${tag}b2`, b3: `bfz${tag}b3`, b4: `bfz${tag}b4`,
};

const UPLINK = ip4(`198.19.${X}.1`);
const OUT_NO_NEIGH = ip4(`198.19.${X}.2`);
const OUT_NEIGH = ip4(`198.19.${X}.3`);
const OUT_NEIGH_MAC = macBuf('02:00:c6:13:00:03');
const ROUTER = ip4(`198.19.${X}.9`);
const CLIENT = ip4(`198.19.${X}.50`);
const CLIENT2 = ip4(`198.19.${X}.51`);
const DENIED = ip4(`198.19.${X}.66`);
const CLIENT_MAC = macBuf('02:00:c6:13:00:32');
const HOST2 = ip4(`192.0.2.${X}`);
const LOOPBACK = ip4('127.0.0.1');
// NAT66: the uplink's addr6 on its own /64, a neighbour with a MAC and one without, a client, a router
const P6 = `fd99:${X.toString(16)}:${M.toString(16)}::`;
const norm6 = (s: string): string => ip6s(ip6Buf(s));
const UPLINK6 = norm6(`${P6}1`);
const OUT6_NO_NEIGH = norm6(`${P6}2`);
const OUT6_NEIGH = norm6(`${P6}3`);
const ROUTER6 = norm6(`${P6}9`);
const CLIENT6 = norm6(`${P6}50`);
const CLIENT6B = norm6(`${P6}51`);

interface Net {
  id: number;
  subnet: number;
  mask: number;
  gw: number;
  flags: number;
  bridge: string;
  ifindex: number;
  mac: Buffer;
}
const NETS: Net[] = [
  { id: 1, subnet: ip4(`10.${M}.1.0`), mask: 0xffffff00, gw: ip4(`10.${M}.1.1`), flags: EndpointFlags.ICC | EndpointFlags.MASQUERADE, bridge: IF.b1, ifindex: 0, mac: Buffer.alloc(6) },
  { id: 2, subnet: ip4(`10.${M}.2.0`), mask: 0xffffff00, gw: ip4(`10.${M}.2.1`), flags: EndpointFlags.MASQUERADE, bridge: IF.b2, ifindex: 0, mac: Buffer.alloc(6) },
  { id: 3, subnet: ip4(`10.${M}.3.0`), mask: 0xffffff00, gw: ip4(`10.${M}.3.1`), flags: EndpointFlags.ICC | EndpointFlags.INTERNAL, bridge: IF.b3, ifindex: 0, mac: Buffer.alloc(6) },
  { id: 4, subnet: ip4(`10.${M}.4.0`), mask: 0xffffff00, gw: ip4(`10.${M}.4.1`), flags: EndpointFlags.ICC | EndpointFlags.ROUTED, bridge: IF.b4, ifindex: 0, mac: Buffer.alloc(6) },
];

interface Ep {
  name: string;
  net: Net;
  addr: number;
  mac: Buffer;
  dev: string;
  ifindex: number;
}
const mkEp = (name: string, net: Net, host: number, dev: string): Ep => ({
  name, net, addr: (net.subnet | host) >>> 0, mac: macBuf(`02:0a:${net.id.toString(16).padStart(2, '0')}:00:00:${host.toString(16).padStart(2, '0')}`), dev, ifindex: 0,
});
/** the endpoint's IPv6 address (every fuzzed network is dual stack): fd00:<net>::<host> */
const addr6Of = (e: Ep): string => `fd00:${e.net.id}::${(e.addr & 0xff).toString(16)}`;
const net6Of = (n: Net): string => `fd00:${n.id}::`;
const A1 = mkEp('A1', NETS[0], 10, IF.c0);
const A2 = mkEp('A2', NETS[0], 11, IF.c1);
const A3 = mkEp('A3', NETS[0], 12, IF.c2);
const B1 = mkEp('B1', NETS[1], 10, IF.c3);
const B2 = mkEp('B2', NETS[1], 11, IF.c4);
const I1 = mkEp('I1', NETS[2], 10, IF.c5);
const R1 = mkEp('R1', NETS[3], 10, IF.c6);
const EPS = [A1, A2, A3, B1, B2, I1, R1];
const EP_BY_ADDR = new Map(EPS.map((e) => [e.addr, e]));
let EP_BY_IFINDEX = new Map<number, Ep>();

const HOSTS = [UPLINK, HOST2, LOOPBACK, ...NETS.map((n) => n.gw)];
const HOST_SET = new Set(HOSTS);

interface Pub {
  host: number;
  port: number;
  proto: number;
  ep: Ep;
  to: number;
  loopback?: boolean;
}
const PUBS: Pub[] = [
  { host: 0, port: 8080, proto: TCP, ep: A1, to: 80 },
  { host: UPLINK, port: 5353, proto: UDP, ep: B1, to: 53 },
  { host: LOOPBACK, port: 9090, proto: TCP, ep: A2, to: 90, loopback: true },
  { host: 0, port: 7000, proto: UDP, ep: A2, to: 7000 },
  { host: HOST2, port: 8443, proto: TCP, ep: A3, to: 443 },
  ...[0, 1, 2, 3].map((i) => ({ host: 0, port: 9000 + i, proto: TCP, ep: B2, to: 9000 + i })),
];
/** published on [::] (NAT66) */
const PUBS6 = [
  { port: 8080, proto: TCP, ep: A1, to: 80 },
  { port: 7000, proto: UDP, ep: A2, to: 7000 },
];
const PUB_PORTS = [...new Set(PUBS.map((p) => p.port)), 80, 53, 443, 22];
/** the routed network's published container ports (BERTH_PUB_ROUTED: keyed by R1's own address) */
const ROUTED_PUBS: ReadonlyArray<{ port: number; proto: number; ep: Ep }> = [
  { port: 80, proto: TCP, ep: R1 },
  { port: 53, proto: UDP, ep: R1 },
];

let uplinkIfindex = 0;
let uplinkPeerIfindex = 0;
let uplinkMac: Buffer = Buffer.alloc(6);

function sh(cmd: string, args: string[], quiet = false): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    if (quiet) return '';
    throw e;
  }
}
const ifindexOf = (name: string): number => Number(fs.readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8').trim());
const macOf = (name: string): Buffer => macBuf(fs.readFileSync(`/sys/class/net/${name}/address`, 'utf8').trim());

function removeInterfaces(): void {
  for (const n of [IF.u0, IF.c0, IF.c2, IF.c4, IF.c6, IF.b1, IF.b2, IF.b3, IF.b4]) sh('ip', ['link', 'del', n], true);
}

/** What a run of this test killed before its teardown left: its interfaces and pin root, by its pid. */
function removeStale(): void {
  const alive = (pid: number): boolean => fs.existsSync(`/proc/${pid}`);
  for (const name of fs.readdirSync('/sys/class/net')) {
    const m = /^bfz(\d+)(u0|c[0246]|b[1234])$/.exec(name);
    if (m && Number(m[1]) !== process.pid && !alive(Number(m[1]))) sh('ip', ['link', 'del', name], true);
  }
  for (const name of fs.readdirSync('/sys/fs/bpf')) {
    const m = /^berth-test-fuzz-(\d+)$/.exec(name);
    if (m && Number(m[1]) !== process.pid && !alive(Number(m[1]))) Dataplane.reset(`/sys/fs/bpf/${name}`);
  }
}

function makeInterfaces(): void {
  let i = 0;
  for (const [a, b] of [[IF.u0, IF.u1], [IF.c0, IF.c1], [IF.c2, IF.c3], [IF.c4, IF.c5], [IF.c6, IF.c7]])
    sh('ip', ['link', 'add', a, 'address', devMac(++i), 'type', 'veth', 'peer', 'name', b, 'address', devMac(++i)]);
  for (const n of NETS) sh('ip', ['link', 'add', n.bridge, 'address', devMac(++i), 'type', 'bridge']);
  for (const n of Object.values(IF)) sh('ip', ['link', 'set', n, 'up']);
  sh('ip', ['addr', 'add', `${ip4str(UPLINK)}/24`, 'dev', IF.u0]);
  sh('ip', ['neigh', 'replace', ip4str(OUT_NEIGH), 'lladdr', macStr(OUT_NEIGH_MAC), 'dev', IF.u0, 'nud', 'permanent']);
  sh('ip', ['-6', 'addr', 'add', `${UPLINK6}/64`, 'dev', IF.u0, 'nodad']);
  sh('ip', ['-6', 'neigh', 'replace', OUT6_NEIGH, 'lladdr', macStr(OUT_NEIGH_MAC), 'dev', IF.u0, 'nud', 'permanent']);
  for (const n of NETS) fs.writeFileSync(`/proc/sys/net/ipv6/conf/${n.bridge}/forwarding`, '1');
  // the route lookup for masquerade starts at the network's bridge: forwarding on there
  for (const n of NETS) fs.writeFileSync(`/proc/sys/net/ipv4/conf/${n.bridge}/forwarding`, '1');
  uplinkIfindex = ifindexOf(IF.u0);
  uplinkPeerIfindex = ifindexOf(IF.u1);
  uplinkMac = macOf(IF.u0);
  for (const n of NETS) {
    n.ifindex = ifindexOf(n.bridge);
    n.mac = macOf(n.bridge);
  }
  for (const e of EPS) e.ifindex = ifindexOf(e.dev);
  EP_BY_IFINDEX = new Map(EPS.map((e) => [e.ifindex, e]));
}

// ---- the dataplane -----------------------------------------------------------

interface Env {
  dp: Dataplane;
  policy: BpfMap;
  /** hex of the conntrack keys of the seeded flows (kept across rounds) */
  seeded: Set<string>;
  /** the seeded halves: key and entry bytes */
  flows: Array<{ key: Buffer; entry: Buffer }>;
}

const ipKey = (a: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(a);
  return b;
};

function program(env: Env): void {
  const { dp } = env;
  for (const n of NETS) {
    dp.maps.net.update(
      networkKeyCodec.encode({ network_id: n.id }),
      netValueCodec.encode({
        subnet: ip4str(n.subnet), mask: ip4str(n.mask), gateway: ip4str(n.gw), flags: n.flags | EndpointFlags.IPV6, bridge_ifindex: n.ifindex, gw_mac: macStr(n.mac),
        subnet6: net6Of(n), mask6: 'ffff:ffff:ffff:ffff::', gateway6: `${net6Of(n)}1`,
      }),
    );
    dp.maps.bridge.update(ifindexKeyCodec.encode({ ifindex: n.ifindex }), bridgeCodec.encode({ network_id: n.id, flags: n.flags | EndpointFlags.IPV6 }));
  }
  for (const e of EPS) {
    const v = endpointCodec.encode({ addr: ip4str(e.addr), ifindex: e.ifindex, network_id: e.net.id, flags: e.net.flags | EndpointFlags.IPV6, mac: macStr(e.mac), addr6: addr6Of(e) });
    dp.maps.epByIfindex.update(ifindexKeyCodec.encode({ ifindex: e.ifindex }), v);
    dp.maps.epByIp.update(ipKeyCodec.encode({ addr: ip4str(e.addr) }), v);
    dp.maps.epByIp6.update(ip6KeyCodec.encode({ addr: addr6Of(e) }), v);
  }
  for (const h of HOSTS)
    dp.maps.hostAddr.update(ipKey(h), hostAddrValueCodec.encode({ ifindex: h === UPLINK ? uplinkIfindex : 1, flags: 0 }));
  dp.maps.uplink.update(ifindexKeyCodec.encode({ ifindex: uplinkIfindex }), uplinkCodec.encode({ addr: ip4str(UPLINK), flags: 0, mac: macStr(uplinkMac), addr6: UPLINK6 }));
  dp.maps.hostAddr6.update(ip6KeyCodec.encode({ addr: UPLINK6 }), hostAddrValueCodec.encode({ ifindex: uplinkIfindex, flags: 0 }));
  for (const p of PUBS6)
    dp.maps.publish.update(
      publishKeyCodec.encode({ host_addr: '::', host_port: p.port, proto: p.proto }),
      publishValueCodec.encode({ addr: addr6Of(p.ep), port: p.to, flags: 0, ifindex: p.ep.ifindex, network_id: p.ep.net.id, mac: macStr(p.ep.mac) }),
    );
  for (const p of PUBS)
    dp.maps.publish.update(
      publishKeyCodec.encode({ host_addr: ip4str(p.host), host_port: p.port, proto: p.proto }),
      publishValueCodec.encode({ addr: ip4str(p.ep.addr), port: p.to, flags: p.loopback ? PublishFlags.LOOPBACK : 0, ifindex: p.ep.ifindex, network_id: p.ep.net.id, mac: macStr(p.ep.mac) }),
    );
  for (const p of ROUTED_PUBS)
    dp.maps.publish.update(
      publishKeyCodec.encode({ host_addr: ip4str(p.ep.addr), host_port: p.port, proto: p.proto }),
      publishValueCodec.encode({ addr: ip4str(p.ep.addr), port: p.port, flags: PublishFlags.ROUTED, ifindex: p.ep.ifindex, network_id: p.ep.net.id, mac: macStr(p.ep.mac) }),
    );
  for (const ifindex of [1, uplinkIfindex, uplinkPeerIfindex, ...EPS.map((e) => e.ifindex), ...NETS.map((n) => n.ifindex)])
    for (const direction of [Direction.FROM_CONTAINER, Direction.TO_CONTAINER])
      dp.maps.counters.update(counterKeyCodec.encode({ ifindex, direction }), zeroPerCpuCounters(dp.cpus));
}

/**
 * DOCKER-USER (bank 0, the one in force): one client may not reach 8080
 * (after its flow was made), nor anything of the routed network (its
 * published ports, ICMP, its flows' replies: lib/routed_policy.h).
 */
function denyClient(env: Env): void {
  const any = { src_addr: '0.0.0.0', src_mask: '0.0.0.0', dst_addr: '0.0.0.0', dst_mask: '0.0.0.0', port: 0, proto: 0 };
  const routed = NETS.find((n) => n.flags & EndpointFlags.ROUTED)!;
  env.policy.update(le32(0), policyRuleCodec.encode({ ...any, src_addr: ip4str(DENIED), src_mask: '255.255.255.255', port: 8080, proto: TCP, action: PolicyAction.DENY }));
  env.policy.update(le32(1), policyRuleCodec.encode({ ...any, src_addr: ip4str(DENIED), src_mask: '255.255.255.255', dst_addr: ip4str(routed.subnet), dst_mask: ip4str(routed.mask), action: PolicyAction.DENY }));
  env.policy.update(le32(2), policyRuleCodec.encode({ ...any, action: PolicyAction.END }));
}

// ---- frames --------------------------------------------------------------------

interface Tuple {
  saddr: number;
  daddr: number;
  sport: number;
  dport: number;
  proto: number;
}

/** Random payload bytes: a slice of one random block (the builders copy it). */
const JUNK = new Rng(Rng.derive(SEED, 'payload')).bytes(1 << 16);
const junk = (r: Rng, n: number): Buffer => {
  const at = r.int(JUNK.length - n);
  return JUNK.subarray(at, at + n);
};

function l4For(r: Rng, tu: Tuple, o: { tcpFlags?: number; payload?: Buffer; noUdpCsum?: boolean; icmpType?: 0 | 8 } = {}): Buffer {
  const payload = o.payload ?? junk(r, r.weighted([[6, r.int(24)], [3, r.range(24, 200)], [1, r.range(200, 1400)]]));
  if (tu.proto === TCP)
    return tcpSegment(tu.saddr, tu.daddr, tu.sport, tu.dport, o.tcpFlags ?? r.pick([0x02, 0x10, 0x18, 0x12, 0x11, 0x14, 0x04, 0x01]), payload, r.u32());
  if (tu.proto === UDP) return udpDatagram(tu.saddr, tu.daddr, tu.sport, tu.dport, payload, o.noUdpCsum ?? r.chance(0.1));
  if (tu.proto === ICMP) return icmpEcho(o.icmpType ?? (r.chance(0.7) ? 8 : 0), tu.sport, r.int(65536), payload);
  // tracked without ports: the builders' own ports are not the tuple's
  if (tu.proto === DCCP) return dccpPacket(tu.saddr, tu.daddr, r.int(65536), r.int(65536), payload, r.chance(0.3) ? r.range(1, 15) : 0);
  if (tu.proto === UDPLITE) return udpLiteDatagram(tu.saddr, tu.daddr, r.int(65536), r.int(65536), payload, r.chance(0.3) ? r.pick([8, 9, 12, 8 + payload.length]) : 0);
  if (tu.proto === GRE) return Buffer.concat([Buffer.from([0, 0, 0x65, 0x58]), payload]);
  return r.bytes(r.range(0, 64)); // ESP, SCTP ...: carried as they are
}

function ipOpts(r: Rng): { options?: Buffer; frag?: number; ttl?: number; tos?: number } {
  const o: { options?: Buffer; frag?: number; ttl?: number; tos?: number } = {};
  if (r.chance(0.08)) o.options = r.pick([Buffer.from([1, 1, 1, 0]), Buffer.from([0x94, 4, 0, 0]), Buffer.from([7, 7, 4, 0, 0, 0, 0, 0]), Buffer.alloc(40, 1)]);
  if (r.chance(0.06)) o.frag = r.pick([0x2000, 0x2000 | r.range(1, 0x1fff), r.range(1, 0x1fff), 0x0000]);
  if (r.chance(0.05)) o.ttl = r.pick([0, 1, 2, 255]);
  if (r.chance(0.05)) o.tos = r.int(256);
  return o;
}

function ipFrame(r: Rng, dmac: Buffer, smac: Buffer, tu: Tuple, l4opts: Parameters<typeof l4For>[2] = {}): Buffer {
  const io = ipOpts(r);
  return ethFrame(dmac, smac, ETH_IP, ipv4Packet({ src: tu.saddr, dst: tu.daddr, proto: tu.proto, ...io }, l4For(r, tu, l4opts)), r.chance(0.02) ? r.int(4096) : undefined);
}

/** IP ids of generated fragments: few, so that later fragments meet the records of first ones (and some do not). */
const FRAG_IDS = [0x1234, 0x4242, 0x0bad];

/**
 * A fragment of a datagram of tuple tu: a first one (offset 0, MF: the
 * transport header and data), or a later one (offset > 0: data only), often
 * of an id whose first fragment was seen, sometimes not; a few with TTL 1.
 */
function fragFrame(r: Rng, dmac: Buffer, smac: Buffer, tu: Tuple): Buffer {
  const id = r.chance(0.9) ? r.pick(FRAG_IDS) : r.int(65536);
  const ttl = r.weighted([[8, 64], [1, 1], [1, 2]]);
  const first = r.chance(0.45);
  const frag = first ? 0x2000 : (r.chance(0.5) ? 0x2000 : 0) | r.range(1, 400);
  const payload = first ? l4For(r, tu, { icmpType: 8 }) : junk(r, r.range(8, 600));
  return ethFrame(dmac, smac, ETH_IP, ipv4Packet({ src: tu.saddr, dst: tu.daddr, proto: tu.proto, id, ttl, frag }, payload));
}

/** An ICMP error about the packet `q` (as it left), sent back from `from` to q's source. */
function icmpErrorFrame(r: Rng, dmac: Buffer, smac: Buffer, q: Tuple, from: number): Buffer {
  const quotedL4 = l4For(r, q, { payload: r.bytes(r.pick([0, 0, 4, 16, 64])), icmpType: 8 });
  const quoted = ipv4Packet({ src: q.saddr, dst: q.daddr, proto: q.proto, ttl: r.pick([1, 63, 64]), options: r.chance(0.1) ? Buffer.from([1, 1, 1, 0]) : undefined }, quotedL4);
  const keep = r.weighted([[5, 28 + (quoted[0] & 15) * 4 - 20], [3, quoted.length], [2, r.range(28, quoted.length)]]);
  const type = r.pick([3, 3, 11, 12]);
  const code = type === 3 ? r.pick([0, 1, 3, 4, 13]) : type === 11 ? r.pick([0, 1]) : 0;
  const msg = icmpMessage(type, code, type === 3 && code === 4 ? 1400 : 0, quoted.subarray(0, Math.min(keep, quoted.length)));
  const io = ipOpts(r);
  return ethFrame(dmac, smac, ETH_IP, ipv4Packet({ src: from, dst: q.saddr, proto: ICMP, ...io, frag: io.frag ?? 0 }, msg));
}

function arpFrame(r: Rng, smac: Buffer, sip: number, tip: number): Buffer {
  const a = Buffer.alloc(28);
  a.writeUInt16BE(1, 0);
  a.writeUInt16BE(ETH_IP, 2);
  a[4] = 6;
  a[5] = 4;
  a.writeUInt16BE(r.pick([1, 2]), 6);
  smac.copy(a, 8);
  a.writeUInt32BE(sip, 14);
  a.writeUInt32BE(tip, 24);
  return ethFrame(r.chance(0.5) ? Buffer.alloc(6, 0xff) : r.pick(EPS).mac, smac, ETH_ARP, a);
}

function ipv6Frame(r: Rng, dmac: Buffer, smac: Buffer): Buffer {
  const h = Buffer.alloc(40 + 8);
  h[0] = 0x60;
  h.writeUInt16BE(8, 4);
  h[6] = r.pick([17, 58, 6]);
  h[7] = 64;
  Buffer.from('20010db8000000000000000000000001', 'hex').copy(h, 8);
  const dst = r.pick(['fe800000000000000000000000000005', 'ff020000000000000000000000000001', 'ff0200000000000000000001ff000005', '20010db8000000000000000000000005', 'fec00000000000000000000000000005', r.bytes(16).toString('hex')]);
  Buffer.from(dst, 'hex').copy(h, 24);
  return ethFrame(dmac, smac, ETH_IPV6, h);
}

/** The upper layer of a v6 packet of tuple tu (checksum set by frame6For). */
function upper6(r: Rng, tu: Tuple6, o: { payload?: Buffer; icmpType?: number } = {}): Upper {
  const payload = o.payload ?? junk(r, r.weighted([[6, r.int(24)], [3, r.range(24, 200)], [1, r.range(200, 1200)]]));
  if (tu.proto === TCP) return tcp6(tu.sport, tu.dport, r.pick([0x02, 0x10, 0x18, 0x12, 0x11, 0x14, 0x04]), r.u32(), r.u32(), 64240, payload);
  if (tu.proto === UDP) return udp6(tu.sport, tu.dport, payload);
  if (tu.proto === ICMP6) return icmp6(o.icmpType ?? (r.chance(0.7) ? 128 : 129), 0, ((tu.sport & 0xffff) << 16 | r.int(65536)) >>> 0, payload);
  return { proto: tu.proto, bytes: r.bytes(r.range(0, 64)) };
}

const extChain = (r: Rng): Ext[] =>
  r.weighted<Ext[]>([[8, []], [1, [{ kind: 'hop' }]], [1, [{ kind: 'dest', units: r.int(3) }]], [1, [{ kind: 'hop' }, { kind: 'dest' }]], [1, [{ kind: 'routing', segsLeft: r.pick([0, 1]) }]], [1, [{ kind: 'auth' }]]]);

/**
 * An IPv6 frame of tuple tu: whole (its checksum right, a UDP one now and
 * then 0), a first fragment (the whole datagram's checksum, cut), or a later
 * fragment (data only); extension headers before it now and then.
 */
function frame6For(r: Rng, dmac: Buffer, smac: Buffer, tu: Tuple6, o: { up?: Upper; frag?: boolean; hop?: number } = {}): Buffer {
  const up = o.up ?? upper6(r, tu);
  const hop = o.hop ?? r.weighted([[12, 64], [1, 1], [1, 2], [1, 255]]);
  const exts = extChain(r);
  const whole = frame6({ src: tu.saddr, dst: tu.daddr, hop }, [], up);
  fixL4Checksum6(whole);
  if (tu.proto === UDP && r.chance(0.04)) whole.writeUInt16BE(0, 54 + 6);
  const bytes = whole.subarray(54);
  let f: Buffer;
  const kind = o.frag ? (r.chance(0.45) ? 'first' : 'later') : 'whole';
  if (kind === 'whole') {
    f = frame6({ src: tu.saddr, dst: tu.daddr, hop }, exts, { proto: up.proto, bytes });
  } else {
    const id = r.chance(0.9) ? r.pick(FRAG_IDS) : r.u32();
    const first = kind === 'first';
    const cut = first ? bytes.subarray(0, Math.min(bytes.length, 8 * r.range(1, 8))) : junk(r, r.range(8, 600));
    f = frame6({ src: tu.saddr, dst: tu.daddr, hop }, [...exts, { kind: 'frag', offset: first ? 0 : 8 * r.range(1, 200), more: first || r.chance(0.5), id }], { proto: up.proto, bytes: cut });
  }
  dmac.copy(f, 0);
  smac.copy(f, 6);
  return f;
}

/** An ICMPv6 error (1-4) about the v6 packet `q` (as it left), sent back from `from` to q's source. */
function icmpError6Frame(r: Rng, dmac: Buffer, smac: Buffer, q: Tuple6, from: string): Buffer {
  const quoted = frame6({ src: q.saddr, dst: q.daddr, hop: r.pick([1, 63, 64]) }, [], upper6(r, q, { payload: r.bytes(r.pick([0, 0, 4, 16, 64])), icmpType: 128 }));
  fixL4Checksum6(quoted);
  const ip = quoted.subarray(14);
  const keep = r.weighted([[5, 48], [3, ip.length], [2, r.range(40, ip.length)]]);
  const type = r.pick([1, 1, 2, 3, 4]);
  const code = type === 1 ? r.pick([0, 1, 3, 4]) : type === 3 ? r.pick([0, 1]) : type === 4 ? r.pick([0, 1, 2]) : 0;
  const f = frame6({ src: from, dst: q.saddr, hop: r.pick([64, 64, 1, 255]) }, r.chance(0.1) ? [{ kind: 'dest' }] : [], icmp6(type, code, type === 2 ? 1280 : 0, ip.subarray(0, Math.min(keep, ip.length))));
  fixL4Checksum6(f);
  dmac.copy(f, 0);
  smac.copy(f, 6);
  return f;
}

const outside6 = (r: Rng): string =>
  r.weighted([[4, OUT6_NEIGH], [3, OUT6_NO_NEIGH], [2, norm6(`${P6}${r.range(4, 0xffff).toString(16)}`)], [1, ip6s(r.bytes(16))], [1, norm6('2001:db8::8')], [1, norm6('ff02::1')]]);

const natPort = (r: Rng): number => (r.chance(0.6) ? r.range(61000, 65535) : r.int(65536));
const outside = (r: Rng): number =>
  r.weighted([[4, OUT_NEIGH], [3, OUT_NO_NEIGH], [2, ip4(`198.19.${X}.${r.range(4, 254)}`)], [2, r.u32()], [1, ip4('8.8.8.8')], [1, ip4(`10.${M}.${r.range(4, 9)}.${r.range(1, 254)}`)]]);
const unknownIn = (n: Net, r: Rng): number => (n.subnet | r.pick([0, 1, 99, 200, 255, r.range(2, 254)])) >>> 0;

// ---- conntrack --------------------------------------------------------------------

const CT = Object.fromEntries(ctEntryCodec.layout.map((l) => [l.name, l.offset])) as Record<string, number>;
// berth_ct_key: 16-byte addresses (IPv4 as ::ffff:a.b.c.d), ports, proto, family (bpf/berth_contract.h)
const KEY_LEN = ctKeyCodec.size;
const V4MAPPED = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
const K = Object.fromEntries(ctKeyCodec.layout.map((l) => [l.name, l.offset])) as Record<string, number>;
const keyBuf = (tu: Tuple): Buffer => ctKeyCodec.encode({ saddr: ip4str(tu.saddr), daddr: ip4str(tu.daddr), sport: tu.sport, dport: tu.dport, proto: tu.proto });
const tupleOf = (b: Buffer, off = 0): Tuple => ({
  saddr: b.readUInt32BE(off + K.saddr! + 12),
  daddr: b.readUInt32BE(off + K.daddr! + 12),
  sport: b.readUInt16BE(off + K.sport!),
  dport: b.readUInt16BE(off + K.dport!),
  proto: b[off + K.proto!]!,
});
const tupleStr = (tu: Tuple): string => `${ip4str(tu.saddr)}:${tu.sport} > ${ip4str(tu.daddr)}:${tu.dport}/${tu.proto}`;
const AF_INET6 = 10;
/** the family of the conntrack key at b[off] */
const familyOf = (b: Buffer, off = 0): number => b[off + K.family!]!;

/** an IPv6 tuple, its addresses as ip6s() writes them */
interface Tuple6 {
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  proto: number;
}
const keyBuf6 = (tu: Tuple6): Buffer => ctKeyCodec.encode({ saddr: tu.saddr, daddr: tu.daddr, sport: tu.sport, dport: tu.dport, proto: tu.proto, family: AF_INET6 });
const tupleOf6 = (b: Buffer, off = 0): Tuple6 => ({
  saddr: ip6s(b, off + K.saddr!),
  daddr: ip6s(b, off + K.daddr!),
  sport: b.readUInt16BE(off + K.sport!),
  dport: b.readUInt16BE(off + K.dport!),
  proto: b[off + K.proto!]!,
});
const tuple6Str = (tu: Tuple6): string => `[${tu.saddr}]:${tu.sport} > [${tu.daddr}]:${tu.dport}/${tu.proto}`;
/** a key of either family, for messages */
const keyStr = (b: Buffer, off = 0): string => (familyOf(b, off) === AF_INET6 ? tuple6Str(tupleOf6(b, off)) : tupleStr(tupleOf(b, off)));

interface Half {
  rewrite: Tuple;
  outKind: number;
  smac: Buffer;
  dmac: Buffer;
  flags: number;
  raw: Buffer;
}
function half(entry: Buffer): Half {
  return {
    raw: entry,
    rewrite: tupleOf(entry, CT.rewrite),
    outKind: entry.readUInt32LE(CT.out_kind),
    smac: entry.subarray(CT.out_smac, CT.out_smac + 6),
    dmac: entry.subarray(CT.out_dmac, CT.out_dmac + 6),
    flags: entry[CT.flags],
  };
}

// ---- the oracle ----------------------------------------------------------------------

type Expect =
  | { kind: 'c2c'; dmac: Buffer }
  | { kind: 'ct'; h: Half }
  | { kind: 'icmp'; h: Half }
  /** a later fragment: its addresses as the half says (the ports its first fragment recorded found it) */
  | { kind: 'frag'; h: Half };

/** Byte ranges [start, end) of the checksum fields a candidate may rewrite. */
function csumFields(p: Parsed, e: Expect): number[] {
  if (e.kind === 'c2c') return [];
  const f = [24];
  if (e.kind === 'ct') {
    if (p.csumOff) f.push(p.csumOff); // none for GRE, SCTP, ...
  } else if (e.kind === 'icmp') f.push(p.l4 + 2, p.inner!.off + 10);
  return f;
}

/** The output a candidate says, checksum fields left as in the input (they are checked apart). */
function expected(inp: Buffer, p: Parsed, e: Expect): Buffer {
  const x = Buffer.from(inp);
  if (e.kind === 'c2c') {
    e.dmac.copy(x, 0);
    return x;
  }
  const h = e.h;
  const R = h.rewrite;
  if (h.outKind !== OutKind.NEIGH) {
    h.dmac.copy(x, 0);
    h.smac.copy(x, 6);
  }
  if (e.kind === 'frag') {
    // no transport header: addresses and TTL only, the rest byte for byte
    x.writeUInt32BE(R.saddr, 26);
    x.writeUInt32BE(R.daddr, 30);
    if (p.ttl > 1) x[22] = p.ttl - 1;
    return x;
  }
  if (e.kind === 'ct') {
    x.writeUInt32BE(R.saddr, 26);
    x.writeUInt32BE(R.daddr, 30);
    if (p.ttl > 1) x[22] = p.ttl - 1;
    if (p.proto === ICMP) {
      x.writeUInt16BE(R.sport, p.l4 + 4);
    } else if (p.hasPorts) {
      x.writeUInt16BE(R.sport, p.l4);
      x.writeUInt16BE(R.dport, p.l4 + 2);
    } // tracked without ports: nothing past the IPv4 header
    return x;
  }
  const q = p.inner!;
  if (p.saddr === q.daddr) x.writeUInt32BE(R.saddr, 26);
  x.writeUInt32BE(R.daddr, 30);
  x.writeUInt32BE(R.daddr, q.off + 12);
  x.writeUInt32BE(R.saddr, q.off + 16);
  if (q.proto === ICMP) {
    x.writeUInt16BE(R.sport, q.l4 + 4);
  } else if (q.proto === TCP || q.proto === UDP) {
    x.writeUInt16BE(R.dport, q.l4);
    x.writeUInt16BE(R.sport, q.l4 + 2);
  } // a quoted protocol without ports: its addresses alone
  return x;
}

/** Why `out` is not what candidate e makes of `inp`, or null when it is. */
function mismatch(inp: Buffer, out: Buffer, p: Parsed, e: Expect): string | null {
  if (out.length !== inp.length) return `length ${out.length}, input ${inp.length}`;
  const x = expected(inp, p, e);
  const skip = csumFields(p, e);
  for (let i = 0; i < x.length; i++) {
    if (out[i] === x[i]) continue;
    if (skip.some((s) => i === s || i === s + 1)) continue;
    return `byte ${i}: 0x${out[i].toString(16)}, expected 0x${x[i].toString(16)} (${e.kind})`;
  }
  if (e.kind === 'c2c') return null;
  // the output has the input's layout: p's offsets, its own addresses
  const osrc = out.readUInt32BE(26);
  const odst = out.readUInt32BE(30);
  // IPv4 header: the rewritten fields compensated exactly, and so valid (the input's was: berth parsed it)
  if (residue(sum16(out, 14, 14 + p.ihl)) !== residue(sum16(inp, 14, 14 + p.ihl))) return 'IPv4 header checksum not updated by what changed';
  if (residue(sum16(out, 14, 14 + p.ihl)) !== 0) return 'IPv4 header checksum invalid';
  if (e.kind === 'frag') return null;
  if (e.kind === 'ct') {
    if (p.generic && !p.csumOff) return null; // GRE, SCTP, ...: no checksum covers an address
    // over the frame from the transport header on (whatever tot_len says): exactly what the rewrite changed
    const L = p.len - p.l4;
    const sumOf = (b: Buffer, s: number, d: number): number => (p.proto === ICMP ? sum16(b, p.l4, b.length) : sum16(b, p.l4, b.length, pseudoSum(s, d, p.proto, L)));
    if (p.proto === UDP && inp.readUInt16BE(p.csumOff) === 0) {
      if (out.readUInt16BE(p.csumOff) !== 0) return 'UDP checksum 0 (none) was filled in';
    } else {
      if (residue(sumOf(out, osrc, odst)) !== residue(sumOf(inp, p.saddr, p.daddr)))
        return `${p.proto === TCP ? 'TCP' : p.proto === UDP ? 'UDP' : p.proto === ICMP ? 'ICMP' : p.proto === DCCP ? 'DCCP' : 'UDP-Lite'} checksum not updated by what changed`;
      if (p.proto === UDP && out.readUInt16BE(p.csumOff) === 0) return 'UDP checksum became 0 (none)';
    }
    // ... and over the datagram itself: valid when the input's was
    if (l4ChecksumValid(inp, p) && !l4ChecksumValid(out, p)) return 'transport checksum invalid';
    return null;
  }
  const qi = p.inner!;
  const innerEnd = qi.off + qi.ihl;
  if (residue(sum16(out, qi.off, innerEnd)) !== residue(sum16(inp, qi.off, innerEnd))) return 'quoted IPv4 header checksum not updated by what changed';
  if (residue(sum16(inp, qi.off, innerEnd)) === 0 && residue(sum16(out, qi.off, innerEnd)) !== 0) return 'quoted IPv4 header checksum invalid';
  if (residue(sum16(out, p.l4, out.length)) !== residue(sum16(inp, p.l4, inp.length))) return 'ICMP checksum not updated by what changed';
  if (l4ChecksumValid(inp, p) && !l4ChecksumValid(out, p)) return 'ICMP checksum invalid';
  return null;
}

// ---- programs, generators and their fail-closed rules -----------------------------------

interface Case {
  data: Buffer;
  ifindex: number;
  iif: number;
  how: string;
}

interface Verdicts {
  ran: number;
  refused: number;
  pass: number;
  drop: number;
  redirect: Record<string, number>;
  valid: number;
  mutated: number;
  random: number;
  /** IPv4 frames that are no well-formed datagram (berth must not rewrite them) */
  malformed: number;
  /** berth_br_out: passes into the routed network from elsewhere (each judged by routedAllows) */
  routedIn: number;
}

interface ProgSpec {
  name: string;
  prog: (dp: Dataplane) => BpfProgram;
  /** may it redirect at all */
  redirects: boolean;
  /** a valid frame of this hook's traffic */
  gen: (r: Rng, env: Env) => Case;
  /** the choke points' rule: why this verdict must not be, or null */
  closed: (c: Case, p: Parsed, verdict: number, how: string | null) => string | null;
  /** where its own verdicts are counted */
  counted: () => Array<{ ifindex: number; direction: number }>;
}

const isDhcpClient = (p: Parsed): boolean => p.saddr === 0 && p.proto === UDP && p.hasPorts && p.sport === 68 && p.dport === 67;
const inNet = (n: Net, a: number): boolean => ((a & n.mask) >>> 0) === n.subnet;

function flowsWhere(env: Env, pred: (k: Tuple, h: Half) => boolean): Array<{ k: Tuple; h: Half }> {
  return env.flows.filter((f) => familyOf(f.key) === 2).map((f) => ({ k: tupleOf(f.key), h: half(f.entry) })).filter(({ k, h }) => pred(k, h));
}
/** the seeded IPv6 halves: key, and rewrite as a v6 tuple */
function flows6Where(env: Env, pred: (k: Tuple6, rw: Tuple6) => boolean): Array<{ k: Tuple6; rw: Tuple6 }> {
  return env.flows.filter((f) => familyOf(f.key) === AF_INET6).map((f) => ({ k: tupleOf6(f.key), rw: tupleOf6(f.entry, CT.rewrite) })).filter(({ k, rw }) => pred(k, rw));
}
const EP_BY_ADDR6 = new Map(EPS.map((e) => [norm6(addr6Of(e)), e]));

function makeSpecs(env: Env): ProgSpec[] {
  // tuples the maps hold, by where their packets arrive
  const fromContainers = flowsWhere(env, (k) => EP_BY_ADDR.has(k.saddr));
  const fromOutside = flowsWhere(env, (k) => !EP_BY_ADDR.has(k.saddr));
  // packets that left towards a container (its errors come back from it), or towards the outside
  const intoContainers = flowsWhere(env, (_k, h) => EP_BY_ADDR.has(h.rewrite.daddr));
  const leftHost = flowsWhere(env, (_k, h) => !EP_BY_ADDR.has(h.rewrite.daddr));
  // the same for the NAT66 flows
  const fromContainers6 = flows6Where(env, (k) => EP_BY_ADDR6.has(k.saddr));
  const fromOutside6 = flows6Where(env, (k) => !EP_BY_ADDR6.has(k.saddr));
  const intoContainers6 = flows6Where(env, (_k, rw) => EP_BY_ADDR6.has(rw.daddr));
  const leftHost6 = flows6Where(env, (_k, rw) => !EP_BY_ADDR6.has(rw.daddr));
  const proto6 = (r: Rng): number => r.weighted([[5, TCP], [4, UDP], [2, ICMP6], [1, r.pick([GRE, 50, SCTP, 59])]]);
  /** NAT66 around the seeded flows, from a container */
  const nat6FromContainer = (r: Rng, ep: Ep): { f: Buffer; ep: Ep; how: string } => {
    const what = r.weighted([[8, 'tracked'], [4, 'frag'], [4, 'err'], [4, 'out'], [3, 'host']] as const);
    if ((what === 'tracked' || what === 'frag') && fromContainers6.length) {
      const { k } = r.pick(fromContainers6);
      const e = r.chance(0.95) ? EP_BY_ADDR6.get(k.saddr)! : ep;
      return { f: frame6For(r, e.net.mac, e.mac, k, { frag: what === 'frag', up: k.proto === ICMP6 ? upper6(r, k, { icmpType: 128 }) : undefined }), ep: e, how: `v6-${what}` };
    }
    if (what === 'err' && intoContainers6.length) {
      const { rw } = r.pick(intoContainers6);
      const e = r.chance(0.95) ? EP_BY_ADDR6.get(rw.daddr)! : ep;
      return { f: icmpError6Frame(r, e.net.mac, e.mac, rw, r.chance(0.9) ? rw.daddr : norm6(addr6Of(r.pick(EPS)))), ep: e, how: 'v6-err' };
    }
    const own = r.chance(0.9) ? norm6(addr6Of(ep)) : r.pick([norm6(addr6Of(r.pick(EPS))), norm6('fe80::1'), norm6(`${net6Of(ep.net)}99`)]);
    const pub = r.pick(PUBS6);
    const tu: Tuple6 = what === 'host'
      ? { saddr: own, daddr: r.weighted([[4, UPLINK6], [1, norm6(`${net6Of(ep.net)}1`)], [1, norm6('::1')]]), sport: natPort(r), dport: r.chance(0.8) ? pub.port : r.pick(PUB_PORTS), proto: r.chance(0.85) ? pub.proto : proto6(r) }
      : { saddr: own, daddr: outside6(r), sport: natPort(r), dport: r.pick([80, 53, 443, r.int(65536)]), proto: proto6(r) };
    return { f: frame6For(r, ep.net.mac, ep.mac, tu, { frag: r.chance(0.1) }), ep, how: `v6-${what}` };
  };
  /** NAT66 around the seeded flows, on the uplink */
  const nat6FromOutside = (r: Rng, dmac: Buffer, smac: Buffer): { f: Buffer; how: string } => {
    const what = r.weighted([[8, 'tracked'], [3, 'frag'], [4, 'err'], [6, 'publish'], [2, 'other']] as const);
    if ((what === 'tracked' || what === 'frag') && fromOutside6.length) {
      const { k } = r.pick(fromOutside6);
      return { f: frame6For(r, dmac, smac, k, { frag: what === 'frag', up: k.proto === ICMP6 ? upper6(r, k, { icmpType: 129 }) : undefined }), how: `v6-${what}` };
    }
    if (what === 'err' && leftHost6.length) {
      const { rw } = r.pick(leftHost6);
      return { f: icmpError6Frame(r, dmac, smac, rw, r.weighted([[3, rw.daddr], [2, ROUTER6], [1, ip6s(r.bytes(16))]])), how: 'v6-err' };
    }
    const pub = r.pick(PUBS6);
    const tu: Tuple6 = what === 'publish'
      ? { saddr: r.pick([CLIENT6, CLIENT6B, ip6s(r.bytes(16))]), daddr: r.chance(0.9) ? UPLINK6 : r.pick([norm6(addr6Of(r.pick(EPS))), norm6('::1'), ip6s(r.bytes(16))]), sport: r.int(65536), dport: r.chance(0.8) ? pub.port : r.pick(PUB_PORTS), proto: r.chance(0.85) ? pub.proto : proto6(r) }
      : { saddr: r.pick([CLIENT6, ROUTER6]), daddr: r.pick([UPLINK6, norm6(addr6Of(r.pick(EPS))), ip6s(r.bytes(16))]), sport: r.int(65536), dport: r.int(65536), proto: proto6(r) };
    return { f: frame6For(r, dmac, smac, tu, { frag: r.chance(0.1) }), how: `v6-${what}` };
  };

  const veth = (r: Rng): Ep => r.pick(EPS);
  const anyMac = (r: Rng): Buffer => r.weighted([[5, A1.net.mac], [3, r.pick(EPS).mac], [1, r.bytes(6)], [1, macBuf('ff:ff:ff:ff:ff:ff')], [1, macBuf('01:00:5e:00:00:fb')]]);
  const l2 = (r: Rng, smac: Buffer, sip: number): Buffer =>
    r.weighted([[3, arpFrame(r, smac, sip, r.pick(HOSTS))], [3, ipv6Frame(r, anyMac(r), smac)], [1, ethFrame(anyMac(r), smac, 0x88b5, r.bytes(46))]]);
  const tcpUdp = (r: Rng): number => (r.chance(0.55) ? TCP : UDP);
  const proto = (r: Rng): number => r.weighted([[5, TCP], [4, UDP], [2, ICMP], [2, r.pick([GRE, 50, SCTP, 2, DCCP, UDPLITE, 4])]]);

  const ingressGen = (r: Rng): Case => {
    const what = r.weighted([[22, 'tracked'], [8, 'frag'], [8, 'icmp-error'], [20, 'out'], [15, 'host'], [15, 'c2c'], [8, 'c2c6'], [20, 'nat6'], [6, 'spoof'], [5, 'l2']] as const);
    let ep = veth(r);
    let f: Buffer;
    if (what === 'nat6') {
      const x = nat6FromContainer(r, ep);
      return { data: x.f, ifindex: r.chance(0.04) ? 1 : x.ep.ifindex, iif: 0, how: x.how };
    } else if (what === 'frag' && fromContainers.length) {
      const { k } = r.pick(fromContainers);
      ep = r.chance(0.95) ? EP_BY_ADDR.get(k.saddr)! : ep;
      f = fragFrame(r, ep.net.mac, ep.mac, k);
    } else if (what === 'tracked' && fromContainers.length) {
      const { k } = r.pick(fromContainers);
      ep = r.chance(0.95) ? EP_BY_ADDR.get(k.saddr)! : ep;
      f = ipFrame(r, r.chance(0.8) ? ep.net.mac : r.pick(EPS).mac, ep.mac, k, { icmpType: 8 });
    } else if (what === 'icmp-error' && intoContainers.length) {
      const { h } = r.pick(intoContainers);
      ep = r.chance(0.95) ? EP_BY_ADDR.get(h.rewrite.daddr)! : ep;
      f = icmpErrorFrame(r, ep.net.mac, ep.mac, h.rewrite, r.chance(0.9) ? ep.addr : r.u32());
    } else if (what === 'out') {
      const pr = proto(r);
      const port = natPort(r);
      f = ipFrame(r, ep.net.mac, ep.mac, { saddr: ep.addr, daddr: outside(r), sport: port, dport: r.pick([80, 53, 443, 123, r.int(65536)]), proto: pr });
    } else if (what === 'host') {
      const dst = r.weighted([[4, UPLINK], [2, HOST2], [2, ep.net.gw], [1, LOOPBACK], [1, r.pick(NETS).gw]]);
      f = ipFrame(r, ep.net.mac, ep.mac, { saddr: ep.addr, daddr: dst, sport: natPort(r), dport: r.pick(PUB_PORTS), proto: r.chance(0.9) ? tcpUdp(r) : ICMP });
    } else if (what === 'c2c') {
      const dst = r.weighted([[6, r.pick(EPS).addr], [2, unknownIn(ep.net, r)], [1, ep.net.gw], [1, unknownIn(r.pick(NETS), r)]]);
      const dEp = EP_BY_ADDR.get(dst);
      f = ipFrame(r, dEp && r.chance(0.7) ? dEp.mac : ep.net.mac, ep.mac, { saddr: ep.addr, daddr: dst, sport: r.int(65536), dport: r.pick(PUB_PORTS), proto: proto(r) });
    } else if (what === 'c2c6') {
      // IPv6 between containers: own, link-local or another's source; a container's, the gateway's or an unknown destination
      const dEp = r.pick(EPS);
      const src = r.weighted([[6, addr6Of(ep)], [1, 'fe80::1'], [1, addr6Of(r.pick(EPS))], [1, `${net6Of(ep.net)}99`]]);
      const dst = r.weighted([[6, addr6Of(dEp)], [1, `${net6Of(ep.net)}1`], [1, `${net6Of(r.pick(NETS))}77`], [1, '2001:db8::5']]);
      f = frame6({ src, dst, hop: r.pick([64, 255, 1]) }, r.chance(0.2) ? [{ kind: 'dest' }] : [], udp6(r.int(65536), r.pick(PUB_PORTS), r.bytes(r.int(40))));
      (r.chance(0.7) ? dEp.mac : ep.net.mac).copy(f, 0);
      ep.mac.copy(f, 6);
    } else if (what === 'spoof') {
      if (r.chance(0.4)) {
        const dst = r.pick([0xffffffff, ep.net.gw]);
        f = ethFrame(dst === 0xffffffff ? macBuf('ff:ff:ff:ff:ff:ff') : ep.net.mac, ep.mac, ETH_IP, ipv4Packet({ src: 0, dst, proto: UDP }, udpDatagram(0, dst, 68, 67, r.bytes(32))));
      } else {
        const src = r.weighted([[3, r.pick(EPS).addr], [2, unknownIn(ep.net, r)], [2, r.u32()], [1, UPLINK]]);
        f = ipFrame(r, ep.net.mac, ep.mac, { saddr: src, daddr: r.weighted([[1, outside(r)], [1, r.pick(EPS).addr], [1, UPLINK]]), sport: natPort(r), dport: r.pick(PUB_PORTS), proto: proto(r) });
      }
    } else {
      f = l2(r, ep.mac, ep.addr);
    }
    const ifindex = r.chance(0.04) ? 1 : ep.ifindex; // lo: an interface berth has not programmed
    return { data: f, ifindex, iif: 0, how: what };
  };

  const ingressClosed = (c: Case, p: Parsed, v: number, how: string | null): string | null => {
    const src = EP_BY_IFINDEX.get(c.ifindex);
    if (v === TC_ACT_REDIRECT && !src) return 'redirected from an interface berth has not programmed';
    if (!src || p.ethType !== ETH_IP || !p.unicast || !p.ip) return null;
    const own = p.saddr === src.addr || isDhcpClient(p);
    if (!own) return v === TC_ACT_SHOT ? null : 'a spoofed source was not dropped';
    if (v === TC_ACT_SHOT || how === 'ct' || how === 'icmp' || how === 'frag') return null;
    const dst = EP_BY_ADDR.get(p.daddr);
    if (dst && dst !== src && dst.net !== src.net) return 'crossed into another network (isolation)';
    if (dst && dst !== src && !(src.net.flags & EndpointFlags.ICC)) return 'container to container with icc off';
    if (!dst && inNet(src.net, p.daddr) && !(src.net.flags & EndpointFlags.ICC) && p.daddr !== src.net.gw && p.daddr !== src.addr) return 'to an unknown container with icc off';
    if ((src.net.flags & EndpointFlags.INTERNAL) && !inNet(src.net, p.daddr) && !HOST_SET.has(p.daddr) && !dst) return 'left an internal network';
    return null;
  };

  const upGen = (r: Rng): Case => {
    const what = r.weighted([[30, 'tracked'], [10, 'frag'], [10, 'icmp-error'], [30, 'publish'], [10, 'refuse'], [12, 'other'], [30, 'nat6'], [5, 'l2']] as const);
    const smac = r.chance(0.8) ? CLIENT_MAC : r.bytes(6);
    const dmac = r.chance(0.9) ? uplinkMac : anyMac(r);
    let f: Buffer;
    if (what === 'nat6') {
      const x = nat6FromOutside(r, dmac, smac);
      return { data: x.f, ifindex: r.chance(0.95) ? uplinkIfindex : uplinkPeerIfindex, iif: 0, how: x.how };
    } else if (what === 'frag' && fromOutside.length) {
      f = fragFrame(r, dmac, smac, r.pick(fromOutside).k);
    } else if (what === 'tracked' && fromOutside.length) {
      f = ipFrame(r, dmac, smac, r.pick(fromOutside).k, { icmpType: 0 });
    } else if (what === 'icmp-error' && leftHost.length) {
      const { h } = r.pick(leftHost);
      f = icmpErrorFrame(r, dmac, smac, h.rewrite, r.weighted([[3, h.rewrite.daddr], [2, ROUTER], [1, r.u32()]]));
    } else if (what === 'publish') {
      const pub = r.pick(PUBS);
      const src = r.weighted([[4, CLIENT], [2, CLIENT2], [2, DENIED], [2, r.u32()], [1, r.pick(EPS).addr]]);
      const dst = r.weighted([[4, pub.host || UPLINK], [2, r.pick(HOSTS)], [1, r.u32()]]);
      f = ipFrame(r, dmac, smac, { saddr: src, daddr: dst, sport: r.int(65536), dport: r.chance(0.8) ? pub.port : r.pick(PUB_PORTS), proto: r.chance(0.85) ? pub.proto : proto(r) });
    } else if (what === 'refuse') {
      const dst = r.weighted([[3, r.pick(EPS).addr], [2, LOOPBACK], [1, ip4(`127.${r.int(256)}.${r.int(256)}.${r.int(256)}`)], [1, unknownIn(r.pick(NETS), r)]]);
      f = ipFrame(r, dmac, smac, { saddr: CLIENT, daddr: dst, sport: r.int(65536), dport: r.pick(PUB_PORTS), proto: proto(r) });
    } else if (what === 'other') {
      f = ipFrame(r, dmac, smac, { saddr: r.pick([CLIENT, ROUTER, r.u32()]), daddr: r.pick([UPLINK, HOST2, r.u32()]), sport: r.int(65536), dport: r.int(65536), proto: proto(r) });
    } else {
      f = l2(r, smac, CLIENT);
    }
    return { data: f, ifindex: r.chance(0.95) ? uplinkIfindex : uplinkPeerIfindex, iif: 0, how: what };
  };

  const upClosed = (_c: Case, p: Parsed, v: number, how: string | null): string | null => {
    const routedDst = EP_BY_ADDR.get(p.daddr)?.net.flags ?? 0;
    if (v !== TC_ACT_SHOT && p.ethType === ETH_IP && p.ip && ((p.daddr >>> 24) === 127 || (EP_BY_ADDR.has(p.daddr) && !(routedDst & EndpointFlags.ROUTED))))
      return 'a loopback or container destination from outside was not dropped';
    if (v === TC_ACT_REDIRECT && p.ethType === ETH_IP && p.ip && routedDst & EndpointFlags.ROUTED)
      return 'a routed container\'s packet was redirected (its bridge must decide)';
    // every packet of a client's published flow meets the policy, a live flow's too
    if (v === TC_ACT_REDIRECT && how === 'ct' && p.saddr === DENIED && p.proto === TCP && p.dport === 8080 && HOST_SET.has(p.daddr))
      return 'a client the policy denies reached a published port';
    return null;
  };

  const egressGen = (r: Rng): Case => {
    const ep = veth(r);
    let f: Buffer;
    if (r.chance(0.9)) {
      const src = r.weighted([[3, unknownIn(ep.net, r)], [2, r.pick(EPS).addr], [2, ep.net.gw], [2, outside(r)], [1, 0]]);
      f = ipFrame(r, r.chance(0.9) ? ep.mac : anyMac(r), r.chance(0.5) ? ep.net.mac : r.bytes(6), { saddr: src, daddr: r.chance(0.9) ? ep.addr : unknownIn(ep.net, r), sport: r.int(65536), dport: r.pick(PUB_PORTS), proto: proto(r) });
    } else {
      f = l2(r, ep.net.mac, ep.net.gw);
    }
    return { data: f, ifindex: r.chance(0.04) ? 1 : ep.ifindex, iif: 0, how: 'deliver' };
  };

  const egressClosed = (c: Case, p: Parsed, v: number): string | null => {
    const ep = EP_BY_IFINDEX.get(c.ifindex);
    if (v === TC_ACT_SHOT || !ep || p.ethType !== ETH_IP || !p.unicast || !p.ip) return null;
    const n = ep.net;
    if (!(n.flags & EndpointFlags.ICC) && inNet(n, p.saddr) && p.saddr !== n.gw && p.saddr !== ep.addr) return 'from another container with icc off';
    return null;
  };

  const bridgeIfindex = (r: Rng): number => (r.chance(0.9) ? r.pick(NETS).ifindex : r.pick([1, uplinkIfindex]));

  const routedNet = NETS.find((n) => n.flags & EndpointFlags.ROUTED)!;
  const routedReplies = flowsWhere(env, (_k, h) => (h.flags & (CtFlags.ROUTED | CtFlags.REPLY)) === (CtFlags.ROUTED | CtFlags.REPLY));
  /** what a routed network lets in from elsewhere (lib/routed.h), judged on the maps after the run */
  const routedAllows = (n: Net, p: Parsed): boolean => {
    if (p.saddr === DENIED && inNet(n, p.daddr)) return false; // the policy's rule 1 (denyClient), before anything
    if (p.proto === ICMP) return true;
    if ((p.proto !== TCP && p.proto !== UDP) || p.frag !== FRAG_NONE || !p.hasPorts) return false;
    if (ROUTED_PUBS.some((x) => x.ep.net === n && x.ep.addr === p.daddr && x.port === p.dport && x.proto === p.proto)) return true;
    const e = env.dp.maps.ct.lookup(keyBuf({ saddr: p.saddr, daddr: p.daddr, sport: p.sport, dport: p.dport, proto: p.proto }));
    return !!e && (e[CT.flags] & (CtFlags.ROUTED | CtFlags.REPLY)) === (CtFlags.ROUTED | CtFlags.REPLY);
  };

  const brOutGen = (r: Rng): Case => {
    if (r.chance(0.2)) {
      // into the routed network from elsewhere: its published ports, its flows' replies, ICMP, the rest
      const iif = r.weighted([[4, uplinkIfindex], [2, uplinkPeerIfindex], [1, 1], [1, r.pick(NETS).ifindex], [1, r.range(1, 65535)]]);
      const what = r.weighted([[4, 'pub'], [4, 'reply'], [2, 'icmp'], [2, 'other']] as const);
      let tu: Tuple;
      if (what === 'pub') {
        const x = r.pick(ROUTED_PUBS);
        tu = { saddr: r.pick([CLIENT, CLIENT, DENIED, r.u32()]), daddr: r.chance(0.9) ? x.ep.addr : unknownIn(routedNet, r), sport: r.int(65536), dport: r.chance(0.85) ? x.port : r.pick(PUB_PORTS), proto: r.chance(0.85) ? x.proto : proto(r) };
      } else if (what === 'reply' && routedReplies.length) {
        const { k } = r.pick(routedReplies);
        tu = r.chance(0.8) ? k : r.chance(0.2) ? { ...k, saddr: DENIED } : { ...k, [r.pick(['saddr', 'sport', 'dport'] as const)]: r.int(65536) };
      } else {
        tu = { saddr: r.pick([CLIENT, CLIENT, DENIED, r.u32()]), daddr: r.chance(0.8) ? R1.addr : unknownIn(routedNet, r), sport: r.int(65536), dport: r.pick(PUB_PORTS), proto: what === 'icmp' ? ICMP : proto(r) };
      }
      return { data: ipFrame(r, R1.mac, routedNet.mac, tu, { icmpType: 8 }), ifindex: routedNet.ifindex, iif, how: `routed-${what}` };
    }
    const ifindex = bridgeIfindex(r);
    const n = NETS.find((x) => x.ifindex === ifindex) ?? NETS[0];
    const iif = r.weighted([[3, 0], [3, ifindex], [2, r.pick(NETS).ifindex], [2, uplinkIfindex], [1, uplinkPeerIfindex], [1, 1], [1, r.range(1, 65535)]]);
    const ep = r.pick(EPS);
    let f: Buffer;
    const what = r.weighted([[7, 'ip'], [2, 'ipv6'], [1, 'arp']] as const);
    if (what === 'ip') {
      const dst = r.weighted([[5, ep.addr], [2, unknownIn(n, r)], [1, n.gw], [1, r.u32()]]);
      f = ipFrame(r, ep.mac, n.mac, { saddr: r.pick([CLIENT, n.gw, r.pick(EPS).addr, r.u32()]), daddr: dst, sport: r.int(65536), dport: r.pick(PUB_PORTS), proto: proto(r) });
    } else if (what === 'ipv6') {
      f = ipv6Frame(r, ep.mac, n.mac);
    } else {
      f = arpFrame(r, n.mac, n.gw, ep.addr);
    }
    return { data: f, ifindex, iif, how: what };
  };

  const brOutClosed = (c: Case, p: Parsed, v: number): string | null => {
    if (v === TC_ACT_SHOT || c.iif === 0 || c.iif === c.ifindex) return null;
    if (p.ethType === ETH_IP) {
      const n = NETS.find((x) => x.ifindex === c.ifindex);
      if (n && n.flags & EndpointFlags.ROUTED && p.ip && !NETS.some((x) => x.ifindex === c.iif) && routedAllows(n, p)) return null;
      return 'an IPv4 packet forwarded into the network from elsewhere';
    }
    if (p.ethType === ETH_IPV6 && c.data.length >= 54) {
      const b0 = c.data[14 + 24];
      const b1 = c.data[14 + 25];
      if (!(b0 === 0xff || (b0 === 0xfe && (b1 & 0xc0) === 0x80))) return 'a routed IPv6 packet forwarded into the network';
    }
    return null;
  };

  const brInGen = (r: Rng): Case => {
    const ifindex = bridgeIfindex(r);
    const n = NETS.find((x) => x.ifindex === ifindex) ?? NETS[0];
    const mine = EPS.filter((e) => e.net === n);
    let f: Buffer;
    if (r.chance(0.9)) {
      const src = r.weighted([[5, r.pick(mine).addr], [3, unknownIn(n, r)], [2, r.pick(EPS).addr], [1, r.u32()], [1, 0]]);
      const dst = r.weighted([[3, outside(r)], [2, r.pick(HOSTS)], [2, n.gw], [1, 0xffffffff], [1, r.pick(EPS).addr]]);
      const dhcp = src === 0 && r.chance(0.7);
      f = ipFrame(r, n.mac, r.pick(mine).mac, { saddr: src, daddr: dst, sport: dhcp ? 68 : r.int(65536), dport: dhcp ? 67 : r.pick(PUB_PORTS), proto: dhcp ? UDP : proto(r) });
    } else {
      f = l2(r, r.pick(mine).mac, r.pick(mine).addr);
    }
    return { data: f, ifindex, iif: ifindex, how: 'up' };
  };

  const brInClosed = (c: Case, p: Parsed, v: number): string | null => {
    if (v === TC_ACT_SHOT || p.ethType !== ETH_IP || !p.ip) return null;
    const n = NETS.find((x) => x.ifindex === c.ifindex);
    if (!n) return 'an IPv4 packet up from a bridge berth does not manage was not dropped';
    if (isDhcpClient(p)) return null;
    const ep = EP_BY_ADDR.get(p.saddr);
    if (ep) return ep.net === n ? null : "another network's container address was not dropped (spoofed)";
    if (!inNet(n, p.saddr)) return 'a source outside the subnet was not dropped (spoofed)';
    if (HOST_SET.has(p.daddr) || p.daddr === n.gw) return null;
    return 'an unknown container left its network';
  };

  const epCounters = (direction: number) => () => [1, ...EPS.map((e) => e.ifindex)].map((ifindex) => ({ ifindex, direction }));
  const brCounters = (direction: number) => () => [1, uplinkIfindex, ...NETS.map((n) => n.ifindex)].map((ifindex) => ({ ifindex, direction }));
  return [
    { name: 'berth_veth_ingress', prog: (dp) => dp.progs.ingress, redirects: true, gen: ingressGen, closed: ingressClosed, counted: epCounters(Direction.FROM_CONTAINER) },
    { name: 'berth_veth_egress', prog: (dp) => dp.progs.egress, redirects: false, gen: egressGen, closed: egressClosed, counted: epCounters(Direction.TO_CONTAINER) },
    { name: 'berth_up_in', prog: (dp) => dp.progs.uplink, redirects: true, gen: upGen, closed: upClosed, counted: () => [uplinkIfindex, uplinkPeerIfindex].map((ifindex) => ({ ifindex, direction: 0 })) },
    { name: 'berth_br_out', prog: (dp) => dp.progs.bridgeOut, redirects: false, gen: brOutGen, closed: brOutClosed, counted: brCounters(Direction.TO_CONTAINER) },
    { name: 'berth_br_in', prog: (dp) => dp.progs.bridgeIn, redirects: false, gen: brInGen, closed: brInClosed, counted: brCounters(Direction.FROM_CONTAINER) },
  ];
}

// ---- the run --------------------------------------------------------------------------

interface Failure {
  index: number;
  why: string;
  c: Case;
  ops: string;
  out?: Buffer;
  retval?: number;
}

const ctxCache = new Map<string, Buffer>();
function ctxFor(ifindex: number, iif: number): Buffer {
  const k = `${ifindex}/${iif}`;
  let c = ctxCache.get(k);
  if (!c) {
    c = skbTestContext(ifindex);
    c.writeUInt32LE(iif, 36); // offsetof(struct __sk_buff, ingress_ifindex)
    ctxCache.set(k, c);
  }
  return c;
}

/** BPF_PROG_TEST_RUN refuses to build an skb of these (bpf_test_init / the IPv4 and IPv6 header pulls). */
function kernelRefuses(b: Buffer): boolean {
  if (b.length < 14 || b.length > 3712) return true;
  const et = b.readUInt16BE(12);
  return (et === ETH_IP && b.length < 34) || (et === ETH_IPV6 && b.length < 54);
}

/**
 * The ports of every first fragment generated this round, by its record's key
 * (saddr/daddr/id/proto): what berth_frag may hold when a later fragment is
 * judged. Emptied with the records at the end of each round.
 */
const fragHistory = new Map<string, Map<string, [number, number]>>();
const fragKeyStr = (s: number, d: number, id: number, proto: number): string => `${s >>> 0}/${d >>> 0}/${id}/${proto}`;
function noteFirstFragment(b: Buffer): void {
  if (b.length < 42 || b.readUInt16BE(12) !== ETH_IP || (b.readUInt16BE(20) & 0x3fff) !== 0x2000) return;
  const q = parse(b);
  if (!q.ip || !q.hasPorts) return;
  const k = fragKeyStr(q.saddr, q.daddr, b.readUInt16BE(18), q.proto);
  let seen = fragHistory.get(k);
  if (!seen) fragHistory.set(k, (seen = new Map()));
  seen.set(`${q.sport}/${q.dport}`, [q.sport, q.dport]);
}

/** What the conntrack lookups say the redirected packet may look like. */
function candidates(env: Env, spec: ProgSpec, c: Case, p: Parsed): Expect[] {
  const out: Expect[] = [];
  if (spec.name === 'berth_veth_ingress' && p.ip) {
    const dst = EP_BY_ADDR.get(p.daddr);
    if (dst && dst.ifindex !== c.ifindex) out.push({ kind: 'c2c', dmac: dst.mac });
  }
  if (p.hasPorts || (p.generic && p.frag !== FRAG_LATER)) {
    // a whole datagram or a first fragment (translated alike); ports 0 for a protocol without ports
    const e = env.dp.maps.ct.lookup(keyBuf(p));
    if (e) out.push({ kind: 'ct', h: half(e) });
  } else if (p.frag === FRAG_LATER && p.generic) {
    // a protocol without ports: every fragment carries its tuple, no record needed
    const e = env.dp.maps.ct.lookup(keyBuf(p));
    if (e) out.push({ kind: 'frag', h: half(e) });
  } else if (p.frag === FRAG_LATER) {
    // the ports a first fragment of its key recorded, then the half they find:
    // the record's now, or any this round's first fragments may have left
    // (runs still in flight rewrite the record)
    const id = c.data.readUInt16BE(18);
    const ports: Array<[number, number]> = [...(fragHistory.get(fragKeyStr(p.saddr, p.daddr, id, p.proto))?.values() ?? [])];
    const rec = env.dp.maps.frag.lookup(fragKeyCodec.encode({ saddr: ip4str(p.saddr), daddr: ip4str(p.daddr), id, proto: p.proto }));
    if (rec) {
      const v = fragPortsCodec.decode(rec);
      ports.unshift([v.sport, v.dport]);
    }
    for (const [sport, dport] of ports) {
      const e = env.dp.maps.ct.lookup(keyBuf({ saddr: p.saddr, daddr: p.daddr, sport, dport, proto: p.proto }));
      if (e) out.push({ kind: 'frag', h: half(e) });
    }
  } else if (p.inner) {
    const q = p.inner;
    const e = env.dp.maps.ct.lookup(keyBuf({ saddr: q.daddr, daddr: q.saddr, sport: q.dport, dport: q.sport, proto: q.proto }));
    if (e) out.push({ kind: 'icmp', h: half(e) });
  }
  return out;
}

/**
 * An IPv6 redirect container to container: only the veth ingress, on one
 * icc network, from the sender's own (or a link-local) address to an
 * address a container of that network owns, unchanged but the destination
 * MAC, which is that container's.
 */
function c2c6(spec: ProgSpec, c: Case, out: Buffer): string | null {
  if (spec.name !== 'berth_veth_ingress') return 'redirected IPv6 container to container (only the veth ingress does)';
  const src = EP_BY_IFINDEX.get(c.ifindex);
  if (!src) return 'redirected IPv6 from an interface berth has not programmed';
  if (c.data.length < 54) return 'redirected a truncated IPv6 frame';
  const s6 = c.data.subarray(22, 38);
  const d6 = c.data.subarray(38, 54);
  const dst = EPS.find((e) => ip6Buf(addr6Of(e)).equals(d6));
  if (!dst) return 'redirected IPv6 to an address no container owns';
  const linkLocal = s6[0] === 0xfe && (s6[1]! & 0xc0) === 0x80;
  if (!linkLocal && !ip6Buf(addr6Of(src)).equals(s6)) return 'redirected IPv6 with a source that is not the sender\'s';
  if (dst === src || dst.net !== src.net || !(src.net.flags & EndpointFlags.ICC)) return 'redirected IPv6 across networks, to itself or with icc off';
  if (!out.subarray(0, 6).equals(dst.mac)) return 'redirected IPv6 without the destination container\'s MAC';
  if (out.length !== c.data.length || !out.subarray(6).equals(c.data.subarray(6))) return 'redirected IPv6 with more changed than the destination MAC';
  return null;
}

/** first fragments' ports this round, as fragHistory for IPv4: by saddr/daddr/id/proto */
const fragHistory6 = new Map<string, Map<string, [number, number]>>();
function noteFirstFragment6(b: Buffer): void {
  if (b.length < 62 || b.readUInt16BE(12) !== ETH_IPV6) return;
  const q = parse6(b);
  if (!q.ok || q.frag !== FRAG_FIRST || !q.hasPorts) return;
  const k = `${ip6s(b, 22)}/${ip6s(b, 38)}/${q.fragId}/${q.proto}`;
  let seen = fragHistory6.get(k);
  if (!seen) fragHistory6.set(k, (seen = new Map()));
  seen.set(`${q.sport}/${q.dport}`, [q.sport, q.dport]);
}

type Expect6 = { kind: 'ct6' | 'frag6' | 'icmp6'; h: Half; rw: Tuple6 };

/** The halves the maps hold for a v6 packet (whole or first fragment: its tuple; a later fragment: its first's; an error: the quoted tuple reversed). */
function candidates6(env: Env, c: Case, p: Parsed6): Expect6[] {
  const out: Expect6[] = [];
  const look = (kind: Expect6['kind'], tu: Tuple6): void => {
    const e = env.dp.maps.ct.lookup(keyBuf6(tu));
    if (e) out.push({ kind, h: half(e), rw: tupleOf6(e, CT.rewrite) });
  };
  const saddr = ip6s(c.data, 22);
  const daddr = ip6s(c.data, 38);
  if (p.hasPorts) look('ct6', { saddr, daddr, sport: p.sport, dport: p.dport, proto: p.proto });
  else if (p.frag === FRAG_LATER) {
    for (const [sport, dport] of fragHistory6.get(`${saddr}/${daddr}/${p.fragId}/${p.proto}`)?.values() ?? []) look('frag6', { saddr, daddr, sport, dport, proto: p.proto });
  } else if (p.inner) {
    const q = p.inner;
    look('icmp6', { saddr: ip6s(c.data, q.off + 24), daddr: ip6s(c.data, q.off + 8), sport: q.dport, dport: q.sport, proto: q.proto });
  }
  return out;
}

/** Why `out` is not what the v6 candidate e makes of `inp`, or null when it is. */
function mismatch6(inp: Buffer, out: Buffer, p: Parsed6, e: Expect6): string | null {
  if (out.length !== inp.length) return `length ${out.length}, input ${inp.length}`;
  if (familyOf(e.h.raw, CT.rewrite) !== AF_INET6) return 'rewritten to a tuple that is no IPv6 key (AF_INET6)';
  // forwarding a packet of hop limit <= 1 is time exceeded: berth passes it untranslated (the kernel answers) or drops it
  if (e.kind !== 'icmp6' && p.hop <= 1) return `translated with hop limit ${p.hop} (${e.kind})`;
  const R = e.rw;
  const x = Buffer.from(inp);
  if (e.h.outKind !== OutKind.NEIGH) {
    e.h.dmac.copy(x, 0);
    e.h.smac.copy(x, 6);
  }
  if (e.kind === 'icmp6') {
    const q = p.inner!;
    if (inp.subarray(22, 38).equals(inp.subarray(q.off + 24, q.off + 40))) ip6Buf(R.saddr).copy(x, 22);
    ip6Buf(R.daddr).copy(x, 38);
    ip6Buf(R.daddr).copy(x, q.off + 8);
    ip6Buf(R.saddr).copy(x, q.off + 24);
    if (q.proto === ICMP6) x.writeUInt16BE(R.sport, q.l4 + 4);
    else {
      x.writeUInt16BE(R.dport, q.l4);
      x.writeUInt16BE(R.sport, q.l4 + 2);
    }
  } else {
    ip6Buf(R.saddr).copy(x, 22);
    ip6Buf(R.daddr).copy(x, 38);
    if (p.hop > 1) x[21] = p.hop - 1;
    if (e.kind === 'ct6') {
      if (p.proto === ICMP6) x.writeUInt16BE(R.sport, p.l4 + 4);
      else {
        x.writeUInt16BE(R.sport, p.l4);
        x.writeUInt16BE(R.dport, p.l4 + 2);
      }
    }
  }
  const skip = e.kind === 'frag6' ? -1 : p.csumOff;
  for (let i = 0; i < x.length; i++) {
    if (out[i] === x[i] || i === skip || i === skip + 1) continue;
    return `byte ${i}: 0x${out[i].toString(16)}, expected 0x${x[i].toString(16)} (${e.kind})`;
  }
  if (e.kind === 'frag6') return null; // no checksum in a later fragment covers what changed
  const name = p.proto === TCP ? 'TCP' : p.proto === UDP ? 'UDP' : 'ICMPv6';
  if (p.proto === UDP && inp.readUInt16BE(p.csumOff) === 0) return 'a UDP datagram without checksum translated (IPv6 requires one)';
  if (p.proto === UDP && out.readUInt16BE(p.csumOff) === 0) return 'UDP checksum became 0';
  // the pseudo-header's addresses plus the upper layer to the frame's end: exactly what the rewrite changed
  const sumOf = (b: Buffer): number => sum16(b, p.l4, b.length, sum16(b, 22, 54));
  if (residue(sumOf(out)) !== residue(sumOf(inp))) return `${name} checksum not updated by what changed (pseudo-header included)`;
  if (p.frag === FRAG_NONE && l4ChecksumValid6(inp, p) && !l4ChecksumValid6(out, p)) return `${name} checksum invalid`;
  return null;
}

/**
 * Why `out` is not the ICMPv6 Packet Too Big the uplink answers `inp` with
 * (lib/hop6.h: a packet to a host v6 address, too big for the container it is
 * published to), or null when it is one: back out of the uplink with the MACs
 * swapped, from the address the client sent to, to the client, hop limit 255,
 * 1280 bytes of IPv6, type 2 code 0, an MTU of at least 1280 that the refused
 * packet exceeds, the first 1232 bytes of the packet as it came quoted, and
 * a valid checksum.
 */
function ptb6(spec: ProgSpec, inp: Buffer, out: Buffer): string | null {
  if (spec.name !== 'berth_up_in') return 'only the uplink answers Packet Too Big';
  if (out.length !== 14 + 1280 || out.readUInt16BE(12) !== ETH_IPV6 || out[14] >> 4 !== 6) return 'no 1280-byte IPv6 packet';
  if (!out.subarray(0, 6).equals(inp.subarray(6, 12)) || !out.subarray(6, 12).equals(inp.subarray(0, 6))) return 'MACs not swapped';
  if (out[20] !== ICMP6 || out[21] !== 255 || out.readUInt16BE(18) !== 1240) return 'not ICMPv6 with hop limit 255 and payload 1240';
  if (!out.subarray(22, 38).equals(inp.subarray(38, 54)) || !out.subarray(38, 54).equals(inp.subarray(22, 38))) return 'addresses not the refused packet\'s, swapped';
  if (ip6s(inp, 38) !== UPLINK6) return 'answered a packet that was not to the host\'s v6 address';
  if (out[54] !== 2 || out[55] !== 0) return `ICMPv6 type ${out[54]} code ${out[55]}`;
  const mtu = out.readUInt32BE(58);
  if (mtu < 1280 || 40 + inp.readUInt16BE(18) <= mtu) return `MTU ${mtu} for a packet of ${40 + inp.readUInt16BE(18)} bytes`;
  if (!out.subarray(62).equals(inp.subarray(14, 14 + 1232))) return 'the quote is not the packet as it came';
  if (!l4ChecksumValid6(out, parse6(out))) return 'ICMPv6 checksum invalid';
  return null;
}

/** A v6 redirect: container to container as c2c6 says, a Packet Too Big answer, or a translation to a half the maps hold (judged by mismatch6). */
function judge6(env: Env, spec: ProgSpec, c: Case, out: Buffer, v: Verdicts): string | null {
  if (out.length === 14 + 1280 && out[20] === ICMP6 && out[54] === 2 && c.data.length > out.length) {
    const whyNot = ptb6(spec, c.data, out);
    if (whyNot !== null) return `redirected an ICMPv6 Packet Too Big that is wrong: ${whyNot}`;
    v.redirect['ptb6'] = (v.redirect['ptb6'] ?? 0) + 1;
    return null;
  }
  const whyC2c = c2c6(spec, c, out);
  if (whyC2c === null) {
    v.redirect['c2c6'] = (v.redirect['c2c6'] ?? 0) + 1;
    return null;
  }
  const p = parse6(c.data);
  if (!p.ok) return `redirected IPv6 that is no well-formed datagram (not c2c: ${whyC2c})`;
  const cands = candidates6(env, c, p);
  if (!cands.length) return `redirected IPv6 (not c2c: ${whyC2c}) but the maps hold no v6 flow for it`;
  const why: string[] = [];
  for (const e of cands) {
    const m = mismatch6(c.data, out, p, e);
    if (m !== null) {
      why.push(m);
      continue;
    }
    if (spec.name === 'berth_veth_ingress') {
      const src = EP_BY_IFINDEX.get(c.ifindex);
      if (!src) return 'translated IPv6 from an interface berth has not programmed';
      if (ip6s(c.data, 22) !== norm6(addr6Of(src))) return "translated IPv6 from a source that is not the container's own addr6 (spoofed)";
    }
    v.redirect[e.kind] = (v.redirect[e.kind] ?? 0) + 1;
    return null;
  }
  return `IPv6 redirect matches no candidate: c2c: ${whyC2c}; ${why.join('; ')}`;
}

/** null when the output is one the oracle allows; else why not. */
function judge(env: Env, spec: ProgSpec, c: Case, retval: number, out: Buffer, v: Verdicts): string | null {
  const p = parse(c.data);
  if (p.ethType === ETH_IP && !p.ip) v.malformed++;
  if (retval === TC_ACT_UNSPEC || retval === TC_ACT_OK) {
    v.pass++;
    if (spec.name === 'berth_br_out' && c.how.startsWith('routed-') && c.iif !== 0 && c.iif !== c.ifindex && p.ethType === ETH_IP) v.routedIn++;
    if (!out.equals(c.data)) {
      let i = 0;
      while (i < out.length && out[i] === c.data[i]) i++;
      return `passed with bytes changed (first at ${i})`;
    }
    return spec.closed(c, p, retval, null);
  }
  if (retval === TC_ACT_SHOT) {
    v.drop++;
    return null;
  }
  if (retval !== TC_ACT_REDIRECT) return `return code ${retval}`;
  if (!spec.redirects) return 'redirected (this program never redirects)';
  if (p.ethType === ETH_IPV6) return judge6(env, spec, c, out, v);
  if (!p.ip) return 'redirected a frame that is no well-formed IPv4 datagram (the kernel itself would drop it)';
  const cands = candidates(env, spec, c, p);
  if (!cands.length) return `redirected, but no container owns ${ip4str(p.daddr)} and the maps hold no flow for ${tupleStr(p)}`;
  const why: string[] = [];
  for (const e of cands) {
    const m = mismatch(c.data, out, p, e);
    if (m === null) {
      const k = e.kind === 'ct' && p.generic ? 'ct-portless' : e.kind; // GRE, SCTP, DCCP ... apart
      v.redirect[k] = (v.redirect[k] ?? 0) + 1;
      return spec.closed(c, p, retval, e.kind);
    }
    why.push(m);
  }
  return `redirect matches no candidate: ${why.join('; ')}`;
}

const REV_KEY = (k: Buffer): Buffer => {
  const r = Buffer.alloc(KEY_LEN);
  k.copy(r, K.saddr!, K.daddr!, K.daddr! + 16);
  k.copy(r, K.daddr!, K.saddr!, K.saddr! + 16);
  k.copy(r, K.sport!, K.dport!, K.dport! + 2);
  k.copy(r, K.dport!, K.sport!, K.sport! + 2);
  r[K.proto!] = k[K.proto!]!;
  r[K.family!] = k[K.family!]!;
  return r;
};

/** Both halves of every flow agree; then back to the seeded flows. Returns the problems found. */
async function endRound(env: Env): Promise<string[]> {
  const all = await env.dp.maps.ct.dump();
  const byKey = new Map(all.map(([k, e]) => [k.toString('hex'), e]));
  const problems: string[] = [];
  for (const [k, e] of all) {
    const rw = e.subarray(CT.rewrite, CT.rewrite + KEY_LEN);
    const other = byKey.get(REV_KEY(rw).toString('hex'));
    const kt = tupleOf(k);
    const ks = keyStr(k);
    if (!other) {
      problems.push(`half ${ks} -> ${keyStr(rw)} has no other half`);
    } else {
      if (!REV_KEY(other.subarray(CT.rewrite, CT.rewrite + KEY_LEN)).equals(k.subarray(0, KEY_LEN)))
        problems.push(`half ${ks}: its other half rewrites to ${keyStr(other, CT.rewrite)}`);
      if (((e[CT.flags] ^ other[CT.flags]) & 0xff) !== CtFlags.REPLY) problems.push(`half ${ks}: flags ${e[CT.flags]} and ${other[CT.flags]}`);
    }
    const icmpOf = familyOf(k) === AF_INET6 ? ICMP6 : ICMP;
    if (kt.proto === icmpOf && (kt.sport !== kt.dport || rw.readUInt16BE(K.sport!) !== rw.readUInt16BE(K.dport!))) problems.push(`ICMP half ${ks} with two identifiers`);
    if (k.readUInt16BE(K.family! + 1) !== 0) problems.push(`half ${ks}: key padding not zero`);
    const v4 = k.subarray(0, 12).equals(V4MAPPED) && k.subarray(16, 28).equals(V4MAPPED) && k[K.family!] === 2;
    const v6 = k[K.family!] === AF_INET6 && !k.subarray(0, 12).equals(V4MAPPED) && !k.subarray(16, 28).equals(V4MAPPED);
    if (!v4 && !v6) problems.push(`half ${ks}: neither an IPv4 key (::ffff:a.b.c.d, AF_INET) nor an IPv6 one (AF_INET6)`);
    if (familyOf(rw) !== k[K.family!]) problems.push(`half ${ks}: rewritten to another family (${keyStr(rw)})`);
  }
  // the fragments' records go with the round's flows
  const recs = (await env.dp.maps.frag.dump()).map(([k]) => k);
  if (recs.length) await env.dp.maps.frag.deleteBatch(recs);
  fragHistory.clear();
  fragHistory6.clear();
  const stale = all.map(([k]) => k).filter((k) => !env.seeded.has(k.toString('hex')));
  if (stale.length) await env.dp.maps.ct.deleteBatch(stale);
  await clearUnassuredRecord(env);
  return problems;
}

/** Empty berth_ct_ring and its positions: no flow recorded, none to evict. */
async function clearUnassuredRecord(env: Env): Promise<void> {
  const ring = env.dp.maps.ctRing;
  const keys = Array.from({ length: ring.maxEntries }, (_, i) => le32(i));
  await ring.updateBatch(keys, keys.map(() => Buffer.alloc(ring.valueSize)));
  env.dp.maps.ctPos.update(le32(0), Buffer.alloc(env.dp.maps.ctPos.valueSize));
}

function countersOf(env: Env, spec: ProgSpec): bigint[] {
  const drops = new Array<bigint>(DROP_REASON_NAMES.length).fill(0n);
  for (const { ifindex, direction } of spec.counted()) {
    const v = env.dp.maps.counters.lookup(counterKeyCodec.encode({ ifindex, direction }));
    if (!v) continue;
    const s = sumPerCpuCounters(v, env.dp.cpus);
    s.drop.forEach((d, i) => (drops[i] += d.packets));
  }
  return drops;
}

const hex = (b: Buffer): string => b.toString('hex');

async function fuzz(t: Test, env: Env, spec: ProgSpec): Promise<void> {
  const prog = spec.prog(env.dp);
  const r = new Rng(Rng.derive(SEED, spec.name));
  const v: Verdicts = { ran: 0, refused: 0, pass: 0, drop: 0, redirect: {}, valid: 0, mutated: 0, random: 0, malformed: 0, routedIn: 0 };
  const failures: Failure[] = [];
  const drops0 = countersOf(env, spec);
  const created0 = sumGlobalStats(env.dp.maps.stats.lookup(Buffer.alloc(4))!, env.dp.cpus).ct_created;
  const t0 = process.hrtime.bigint();
  let index = 0;
  const next = (): { c: Case; ops: string; i: number } => {
    const c = spec.gen(r, env);
    let ops = 'valid';
    const mix = r.u32() / 4294967296;
    if (mix < 0.1) {
      c.data = randomFrame(r);
      ops = 'random';
      v.random++;
    } else if (mix < 0.75) {
      const m = mutate(r, c.data);
      c.data = m.frame;
      ops = m.ops.join('+');
      v.mutated++;
    } else {
      v.valid++;
    }
    noteFirstFragment(c.data);
    noteFirstFragment6(c.data);
    return { c, ops, i: index++ };
  };
  const fail = (f: Failure): void => {
    failures.push(f);
  };

  const judgeAll = (batch: Array<{ c: Case; ops: string; i: number }>, res: TestRunBatchResult[]): void => {
    for (let k = 0; k < batch.length; k++) {
      const { c, ops, i } = batch[k];
      const r = res[k];
      if (r.retval === undefined) {
        // not through the program: the kernel builds no skb of it
        if (r.code === 'EINVAL' && kernelRefuses(c.data)) v.refused++;
        else fail({ index: i, why: `the kernel refused the run: ${r.code}`, c, ops });
        continue;
      }
      v.ran++;
      const why = judge(env, spec, c, r.retval, r.data, v);
      if (why) fail({ index: i, why, c, ops, out: r.data, retval: r.retval });
    }
  };
  while (v.ran < COUNT && failures.length < MAX_FAILURES) {
    // one round: BATCH-sized runs, PARALLEL of them in flight, the next
    // generated while the kernel runs the last; judged as each comes back
    const want = Math.min(COUNT - v.ran, ROUND);
    let queued = 0;
    const inflight: Array<Promise<void>> = [];
    while (queued < want) {
      const batch: Array<{ c: Case; ops: string; i: number }> = [];
      while (batch.length < BATCH && queued < want) {
        const x = next();
        batch.push(x);
        if (!kernelRefuses(x.c.data)) queued++;
      }
      inflight.push(prog.testRunBatch(batch.map(({ c }) => ({ data: c.data, ctx: ctxFor(c.ifindex, c.iif) }))).then((res) => judgeAll(batch, res)));
      if (inflight.length >= PARALLEL) await inflight.shift();
    }
    await Promise.all(inflight);
    for (const pr of await endRound(env)) fail({ index, why: `conntrack: ${pr}`, c: { data: Buffer.alloc(0), ifindex: 0, iif: 0, how: '' }, ops: '' });
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const drops = countersOf(env, spec).map((d, i) => d - drops0[i]);
  const created = sumGlobalStats(env.dp.maps.stats.lookup(Buffer.alloc(4))!, env.dp.cpus).ct_created - created0;
  const redirected = Object.values(v.redirect).reduce((a, b) => a + b, 0);
  const pct = (n: number): string => `${((100 * n) / Math.max(1, v.ran)).toFixed(1)}%`;
  t.comment(`${spec.name}: ${v.ran} packets in ${secs.toFixed(1)} s (${Math.round(v.ran / secs)}/s), seed ${SEED}; ` +
    `${v.valid} valid, ${v.mutated} mutated, ${v.random} random; ${v.refused} more refused by the kernel (too short/long to build an skb)`);
  t.comment(`  verdicts: pass ${v.pass} (${pct(v.pass)}), drop ${v.drop} (${pct(v.drop)}), redirect ${redirected} (${pct(redirected)})` +
    (redirected ? ` [${Object.entries(v.redirect).map(([k, n]) => `${k} ${n}`).join(', ')}]` : '') + `; flows created ${created}`);
  const reasons = drops.map((d, i) => [DROP_REASON_NAMES[i], d] as const).filter(([, d]) => d > 0n);
  if (reasons.length) t.comment(`  drops by reason: ${reasons.map(([n, d]) => `${n} ${d}`).join(', ')}`);
  t.comment(`  IPv4 frames that are no well-formed datagram (version, IHL, header checksum, tot_len): ${v.malformed}, none rewritten`);
  for (const f of failures.slice(0, MAX_FAILURES)) {
    t.fail(`${spec.name} packet ${f.index}: ${f.why}`, {
      seed: SEED, program: spec.name, index: f.index, ifindex: f.c.ifindex, ingress_ifindex: f.c.iif, kind: f.c.how, mutations: f.ops,
      retval: f.retval, input: hex(f.c.data), output: f.out ? hex(f.out) : undefined,
      repeat: `BERTH_FUZZ_SEED=${SEED} BERTH_FUZZ_PROGRAMS=${spec.name} npx tap dist/test/bpf/fuzz.test.js`,
    });
  }
  t.equal(failures.length, 0, `${spec.name}: every output dropped, passed unchanged or rightly rewritten (seed ${SEED})`);
  t.ok(v.ran >= COUNT || failures.length >= MAX_FAILURES, `${spec.name}: ${v.ran} packets ran`);
  if (COUNT >= 20000) {
    // the fuzzer reached the paths it is meant to (a quiet stream would prove nothing)
    t.ok(v.pass > 0 && v.drop > 0, `${spec.name}: passes and drops seen`);
    if (spec.name === 'berth_veth_ingress') {
      t.ok(v.redirect.c2c > 0 && v.redirect.ct > 0 && v.redirect.icmp > 0, 'ingress: container-to-container, tracked and ICMP-error redirects seen');
      t.ok(v.redirect['ct-portless'] > 0, 'ingress: tracked flows without ports (GRE, SCTP, DCCP, UDP-Lite) translated');
      t.ok(created > 0n, 'ingress: new flows created');
      t.ok((v.redirect.c2c6 ?? 0) > 0, 'ingress: IPv6 container-to-container redirects seen');
      t.ok((v.redirect.ct6 ?? 0) > 0 && (v.redirect.icmp6 ?? 0) > 0 && (v.redirect.frag6 ?? 0) > 0, 'ingress: NAT66 tracked, ICMPv6-error and later-fragment redirects seen');
    }
    if (spec.name === 'berth_br_out') t.ok(v.routedIn > 0, `bridge egress: ${v.routedIn} packets let into the routed network from elsewhere, each one the oracle allows`);
    if (spec.name === 'berth_up_in') {
      t.ok(v.redirect.ct > 0 && v.redirect.icmp > 0, 'uplink: tracked and ICMP-error redirects seen');
      t.ok(v.redirect['ct-portless'] > 0, 'uplink: replies of flows without ports translated');
      t.ok((v.redirect.ct6 ?? 0) > 0 && (v.redirect.icmp6 ?? 0) > 0, 'uplink: NAT66 tracked and ICMPv6-error redirects seen');
      t.ok(created > 0n, 'uplink: new published flows created');
    }
  }
}

// ---- seeding real flows ---------------------------------------------------------------------

async function seed(t: Test, env: Env): Promise<void> {
  const { dp } = env;
  const run = async (prog: BpfProgram, ifindex: number, f: Buffer): Promise<Buffer> => {
    const res = await prog.testRun({ data: f, ctx: ctxFor(ifindex, 0) });
    t.equal(res.retval, TC_ACT_REDIRECT, `seed: ${tupleStr(parse(f))} redirected`);
    return res.data;
  };
  const from = (ep: Ep, tu: Omit<Tuple, 'saddr'>, noCsum = false): Promise<Buffer> =>
    run(dp.progs.ingress, ep.ifindex, ethFrame(ep.net.mac, ep.mac, ETH_IP, ipv4Packet({ src: ep.addr, dst: tu.daddr, proto: tu.proto }, build({ saddr: ep.addr, ...tu }, noCsum))));
  const inbound = (tu: Tuple): Promise<Buffer> =>
    run(dp.progs.uplink, uplinkIfindex, ethFrame(uplinkMac, CLIENT_MAC, ETH_IP, ipv4Packet({ src: tu.saddr, dst: tu.daddr, proto: tu.proto }, build(tu))));
  function build(tu: Tuple, noCsum = false): Buffer {
    if (tu.proto === TCP) return tcpSegment(tu.saddr, tu.daddr, tu.sport, tu.dport, 0x02, Buffer.from('seed'));
    if (tu.proto === UDP) return udpDatagram(tu.saddr, tu.daddr, tu.sport, tu.dport, Buffer.from('seed'), noCsum);
    if (tu.proto === DCCP) return dccpPacket(tu.saddr, tu.daddr, 5001, 5002, Buffer.from('seed'));
    if (tu.proto === UDPLITE) return udpLiteDatagram(tu.saddr, tu.daddr, 6001, 6002, Buffer.from('seed'), 8);
    if (tu.proto === GRE) return Buffer.from([0, 0, 0x65, 0x58, 1, 2, 3, 4]);
    if (tu.proto === SCTP) return Buffer.from('9c4000500000000112345678', 'hex');
    return icmpEcho(8, tu.sport, 1, Buffer.from('seed'));
  }
  const src = (b: Buffer): string => `${ip4str(b.readUInt32BE(26))}:${b.readUInt16BE(34)}`;
  // routed: the container's flows out are passed untranslated, tracked
  const routedOut = async (tu: Omit<Tuple, 'saddr'>): Promise<void> => {
    const f = ethFrame(R1.net.mac, R1.mac, ETH_IP, ipv4Packet({ src: R1.addr, dst: tu.daddr, proto: tu.proto }, build({ saddr: R1.addr, ...tu })));
    const res = await dp.progs.ingress.testRun({ data: f, ctx: ctxFor(R1.ifindex, 0) });
    t.equal(res.retval, TC_ACT_UNSPEC, `seed: routed ${tupleStr(parse(f))} passed`);
    t.ok(res.data.equals(f), 'seed: untranslated');
  };
  await routedOut({ daddr: OUT_NEIGH, sport: 41000, dport: 443, proto: TCP });
  await routedOut({ daddr: OUT_NO_NEIGH, sport: 41001, dport: 53, proto: UDP });

  // masquerade: TCP (neighbour known: out with MACs), UDP (no neighbour), ICMP echo, UDP without checksum, from the icc=false network
  t.equal(src(await from(A1, { daddr: OUT_NEIGH, sport: 61001, dport: 80, proto: TCP })), `${ip4str(UPLINK)}:61001`, 'seed: masquerade keeps a free port of the range');
  await from(B1, { daddr: OUT_NO_NEIGH, sport: 61002, dport: 53, proto: UDP });
  await from(A2, { daddr: OUT_NEIGH, sport: 61003, dport: 61003, proto: ICMP });
  await from(A3, { daddr: OUT_NEIGH, sport: 61004, dport: 123, proto: UDP }, true);
  await from(B2, { daddr: OUT_NEIGH, sport: 61008, dport: 443, proto: TCP });
  // the masqueraded TCP flow answered
  await inbound({ saddr: OUT_NEIGH, daddr: UPLINK, sport: 80, dport: 61001, proto: TCP });
  // published: TCP on any address, UDP on the uplink's, TCP on another host address, a port of a range
  t.equal(src(await inbound({ saddr: CLIENT, daddr: UPLINK, sport: 50001, dport: 8080, proto: TCP })), `${ip4str(CLIENT)}:50001`, 'seed: DNAT keeps the client');
  await inbound({ saddr: CLIENT, daddr: UPLINK, sport: 50002, dport: 5353, proto: UDP });
  await inbound({ saddr: CLIENT2, daddr: HOST2, sport: 50003, dport: 8443, proto: TCP });
  await inbound({ saddr: CLIENT, daddr: UPLINK, sport: 50004, dport: 9001, proto: TCP });
  // a flow of the client the policy will deny: its packets are dropped from then on
  await inbound({ saddr: DENIED, daddr: UPLINK, sport: 50005, dport: 8080, proto: TCP });
  // ... and the published TCP flow answered by its container
  await from(A1, { daddr: CLIENT, sport: 80, dport: 50001, proto: TCP });
  // hairpin: same network (client kept), another network (SNAT to the gateway), a container to itself
  t.equal(src(await from(A2, { daddr: UPLINK, sport: 61005, dport: 8080, proto: TCP })), `${ip4str(A2.addr)}:61005`, 'seed: hairpin in one network keeps the client');
  t.equal(src(await from(B2, { daddr: UPLINK, sport: 61006, dport: 8080, proto: TCP })), `${ip4str(A1.net.gw)}:61006`, 'seed: hairpin from another network comes from the gateway');
  await from(A1, { daddr: A1.net.gw, sport: 61007, dport: 8080, proto: TCP });
  // masquerade without ports (lib/generic.h): GRE (answered), SCTP, DCCP, UDP-Lite
  t.equal(src(await from(A1, { daddr: OUT_NEIGH, sport: 0, dport: 0, proto: GRE })).split(':')[0], ip4str(UPLINK), 'seed: GRE leaves with the uplink address');
  await inbound({ saddr: OUT_NEIGH, daddr: UPLINK, sport: 0, dport: 0, proto: GRE });
  await from(B1, { daddr: OUT_NEIGH, sport: 0, dport: 0, proto: SCTP });
  await from(A3, { daddr: OUT_NO_NEIGH, sport: 0, dport: 0, proto: DCCP });
  await from(B2, { daddr: OUT_NEIGH, sport: 0, dport: 0, proto: UDPLITE });

  // NAT66: masquerade of TCP (neighbour known), UDP (none) and ICMPv6 echo to the uplink's addr6, the TCP flow
  // answered; [::] publishes of TCP (answered) and UDP; hairpin in one network (client kept) and from another
  const run6 = async (prog: BpfProgram, ifindex: number, tu: Tuple6, dmac: Buffer, smac: Buffer): Promise<Buffer> => {
    const res = await prog.testRun({ data: seed6Frame(dmac, smac, tu), ctx: ctxFor(ifindex, 0) });
    t.equal(res.retval, TC_ACT_REDIRECT, `seed: ${tuple6Str(tu)} redirected`);
    return res.data;
  };
  const from6 = (ep: Ep, tu: Omit<Tuple6, 'saddr'>): Promise<Buffer> => run6(dp.progs.ingress, ep.ifindex, { saddr: norm6(addr6Of(ep)), ...tu }, ep.net.mac, ep.mac);
  const inbound6 = (tu: Tuple6): Promise<Buffer> => run6(dp.progs.uplink, uplinkIfindex, tu, uplinkMac, CLIENT_MAC);
  const src6 = (b: Buffer): string => `[${ip6s(b, 22)}]:${b.readUInt16BE(54)}`;
  t.equal(src6(await from6(A1, { daddr: OUT6_NEIGH, sport: 62001, dport: 80, proto: TCP })), `[${UPLINK6}]:62001`, 'seed: NAT66 masquerade to the uplink addr6, the port kept');
  await from6(B1, { daddr: OUT6_NO_NEIGH, sport: 62002, dport: 53, proto: UDP });
  await from6(A2, { daddr: OUT6_NEIGH, sport: 62003, dport: 62003, proto: ICMP6 });
  await inbound6({ saddr: OUT6_NEIGH, daddr: UPLINK6, sport: 80, dport: 62001, proto: TCP });
  t.equal(src6(await inbound6({ saddr: CLIENT6, daddr: UPLINK6, sport: 50011, dport: 8080, proto: TCP })), `[${CLIENT6}]:50011`, 'seed: [::] publish keeps the client');
  await inbound6({ saddr: CLIENT6B, daddr: UPLINK6, sport: 50012, dport: 7000, proto: UDP });
  await from6(A1, { daddr: CLIENT6, sport: 80, dport: 50011, proto: TCP });
  t.equal(src6(await from6(A2, { daddr: UPLINK6, sport: 62005, dport: 8080, proto: TCP })), `[${norm6(addr6Of(A2))}]:62005`, 'seed: v6 hairpin in one network keeps the client');
  await from6(B2, { daddr: UPLINK6, sport: 62006, dport: 8080, proto: TCP });

  // in key order: a hash map's dump order depends on its random hash seed
  for (const [k, e] of (await dp.maps.ct.dump()).sort(([a], [b]) => Buffer.compare(a, b))) {
    env.seeded.add(k.toString('hex'));
    env.flows.push({ key: k, entry: e });
  }
  t.equal(env.flows.filter((f) => familyOf(f.key) === 2).length, 2 * 19, 'seed: 19 IPv4 flows, two halves each');
  t.equal(env.flows.filter((f) => familyOf(f.key) === AF_INET6).length, 2 * 7, 'seed: 7 IPv6 flows (AF_INET6 keys), two halves each');
  denyClient(env);
  t.same(await endRound(env), [], 'seed: every half has its other half');
}

/** A whole v6 packet of tuple tu, its checksum right: the seeded flows' and the self-test's. */
function seed6Frame(dmac: Buffer, smac: Buffer, tu: Tuple6): Buffer {
  const data = Buffer.from('seed');
  const up = tu.proto === TCP ? tcp6(tu.sport, tu.dport, 0x02, 1, 0, 64240, data) : tu.proto === UDP ? udp6(tu.sport, tu.dport, data) : icmp6(128, 0, ((tu.sport << 16) | 1) >>> 0, data);
  const f = frame6({ src: tu.saddr, dst: tu.daddr, hop: 64 }, [], up);
  fixL4Checksum6(f);
  dmac.copy(f, 0);
  smac.copy(f, 6);
  return f;
}

// ---- the oracle, checked against berth's real rewrites ------------------------------------------

/** The oracle accepts what berth really does, and refuses each way of doing it wrong. */
async function oracleSelfTest(t: Test, env: Env, specs: ProgSpec[]): Promise<void> {
  const spec = (name: string): ProgSpec => specs.find((s) => s.name === name)!;
  const v = (): Verdicts => ({ ran: 0, refused: 0, pass: 0, drop: 0, redirect: {}, valid: 0, mutated: 0, random: 0, malformed: 0, routedIn: 0 });
  const fixIp = (b: Buffer): Buffer => {
    b.writeUInt16BE(0, 24);
    b.writeUInt16BE(csumOf(sum16(b, 14, 34)), 24);
    return b;
  };
  const check = async (name: string, sp: ProgSpec, c: Case, spoils: Array<[string, (b: Buffer) => void, RegExp]>): Promise<void> => {
    const res = await sp.prog(env.dp).testRun({ data: c.data, ctx: ctxFor(c.ifindex, c.iif) });
    t.equal(res.retval, TC_ACT_REDIRECT, `${name}: redirected`);
    t.equal(judge(env, sp, c, res.retval, res.data, v()), null, `${name}: berth's rewrite is accepted`);
    for (const [what, spoil, why] of spoils) {
      const b = Buffer.from(res.data);
      spoil(b);
      t.match(judge(env, sp, c, res.retval, b, v()), why, `${name}, ${what}: refused`);
    }
  };
  const ingress = spec('berth_veth_ingress');
  const from = (ep: Ep, tu: Tuple, l4: Buffer, ttl = 64): Case =>
    ({ data: ethFrame(ep.net.mac, ep.mac, ETH_IP, ipv4Packet({ src: tu.saddr, dst: tu.daddr, proto: tu.proto, ttl }, l4)), ifindex: ep.ifindex, iif: 0, how: 'self-test' });
  const masq = { saddr: A1.addr, daddr: OUT_NEIGH, sport: 61001, dport: 80, proto: TCP };
  const tcpOut = from(A1, masq, tcpSegment(masq.saddr, masq.daddr, 61001, 80, 0x10, Buffer.from('payload')));
  await check('masqueraded TCP', ingress, tcpOut, [
    ['source port one off, checksums made right', (b) => (b.writeUInt16BE(b.readUInt16BE(34) + 1, 34), fixL4Checksum(b)), /byte 3[45]/],
    ['TCP checksum one off', (b) => (b[51] ^= 1), /TCP checksum/],
    ['IPv4 header checksum one off', (b) => (b[25] ^= 1), /IPv4 header checksum/],
    ['TTL not decremented', (b) => ((b[22] = 64), fixIp(b)), /byte 22/],
    ['a payload byte changed', (b) => (b[b.length - 1] ^= 0x40), /byte \d+/],
    ['destination MAC not the route\'s', (b) => (b[0] ^= 2), /byte 0/],
  ]);
  const udp0 = { saddr: A3.addr, daddr: OUT_NEIGH, sport: 61004, dport: 123, proto: UDP };
  await check('masqueraded UDP without a checksum', ingress, from(A3, udp0, udpDatagram(udp0.saddr, udp0.daddr, 61004, 123, Buffer.from('x'), true)), [
    ['checksum filled in', (b) => b.writeUInt16BE(0x1234, 40), /UDP checksum 0/],
  ]);
  // tracked without ports: the addresses, TTL and IP checksum change, and for DCCP its checksum; nothing else
  const greOut = { saddr: A1.addr, daddr: OUT_NEIGH, sport: 0, dport: 0, proto: GRE };
  await check('masqueraded GRE', ingress, from(A1, greOut, Buffer.from([0, 0, 0x65, 0x58, 9, 9, 9, 9])), [
    ['a GRE header byte changed', (b) => (b[34] ^= 1), /byte 34/],
    ['the "ports" zeroed as if it had some', (b) => b.writeUInt32BE(0, 34 + 4), /byte 3[89]/],
    ['IPv4 header checksum one off', (b) => (b[25] ^= 1), /IPv4 header checksum/],
    ['source left private', (b) => (b.writeUInt32BE(A1.addr, 26), fixIp(b)), /byte 2[6-9]/],
  ]);
  const dccpOut = { saddr: A3.addr, daddr: OUT_NO_NEIGH, sport: 0, dport: 0, proto: DCCP };
  await check('masqueraded DCCP', ingress, from(A3, dccpOut, dccpPacket(A3.addr, OUT_NO_NEIGH, 5001, 5002, Buffer.from('x'))), [
    ['DCCP checksum left as it came', (b) => b.writeUInt16BE(dccpPacket(A3.addr, OUT_NO_NEIGH, 5001, 5002, Buffer.from('x')).readUInt16BE(6), 40), /DCCP checksum/],
    ['DCCP checksum one off', (b) => (b[41] ^= 1), /DCCP checksum/],
    ['a DCCP port changed, checksums made right', (b) => (b.writeUInt16BE(5009, 34), fixL4Checksum(b)), /byte 3[45]/],
  ]);
  const b1 = { saddr: A1.addr, daddr: A2.addr, sport: 1, dport: 2, proto: UDP };
  await check('container to container', ingress, from(A1, b1, udpDatagram(b1.saddr, b1.daddr, 1, 2, Buffer.from('x'))), [
    ['the source MAC changed too', (b) => (b[6] ^= 2), /no candidate/],
    ['the TTL decremented', (b) => ((b[22] -= 1), fixIp(b)), /no candidate/],
  ]);
  // an ICMP error from the uplink about the masqueraded flow, as it left (UPLINK:61001 -> OUT_NEIGH:80)
  const up = spec('berth_up_in');
  const left = { saddr: UPLINK, daddr: OUT_NEIGH, sport: 61001, dport: 80, proto: TCP };
  const quoted = ipv4Packet({ src: left.saddr, dst: left.daddr, proto: TCP }, tcpSegment(left.saddr, left.daddr, 61001, 80, 0x10, Buffer.alloc(0))).subarray(0, 28);
  const err: Case = { data: ethFrame(uplinkMac, CLIENT_MAC, ETH_IP, ipv4Packet({ src: ROUTER, dst: UPLINK, proto: ICMP }, icmpMessage(11, 0, 0, quoted))), ifindex: uplinkIfindex, iif: 0, how: 'self-test' };
  await check('ICMP error translated back', up, err, [
    ['quoted source port one off', (b) => b.writeUInt16BE(b.readUInt16BE(62) ^ 1, 62), /byte 6[23]/],
    ['quoted header checksum one off', (b) => (b[53] ^= 1), /quoted IPv4 header checksum|ICMP checksum/],
    ['ICMP checksum one off', (b) => (b[37] ^= 1), /ICMP checksum/],
    ['outer source rewritten (the router keeps its own)', (b) => (b.writeUInt32BE(OUT_NEIGH, 26), fixIp(b)), /byte 2[6-9]/],
  ]);
  // NAT66: the masqueraded v6 TCP flow, and an ICMPv6 error about it from a router on the uplink
  const masq6: Tuple6 = { saddr: norm6(addr6Of(A1)), daddr: OUT6_NEIGH, sport: 62001, dport: 80, proto: TCP };
  const tcp6Out: Case = { data: seed6Frame(A1.net.mac, A1.mac, masq6), ifindex: A1.ifindex, iif: 0, how: 'self-test' };
  await check('masqueraded v6 TCP', ingress, tcp6Out, [
    ['TCP checksum one off', (b) => (b[54 + 17] ^= 1), /TCP checksum/],
    ['TCP checksum right without the pseudo-header\'s change', (b) => b.writeUInt16BE(tcp6Out.data.readUInt16BE(54 + 16), 54 + 16), /TCP checksum/],
    ['source port one off, checksum made right', (b) => (b.writeUInt16BE(b.readUInt16BE(54) ^ 1, 54), fixL4Checksum6(b)), /byte 5[45]/],
    ['source address left private, checksum made right', (b) => (ip6Buf(masq6.saddr).copy(b, 22), fixL4Checksum6(b)), /byte (2[2-9]|3[0-7])/],
    ['hop limit not decremented', (b) => (b[21] = 64), /byte 21/],
    ['a payload byte changed', (b) => (b[b.length - 1] ^= 0x40), /byte \d+/],
  ]);
  const left6: Tuple6 = { saddr: UPLINK6, daddr: OUT6_NEIGH, sport: 62001, dport: 80, proto: TCP };
  const quoted6 = seed6Frame(uplinkMac, CLIENT_MAC, left6).subarray(14, 14 + 48);
  const err6 = frame6({ src: ROUTER6, dst: UPLINK6, hop: 64 }, [], icmp6(3, 0, 0, quoted6));
  fixL4Checksum6(err6);
  uplinkMac.copy(err6, 0);
  CLIENT_MAC.copy(err6, 6);
  await check('ICMPv6 error translated back', up, { data: err6, ifindex: uplinkIfindex, iif: 0, how: 'self-test' }, [
    ['ICMPv6 checksum one off', (b) => (b[54 + 3] ^= 1), /ICMPv6 checksum/],
    ['quoted source port one off', (b) => b.writeUInt16BE(b.readUInt16BE(102) ^ 1, 102), /byte 10[23]/],
    ['outer source rewritten (the router keeps its own)', (b) => (ip6Buf(OUT6_NEIGH).copy(b, 22), fixL4Checksum6(b)), /byte (2[2-9]|3[0-7])/],
  ]);
  // a v6 datagram to the [::] UDP publish too big for the container's veth (MTU 1500): the Packet Too Big answer
  const big6 = frame6({ src: CLIENT6B, dst: UPLINK6, hop: 64 }, [], udp6(50012, 7000, Buffer.alloc(1600, 0x5a)));
  fixL4Checksum6(big6);
  uplinkMac.copy(big6, 0);
  CLIENT_MAC.copy(big6, 6);
  await check('Packet Too Big for a v6 publish', up, { data: big6, ifindex: uplinkIfindex, iif: 0, how: 'self-test' }, [
    ['ICMPv6 checksum one off', (b) => (b[54 + 3] ^= 1), /Packet Too Big that is wrong: ICMPv6 checksum/],
    ['a quoted byte changed, checksum made right', (b) => ((b[200] ^= 1), fixL4Checksum6(b)), /the quote/],
    ['MTU above the refused packet, checksum made right', (b) => (b.writeUInt32BE(9000, 58), fixL4Checksum6(b)), /MTU 9000/],
    ['sent from another address, checksum made right', (b) => (ip6Buf(OUT6_NEIGH).copy(b, 22), fixL4Checksum6(b)), /addresses/],
    ['MACs not swapped', (b) => uplinkMac.copy(b, 0), /MACs/],
  ]);
  // a datagram that fits, in a frame made longer than the MTU by bytes past its payload length: translated (the kernel trims them), no Packet Too Big
  const fits6 = frame6({ src: CLIENT6B, dst: UPLINK6, hop: 64 }, [], udp6(50012, 7000, Buffer.alloc(1000, 0x5a)));
  fixL4Checksum6(fits6);
  uplinkMac.copy(fits6, 0);
  CLIENT_MAC.copy(fits6, 6);
  await check('a v6 datagram that fits, with 700 bytes past its end', up, { data: Buffer.concat([fits6, Buffer.alloc(700)]), ifindex: uplinkIfindex, iif: 0, how: 'self-test' }, []);
  // an IPv4 datagram that fits the container's veth (MTU 1500), in a frame made longer than that by bytes past its tot_len: translated (the kernel trims them), the bytes kept
  const fits4 = ethFrame(uplinkMac, CLIENT_MAC, ETH_IP, ipv4Packet({ src: CLIENT, dst: UPLINK, proto: UDP }, udpDatagram(CLIENT, UPLINK, 50013, 7000, Buffer.alloc(1000, 0x5a))));
  await check('an IPv4 datagram that fits, with 700 bytes past its end', up, { data: Buffer.concat([fits4, Buffer.alloc(700, 0xa5)]), ifindex: uplinkIfindex, iif: 0, how: 'self-test' }, [
    ['a byte past tot_len changed', (b) => (b[b.length - 1] ^= 1), /byte \d+/],
  ]);
  // a translated v6 packet judged by a flow the maps do not hold
  const stray6: Case = { ...tcp6Out, data: seed6Frame(A1.net.mac, A1.mac, { ...masq6, sport: 62999 }) };
  const r6 = await ingress.prog(env.dp).testRun({ data: tcp6Out.data, ctx: ctxFor(A1.ifindex, 0) });
  t.match(judge(env, ingress, stray6, TC_ACT_REDIRECT, r6.data, v()), /no v6 flow/, 'a v6 rewrite no conntrack half explains: refused');
  // verdicts the oracle refuses whatever the bytes
  const res = await ingress.prog(env.dp).testRun({ data: tcpOut.data, ctx: ctxFor(A1.ifindex, 0) });
  t.match(judge(env, ingress, tcpOut, TC_ACT_UNSPEC, res.data, v()), /passed with bytes changed/, 'a pass that changed the packet: refused');
  t.match(judge(env, ingress, tcpOut, 1, tcpOut.data, v()), /return code 1/, 'another return code: refused');
  t.match(judge(env, spec('berth_br_in'), tcpOut, TC_ACT_REDIRECT, res.data, v()), /never redirects/, 'a redirect from a program that has none: refused');
  const spoofed = from(A1, { ...b1, saddr: B1.addr }, udpDatagram(B1.addr, A2.addr, 1, 2, Buffer.from('x')));
  t.match(judge(env, ingress, spoofed, TC_ACT_UNSPEC, spoofed.data, v()), /spoofed/, "a container passing with a neighbour's address: refused");
  const fromOut: Case = { ...spoofed, ifindex: uplinkIfindex };
  fromOut.data = ethFrame(uplinkMac, CLIENT_MAC, ETH_IP, ipv4Packet({ src: CLIENT, dst: A1.addr, proto: UDP }, udpDatagram(CLIENT, A1.addr, 1, 80, Buffer.from('x'))));
  t.match(judge(env, up, fromOut, TC_ACT_UNSPEC, fromOut.data, v()), /container destination/, 'a container address reached from outside: refused');
  // the routed network: what its bridge lets in from elsewhere, and what not
  const brOut = spec('berth_br_out');
  const rnet = R1.net;
  const into = (tu: Tuple, iif: number): Case => ({
    data: ethFrame(R1.mac, rnet.mac, ETH_IP, ipv4Packet({ src: tu.saddr, dst: tu.daddr, proto: tu.proto }, tu.proto === TCP ? tcpSegment(tu.saddr, tu.daddr, tu.sport, tu.dport, 0x02, Buffer.alloc(0), 1) : udpDatagram(tu.saddr, tu.daddr, tu.sport, tu.dport, Buffer.from('x')))),
    ifindex: rnet.ifindex,
    iif,
    how: 'routed-self-test',
  });
  const pubIn = into({ saddr: CLIENT, daddr: R1.addr, sport: 40000, dport: 80, proto: TCP }, uplinkIfindex);
  t.equal((await brOut.prog(env.dp).testRun({ data: pubIn.data, ctx: ctxFor(rnet.ifindex, uplinkIfindex) })).retval, TC_ACT_UNSPEC, 'berth lets a routed published port in');
  t.equal(judge(env, brOut, pubIn, TC_ACT_UNSPEC, pubIn.data, v()), null, '... and the oracle agrees');
  const replyIn = into({ saddr: OUT_NEIGH, daddr: R1.addr, sport: 443, dport: 41000, proto: TCP }, uplinkIfindex);
  t.equal(judge(env, brOut, replyIn, TC_ACT_UNSPEC, replyIn.data, v()), null, 'the reply of a routed flow the maps hold: allowed');
  const unpub = into({ saddr: CLIENT, daddr: R1.addr, sport: 40000, dport: 81, proto: TCP }, uplinkIfindex);
  t.equal((await brOut.prog(env.dp).testRun({ data: unpub.data, ctx: ctxFor(rnet.ifindex, uplinkIfindex) })).retval, TC_ACT_SHOT, 'berth drops an unpublished port of the routed network');
  t.match(judge(env, brOut, unpub, TC_ACT_UNSPEC, unpub.data, v()), /forwarded into the network/, 'a pass to an unpublished port of the routed network: refused');
  const stray = into({ saddr: OUT_NEIGH, daddr: R1.addr, sport: 443, dport: 41999, proto: TCP }, uplinkIfindex);
  t.match(judge(env, brOut, stray, TC_ACT_UNSPEC, stray.data, v()), /forwarded into the network/, 'a pass of a tuple no routed flow holds: refused');
  t.match(judge(env, brOut, { ...pubIn, iif: A1.net.ifindex }, TC_ACT_UNSPEC, pubIn.data, v()), /forwarded into the network/, 'a pass from another network into the routed one: refused');
  // the policy's rule 1 denies DENIED anything of the routed network: its published port, ICMP
  for (const [what, tu] of [
    ['published port', { saddr: DENIED, daddr: R1.addr, sport: 40000, dport: 80, proto: TCP }],
    ['ICMP echo', { saddr: DENIED, daddr: R1.addr, sport: 7, dport: 7, proto: ICMP }],
  ] as const) {
    const c: Case = { ...into(tu, uplinkIfindex), data: ethFrame(R1.mac, rnet.mac, ETH_IP, ipv4Packet({ src: tu.saddr, dst: tu.daddr, proto: tu.proto }, tu.proto === TCP ? tcpSegment(tu.saddr, tu.daddr, tu.sport, tu.dport, 0x02, Buffer.alloc(0), 1) : icmpEcho(8, tu.sport, 1, Buffer.from('x')))) };
    t.equal((await brOut.prog(env.dp).testRun({ data: c.data, ctx: ctxFor(rnet.ifindex, uplinkIfindex) })).retval, TC_ACT_SHOT, `berth drops the denied client's ${what} into the routed network`);
    t.match(judge(env, brOut, c, TC_ACT_UNSPEC, c.data, v()), /forwarded into the network/, `a pass of the denied client's ${what} into the routed network: refused`);
  }
  const toRouted: Case = { ...fromOut, data: ethFrame(uplinkMac, CLIENT_MAC, ETH_IP, ipv4Packet({ src: CLIENT, dst: R1.addr, proto: UDP }, udpDatagram(CLIENT, R1.addr, 1, 81, Buffer.from('x')))) };
  t.equal(judge(env, up, toRouted, TC_ACT_UNSPEC, toRouted.data, v()), null, 'a routed container\'s address passed by the uplink (for its bridge): allowed');
  t.not(judge(env, up, toRouted, TC_ACT_REDIRECT, toRouted.data, v()), null, '... redirected: refused');
  t.same(await endRound(env), [], 'every half still has its other half');
}

// ---- the test -----------------------------------------------------------------------------------

removeStale();
removeInterfaces();
t.teardown(removeInterfaces);

t.test(`fuzz (seed ${SEED}, ${COUNT} packets per program)`, async (t) => {
  makeInterfaces();
  const pinRoot = `/sys/fs/bpf/berth-test-fuzz-${process.pid}`;
  Dataplane.reset(pinRoot);
  // the seeded flows and the port generator use this masquerade range (not the config's default)
  const dp = await Dataplane.openOrLoad({ pinRoot, ctMax: 65536, natPortMin: 61000, natPortMax: 65535 });
  const policy = native().openPinnedMap(`${pinRoot}/${MapName.POLICY}`);
  t.teardown(() => {
    policy.close();
    dp.close();
    Dataplane.reset(pinRoot);
  });
  const env: Env = { dp, policy, seeded: new Set(), flows: [] };
  program(env);
  t.comment(`seed ${SEED} (BERTH_FUZZ_SEED=${SEED} repeats this run), ${COUNT} packets per program, batches of ${BATCH}, ${PARALLEL} in flight`);
  await t.test('seeded flows', async (t) => seed(t, env));
  const specs = makeSpecs(env);
  await t.test('the oracle', async (t) => oracleSelfTest(t, env, specs));
  for (const name of ONLY ?? []) if (!specs.some((s) => s.name === name)) t.fail(`BERTH_FUZZ_PROGRAMS: no program ${name}`);
  for (const spec of specs) {
    if (ONLY && !ONLY.has(spec.name)) continue;
    await t.test(spec.name, async (t) => fuzz(t, env, spec));
  }
});
