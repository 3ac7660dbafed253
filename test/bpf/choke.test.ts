// The choke points on crafted packets through BPF_PROG_TEST_RUN: the bridge
// programs (tc_bridge.bpf.c) and the checks the veth programs gained (source
// validation, icc towards and from containers berth has not programmed).
// The kernel runs a test packet on the ctx's ifindex (which must exist), so
// the "bridge" and the "sending container" are programmed at ifindex 1 (lo);
// skb->ingress_ifindex comes from the ctx as well.
import t from 'tap';
import { Dataplane } from '../../src/platform/dataplane';
import {
  Direction,
  DropReason,
  EndpointFlags,
  bridgeCodec,
  counterKeyCodec,
  ctEntryCodec,
  ctKeyCodec,
  endpointCodec,
  ifindexKeyCodec,
  ipKeyCodec,
  netValueCodec,
  networkKeyCodec,
  sumPerCpuCounters,
  zeroPerCpuCounters,
} from '../../src/platform/contract';
import { skbTestContext } from '../../src/platform/native';
import { arpRequest, eth, ipv4, udp, udpFrame } from '../lib/packets';

const TC_ACT_UNSPEC = 0xffffffff;
const TC_ACT_SHOT = 2;
const TC_ACT_REDIRECT = 7;

const LO = 1;
const NET = { id: 1, subnet: '10.77.0.0', mask: '255.255.255.0', gateway: '10.77.0.1' };
const ME = { ifindex: LO, addr: '10.77.0.10', mac: '02:00:0a:4d:00:0a' };
const PEER = { ifindex: 2001, addr: '10.77.0.20', mac: '02:00:0a:4d:00:14' };
const OTHER_NET = { id: 2, bridge: 2100, subnet: '10.78.0.0', addr: '10.78.0.20', ifindex: 2002, mac: '02:00:0a:4e:00:14' };
const GW_MAC = '02:00:0a:4d:00:01';
const HOST_ADDR = '192.0.2.7';

function ctx(ifindex: number, ingressIfindex: number): Buffer {
  const c = skbTestContext(ifindex);
  c.writeUInt32LE(ingressIfindex, 36); // offsetof(struct __sk_buff, ingress_ifindex)
  return c;
}

async function setup(t: { teardown(fn: () => void): void }, name: string, fastPath = true): Promise<Dataplane> {
  const pinRoot = `/sys/fs/bpf/berth-test-choke-${process.pid}-${name}`;
  Dataplane.reset(pinRoot);
  const dp = await Dataplane.openOrLoad({ pinRoot, fastPath, natPortMin: 61000, natPortMax: 65535 });
  t.teardown(() => {
    dp.close();
    Dataplane.reset(pinRoot);
  });
  const put = (ep: { ifindex: number; addr: string; mac: string }, net: number, flags: number): void => {
    const v = endpointCodec.encode({ addr: ep.addr, ifindex: ep.ifindex, network_id: net, flags, mac: ep.mac });
    dp.maps.epByIfindex.update(ifindexKeyCodec.encode({ ifindex: ep.ifindex }), v);
    dp.maps.epByIp.update(ipKeyCodec.encode({ addr: ep.addr }), v);
  };
  put(ME, NET.id, EndpointFlags.ICC | EndpointFlags.MASQUERADE);
  put(PEER, NET.id, EndpointFlags.ICC | EndpointFlags.MASQUERADE);
  put(OTHER_NET, OTHER_NET.id, EndpointFlags.ICC);
  dp.maps.net.update(
    networkKeyCodec.encode({ network_id: NET.id }),
    netValueCodec.encode({ subnet: NET.subnet, mask: NET.mask, gateway: NET.gateway, flags: EndpointFlags.ICC, bridge_ifindex: LO, gw_mac: GW_MAC }),
  );
  dp.maps.bridge.update(ifindexKeyCodec.encode({ ifindex: LO }), bridgeCodec.encode({ network_id: NET.id, flags: EndpointFlags.ICC }));
  dp.maps.bridge.update(ifindexKeyCodec.encode({ ifindex: OTHER_NET.bridge }), bridgeCodec.encode({ network_id: OTHER_NET.id, flags: EndpointFlags.ICC }));
  dp.maps.hostAddr.update(ipKeyCodec.encode({ addr: HOST_ADDR }), Buffer.alloc(8));
  for (const direction of [Direction.FROM_CONTAINER, Direction.TO_CONTAINER])
    dp.maps.counters.update(counterKeyCodec.encode({ ifindex: LO, direction }), zeroPerCpuCounters(dp.cpus));
  return dp;
}

function drops(dp: Dataplane, direction: number, reason: number): bigint {
  const v = dp.maps.counters.lookup(counterKeyCodec.encode({ ifindex: LO, direction }));
  if (!v) throw new Error('no counters');
  return sumPerCpuCounters(v, dp.cpus).drop[reason].packets;
}

function setIcc(dp: Dataplane, icc: boolean): void {
  const flags = (icc ? EndpointFlags.ICC : 0) | EndpointFlags.MASQUERADE;
  for (const ep of [ME, PEER]) {
    const v = endpointCodec.encode({ addr: ep.addr, ifindex: ep.ifindex, network_id: NET.id, flags, mac: ep.mac });
    dp.maps.epByIfindex.update(ifindexKeyCodec.encode({ ifindex: ep.ifindex }), v);
    dp.maps.epByIp.update(ipKeyCodec.encode({ addr: ep.addr }), v);
  }
}

const ipv6Frame = (dst: number[]): Buffer => {
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(8, 4);
  h[6] = 17;
  h[7] = 64;
  h[8] = 0x20; // source 2001:db8::1
  h[9] = 0x01;
  h[10] = 0x0d;
  h[11] = 0xb8;
  h[23] = 1;
  Buffer.from(dst).copy(h, 24);
  return eth(ME.mac, GW_MAC, 0x86dd, Buffer.concat([h, Buffer.alloc(8)]));
};

t.test('bridge egress: only the host and the network itself send into a network', async (t) => {
  const dp = await setup(t, 'out');
  const run = async (data: Buffer, iif: number): Promise<number> => (await dp.progs.bridgeOut.testRun({ data, ctx: ctx(LO, iif) })).retval >>> 0;
  const toMe = udpFrame({ smac: GW_MAC, dmac: ME.mac, src: '198.51.100.9', dst: ME.addr });

  t.equal(await run(toMe, 0), TC_ACT_UNSPEC, 'sent by the host itself');
  t.equal(await run(toMe, LO), TC_ACT_UNSPEC, 'routed back from the same network');
  const np = drops(dp, Direction.TO_CONTAINER, DropReason.NOT_PUBLISHED);
  t.equal(await run(toMe, 3333), TC_ACT_SHOT, 'forwarded from another interface');
  t.equal(await run(udpFrame({ smac: GW_MAC, dmac: ME.mac, src: '198.51.100.9', dst: '10.77.0.99' }), 3333), TC_ACT_SHOT, 'to an address berth does not know');
  t.equal(drops(dp, Direction.TO_CONTAINER, DropReason.NOT_PUBLISHED), np + 2n, 'counted not_published on the bridge');
  const iso = drops(dp, Direction.TO_CONTAINER, DropReason.ISOLATION);
  t.equal(await run(udpFrame({ smac: GW_MAC, dmac: ME.mac, src: OTHER_NET.addr, dst: ME.addr }), OTHER_NET.bridge), TC_ACT_SHOT, 'from another network of berth');
  t.equal(drops(dp, Direction.TO_CONTAINER, DropReason.ISOLATION), iso + 1n, 'counted isolation');

  t.equal(await run(arpRequest(GW_MAC, NET.gateway, ME.addr), 3333), TC_ACT_UNSPEC, 'ARP is L2');
  t.equal(await run(ipv6Frame([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]), 3333), TC_ACT_UNSPEC, 'IPv6 link-local');
  t.equal(await run(ipv6Frame([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 5]), 3333), TC_ACT_UNSPEC, 'IPv6 multicast (NDP)');
  t.equal(await run(ipv6Frame([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]), 3333), TC_ACT_SHOT, 'routed IPv6 into a network without IPv6');
  const no6 = drops(dp, Direction.TO_CONTAINER, DropReason.NO_IPV6);
  t.equal(await run(ipv6Frame([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]), 0), TC_ACT_SHOT, 'routed IPv6 from the host itself into a network without IPv6');
  t.equal(drops(dp, Direction.TO_CONTAINER, DropReason.NO_IPV6), no6 + 1n, 'counted no_ipv6');
});

t.test('bridge ingress: a network speaks with its programmed endpoints only', async (t) => {
  const dp = await setup(t, 'in');
  const run = async (data: Buffer): Promise<number> => (await dp.progs.bridgeIn.testRun({ data, ctx: ctx(LO, LO) })).retval >>> 0;
  const from = (src: string, dst: string): Buffer => udpFrame({ smac: '02:00:0a:4d:00:63', dmac: GW_MAC, src, dst });

  t.equal(await run(from(ME.addr, '198.51.100.9')), TC_ACT_UNSPEC, 'a programmed endpoint going out');
  const unk = drops(dp, Direction.FROM_CONTAINER, DropReason.UNKNOWN_SOURCE);
  t.equal(await run(from('10.77.0.99', '198.51.100.9')), TC_ACT_SHOT, 'a container berth has not programmed may not leave');
  t.equal(drops(dp, Direction.FROM_CONTAINER, DropReason.UNKNOWN_SOURCE), unk + 1n, 'counted unknown_source');
  t.equal(await run(from('10.77.0.99', NET.gateway)), TC_ACT_UNSPEC, '... but reaches the gateway');
  t.equal(await run(from('10.77.0.99', HOST_ADDR)), TC_ACT_UNSPEC, '... and the host\'s own addresses');
  const sp = drops(dp, Direction.FROM_CONTAINER, DropReason.SPOOFED);
  t.equal(await run(from('203.0.113.5', HOST_ADDR)), TC_ACT_SHOT, 'a source outside the subnet');
  t.equal(await run(from(OTHER_NET.addr, '198.51.100.9')), TC_ACT_SHOT, 'the address of another network\'s container');
  t.equal(drops(dp, Direction.FROM_CONTAINER, DropReason.SPOOFED), sp + 2n, 'counted spoofed');
  const dhcp = eth(GW_MAC, '02:00:0a:4d:00:63', 0x0800, ipv4({ src: '0.0.0.0', dst: '255.255.255.255', proto: 17 }, udp('0.0.0.0', '255.255.255.255', 68, 67)));
  t.equal(await run(dhcp), TC_ACT_UNSPEC, 'a DHCP client');
  t.equal(await run(arpRequest('02:00:0a:4d:00:63', '10.77.0.99', NET.gateway)), TC_ACT_UNSPEC, 'ARP');

  dp.maps.bridge.delete(ifindexKeyCodec.encode({ ifindex: LO }));
  t.equal(await run(from(ME.addr, '198.51.100.9')), TC_ACT_SHOT, 'a bridge whose entry is gone refuses');
});

t.test('veth ingress: a container speaks only with its own address', async (t) => {
  const dp = await setup(t, 'spoof');
  const run = async (data: Buffer): Promise<number> => (await dp.progs.ingress.testRun({ data })).retval >>> 0;
  const sp = drops(dp, Direction.FROM_CONTAINER, DropReason.SPOOFED);
  t.equal(await run(udpFrame({ smac: ME.mac, dmac: GW_MAC, src: PEER.addr, dst: '198.51.100.9' })), TC_ACT_SHOT, 'a neighbour\'s address, going out');
  t.equal(await run(udpFrame({ smac: ME.mac, dmac: PEER.mac, src: '10.77.0.99', dst: PEER.addr })), TC_ACT_SHOT, 'another address of the subnet, to a neighbour');
  t.equal(await run(udpFrame({ smac: ME.mac, dmac: GW_MAC, src: '203.0.113.5', dst: HOST_ADDR })), TC_ACT_SHOT, 'an outside address, to the host');

  // a flow of the neighbour's, as the uplink would have tracked it: the
  // spoofer must not steer it (the source check comes before conntrack)
  const key = ctKeyCodec.encode({ saddr: PEER.addr, daddr: '198.51.100.9', sport: 5000, dport: 53, proto: 17 });
  const entry = ctEntryCodec.encode({
    rewrite: { saddr: HOST_ADDR, daddr: '198.51.100.9', sport: 5000, dport: 53, proto: 17 },
    created_ns: 0n, last_seen_ns: 0n, packets: 0n, bytes: 0n,
    out_ifindex: LO, out_kind: 1, count_ifindex: 0, out_smac: GW_MAC, out_dmac: GW_MAC,
    state: 1, flags: 8 | 16, tcp_flags_seen: 0, tcp_end: 0, tcp_ack: 0, tcp_win: 0, tcp_wscale: 0,
  });
  dp.maps.ct.update(key, entry);
  t.equal(await run(udpFrame({ smac: ME.mac, dmac: GW_MAC, src: PEER.addr, dst: '198.51.100.9', sport: 5000, dport: 53 })), TC_ACT_SHOT, 'a neighbour\'s tracked flow');
  t.equal(drops(dp, Direction.FROM_CONTAINER, DropReason.SPOOFED), sp + 4n, 'all counted spoofed');

  const dhcp = eth(GW_MAC, ME.mac, 0x0800, ipv4({ src: '0.0.0.0', dst: NET.gateway, proto: 17 }, udp('0.0.0.0', NET.gateway, 68, 67)));
  t.equal(await run(dhcp), TC_ACT_UNSPEC, 'a DHCP client without an address');
  t.equal(await run(udpFrame({ smac: ME.mac, dmac: PEER.mac, src: ME.addr, dst: PEER.addr })), TC_ACT_REDIRECT, 'its own address still goes');
});

t.test('icc off towards and from containers berth has not programmed', async (t) => {
  const dp = await setup(t, 'icc');
  setIcc(dp, false);
  const ingress = async (data: Buffer): Promise<number> => (await dp.progs.ingress.testRun({ data })).retval >>> 0;
  const egress = async (data: Buffer, iif: number): Promise<number> => (await dp.progs.egress.testRun({ data, ctx: ctx(LO, iif) })).retval >>> 0;
  const icc0 = drops(dp, Direction.FROM_CONTAINER, DropReason.ICC);
  t.equal(await ingress(udpFrame({ smac: ME.mac, dmac: '02:00:0a:4d:00:63', src: ME.addr, dst: '10.77.0.99' })), TC_ACT_SHOT, 'to an unknown container of the network');
  t.equal(drops(dp, Direction.FROM_CONTAINER, DropReason.ICC), icc0 + 1n, 'counted icc');
  t.equal(await ingress(udpFrame({ smac: ME.mac, dmac: GW_MAC, src: ME.addr, dst: NET.gateway })), TC_ACT_UNSPEC, 'the gateway still answers');

  const iccIn = drops(dp, Direction.TO_CONTAINER, DropReason.ICC);
  t.equal(await egress(udpFrame({ smac: '02:00:0a:4d:00:63', dmac: ME.mac, src: '10.77.0.99', dst: ME.addr }), 4444), TC_ACT_SHOT, 'from an unknown container, through the bridge');
  t.equal(drops(dp, Direction.TO_CONTAINER, DropReason.ICC), iccIn + 1n, 'counted icc on the receiving veth');
  t.equal(await egress(udpFrame({ smac: GW_MAC, dmac: ME.mac, src: NET.gateway, dst: ME.addr }), 0), TC_ACT_UNSPEC, 'from the gateway (the host)');
  t.equal(await egress(udpFrame({ smac: GW_MAC, dmac: ME.mac, src: '198.51.100.9', dst: ME.addr }), 0), TC_ACT_UNSPEC, 'an outside address');

  setIcc(dp, true);
  t.equal(await ingress(udpFrame({ smac: ME.mac, dmac: '02:00:0a:4d:00:63', src: ME.addr, dst: '10.77.0.99' })), TC_ACT_UNSPEC, 'icc on: to an unknown container passes');
  t.equal(await egress(udpFrame({ smac: '02:00:0a:4d:00:63', dmac: ME.mac, src: '10.77.0.99', dst: ME.addr }), 4444), TC_ACT_UNSPEC, 'icc on: from one too');
});

t.test('fast path off: the bridge programs count and pass', async (t) => {
  const dp = await setup(t, 'slow', false);
  const toMe = udpFrame({ smac: GW_MAC, dmac: ME.mac, src: '198.51.100.9', dst: ME.addr });
  t.equal((await dp.progs.bridgeOut.testRun({ data: toMe, ctx: ctx(LO, 3333) })).retval >>> 0, TC_ACT_UNSPEC);
  t.equal((await dp.progs.bridgeIn.testRun({ data: udpFrame({ smac: ME.mac, dmac: GW_MAC, src: '10.77.0.99', dst: '198.51.100.9' }), ctx: ctx(LO, LO) })).retval >>> 0, TC_ACT_UNSPEC);
});

t.test('cost per packet of the new checks (reported, not asserted)', async (t) => {
  const dp = await setup(t, 'cost');
  const c2c = await dp.progs.ingress.testRun({ data: udpFrame({ smac: ME.mac, dmac: PEER.mac, src: ME.addr, dst: PEER.addr }), repeat: 100000 });
  t.equal(c2c.retval >>> 0, TC_ACT_REDIRECT);
  const out = await dp.progs.bridgeOut.testRun({ data: udpFrame({ smac: GW_MAC, dmac: ME.mac, src: '198.51.100.9', dst: ME.addr }), ctx: ctx(LO, 0), repeat: 100000 });
  const inn = await dp.progs.bridgeIn.testRun({ data: udpFrame({ smac: ME.mac, dmac: GW_MAC, src: ME.addr, dst: '198.51.100.9' }), ctx: ctx(LO, LO), repeat: 100000 });
  const eg = await dp.progs.egress.testRun({ data: udpFrame({ smac: GW_MAC, dmac: ME.mac, src: '198.51.100.9', dst: ME.addr }), ctx: ctx(LO, 0), repeat: 100000 });
  t.comment(`berth_veth_ingress c2c redirect ${c2c.duration} ns, berth_veth_egress ${eg.duration} ns, berth_br_out ${out.duration} ns, berth_br_in ${inn.duration} ns (BPF_PROG_TEST_RUN, repeat 100000)`);
  t.pass('measured');
});
