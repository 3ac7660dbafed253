// Masquerade for every IP protocol (bpf/lib/generic.h), through
// BPF_PROG_TEST_RUN on the real objects: GRE, SCTP, ESP, DCCP and UDP-Lite
// leave with the uplink's address (addresses, TTL and IP header checksum
// changed, and for DCCP and UDP-Lite their pseudo-header checksum, recomputed
// here from scratch; nothing else), their replies come back into the
// container, a second container to the same remote and protocol is dropped
// and counted (nat_no_port), and what berth does not track is passed or
// dropped as the rules say.
//
// Interfaces: the test's own veth pairs (gp<pid>..., deleted in teardown):
//   U0/U1: U0 is the uplink (10.92.X.1/24, berth_uplink), U1 the network's
//          bridge_ifindex for the route lookup (forwarding on);
//   C0/C1: host veths of containers A and B.
// Redirects are never executed by BPF_PROG_TEST_RUN: nothing leaves the host.
import t, { Test } from 'tap';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { DEFAULT_SETTINGS } from '../../src/domain/config';
import { monotonicNs, sweep } from '../../src/engine/conntrack';
import { Dataplane } from '../../src/platform/dataplane';
import {
  CtFlags,
  CtState,
  Direction,
  DropReason,
  EndpointFlags,
  GlobalStats,
  OutKind,
  counterKeyCodec,
  ctEntryCodec,
  ctKeyCodec,
  CtEntry,
  endpointCodec,
  hostAddrValueCodec,
  ifindexKeyCodec,
  ipKeyCodec,
  netValueCodec,
  networkKeyCodec,
  sumGlobalStats,
  sumPerCpuCounters,
  uplinkCodec,
  zeroPerCpuCounters,
} from '../../src/platform/contract';
import { BpfProgram, skbTestContext } from '../../src/platform/native';
import { IP, checksum, eth, ipv4 } from '../lib/packets';

const TC_ACT_UNSPEC = 0xffffffff;
const TC_ACT_SHOT = 2;
const TC_ACT_REDIRECT = 7;
const GRE = 47;
const SCTP = 132;
const ESP = 50;
const DCCP = 33;
const UDPLITE = 136;
const ICMP = 1;

const tag = String(process.pid % 100000);
const X = 100 + (process.pid % 100); // 10.92.100-199.0/24: the uplink's subnet
const IF = { u0: `gp${tag}u0`, u1: `gp${tag}u1`, c0: `gp${tag}c0`, c1: `gp${tag}c1` };
const UPLINK_ADDR = `10.92.${X}.1`;
const REMOTE = `10.92.${X}.2`; // no neighbour entry: out by bpf_redirect_neigh
const REMOTE2 = `10.92.${X}.3`;
const REMOTE_MAC = '02:00:0a:5c:00:02';
const ROUTER = `10.92.${X}.9`;
const GW = `10.92.${X - 100}.1`;
const GW_MAC = '02:00:0a:5c:00:01';
const A = { addr: `10.92.${X - 100}.10`, mac: '02:00:0a:5c:00:0a', ifindex: 0 };
const B = { addr: `10.92.${X - 100}.11`, mac: '02:00:0a:5c:00:0b', ifindex: 0 };

function sh(cmd: string, args: string[], quiet = false): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    if (quiet) return '';
    throw e;
  }
}
const ifindexOf = (name: string): number => Number(fs.readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8').trim());
const macOf = (name: string): string => fs.readFileSync(`/sys/class/net/${name}/address`, 'utf8').trim();

function removeInterfaces(): void {
  sh('ip', ['link', 'del', IF.u0], true);
  sh('ip', ['link', 'del', IF.c0], true);
}
function makeInterfaces(): void {
  sh('ip', ['link', 'add', IF.u0, 'type', 'veth', 'peer', 'name', IF.u1]);
  sh('ip', ['link', 'add', IF.c0, 'type', 'veth', 'peer', 'name', IF.c1]);
  for (const n of Object.values(IF)) sh('ip', ['link', 'set', n, 'up']);
  sh('ip', ['addr', 'add', `${UPLINK_ADDR}/24`, 'dev', IF.u0]);
  fs.writeFileSync(`/proc/sys/net/ipv4/conf/${IF.u1}/forwarding`, '1');
}

// ---- frames -------------------------------------------------------------------

function pseudo(src: string, dst: string, proto: number, len: number): Buffer {
  const p = Buffer.alloc(12);
  IP(src).copy(p, 0);
  IP(dst).copy(p, 4);
  p[9] = proto;
  p.writeUInt16BE(len, 10);
  return p;
}

/** GRE version 0 carrying an Ethernet frame's bytes (as a gretap would): no checksum, no key. */
const gre = (data = Buffer.from('an encapsulated frame')): Buffer => Buffer.concat([Buffer.from([0, 0, 0x65, 0x58]), data]);
/** An SCTP common header and a DATA chunk; its CRC32c is whatever it is: berth never reads it. */
const sctp = (): Buffer => Buffer.concat([Buffer.from('9c4000500000000112345678', 'hex'), Buffer.from('0003001400000001000000000000000068690000', 'hex')]);

/** How far a DCCP / UDP-Lite checksum reaches into seg (RFC 4340 9.2, RFC 3828 3.1). */
function coverage(proto: number, seg: Buffer): number {
  if (proto === UDPLITE) {
    const cov = seg.readUInt16BE(4);
    return cov === 0 ? seg.length : cov;
  }
  const cscov = seg[5] & 0x0f;
  return cscov === 0 ? seg.length : Math.min(seg.length, seg[4] * 4 + (cscov - 1) * 4);
}
/** The checksum of a DCCP or UDP-Lite segment between these addresses is right (recomputed from scratch). */
const pseudoCsumOk = (src: string, dst: string, proto: number, seg: Buffer): boolean =>
  checksum(Buffer.concat([pseudo(src, dst, proto, seg.length), seg.subarray(0, coverage(proto, seg))])) === 0;
function fillCsum(src: string, dst: string, proto: number, seg: Buffer): Buffer {
  seg.writeUInt16BE(0, 6);
  seg.writeUInt16BE(checksum(Buffer.concat([pseudo(src, dst, proto, seg.length), seg.subarray(0, coverage(proto, seg))])), 6);
  return seg;
}
/** DCCP-Data with 48-bit sequence numbers (X=1, a 16-byte header); cscov 0 covers everything. */
function dccp(src: string, dst: string, sport: number, dport: number, cscov = 0, data = Buffer.from('dccp data')): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h[4] = 4; // data offset, in words
  h[5] = cscov & 0x0f;
  h[8] = (2 << 1) | 1; // type 2 (Data), X
  h.writeUIntBE(0x010203040506, 10, 6);
  return fillCsum(src, dst, DCCP, Buffer.concat([h, data]));
}
/** UDP-Lite; cov 0 covers everything, 8 the header alone. */
function udplite(src: string, dst: string, sport: number, dport: number, cov = 0, data = Buffer.from('udp-lite data')): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt16BE(cov, 4);
  return fillCsum(src, dst, UDPLITE, Buffer.concat([h, data]));
}

const frame = (smac: string, dmac: string, src: string, dst: string, proto: number, l4: Buffer, frag?: number): Buffer =>
  eth(dmac, smac, 0x0800, ipv4({ src, dst, proto, frag }, l4));

const ipStr = (b: Buffer, o: number): string => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
const macStr = (b: Buffer, o: number): string => [...b.subarray(o, o + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
const l4Of = (f: Buffer): Buffer => f.subarray(14 + (f[14] & 15) * 4, 14 + f.readUInt16BE(16));

/**
 * out is `inp` with only these changed: the MACs (when given), source and
 * destination, TTL one less, the IP header checksum (valid), and the checksum
 * at csumAt of the transport (when given); everything else byte for byte.
 */
function checkRewrite(t: Test, inp: Buffer, out: Buffer, to: { src: string; dst: string; smac?: string; dmac?: string; csumAt?: number }, what: string): void {
  t.equal(out.length, inp.length, `${what}: same length`);
  t.equal(ipStr(out, 26), to.src, `${what}: source ${to.src}`);
  t.equal(ipStr(out, 30), to.dst, `${what}: destination ${to.dst}`);
  t.equal(out[22], inp[22] - 1, `${what}: TTL decremented (routed)`);
  t.equal(checksum(out.subarray(14, 14 + (out[14] & 15) * 4)), 0, `${what}: IP header checksum valid`);
  if (to.dmac) t.equal(macStr(out, 0), to.dmac, `${what}: destination MAC`);
  if (to.smac) t.equal(macStr(out, 6), to.smac, `${what}: source MAC`);
  const x = Buffer.from(out);
  if (!to.dmac) t.same(out.subarray(0, 12), inp.subarray(0, 12), `${what}: MACs left to the neighbour lookup`);
  inp.copy(x, 0, 0, 12); // MACs checked above
  inp.copy(x, 22, 22, 23);
  inp.copy(x, 24, 24, 34); // IP checksum, addresses: checked above
  const l4 = 14 + (inp[14] & 15) * 4;
  if (to.csumAt !== undefined) inp.copy(x, l4 + to.csumAt, l4 + to.csumAt, l4 + to.csumAt + 2);
  t.ok(x.equals(inp), `${what}: every other byte as it came`);
}

// ---- the dataplane ----------------------------------------------------------------

interface Env {
  dp: Dataplane;
  ifx: { u0: number; u1: number; c0: number; c1: number };
}

async function setup(t: Test, suffix: string, masqB = true): Promise<Env> {
  const pinRoot = `/sys/fs/bpf/berth-test-gp${process.pid}-${suffix}`;
  Dataplane.reset(pinRoot);
  const dp = await Dataplane.openOrLoad({ pinRoot, ctMax: 1024 });
  t.teardown(() => {
    dp.close();
    Dataplane.reset(pinRoot);
  });
  const ifx = { u0: ifindexOf(IF.u0), u1: ifindexOf(IF.u1), c0: ifindexOf(IF.c0), c1: ifindexOf(IF.c1) };
  A.ifindex = ifx.c0;
  B.ifindex = ifx.c1;
  const MASQ = EndpointFlags.ICC | EndpointFlags.MASQUERADE;
  for (const [e, flags] of [[A, MASQ], [B, masqB ? MASQ : EndpointFlags.ICC]] as const) {
    const v = endpointCodec.encode({ addr: e.addr, ifindex: e.ifindex, network_id: 1, flags, mac: e.mac });
    dp.maps.epByIfindex.update(ifindexKeyCodec.encode({ ifindex: e.ifindex }), v);
    dp.maps.epByIp.update(ipKeyCodec.encode({ addr: e.addr }), v);
  }
  dp.maps.net.update(
    networkKeyCodec.encode({ network_id: 1 }),
    netValueCodec.encode({ subnet: `10.92.${X - 100}.0`, mask: '255.255.255.0', gateway: GW, flags: MASQ, bridge_ifindex: ifx.u1, gw_mac: GW_MAC }),
  );
  dp.maps.uplink.update(ifindexKeyCodec.encode({ ifindex: ifx.u0 }), uplinkCodec.encode({ addr: UPLINK_ADDR, flags: 0, mac: macOf(IF.u0) }));
  dp.maps.hostAddr.update(ipKeyCodec.encode({ addr: UPLINK_ADDR }), hostAddrValueCodec.encode({ ifindex: ifx.u0, flags: 0 }));
  for (const ifindex of [ifx.u0, ifx.c0, ifx.c1])
    for (const direction of [0, 1]) dp.maps.counters.update(counterKeyCodec.encode({ ifindex, direction }), zeroPerCpuCounters(dp.cpus));
  return { dp, ifx };
}

const counters = (env: Env, ifindex: number, direction: number) => sumPerCpuCounters(env.dp.maps.counters.lookup(counterKeyCodec.encode({ ifindex, direction }))!, env.dp.cpus);
const stats = (env: Env): GlobalStats => sumGlobalStats(env.dp.maps.stats.lookup(Buffer.alloc(4))!, env.dp.cpus);
function ct(env: Env, saddr: string, daddr: string, proto: number, sport = 0, dport = 0): CtEntry | null {
  const v = env.dp.maps.ct.lookup(ctKeyCodec.encode({ saddr, daddr, sport, dport, proto }));
  return v ? ctEntryCodec.decode(v) : null;
}
async function run(prog: BpfProgram, data: Buffer, ifindex: number) {
  const r = await prog.testRun({ data, ctx: skbTestContext(ifindex) });
  return { retval: r.retval >>> 0, data: r.data };
}

// ---- tests ---------------------------------------------------------------------

removeInterfaces();
makeInterfaces();
t.teardown(removeInterfaces);

t.test('GRE: masqueraded out, the reply back in, a second container refused', async (t) => {
  const env = await setup(t, 'gre');
  const { ifx } = env;
  const upMac = macOf(IF.u0);
  const fromA = (dst: string, proto: number, l4: Buffer, frag?: number) => frame(A.mac, GW_MAC, A.addr, dst, proto, l4, frag);

  const before = stats(env);
  const out1 = fromA(REMOTE, GRE, gre());
  const r = await run(env.dp.progs.ingress, out1, ifx.c0);
  t.equal(r.retval, TC_ACT_REDIRECT, 'redirected out of the uplink');
  checkRewrite(t, out1, r.data, { src: UPLINK_ADDR, dst: REMOTE }, 'GRE out');
  const o = ct(env, A.addr, REMOTE, GRE);
  t.ok(o, 'orig half keyed (container, remote, GRE) with ports 0');
  t.has(o?.rewrite, { saddr: UPLINK_ADDR, daddr: REMOTE, sport: 0, dport: 0, proto: GRE }, 'leaves as (uplink, remote, GRE)');
  t.equal(o?.flags, CtFlags.MASQ, 'masquerade, not assured');
  t.equal(o?.state, CtState.NEW, 'NEW');
  t.equal(o?.out_kind, OutKind.NEIGH);
  t.equal(o?.out_ifindex, ifx.u0);
  const rep = ct(env, REMOTE, UPLINK_ADDR, GRE);
  t.has(rep?.rewrite, { saddr: REMOTE, daddr: A.addr, sport: 0, dport: 0, proto: GRE }, 'reply half: back to the container');
  t.equal(rep?.flags, CtFlags.MASQ | CtFlags.REPLY);
  t.equal(stats(env).ct_created, before.ct_created + 1n, 'one flow created');
  t.equal(counters(env, ifx.u0, 1).redirect.packets, 1n, 'counted as leaving on the uplink');

  const back = frame(REMOTE_MAC, upMac, REMOTE, UPLINK_ADDR, GRE, gre(Buffer.from('the answer')));
  const rb = await run(env.dp.progs.uplink, back, ifx.u0);
  t.equal(rb.retval, TC_ACT_REDIRECT, 'the reply is redirected into the container');
  checkRewrite(t, back, rb.data, { src: REMOTE, dst: A.addr, smac: GW_MAC, dmac: A.mac }, 'GRE reply');
  t.equal(ct(env, A.addr, REMOTE, GRE)?.state, CtState.ESTABLISHED, 'ESTABLISHED at the first reply');
  t.ok((ct(env, A.addr, REMOTE, GRE)!.flags & CtFlags.ASSURED) !== 0, 'and ASSURED, in the orig half');
  t.ok((ct(env, REMOTE, UPLINK_ADDR, GRE)!.flags & CtFlags.ASSURED) !== 0, '... and the reply half');
  t.equal(stats(env).ct_assured, before.ct_assured + 1n, 'counted assured');
  t.equal(counters(env, ifx.c0, Direction.TO_CONTAINER).redirect.packets, 1n, 'counted into the container');

  const r2 = await run(env.dp.progs.ingress, fromA(REMOTE, GRE, gre(Buffer.from('more'))), ifx.c0);
  t.equal(r2.retval, TC_ACT_REDIRECT, 'the next packet uses the flow');
  t.equal(ipStr(r2.data, 26), UPLINK_ADDR);
  t.equal(ct(env, A.addr, REMOTE, GRE)?.packets, 2n, 'two packets on the orig half');
  t.equal(stats(env).ct_created, before.ct_created + 1n, 'no new flow');

  t.test('a second container to the same remote and protocol: dropped and counted, never untranslated', async (t) => {
    const b0 = stats(env);
    const d0 = counters(env, ifx.c1, Direction.FROM_CONTAINER).drop[DropReason.NAT_NO_PORT].packets;
    const rb2 = await run(env.dp.progs.ingress, frame(B.mac, GW_MAC, B.addr, REMOTE, GRE, gre()), ifx.c1);
    t.equal(rb2.retval, TC_ACT_SHOT, 'dropped');
    t.equal(counters(env, ifx.c1, Direction.FROM_CONTAINER).drop[DropReason.NAT_NO_PORT].packets, d0 + 1n, 'counted nat_no_port on its veth');
    t.equal(stats(env).nat_port_exhausted, b0.nat_port_exhausted + 1n, 'and in nat_port_exhausted');
    t.equal(ct(env, B.addr, REMOTE, GRE), null, 'no half of its own');
    t.same(ct(env, REMOTE, UPLINK_ADDR, GRE)?.rewrite.daddr, A.addr, 'the first flow still leads to the first container');
    const other = await run(env.dp.progs.ingress, frame(B.mac, GW_MAC, B.addr, REMOTE2, GRE, gre()), ifx.c1);
    t.equal(other.retval, TC_ACT_REDIRECT, 'to another remote it goes out');
    t.equal(ipStr(other.data, 26), UPLINK_ADDR);
    const sc = await run(env.dp.progs.ingress, frame(B.mac, GW_MAC, B.addr, REMOTE, SCTP, sctp()), ifx.c1);
    t.equal(sc.retval, TC_ACT_REDIRECT, 'to the same remote with another protocol too');
  });

  t.test('an ICMP error about the GRE packet that left is translated back to the container', async (t) => {
    const left = ipv4({ src: UPLINK_ADDR, dst: REMOTE, proto: GRE, ttl: 63 }, gre()).subarray(0, 28);
    const msg = Buffer.concat([Buffer.from([3, 4, 0, 0, 0, 0, 0x05, 0x78]), left]);
    msg.writeUInt16BE(checksum(msg), 2);
    const err = frame(REMOTE_MAC, upMac, ROUTER, UPLINK_ADDR, ICMP, msg);
    const re = await run(env.dp.progs.uplink, err, ifx.u0);
    t.equal(re.retval, TC_ACT_REDIRECT, 'redirected into the container');
    t.equal(ipStr(re.data, 30), A.addr, 'outer destination: the container');
    t.equal(ipStr(re.data, 26), ROUTER, 'the router keeps its own address');
    const icmp = l4Of(re.data);
    t.equal(checksum(icmp), 0, 'ICMP checksum valid');
    t.equal(ipStr(icmp, 8 + 12), A.addr, 'quoted source: the container');
    t.equal(ipStr(icmp, 8 + 16), REMOTE, 'quoted destination kept');
    t.equal(checksum(icmp.subarray(8, 28)), 0, 'quoted IP header checksum valid');
    t.same(icmp.subarray(28), left.subarray(20), 'the quoted GRE header as it was');
  });

  t.test('the sweeper expires them: GRE by the kernel\'s GRE timeouts, the rest by its generic one', async (t) => {
    // live now: A -> REMOTE GRE (answered), B -> REMOTE2 GRE and B -> REMOTE SCTP (unanswered)
    const T = DEFAULT_SETTINGS.conntrack;
    const at = (s: number): bigint => monotonicNs() + BigInt(s) * 1_000_000_000n;
    t.equal((await sweep(env.dp.maps.ct, T, at(T.greTimeout + 1))).expired, 1, `after ${T.greTimeout + 1} s: the unanswered GRE flow`);
    t.equal(ct(env, B.addr, REMOTE2, GRE), null, '... its orig half');
    t.equal(ct(env, REMOTE2, UPLINK_ADDR, GRE), null, '... its reply half too');
    t.ok(ct(env, A.addr, REMOTE, GRE), 'the answered one stays');
    t.equal((await sweep(env.dp.maps.ct, T, at(T.greStreamTimeout + 1))).expired, 1, `after ${T.greStreamTimeout + 1} s: the answered GRE flow`);
    t.ok(ct(env, B.addr, REMOTE, SCTP), 'SCTP stays');
    t.equal((await sweep(env.dp.maps.ct, T, at(T.genericTimeout + 1))).expired, 1, `after ${T.genericTimeout + 1} s: SCTP too`);
    t.equal(ct(env, REMOTE, UPLINK_ADDR, SCTP), null, '... both halves');
    t.equal((await run(env.dp.progs.ingress, frame(B.mac, GW_MAC, B.addr, REMOTE, GRE, gre()), ifx.c1)).retval, TC_ACT_REDIRECT, 'the second container gets GRE to REMOTE once the first flow is gone');
    t.same(ct(env, REMOTE, UPLINK_ADDR, GRE)?.rewrite.daddr, B.addr, '... and its replies');
  });
});

t.test('SCTP and ESP: addresses alone, their payload untouched, both ways', async (t) => {
  const env = await setup(t, 'sctp');
  const { ifx } = env;
  const upMac = macOf(IF.u0);
  for (const [name, proto, body] of [['SCTP', SCTP, sctp()], ['ESP', ESP, Buffer.from('0000100100000001' + 'ab'.repeat(24), 'hex')]] as const) {
    const out = frame(A.mac, GW_MAC, A.addr, REMOTE, proto, body);
    const r = await run(env.dp.progs.ingress, out, ifx.c0);
    t.equal(r.retval, TC_ACT_REDIRECT, `${name} out: redirected`);
    checkRewrite(t, out, r.data, { src: UPLINK_ADDR, dst: REMOTE }, `${name} out`);
    const back = frame(REMOTE_MAC, upMac, REMOTE, UPLINK_ADDR, proto, body);
    const rb = await run(env.dp.progs.uplink, back, ifx.u0);
    t.equal(rb.retval, TC_ACT_REDIRECT, `${name} reply: redirected`);
    checkRewrite(t, back, rb.data, { src: REMOTE, dst: A.addr, smac: GW_MAC, dmac: A.mac }, `${name} reply`);
  }
});

t.test('DCCP and UDP-Lite: the pseudo-header checksum follows the addresses', async (t) => {
  const env = await setup(t, 'csum');
  const { ifx } = env;
  const upMac = macOf(IF.u0);
  const cases = [
    ['DCCP, full coverage', DCCP, (s: string, d: string) => dccp(s, d, 5001, 5002)],
    ['DCCP, header only (CsCov 1)', DCCP, (s: string, d: string) => dccp(s, d, 5003, 5004, 1)],
    ['UDP-Lite, full coverage', UDPLITE, (s: string, d: string) => udplite(s, d, 6001, 6002)],
    ['UDP-Lite, header only (coverage 8)', UDPLITE, (s: string, d: string) => udplite(s, d, 6003, 6004, 8)],
  ] as const;
  for (const [i, [name, proto, build]] of cases.entries()) {
    const remote = `10.92.${X}.${20 + i}`; // one flow each: they share no (remote, protocol)
    const seg = build(A.addr, remote);
    t.ok(pseudoCsumOk(A.addr, remote, proto, seg), `${name}: the test's own checksum is right`);
    const out = frame(A.mac, GW_MAC, A.addr, remote, proto, seg);
    const r = await run(env.dp.progs.ingress, out, ifx.c0);
    t.equal(r.retval, TC_ACT_REDIRECT, `${name} out: redirected`);
    checkRewrite(t, out, r.data, { src: UPLINK_ADDR, dst: remote, csumAt: 6 }, `${name} out`);
    t.ok(pseudoCsumOk(UPLINK_ADDR, remote, proto, l4Of(r.data)), `${name} out: checksum valid for the uplink's address (recomputed)`);
    t.equal(l4Of(r.data).readUInt32BE(0), seg.readUInt32BE(0), `${name} out: ports kept (no port is translated)`);
    const back = frame(REMOTE_MAC, upMac, remote, UPLINK_ADDR, proto, build(remote, UPLINK_ADDR));
    const rb = await run(env.dp.progs.uplink, back, ifx.u0);
    t.equal(rb.retval, TC_ACT_REDIRECT, `${name} reply: redirected`);
    checkRewrite(t, back, rb.data, { src: remote, dst: A.addr, smac: GW_MAC, dmac: A.mac, csumAt: 6 }, `${name} reply`);
    t.ok(pseudoCsumOk(remote, A.addr, proto, l4Of(rb.data)), `${name} reply: checksum valid for the container's address (recomputed)`);
  }

  t.test('a header too short to hold its checksum never leaves', async (t) => {
    const d0 = counters(env, ifx.c0, Direction.FROM_CONTAINER).drop[DropReason.MALFORMED].packets;
    for (const proto of [DCCP, UDPLITE]) {
      const r = await run(env.dp.progs.ingress, frame(A.mac, GW_MAC, A.addr, `10.92.${X}.40`, proto, Buffer.from([1, 2, 3, 4, 5, 6])), ifx.c0);
      t.equal(r.retval, TC_ACT_SHOT, `protocol ${proto}, 6 bytes: dropped`);
    }
    t.equal(counters(env, ifx.c0, Direction.FROM_CONTAINER).drop[DropReason.MALFORMED].packets, d0 + 2n, 'counted malformed');
    t.equal(ct(env, A.addr, `10.92.${X}.40`, DCCP), null, 'no flow');
  });
});

t.test('what berth does not translate', async (t) => {
  const env = await setup(t, 'edges', false);
  const { ifx } = env;
  const upMac = macOf(IF.u0);

  const host = frame(REMOTE_MAC, upMac, REMOTE, UPLINK_ADDR, GRE, gre());
  const rh = await run(env.dp.progs.uplink, host, ifx.u0);
  t.equal(rh.retval, TC_ACT_UNSPEC, "GRE for the host with no flow: passed (the host's own tunnels)");
  t.ok(rh.data.equals(host), '... unchanged');
  t.equal(ct(env, REMOTE, UPLINK_ADDR, GRE), null, '... and nothing tracked');

  t.test('fragments: every one carries the tuple, so later ones need no record of their first', async (t) => {
    const o0 = counters(env, ifx.c0, Direction.FROM_CONTAINER).drop[DropReason.FRAG_ORPHAN].packets;
    const orphan = frame(A.mac, GW_MAC, A.addr, REMOTE, GRE, Buffer.alloc(16, 7), 0x0003);
    t.equal((await run(env.dp.progs.ingress, orphan, ifx.c0)).retval, TC_ACT_SHOT, 'a later fragment with no flow yet: dropped');
    t.equal(counters(env, ifx.c0, Direction.FROM_CONTAINER).drop[DropReason.FRAG_ORPHAN].packets, o0 + 1n, 'counted frag_orphan');
    t.equal(ct(env, A.addr, REMOTE, GRE), null, '... and it opens no flow');

    // one DCCP datagram in two fragments: its checksum lies in the first, and covers both
    const remote = `10.92.${X}.60`;
    const seg = dccp(A.addr, remote, 7001, 7002, 0, Buffer.from('a DCCP datagram long enough to be cut in two'));
    const cut = 24;
    const first = frame(A.mac, GW_MAC, A.addr, remote, DCCP, seg.subarray(0, cut), 0x2000);
    const later = frame(A.mac, GW_MAC, A.addr, remote, DCCP, seg.subarray(cut), cut / 8);
    const r1 = await run(env.dp.progs.ingress, first, ifx.c0);
    t.equal(r1.retval, TC_ACT_REDIRECT, 'the first fragment opens the flow and leaves');
    checkRewrite(t, first, r1.data, { src: UPLINK_ADDR, dst: remote, csumAt: 6 }, 'first fragment');
    const r2 = await run(env.dp.progs.ingress, later, ifx.c0);
    t.equal(r2.retval, TC_ACT_REDIRECT, 'the later fragment finds the flow by its own tuple');
    checkRewrite(t, later, r2.data, { src: UPLINK_ADDR, dst: remote }, 'later fragment');
    t.ok(pseudoCsumOk(UPLINK_ADDR, remote, DCCP, Buffer.concat([l4Of(r1.data), l4Of(r2.data)])), 'the reassembled datagram\'s checksum is right for the uplink address (recomputed)');
    t.equal(ct(env, A.addr, remote, DCCP)?.packets, 2n, 'both counted on the flow');

    const back = frame(REMOTE_MAC, upMac, remote, UPLINK_ADDR, DCCP, Buffer.alloc(16, 9), 0x0003);
    const rb = await run(env.dp.progs.uplink, back, ifx.u0);
    t.equal(rb.retval, TC_ACT_REDIRECT, "a later fragment of the remote's answer: into the container");
    checkRewrite(t, back, rb.data, { src: remote, dst: A.addr, smac: GW_MAC, dmac: A.mac }, 'answer fragment');
  });

  const noMasq = frame(B.mac, GW_MAC, B.addr, REMOTE, GRE, gre());
  const rn = await run(env.dp.progs.ingress, noMasq, ifx.c1);
  t.equal(rn.retval, TC_ACT_UNSPEC, 'masquerade off: passed, as Docker leaves it');
  t.ok(rn.data.equals(noMasq), '... untranslated');
  t.equal(ct(env, B.addr, REMOTE, GRE), null, '... untracked');
});
