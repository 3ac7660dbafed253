// Routed networks (gateway_mode_ipv4=routed, lib/routed.h) on crafted packets
// through BPF_PROG_TEST_RUN: what the bridge's choke point lets in (ICMP,
// published container ports, replies of the container's own flows), what the
// served interfaces let through to it, and the flows a routed container opens
// (tracked with an identity rewrite, never translated), and the user policy
// (DOCKER-USER, lib/routed_policy.h) on every packet let in. As in choke.test.ts,
// the bridge and the sending container sit at ifindex 1 (lo), where the kernel
// runs the test packets; skb->ingress_ifindex comes from the ctx.
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
import { eth, icmpEcho, ipv4, tcp, udp } from '../lib/packets';

const TC_ACT_UNSPEC = 0xffffffff;
const TC_ACT_SHOT = 2;
const XDP_DROP = 1;
const XDP_PASS = 2;
const TCP = 6;
const UDP = 17;
const ICMP = 1;

const LO = 1;
const OUTSIDE_IF = 3333; // the interface a forwarded packet came in by
const NET = { id: 1, subnet: '10.93.250.0', mask: '255.255.255.0', gateway: '10.93.250.1' };
const ME = { ifindex: LO, addr: '10.93.250.10', mac: '02:00:0a:5d:fa:0a' };
const NAT_NET = { id: 2, bridge: 2100, subnet: '10.93.251.0', gateway: '10.93.251.1' };
const NATC = { ifindex: 2002, addr: '10.93.251.20', mac: '02:00:0a:5d:fb:14' };
const GW_MAC = '02:00:0a:5d:fa:01';
const OUT_MAC = '02:00:c6:33:64:09';
const CLIENT = '198.51.100.9';

function ctx(ifindex: number, ingressIfindex: number): Buffer {
  const c = skbTestContext(ifindex);
  c.writeUInt32LE(ingressIfindex, 36); // offsetof(struct __sk_buff, ingress_ifindex)
  return c;
}

async function setup(t: { teardown(fn: () => void): void }, name: string): Promise<Dataplane> {
  const pinRoot = `/sys/fs/bpf/berth-test-rt${process.pid}-${name}`;
  Dataplane.reset(pinRoot);
  const dp = await Dataplane.openOrLoad({ pinRoot, natPortMin: 61000, natPortMax: 65535 });
  t.teardown(() => {
    dp.close();
    Dataplane.reset(pinRoot);
  });
  const routed = EndpointFlags.ICC | EndpointFlags.ROUTED;
  const put = (ep: { ifindex: number; addr: string; mac: string }, net: number, flags: number): void => {
    const v = endpointCodec.encode({ addr: ep.addr, ifindex: ep.ifindex, network_id: net, flags, mac: ep.mac });
    dp.maps.epByIfindex.update(ifindexKeyCodec.encode({ ifindex: ep.ifindex }), v);
    dp.maps.epByIp.update(ipKeyCodec.encode({ addr: ep.addr }), v);
  };
  put(ME, NET.id, routed);
  put(NATC, NAT_NET.id, EndpointFlags.ICC | EndpointFlags.MASQUERADE);
  dp.maps.net.update(
    networkKeyCodec.encode({ network_id: NET.id }),
    netValueCodec.encode({ subnet: NET.subnet, mask: NET.mask, gateway: NET.gateway, flags: routed, bridge_ifindex: LO, gw_mac: GW_MAC }),
  );
  dp.maps.bridge.update(ifindexKeyCodec.encode({ ifindex: LO }), bridgeCodec.encode({ network_id: NET.id, flags: routed }));
  dp.maps.bridge.update(ifindexKeyCodec.encode({ ifindex: NAT_NET.bridge }), bridgeCodec.encode({ network_id: NAT_NET.id, flags: EndpointFlags.ICC | EndpointFlags.MASQUERADE }));
  // -p 8080:80 and -p 5353:53/udp on the routed network: the container ports, on its own address
  for (const [port, proto] of [[80, TCP], [53, UDP]] as const)
    dp.maps.publish.update(
      publishKeyCodec.encode({ host_addr: ME.addr, host_port: port, proto }),
      publishValueCodec.encode({ addr: ME.addr, port, flags: PublishFlags.ROUTED, ifindex: ME.ifindex, network_id: NET.id, mac: ME.mac }),
    );
  for (const direction of [Direction.FROM_CONTAINER, Direction.TO_CONTAINER])
    dp.maps.counters.update(counterKeyCodec.encode({ ifindex: LO, direction }), zeroPerCpuCounters(dp.cpus));
  return dp;
}

function drops(dp: Dataplane, direction: number, reason: number): bigint {
  const v = dp.maps.counters.lookup(counterKeyCodec.encode({ ifindex: LO, direction }));
  if (!v) throw new Error('no counters');
  return sumPerCpuCounters(v, dp.cpus).drop[reason].packets;
}

const tcpFrame = (smac: string, dmac: string, src: string, dst: string, sport: number, dport: number, flags = 0x02, seq = {}): Buffer =>
  eth(dmac, smac, 0x0800, ipv4({ src, dst, proto: TCP }, tcp(src, dst, sport, dport, flags, Buffer.alloc(0), seq)));
const udpFrame = (smac: string, dmac: string, src: string, dst: string, sport: number, dport: number, frag?: number): Buffer =>
  eth(dmac, smac, 0x0800, ipv4({ src, dst, proto: UDP, frag }, udp(src, dst, sport, dport)));
const pingFrame = (smac: string, dmac: string, src: string, dst: string): Buffer => eth(dmac, smac, 0x0800, ipv4({ src, dst, proto: ICMP }, icmpEcho(7, 1)));

t.test('bridge egress of a routed network: ICMP and published container ports get in, the rest is not_published', async (t) => {
  const dp = await setup(t, 'entry');
  const run = async (data: Buffer, iif = OUTSIDE_IF): Promise<number> => (await dp.progs.bridgeOut.testRun({ data, ctx: ctx(LO, iif) })).retval >>> 0;
  const np = drops(dp, Direction.TO_CONTAINER, DropReason.NOT_PUBLISHED);

  t.equal(await run(tcpFrame(GW_MAC, ME.mac, CLIENT, ME.addr, 40000, 80)), TC_ACT_UNSPEC, 'TCP to the published container port 80');
  t.equal(await run(udpFrame(GW_MAC, ME.mac, CLIENT, ME.addr, 40000, 53)), TC_ACT_UNSPEC, 'UDP to the published container port 53');
  t.equal(await run(pingFrame(GW_MAC, ME.mac, CLIENT, ME.addr)), TC_ACT_UNSPEC, 'ICMP echo (-o br -p icmp -j ACCEPT)');
  t.equal(await run(tcpFrame(GW_MAC, ME.mac, CLIENT, ME.addr, 40000, 8080)), TC_ACT_SHOT, 'TCP to the host port, on the container address');
  t.equal(await run(tcpFrame(GW_MAC, ME.mac, CLIENT, ME.addr, 40000, 81)), TC_ACT_SHOT, 'TCP to an unpublished port');
  t.equal(await run(udpFrame(GW_MAC, ME.mac, CLIENT, ME.addr, 40000, 80)), TC_ACT_SHOT, 'UDP to a port published for TCP only');
  t.equal(await run(tcpFrame(GW_MAC, ME.mac, CLIENT, '10.93.250.99', 40000, 80)), TC_ACT_SHOT, 'another address of the subnet on that port');
  t.equal(drops(dp, Direction.TO_CONTAINER, DropReason.NOT_PUBLISHED), np + 4n, 'counted not_published on the bridge');

  const fr = drops(dp, Direction.TO_CONTAINER, DropReason.FRAGMENT);
  t.equal(await run(udpFrame(GW_MAC, ME.mac, CLIENT, ME.addr, 40000, 53, 0x2000)), TC_ACT_SHOT, 'a first fragment, even to the published port');
  t.equal(drops(dp, Direction.TO_CONTAINER, DropReason.FRAGMENT), fr + 1n, 'counted fragment');
  const iso = drops(dp, Direction.TO_CONTAINER, DropReason.ISOLATION);
  t.equal(await run(tcpFrame(GW_MAC, ME.mac, NATC.addr, ME.addr, 40000, 80), NAT_NET.bridge), TC_ACT_SHOT, 'from another network of berth\'s: still isolation');
  t.equal(drops(dp, Direction.TO_CONTAINER, DropReason.ISOLATION), iso + 1n, 'counted isolation');
  t.equal(await run(tcpFrame(GW_MAC, ME.mac, NET.gateway, ME.addr, 40000, 81), 0), TC_ACT_UNSPEC, 'the host itself reaches any port');

  // the same bridge in nat mode: its published ports are host ports, nothing direct gets in
  dp.maps.bridge.update(ifindexKeyCodec.encode({ ifindex: LO }), bridgeCodec.encode({ network_id: NET.id, flags: EndpointFlags.ICC | EndpointFlags.MASQUERADE }));
  t.equal(await run(tcpFrame(GW_MAC, ME.mac, CLIENT, ME.addr, 40000, 80)), TC_ACT_SHOT, 'nat mode: the container port is not reachable directly');
  t.equal(await run(pingFrame(GW_MAC, ME.mac, CLIENT, ME.addr)), TC_ACT_SHOT, 'nat mode: nor by ICMP');
  dp.maps.bridge.delete(ifindexKeyCodec.encode({ ifindex: LO }));
  t.equal(await run(pingFrame(GW_MAC, ME.mac, CLIENT, ME.addr)), TC_ACT_SHOT, 'a bridge whose entry is gone refuses');
});

t.test('a flow the routed container opens: tracked, untranslated, its replies let in, nothing else', async (t) => {
  const dp = await setup(t, 'flow');
  const veth = async (data: Buffer) => dp.progs.ingress.testRun({ data });
  const brOut = async (data: Buffer) => dp.progs.bridgeOut.testRun({ data, ctx: ctx(LO, OUTSIDE_IF) });
  const up = async (data: Buffer) => dp.progs.uplink.testRun({ data, ctx: skbTestContext(LO) });

  const syn = tcpFrame(ME.mac, GW_MAC, ME.addr, CLIENT, 41000, 443, 0x02, { seq: 1000 });
  const r1 = await veth(syn);
  t.equal(r1.retval >>> 0, TC_ACT_UNSPEC, 'the SYN goes to the kernel');
  t.same(r1.data, syn, 'untranslated, byte for byte');
  const orig = dp.maps.ct.lookup(ctKeyCodec.encode({ saddr: ME.addr, daddr: CLIENT, sport: 41000, dport: 443, proto: TCP }));
  const rkey = ctKeyCodec.encode({ saddr: CLIENT, daddr: ME.addr, sport: 443, dport: 41000, proto: TCP });
  const reply = dp.maps.ct.lookup(rkey);
  t.ok(orig && reply, 'both halves recorded');
  const o = ctEntryCodec.decode(orig!);
  t.equal(o.flags & CtFlags.ROUTED, CtFlags.ROUTED, 'flagged routed');
  t.same([o.rewrite.saddr, o.rewrite.daddr, o.rewrite.sport, o.rewrite.dport], [ME.addr, CLIENT, 41000, 443], 'identity rewrite');

  const synack = tcpFrame(OUT_MAC, GW_MAC, CLIENT, ME.addr, 443, 41000, 0x12, { seq: 5000, ack: 1001 });
  const u = await up(synack);
  t.equal(u.retval >>> 0, TC_ACT_UNSPEC, 'the served interface passes the reply to the kernel');
  t.same(u.data, synack, 'untranslated');
  const b = await brOut(synack);
  t.equal(b.retval >>> 0, TC_ACT_UNSPEC, 'the bridge lets the SYN-ACK in');
  t.equal(ctEntryCodec.decode(dp.maps.ct.lookup(rkey)!).packets, 1n, 'accounted on the reply half');
  const ack = tcpFrame(ME.mac, GW_MAC, ME.addr, CLIENT, 41000, 443, 0x10, { seq: 1001, ack: 5001 });
  const r2 = await veth(ack);
  t.equal(r2.retval >>> 0, TC_ACT_UNSPEC, 'the ACK goes to the kernel');
  t.same(r2.data, ack, 'untranslated');
  t.equal(ctEntryCodec.decode(dp.maps.ct.lookup(ctKeyCodec.encode({ saddr: ME.addr, daddr: CLIENT, sport: 41000, dport: 443, proto: TCP }))!).state, 1, 'established');

  const np = drops(dp, Direction.TO_CONTAINER, DropReason.NOT_PUBLISHED);
  t.equal((await brOut(tcpFrame(OUT_MAC, GW_MAC, CLIENT, ME.addr, 443, 41001, 0x12))).retval >>> 0, TC_ACT_SHOT, 'the same peer to another port of the container');
  t.equal((await brOut(tcpFrame(OUT_MAC, GW_MAC, '198.51.100.10', ME.addr, 443, 41000, 0x12))).retval >>> 0, TC_ACT_SHOT, 'another peer to the flow\'s port');
  t.equal(drops(dp, Direction.TO_CONTAINER, DropReason.NOT_PUBLISHED), np + 2n, 'counted not_published');

  // UDP: the datagram out, its answer in
  t.equal((await veth(udpFrame(ME.mac, GW_MAC, ME.addr, CLIENT, 5000, 53))).retval >>> 0, TC_ACT_UNSPEC, 'a UDP datagram out');
  t.equal((await brOut(udpFrame(OUT_MAC, GW_MAC, CLIENT, ME.addr, 53, 5000))).retval >>> 0, TC_ACT_UNSPEC, 'its answer in');
  t.equal((await brOut(udpFrame(OUT_MAC, GW_MAC, CLIENT, ME.addr, 53, 5001))).retval >>> 0, TC_ACT_SHOT, 'not to another port');

  // an ICMP error about the flow, from outside: nothing to translate, passed as it is
  const quoted = ipv4({ src: ME.addr, dst: CLIENT, proto: UDP }, udp(ME.addr, CLIENT, 5000, 53)).subarray(0, 28);
  const icmp = Buffer.concat([Buffer.from([3, 3, 0, 0, 0, 0, 0, 0]), quoted]);
  const { checksum } = await import('../lib/packets');
  icmp.writeUInt16BE(checksum(icmp), 2);
  const err = eth(GW_MAC, OUT_MAC, 0x0800, ipv4({ src: CLIENT, dst: ME.addr, proto: ICMP }, icmp));
  const ue = await up(err);
  t.equal(ue.retval >>> 0, TC_ACT_UNSPEC, 'port unreachable about the flow: passed');
  t.same(ue.data, err, 'untranslated');
  t.equal((await brOut(err)).retval >>> 0, TC_ACT_UNSPEC, 'and let in (ICMP)');

  // a DHCP client's 0.0.0.0:68 is no tuple of its own: passed, never recorded (another
  // container sending the same tuple would otherwise ride on the flow: found by the fuzzer)
  const dhcp = eth('00:ff:ff:ff:ff:ff', ME.mac, 0x0800, ipv4({ src: '0.0.0.0', dst: '255.255.255.255', proto: UDP }, udp('0.0.0.0', '255.255.255.255', 68, 67)));
  t.equal((await veth(dhcp)).retval >>> 0, TC_ACT_UNSPEC, 'a DHCP client (unicast MAC) passes');
  t.equal(dp.maps.ct.lookup(ctKeyCodec.encode({ saddr: '0.0.0.0', daddr: '255.255.255.255', sport: 68, dport: 67, proto: UDP })), null, 'and is not recorded');

  // the container answering on its published port: not recorded (its peers reach that port anyway)
  const before = (await dp.maps.ct.dump()).length;
  t.equal((await veth(tcpFrame(ME.mac, GW_MAC, ME.addr, CLIENT, 80, 40000, 0x12))).retval >>> 0, TC_ACT_UNSPEC, 'a SYN-ACK from port 80');
  t.equal((await dp.maps.ct.dump()).length, before, 'no flow recorded');
});

t.test('served interfaces: a routed container\'s address is let through for the bridge to decide; a nat one\'s still refused', async (t) => {
  const dp = await setup(t, 'uplink');
  const up = async (data: Buffer) => (await dp.progs.uplink.testRun({ data, ctx: skbTestContext(LO) })).retval >>> 0;
  const xdp = async (data: Buffer) => (await dp.progs.xdp.testRun({ data })).retval >>> 0;
  const toMe = tcpFrame(OUT_MAC, GW_MAC, CLIENT, ME.addr, 40000, 81);
  const toNat = tcpFrame(OUT_MAC, GW_MAC, CLIENT, NATC.addr, 40000, 80);
  t.equal(await up(toMe), TC_ACT_UNSPEC, 'tc: to the routed container (any port: its bridge decides)');
  t.equal(await up(toNat), TC_ACT_SHOT, 'tc: to a nat network\'s container');
  t.equal(await xdp(toMe), XDP_PASS, 'xdp: to the routed container');
  t.equal(await xdp(toNat), XDP_DROP, 'xdp: to a nat network\'s container');
  t.equal(await up(tcpFrame(OUT_MAC, GW_MAC, CLIENT, '127.0.0.1', 40000, 80)), TC_ACT_SHOT, 'tc: 127.0.0.0/8 from outside, as ever');
});

t.test('table full: a routed container\'s new flow is refused and counted, never passed untracked', async (t) => {
  const pinRoot = `/sys/fs/bpf/berth-test-rt${process.pid}-full`;
  Dataplane.reset(pinRoot);
  const dp = await Dataplane.openOrLoad({ pinRoot, natPortMin: 61000, natPortMax: 65535, ctMax: 8, ctUnassuredMax: 1 });
  t.teardown(() => {
    dp.close();
    Dataplane.reset(pinRoot);
  });
  const routed = EndpointFlags.ICC | EndpointFlags.ROUTED;
  const v = endpointCodec.encode({ addr: ME.addr, ifindex: ME.ifindex, network_id: NET.id, flags: routed, mac: ME.mac });
  dp.maps.epByIfindex.update(ifindexKeyCodec.encode({ ifindex: ME.ifindex }), v);
  dp.maps.epByIp.update(ipKeyCodec.encode({ addr: ME.addr }), v);
  dp.maps.net.update(
    networkKeyCodec.encode({ network_id: NET.id }),
    netValueCodec.encode({ subnet: NET.subnet, mask: NET.mask, gateway: NET.gateway, flags: routed, bridge_ifindex: LO, gw_mac: GW_MAC }),
  );
  dp.maps.bridge.update(ifindexKeyCodec.encode({ ifindex: LO }), bridgeCodec.encode({ network_id: NET.id, flags: routed }));
  dp.maps.counters.update(counterKeyCodec.encode({ ifindex: LO, direction: Direction.FROM_CONTAINER }), zeroPerCpuCounters(dp.cpus));
  // assured flows fill the table: eviction may not touch them
  for (let i = 0; i < 4; i++) {
    t.equal((await dp.progs.ingress.testRun({ data: udpFrame(ME.mac, GW_MAC, ME.addr, CLIENT, 6000 + i, 53) })).retval >>> 0, TC_ACT_UNSPEC, `flow ${i} out`);
    t.equal((await dp.progs.bridgeOut.testRun({ data: udpFrame(OUT_MAC, GW_MAC, CLIENT, ME.addr, 53, 6000 + i), ctx: ctx(LO, OUTSIDE_IF) })).retval >>> 0, TC_ACT_UNSPEC, `flow ${i} answered: assured`);
  }
  const full = drops(dp, Direction.FROM_CONTAINER, DropReason.CT_FULL);
  t.equal((await dp.progs.ingress.testRun({ data: udpFrame(ME.mac, GW_MAC, ME.addr, CLIENT, 7000, 53) })).retval >>> 0, TC_ACT_SHOT, 'a new flow with no room');
  t.equal(drops(dp, Direction.FROM_CONTAINER, DropReason.CT_FULL), full + 1n, 'counted ct_full');
});

t.test('cost per packet of the routed paths (reported, not asserted)', async (t) => {
  const dp = await setup(t, 'cost');
  const syn = tcpFrame(ME.mac, GW_MAC, ME.addr, CLIENT, 42000, 443, 0x02, { seq: 1000 });
  t.equal((await dp.progs.ingress.testRun({ data: syn })).retval >>> 0, TC_ACT_UNSPEC);
  const synack = tcpFrame(OUT_MAC, GW_MAC, CLIENT, ME.addr, 443, 42000, 0x12, { seq: 5000, ack: 1001 });
  t.equal((await dp.progs.bridgeOut.testRun({ data: synack, ctx: ctx(LO, OUTSIDE_IF) })).retval >>> 0, TC_ACT_UNSPEC);
  const ack = tcpFrame(ME.mac, GW_MAC, ME.addr, CLIENT, 42000, 443, 0x10, { seq: 1001, ack: 5001 });
  t.equal((await dp.progs.ingress.testRun({ data: ack })).retval >>> 0, TC_ACT_UNSPEC);
  const N = 100000;
  const out = await dp.progs.ingress.testRun({ data: ack, repeat: N });
  const reply = await dp.progs.bridgeOut.testRun({ data: tcpFrame(OUT_MAC, GW_MAC, CLIENT, ME.addr, 443, 42000, 0x10, { seq: 5001, ack: 1001 }), ctx: ctx(LO, OUTSIDE_IF), repeat: N });
  const pub = await dp.progs.bridgeOut.testRun({ data: tcpFrame(GW_MAC, ME.mac, CLIENT, ME.addr, 40000, 80, 0x10), ctx: ctx(LO, OUTSIDE_IF), repeat: N });
  const refused = await dp.progs.bridgeOut.testRun({ data: tcpFrame(GW_MAC, ME.mac, CLIENT, ME.addr, 40000, 81), ctx: ctx(LO, OUTSIDE_IF), repeat: N });
  const up = await dp.progs.uplink.testRun({ data: tcpFrame(OUT_MAC, GW_MAC, CLIENT, ME.addr, 443, 42000, 0x10, { seq: 5001, ack: 1001 }), ctx: skbTestContext(LO), repeat: N });
  t.same([out, reply, pub, up].map((r) => r.retval >>> 0), [TC_ACT_UNSPEC, TC_ACT_UNSPEC, TC_ACT_UNSPEC, TC_ACT_UNSPEC]);
  t.equal(refused.retval >>> 0, TC_ACT_SHOT);
  t.comment(
    `routed, per packet (BPF_PROG_TEST_RUN, repeat ${N}): berth_veth_ingress tracked flow out ${out.duration} ns, berth_up_in its reply ${up.duration} ns, ` +
      `berth_br_out its reply ${reply.duration} ns, a published container port ${pub.duration} ns, an unpublished one (drop) ${refused.duration} ns`,
  );
});

t.test('the user policy (DOCKER-USER) on every packet into a routed network, on its own header', async (t) => {
  const dp = await setup(t, 'policy');
  const maps = openPolicyMaps(dp);
  t.teardown(() => closePolicyMaps(maps));
  const names = namesFrom(new Map([['web', ME.addr]]), new Map([['rnet', `${NET.subnet}/24`]]));
  const program = (yaml: string): number => {
    const p = parsePolicy(yaml, 'policy.yaml');
    writePolicy(maps, policySlots(p, names));
    return p.rules.length;
  };
  const hits = (n: number): bigint[] => readPolicyHits(maps, n).map((h) => h.packets);
  const run = async (data: Buffer, iif = OUTSIDE_IF): Promise<number> => (await dp.progs.bridgeOut.testRun({ data, ctx: ctx(LO, iif) })).retval >>> 0;
  const policyDrops = (): bigint => drops(dp, Direction.TO_CONTAINER, DropReason.POLICY);
  const OTHER = '198.51.100.77';
  const tcpIn = (src: string, dport: number, flags = 0x02) => tcpFrame(OUT_MAC, GW_MAC, src, ME.addr, 40000, dport, flags);

  // a flow the container opened, answered while nothing is denied
  t.equal((await dp.progs.ingress.testRun({ data: udpFrame(ME.mac, GW_MAC, ME.addr, CLIENT, 5100, 53) })).retval >>> 0, TC_ACT_UNSPEC, 'the container\'s UDP flow out');
  const answer = udpFrame(OUT_MAC, GW_MAC, CLIENT, ME.addr, 53, 5100);
  t.equal(await run(answer), TC_ACT_UNSPEC, 'its answer gets in (no policy)');
  t.equal(await run(tcpIn(CLIENT, 80)), TC_ACT_UNSPEC, 'the published container port (no policy)');

  // `port:` is the container port: a routed publish has no host port
  let n = program('- action: deny\n  source: 198.51.100.9\n  proto: tcp\n  port: 80\n');
  let before = policyDrops();
  t.equal(await run(tcpIn(CLIENT, 80)), TC_ACT_SHOT, 'deny source+tcp/80: the published container port 80 is cut (SYN)');
  t.equal(await run(tcpIn(CLIENT, 80, 0x10)), TC_ACT_SHOT, '... and a later packet of an established flow (ACK): berth keeps no state to skip it');
  t.equal(policyDrops(), before + 2n, '... counted as drop policy on the bridge');
  t.same(hits(n), [2n], '... and in the rule\'s hit counter');
  t.equal(await run(tcpIn(OTHER, 80)), TC_ACT_UNSPEC, 'another client still gets in');
  t.equal(await run(udpFrame(OUT_MAC, GW_MAC, CLIENT, ME.addr, 40000, 53)), TC_ACT_UNSPEC, 'the denied client\'s UDP to 53: the rule is tcp/80 only');
  t.equal(await run(pingFrame(OUT_MAC, GW_MAC, CLIENT, ME.addr)), TC_ACT_UNSPEC, '... nor ICMP, which has no port');

  n = program('- action: deny\n  container: web\n  port: 8080\n');
  t.equal(await run(tcpIn(CLIENT, 80)), TC_ACT_UNSPEC, 'the host port of `-p 8080:80` means nothing for a routed container: no match');
  t.same(hits(n), [0n], '... no hit');
  n = program('- action: deny\n  container: web\n  port: 53\n');
  t.equal(await run(udpFrame(OUT_MAC, GW_MAC, OTHER, ME.addr, 40000, 53)), TC_ACT_SHOT, 'container: web, port 53: the UDP datagram to the container port is dropped');
  t.equal(await run(tcpIn(OTHER, 80)), TC_ACT_UNSPEC, '... TCP to 80 still gets in');
  t.same(hits(n), [1n], '... one hit');

  // a source rule meets everything the client sends in: a reply of the container's own flow, ICMP
  n = program('- action: deny\n  source: 198.51.100.9\n');
  before = policyDrops();
  t.equal(await run(answer), TC_ACT_SHOT, 'deny source: the reply of a flow the container opened is cut (DOCKER-USER sees it before DOCKER-CT)');
  t.equal(await run(pingFrame(OUT_MAC, GW_MAC, CLIENT, ME.addr)), TC_ACT_SHOT, '... ICMP echo too');
  t.equal(await run(tcpIn(CLIENT, 81)), TC_ACT_SHOT, '... and an unpublished port (dropped either way)');
  t.equal(policyDrops(), before + 3n, '... all counted as policy (the user\'s rule comes first, as in Docker)');
  t.same(hits(n), [3n], '... and as hits');
  t.equal(await run(tcpIn(OTHER, 80)), TC_ACT_UNSPEC, 'another client still gets in');
  const frBefore = drops(dp, Direction.TO_CONTAINER, DropReason.FRAGMENT);
  t.equal(await run(udpFrame(OUT_MAC, GW_MAC, CLIENT, ME.addr, 40000, 53, 0x2000)), TC_ACT_SHOT, 'a UDP fragment (ports unknown to berth): dropped all the same');
  t.equal(drops(dp, Direction.TO_CONTAINER, DropReason.FRAGMENT), frBefore + 1n, '... as fragment, the policy not asked');
  t.equal(await run(tcpFrame(GW_MAC, ME.mac, CLIENT, ME.addr, 40000, 81), 0), TC_ACT_UNSPEC, 'the host itself is not forwarded: no DOCKER-USER');

  // the first matching rule decides; allow goes on to berth's own checks
  n = program('- action: allow\n  source: 198.51.100.9\n- action: deny\n  network: rnet\n');
  t.equal(await run(tcpIn(CLIENT, 80)), TC_ACT_UNSPEC, 'allow for the client first: it gets in');
  t.equal(await run(tcpIn(CLIENT, 81)), TC_ACT_SHOT, '... an allowed client still meets berth\'s own checks (unpublished port)');
  before = policyDrops();
  t.equal(await run(tcpIn(OTHER, 80)), TC_ACT_SHOT, 'deny network: rnet for everyone else');
  t.equal(policyDrops(), before + 1n, '... counted policy');
  t.same(hits(n), [2n, 1n], 'hits: the allow twice, the deny once');

  // an IPv6 rule never meets IPv4; no rules: everything as before
  program('- action: deny\n  source: 2001:db8::/32\n');
  t.equal(await run(tcpIn(CLIENT, 80)), TC_ACT_UNSPEC, 'an IPv6 source rule does not meet IPv4');
  program('[]\n');
  t.equal(await run(answer), TC_ACT_UNSPEC, 'no rules: the reply gets in again');
  t.equal(await run(tcpIn(CLIENT, 80)), TC_ACT_UNSPEC, '... and the published port');

  // a nat network's container address stays not_published, whatever the policy says
  program('- action: allow\n  source: 198.51.100.9\n');
  dp.maps.bridge.update(ifindexKeyCodec.encode({ ifindex: LO }), bridgeCodec.encode({ network_id: NET.id, flags: EndpointFlags.ICC | EndpointFlags.MASQUERADE }));
  t.equal(await run(tcpIn(CLIENT, 80)), TC_ACT_SHOT, 'nat mode: an allow rule does not open the container address');
});
