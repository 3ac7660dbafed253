// Routed IPv6 (gateway_mode_ipv6=routed, lib/routed6.h) on crafted frames
// through BPF_PROG_TEST_RUN: what the bridge's choke point lets in (ICMPv6,
// published container ports keyed on the container's addr6, replies of the
// container's own flows), what the served interfaces let through to it (TC
// and XDP), the flows a routed-v6 container opens (tracked with an identity
// rewrite, never translated: no NAT66), and each family its own mode (a
// network routed for IPv4 only keeps IPv6's direct-access drop and NAT66's
// masquerade path, one routed for IPv6 only keeps IPv4's), and the user
// policy (DOCKER-USER, lib/routed_policy.h) on every packet let in. As in
// routed.test.ts the bridge and the sending container sit at ifindex 1 (lo),
// where the kernel runs the test packets; skb->ingress_ifindex comes from the ctx.
import t from 'tap';
import { Dataplane } from '../../src/platform/dataplane';
import {
  CtFlags,
  Direction,
  DropReason,
  EndpointFlags,
  PublishFlags,
  bridgeCodec,
  counterKeyCodec,
  ctEntryCodec,
  ctKeyCodec,
  endpointCodec,
  ifindexKeyCodec,
  ip6KeyCodec,
  ipKeyCodec,
  netValueCodec,
  networkKeyCodec,
  publishKeyCodec,
  publishValueCodec,
  sumPerCpuCounters,
  zeroPerCpuCounters,
} from '../../src/platform/contract';
import { skbTestContext } from '../../src/platform/native';
import { namesFrom, parsePolicy } from '../../src/domain/policy';
import { closePolicyMaps, openPolicyMaps, policySlots, readPolicyHits, writePolicy } from '../../src/engine/policy';
import { eth, ipv4, ipv6Frame, tcp } from '../lib/packets';
import { Ext, Upper, frame6, icmp6, udp6 } from '../lib/ipv6ref';

const TC_ACT_UNSPEC = 0xffffffff;
const TC_ACT_SHOT = 2;
const XDP_DROP = 1;
const XDP_PASS = 2;
const TCP = 6;
const UDP = 17;
const ECHO_REQUEST = 128;

const LO = 1;
const OUTSIDE_IF = 3333; // the interface a forwarded packet came in by
const NET = { id: 1, subnet: '10.79.250.0', mask: '255.255.255.0', gateway: '10.79.250.1', subnet6: 'fd79:250::', mask6: 'ffff:ffff:ffff:ffff::', gateway6: 'fd79:250::1' };
const ME = { ifindex: LO, addr: '10.79.250.10', addr6: 'fd79:250::10', mac: '02:00:0a:4f:fa:0a' };
const NAT_NET = { id: 2, bridge: 2100 };
const NATC = { ifindex: 2002, addr: '10.79.251.20', addr6: 'fd79:251::20', mac: '02:00:0a:4f:fb:14' };
const GW_MAC = '02:00:0a:4f:fa:01';
const OUT_MAC = '02:00:c6:33:64:09';
const CLIENT6 = '2001:db8:79::9';
const CLIENT4 = '198.51.100.9';
const BASE = EndpointFlags.ICC | EndpointFlags.IPV6;
const ROUTED6 = BASE | EndpointFlags.MASQUERADE | EndpointFlags.ROUTED6; // nat-v4 + routed-v6

function ctx(ifindex: number, ingressIfindex: number): Buffer {
  const c = skbTestContext(ifindex);
  c.writeUInt32LE(ingressIfindex, 36); // offsetof(struct __sk_buff, ingress_ifindex)
  return c;
}

interface Env {
  dp: Dataplane;
  program(flags: number): void;
  drops(direction: number, reason: number): bigint;
}

async function setup(t: { teardown(fn: () => void): void }, name: string, extra: { ctMax?: number; ctUnassuredMax?: number } = {}): Promise<Env> {
  const pinRoot = `/sys/fs/bpf/berth-v6gw-bpf-${process.pid}-${name}`;
  Dataplane.reset(pinRoot);
  const dp = await Dataplane.openOrLoad({ pinRoot, fastPath: true, natPortMin: 61000, natPortMax: 65535, ...extra });
  t.teardown(() => {
    dp.close();
    Dataplane.reset(pinRoot);
  });
  const put = (ep: { ifindex: number; addr: string; addr6: string; mac: string }, net: number, flags: number): void => {
    const v = endpointCodec.encode({ addr: ep.addr, ifindex: ep.ifindex, network_id: net, flags, mac: ep.mac, addr6: ep.addr6 });
    dp.maps.epByIfindex.update(ifindexKeyCodec.encode({ ifindex: ep.ifindex }), v);
    dp.maps.epByIp.update(ipKeyCodec.encode({ addr: ep.addr }), v);
    dp.maps.epByIp6.update(ip6KeyCodec.encode({ addr: ep.addr6 }), v);
  };
  const program = (flags: number): void => {
    put(ME, NET.id, flags);
    dp.maps.net.update(
      networkKeyCodec.encode({ network_id: NET.id }),
      netValueCodec.encode({ subnet: NET.subnet, mask: NET.mask, gateway: NET.gateway, flags, bridge_ifindex: LO, gw_mac: GW_MAC, subnet6: NET.subnet6, mask6: NET.mask6, gateway6: NET.gateway6 }),
    );
    dp.maps.bridge.update(ifindexKeyCodec.encode({ ifindex: LO }), bridgeCodec.encode({ network_id: NET.id, flags }));
  };
  program(ROUTED6);
  put(NATC, NAT_NET.id, BASE | EndpointFlags.MASQUERADE);
  dp.maps.bridge.update(ifindexKeyCodec.encode({ ifindex: NAT_NET.bridge }), bridgeCodec.encode({ network_id: NAT_NET.id, flags: BASE | EndpointFlags.MASQUERADE }));
  // -p 8080:80 and -p 5353:53/udp on the routed-v6 network: the container ports, on its own addr6
  for (const [port, proto] of [[80, TCP], [53, UDP]] as const)
    dp.maps.publish.update(
      publishKeyCodec.encode({ host_addr: ME.addr6, host_port: port, proto }),
      publishValueCodec.encode({ addr: ME.addr6, port, flags: PublishFlags.ROUTED, ifindex: ME.ifindex, network_id: NET.id, mac: ME.mac }),
    );
  for (const direction of [Direction.FROM_CONTAINER, Direction.TO_CONTAINER])
    dp.maps.counters.update(counterKeyCodec.encode({ ifindex: LO, direction }), zeroPerCpuCounters(dp.cpus));
  const drops = (direction: number, reason: number): bigint => {
    const v = dp.maps.counters.lookup(counterKeyCodec.encode({ ifindex: LO, direction }));
    if (!v) throw new Error('no counters');
    return sumPerCpuCounters(v, dp.cpus).drop[reason].packets;
  };
  return { dp, program, drops };
}

const tcp6 = (smac: string, dmac: string, src: string, dst: string, sport: number, dport: number, tcpFlags = 0x02): Buffer =>
  ipv6Frame({ smac, dmac, src, dst, proto: 6, sport, dport, tcpFlags });
const udp6f = (smac: string, dmac: string, src: string, dst: string, sport: number, dport: number): Buffer => ipv6Frame({ smac, dmac, src, dst, proto: 17, sport, dport });
function f6(smac: string, dmac: string, src: string, dst: string, up: Upper, exts: Ext[] = []): Buffer {
  const f = frame6({ src, dst }, exts, up);
  Buffer.from(dmac.split(':').map((h) => parseInt(h, 16))).copy(f, 0);
  Buffer.from(smac.split(':').map((h) => parseInt(h, 16))).copy(f, 6);
  return f;
}
const ping6 = (src: string, dst: string): Buffer => f6(OUT_MAC, GW_MAC, src, dst, icmp6(ECHO_REQUEST, 0, 0x00070001));
const ctKey6 = (saddr: string, daddr: string, sport: number, dport: number, proto: number): Buffer => ctKeyCodec.encode({ saddr, daddr, sport, dport, proto });

t.test('bridge egress of a routed-v6 network: ICMPv6 and published container ports get in, the rest is not_published', async (t) => {
  const { dp, program, drops } = await setup(t, 'entry');
  const run = async (data: Buffer, iif = OUTSIDE_IF): Promise<number> => (await dp.progs.bridgeOut.testRun({ data, ctx: ctx(LO, iif) })).retval >>> 0;
  const np = drops(Direction.TO_CONTAINER, DropReason.NOT_PUBLISHED);

  t.equal(await run(tcp6(OUT_MAC, GW_MAC, CLIENT6, ME.addr6, 40000, 80)), TC_ACT_UNSPEC, 'TCP to the published container port 80');
  t.equal(await run(udp6f(OUT_MAC, GW_MAC, CLIENT6, ME.addr6, 40000, 53)), TC_ACT_UNSPEC, 'UDP to the published container port 53');
  t.equal(await run(ping6(CLIENT6, ME.addr6)), TC_ACT_UNSPEC, 'ICMPv6 echo (-o br -p ipv6-icmp -j ACCEPT)');
  t.equal(await run(ping6(CLIENT6, `${NET.subnet6}99`)), TC_ACT_UNSPEC, 'ICMPv6 to any address of the network, as Docker\'s rule');
  t.equal(await run(tcp6(OUT_MAC, GW_MAC, CLIENT6, ME.addr6, 40000, 8080)), TC_ACT_SHOT, 'TCP to the host port, on the container address');
  t.equal(await run(tcp6(OUT_MAC, GW_MAC, CLIENT6, ME.addr6, 40000, 81)), TC_ACT_SHOT, 'TCP to an unpublished port');
  t.equal(await run(udp6f(OUT_MAC, GW_MAC, CLIENT6, ME.addr6, 40000, 80)), TC_ACT_SHOT, 'UDP to a port published for TCP only');
  t.equal(await run(tcp6(OUT_MAC, GW_MAC, CLIENT6, `${NET.subnet6}99`, 40000, 80)), TC_ACT_SHOT, 'another address of the subnet on that port');
  t.equal(await run(f6(OUT_MAC, GW_MAC, CLIENT6, ME.addr6, { proto: 132, bytes: Buffer.alloc(12) })), TC_ACT_SHOT, 'another protocol (SCTP)');
  t.equal(drops(Direction.TO_CONTAINER, DropReason.NOT_PUBLISHED), np + 5n, 'counted not_published on the bridge');

  const fr = drops(Direction.TO_CONTAINER, DropReason.FRAGMENT);
  t.equal(await run(f6(OUT_MAC, GW_MAC, CLIENT6, ME.addr6, udp6(40000, 53, Buffer.alloc(16)), [{ kind: 'frag', offset: 0, more: true, id: 77 }])), TC_ACT_SHOT, 'a first fragment, even to the published port');
  t.equal(drops(Direction.TO_CONTAINER, DropReason.FRAGMENT), fr + 1n, 'counted fragment');
  const iso = drops(Direction.TO_CONTAINER, DropReason.ISOLATION);
  t.equal(await run(tcp6(OUT_MAC, GW_MAC, NATC.addr6, ME.addr6, 40000, 80), NAT_NET.bridge), TC_ACT_SHOT, 'from another network of berth\'s: still isolation');
  t.equal(drops(Direction.TO_CONTAINER, DropReason.ISOLATION), iso + 1n, 'counted isolation');
  t.equal(await run(tcp6(OUT_MAC, GW_MAC, NET.gateway6, ME.addr6, 40000, 81), 0), TC_ACT_UNSPEC, 'the host itself reaches any port');

  // IPv4 of the same bridge is nat: its published ports are host ports, nothing direct gets in
  const v4 = eth(GW_MAC, OUT_MAC, 0x0800, ipv4({ src: CLIENT4, dst: ME.addr, proto: TCP }, tcp(CLIENT4, ME.addr, 40000, 80)));
  t.equal(await run(v4), TC_ACT_SHOT, 'IPv4 (nat) of a routed-v6 bridge: the container port is not reachable directly');

  // routed for IPv4 only: IPv6 keeps nat's choke point
  program(BASE | EndpointFlags.MASQUERADE | EndpointFlags.ROUTED);
  t.equal(await run(tcp6(OUT_MAC, GW_MAC, CLIENT6, ME.addr6, 40000, 80)), TC_ACT_SHOT, 'routed-v4 only: the v6 container port is not reachable directly');
  t.equal(await run(ping6(CLIENT6, ME.addr6)), TC_ACT_SHOT, 'nor by ICMPv6');
  dp.maps.bridge.delete(ifindexKeyCodec.encode({ ifindex: LO }));
  t.equal(await run(ping6(CLIENT6, ME.addr6)), TC_ACT_SHOT, 'a bridge whose entry is gone refuses');
});

t.test('a flow the routed-v6 container opens: tracked, untranslated (no NAT66), its replies let in, nothing else', async (t) => {
  const { dp, drops } = await setup(t, 'flow');
  const veth = async (data: Buffer) => dp.progs.ingress.testRun({ data });
  const brOut = async (data: Buffer) => dp.progs.bridgeOut.testRun({ data, ctx: ctx(LO, OUTSIDE_IF) });
  const up = async (data: Buffer) => dp.progs.uplink.testRun({ data, ctx: skbTestContext(LO) });

  const syn = tcp6(ME.mac, GW_MAC, ME.addr6, CLIENT6, 41000, 443, 0x02);
  const r1 = await veth(syn);
  t.equal(r1.retval >>> 0, TC_ACT_UNSPEC, 'the SYN goes to the kernel');
  t.same(r1.data, syn, 'untranslated, byte for byte');
  const orig = dp.maps.ct.lookup(ctKey6(ME.addr6, CLIENT6, 41000, 443, TCP));
  const rkey = ctKey6(CLIENT6, ME.addr6, 443, 41000, TCP);
  const reply = dp.maps.ct.lookup(rkey);
  t.ok(orig && reply, 'both halves recorded');
  const o = ctEntryCodec.decode(orig!);
  t.equal(o.flags & (CtFlags.ROUTED | CtFlags.MASQ), CtFlags.ROUTED, 'flagged routed, not masquerade');
  t.same([o.rewrite.saddr, o.rewrite.daddr, o.rewrite.sport, o.rewrite.dport], [ME.addr6, CLIENT6, 41000, 443], 'identity rewrite');

  const synack = tcp6(OUT_MAC, GW_MAC, CLIENT6, ME.addr6, 443, 41000, 0x12);
  const u = await up(synack);
  t.equal(u.retval >>> 0, TC_ACT_UNSPEC, 'the served interface passes the reply to the kernel');
  t.same(u.data, synack, 'untranslated');
  const b = await brOut(synack);
  t.equal(b.retval >>> 0, TC_ACT_UNSPEC, 'the bridge lets the SYN-ACK in');
  t.equal(ctEntryCodec.decode(dp.maps.ct.lookup(rkey)!).packets, 1n, 'accounted on the reply half');
  const r2 = await veth(tcp6(ME.mac, GW_MAC, ME.addr6, CLIENT6, 41000, 443, 0x10));
  t.equal(r2.retval >>> 0, TC_ACT_UNSPEC, 'the ACK goes to the kernel');
  t.equal(ctEntryCodec.decode(dp.maps.ct.lookup(ctKey6(ME.addr6, CLIENT6, 41000, 443, TCP))!).packets, 2n, 'accounted on the orig half');

  const np = drops(Direction.TO_CONTAINER, DropReason.NOT_PUBLISHED);
  t.equal((await brOut(tcp6(OUT_MAC, GW_MAC, CLIENT6, ME.addr6, 443, 41001, 0x12))).retval >>> 0, TC_ACT_SHOT, 'the same peer to another port of the container');
  t.equal((await brOut(tcp6(OUT_MAC, GW_MAC, '2001:db8:79::10', ME.addr6, 443, 41000, 0x12))).retval >>> 0, TC_ACT_SHOT, 'another peer to the flow\'s port');
  t.equal(drops(Direction.TO_CONTAINER, DropReason.NOT_PUBLISHED), np + 2n, 'counted not_published');

  // UDP: the datagram out, its answer in
  const d = udp6f(ME.mac, GW_MAC, ME.addr6, CLIENT6, 5000, 53);
  const rd = await veth(d);
  t.equal(rd.retval >>> 0, TC_ACT_UNSPEC, 'a UDP datagram out');
  t.same(rd.data, d, 'untranslated');
  t.equal((await brOut(udp6f(OUT_MAC, GW_MAC, CLIENT6, ME.addr6, 53, 5000))).retval >>> 0, TC_ACT_UNSPEC, 'its answer in');
  t.equal((await brOut(udp6f(OUT_MAC, GW_MAC, CLIENT6, ME.addr6, 53, 5001))).retval >>> 0, TC_ACT_SHOT, 'not to another port');

  // ICMPv6 echo out: not translated (no NAT66), not tracked; its reply gets in as ICMPv6
  const ping = f6(ME.mac, GW_MAC, ME.addr6, CLIENT6, icmp6(ECHO_REQUEST, 0, 0x00090001));
  const rp = await veth(ping);
  t.equal(rp.retval >>> 0, TC_ACT_UNSPEC, 'an echo request out');
  t.same(rp.data, ping, 'untranslated');
  t.notOk((await dp.maps.ct.dump()).some(([, v]) => ctEntryCodec.decode(v).flags & CtFlags.MASQ), 'no NAT66 flow at all');

  // the container answering on its published port: not recorded (its peers reach that port anyway)
  const before = (await dp.maps.ct.dump()).length;
  t.equal((await veth(tcp6(ME.mac, GW_MAC, ME.addr6, CLIENT6, 80, 40000, 0x12))).retval >>> 0, TC_ACT_UNSPEC, 'a SYN-ACK from port 80');
  t.equal((await dp.maps.ct.dump()).length, before, 'no flow recorded');
});

t.test('served interfaces: a routed-v6 container\'s addr6 is let through for the bridge to decide; a nat one\'s still refused', async (t) => {
  const { dp, program } = await setup(t, 'uplink');
  const up = async (data: Buffer) => (await dp.progs.uplink.testRun({ data, ctx: skbTestContext(LO) })).retval >>> 0;
  const xdp = async (data: Buffer) => (await dp.progs.xdp.testRun({ data })).retval >>> 0;
  const toMe = tcp6(OUT_MAC, GW_MAC, CLIENT6, ME.addr6, 40000, 81);
  const toNat = tcp6(OUT_MAC, GW_MAC, CLIENT6, NATC.addr6, 40000, 80);
  const toMe4 = eth(GW_MAC, OUT_MAC, 0x0800, ipv4({ src: CLIENT4, dst: ME.addr, proto: TCP }, tcp(CLIENT4, ME.addr, 40000, 80)));
  t.equal(await up(toMe), TC_ACT_UNSPEC, 'tc: to the routed-v6 container (any port: its bridge decides)');
  t.equal(await up(toNat), TC_ACT_SHOT, 'tc: to a nat network\'s container');
  t.equal(await xdp(toMe), XDP_PASS, 'xdp: to the routed-v6 container');
  t.equal(await xdp(toNat), XDP_DROP, 'xdp: to a nat network\'s container');
  t.equal(await up(toMe4), TC_ACT_SHOT, 'tc: its IPv4 address (nat) is refused');
  t.equal(await xdp(toMe4), XDP_DROP, 'xdp: likewise');
  t.equal(await up(tcp6(OUT_MAC, GW_MAC, CLIENT6, '::1', 40000, 80)), TC_ACT_SHOT, 'tc: ::1 from outside, as ever');
  // routed for IPv4 only: its addr6 keeps the direct-access drop, its IPv4 address passes
  program(BASE | EndpointFlags.MASQUERADE | EndpointFlags.ROUTED);
  t.equal(await up(toMe), TC_ACT_SHOT, 'routed-v4 only, tc: the addr6 is refused');
  t.equal(await xdp(toMe), XDP_DROP, 'routed-v4 only, xdp: likewise');
  t.equal(await up(toMe4), TC_ACT_UNSPEC, 'routed-v4 only: the IPv4 address passes');
});

t.test('per family: a routed-v4, nat-v6 container\'s IPv6 makes no routed flow (it takes the NAT66 path), a routed-v6 one\'s does', async (t) => {
  const { dp, program } = await setup(t, 'masq');
  // no route out in the test run: NAT66 answers by the kernel's path or no_uplink; either way it went
  // into berth_v6nat_masq, which a routed-v6 container never reaches
  const d = udp6f(ME.mac, GW_MAC, ME.addr6, CLIENT6, 5100, 53);
  program(BASE | EndpointFlags.MASQUERADE | EndpointFlags.ROUTED);
  await dp.progs.ingress.testRun({ data: d });
  t.equal(dp.maps.ct.lookup(ctKey6(ME.addr6, CLIENT6, 5100, 53, UDP)), null, 'routed-v4: not recorded as a routed-v6 flow');
  program(ROUTED6);
  t.equal((await dp.progs.ingress.testRun({ data: d })).retval >>> 0, TC_ACT_UNSPEC, 'routed-v6: passed untranslated');
  const e = dp.maps.ct.lookup(ctKey6(ME.addr6, CLIENT6, 5100, 53, UDP));
  t.ok(e && ctEntryCodec.decode(e).flags & CtFlags.ROUTED, 'routed-v6: recorded as a routed flow');
});

t.test('table full: a routed-v6 container\'s new flow is refused and counted, never passed untracked', async (t) => {
  const { dp, drops } = await setup(t, 'full', { ctMax: 8, ctUnassuredMax: 1 });
  for (let i = 0; i < 4; i++) {
    t.equal((await dp.progs.ingress.testRun({ data: udp6f(ME.mac, GW_MAC, ME.addr6, CLIENT6, 6000 + i, 53) })).retval >>> 0, TC_ACT_UNSPEC, `flow ${i} out`);
    t.equal((await dp.progs.bridgeOut.testRun({ data: udp6f(OUT_MAC, GW_MAC, CLIENT6, ME.addr6, 53, 6000 + i), ctx: ctx(LO, OUTSIDE_IF) })).retval >>> 0, TC_ACT_UNSPEC, `flow ${i} answered: assured`);
  }
  const full = drops(Direction.FROM_CONTAINER, DropReason.CT_FULL);
  t.equal((await dp.progs.ingress.testRun({ data: udp6f(ME.mac, GW_MAC, ME.addr6, CLIENT6, 7000, 53) })).retval >>> 0, TC_ACT_SHOT, 'a new flow with no room');
  t.equal(drops(Direction.FROM_CONTAINER, DropReason.CT_FULL), full + 1n, 'counted ct_full');
});

t.test('the user policy (DOCKER-USER, ip6tables) on every packet into a routed-v6 network, on the rules\' IPv6 fields', async (t) => {
  const { dp, drops } = await setup(t, 'policy');
  const maps = openPolicyMaps(dp);
  t.teardown(() => closePolicyMaps(maps));
  const names = namesFrom(new Map([['web', ME.addr]]), new Map([['rnet', `${NET.subnet}/24`]]), new Map([['web', ME.addr6]]), new Map([['rnet', `${NET.subnet6}/64`]]));
  const program = (yaml: string): number => {
    const p = parsePolicy(yaml, 'policy.yaml');
    writePolicy(maps, policySlots(p, names));
    return p.rules.length;
  };
  const hits = (n: number): bigint[] => readPolicyHits(maps, n).map((h) => h.packets);
  const run = async (data: Buffer, iif = OUTSIDE_IF): Promise<number> => (await dp.progs.bridgeOut.testRun({ data, ctx: ctx(LO, iif) })).retval >>> 0;
  const policyDrops = (): bigint => drops(Direction.TO_CONTAINER, DropReason.POLICY);
  const OTHER6 = '2001:db8:79::77';
  const tcpIn = (src: string, dport: number, flags = 0x02) => tcp6(OUT_MAC, GW_MAC, src, ME.addr6, 40000, dport, flags);

  t.equal((await dp.progs.ingress.testRun({ data: udp6f(ME.mac, GW_MAC, ME.addr6, CLIENT6, 5200, 53) })).retval >>> 0, TC_ACT_UNSPEC, 'the container\'s UDP flow out');
  const answer = udp6f(OUT_MAC, GW_MAC, CLIENT6, ME.addr6, 53, 5200);
  t.equal(await run(answer), TC_ACT_UNSPEC, 'its answer gets in (no policy)');
  t.equal(await run(tcpIn(CLIENT6, 80)), TC_ACT_UNSPEC, 'the published container port (no policy)');

  let n = program(`- action: deny\n  source: ${CLIENT6}\n  proto: tcp\n  port: 80\n`);
  let before = policyDrops();
  t.equal(await run(tcpIn(CLIENT6, 80)), TC_ACT_SHOT, 'deny source+tcp/80 (the container port): the SYN is dropped');
  t.equal(await run(tcpIn(CLIENT6, 80, 0x10)), TC_ACT_SHOT, '... and a later packet of the flow');
  t.equal(policyDrops(), before + 2n, '... counted as drop policy on the bridge');
  t.same(hits(n), [2n], '... and in the rule\'s hit counter');
  t.equal(await run(tcpIn(OTHER6, 80)), TC_ACT_UNSPEC, 'another client still gets in');
  t.equal(await run(udp6f(OUT_MAC, GW_MAC, CLIENT6, ME.addr6, 40000, 53)), TC_ACT_UNSPEC, 'the denied client\'s UDP to 53: not the rule\'s');
  t.equal(await run(ping6(CLIENT6, ME.addr6)), TC_ACT_UNSPEC, '... nor ICMPv6');

  n = program('- action: deny\n  container: web\n  proto: udp\n  port: 53\n');
  t.equal(await run(udp6f(OUT_MAC, GW_MAC, OTHER6, ME.addr6, 40000, 53)), TC_ACT_SHOT, 'container: web (its addr6), udp/53: dropped');
  t.equal(await run(tcpIn(OTHER6, 80)), TC_ACT_UNSPEC, '... TCP to 80 still gets in');
  t.same(hits(n), [1n], '... one hit');

  n = program(`- action: deny\n  source: ${CLIENT6}\n`);
  before = policyDrops();
  t.equal(await run(answer), TC_ACT_SHOT, 'deny source: the reply of a flow the container opened is cut');
  t.equal(await run(ping6(CLIENT6, ME.addr6)), TC_ACT_SHOT, '... ICMPv6 echo too');
  t.equal(policyDrops(), before + 2n, '... counted policy');
  t.same(hits(n), [2n], '... and as hits');
  const fr = drops(Direction.TO_CONTAINER, DropReason.FRAGMENT);
  t.equal(await run(f6(OUT_MAC, GW_MAC, CLIENT6, ME.addr6, udp6(40000, 53, Buffer.alloc(16)), [{ kind: 'frag', offset: 0, more: true, id: 78 }])), TC_ACT_SHOT, 'a UDP fragment: dropped all the same');
  t.equal(drops(Direction.TO_CONTAINER, DropReason.FRAGMENT), fr + 1n, '... as fragment, the policy not asked');
  t.equal(await run(tcp6(OUT_MAC, GW_MAC, NET.gateway6, ME.addr6, 40000, 81), 0), TC_ACT_UNSPEC, 'the host itself is not forwarded: no DOCKER-USER');

  n = program(`- action: allow\n  source: ${CLIENT6}\n- action: deny\n  network: rnet\n`);
  t.equal(await run(tcpIn(CLIENT6, 80)), TC_ACT_UNSPEC, 'allow for the client first: it gets in');
  before = policyDrops();
  t.equal(await run(tcpIn(OTHER6, 80)), TC_ACT_SHOT, 'deny network: rnet (its subnet6) for everyone else');
  t.equal(policyDrops(), before + 1n, '... counted policy');
  t.same(hits(n), [1n, 1n], 'hits: one each');

  program('- action: deny\n  source: 198.51.100.0/24\n');
  t.equal(await run(tcpIn(CLIENT6, 80)), TC_ACT_UNSPEC, 'an IPv4 source rule does not meet IPv6');
  program('[]\n');
  t.equal(await run(answer), TC_ACT_UNSPEC, 'no rules: the reply gets in again');
});
