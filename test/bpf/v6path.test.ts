// The IPv6 datapath's forwarding and guards (issue 12; lib/guard6.h and the
// v6 functions of the entry programs) on crafted frames through
// BPF_PROG_TEST_RUN: the container veth's ingress (source check, container to
// container, isolation, icc, internal, a network without IPv6, IPv4 from an
// IPv6-only network), its egress (icc for senders berth has not programmed),
// the bridge's choke point both ways and the uplink (TC and XDP). As in
// choke.test.ts the "sending container" and the "bridge" are programmed at
// ifindex 1 (lo), which the kernel's test run needs to exist.
import t from 'tap';
import { Dataplane } from '../../src/platform/dataplane';
import {
  Direction,
  DropReason,
  EndpointFlags,
  MapName,
  bridgeCodec,
  counterKeyCodec,
  monitorCfgCodec,
  endpointCodec,
  ifindexKeyCodec,
  ip6KeyCodec,
  ipKeyCodec,
  netValueCodec,
  networkKeyCodec,
  sumPerCpuCounters,
  zeroPerCpuCounters,
} from '../../src/platform/contract';
import { le32 } from '../../src/platform/codec';
import { native, skbTestContext } from '../../src/platform/native';
import { decodeEvent, formatEvent } from '../../src/observe/monitor';
import { eth, ipv4, udp, udpFrame } from '../lib/packets';
import { Ext, Ip6Opts, NH, Upper, frame6, icmp6, udp6 } from '../lib/ipv6ref';

const TC_ACT_UNSPEC = 0xffffffff;
const TC_ACT_SHOT = 2;
const TC_ACT_REDIRECT = 7;
const XDP_DROP = 1;
const XDP_PASS = 2;

const LO = 1;
const NET = { id: 1, subnet: '10.86.1.0', mask: '255.255.255.0', gateway: '10.86.1.1', subnet6: 'fd86:1::', mask6: 'ffff:ffff:ffff:ffff::', gateway6: 'fd86:1::1' };
const ME = { ifindex: LO, addr: '10.86.1.10', addr6: 'fd86:1::10', mac: '02:00:0a:56:01:0a' };
const PEER = { ifindex: 2001, addr: '10.86.1.20', addr6: 'fd86:1::20', mac: '02:00:0a:56:01:14' };
const OTHER = { id: 2, bridge: 2100, ifindex: 2002, addr: '10.86.2.20', addr6: 'fd86:2::20', mac: '02:00:0a:56:02:14' };
const GW_MAC = '02:00:0a:56:01:01';
const HOST6 = '2001:db8:86::7';
const OUTSIDE6 = '2001:db8:99::5';
const V6 = EndpointFlags.ICC | EndpointFlags.MASQUERADE | EndpointFlags.IPV6;

function ctx(ifindex: number, ingressIfindex: number): Buffer {
  const c = skbTestContext(ifindex);
  c.writeUInt32LE(ingressIfindex, 36); // offsetof(struct __sk_buff, ingress_ifindex)
  return c;
}

interface Env {
  dp: Dataplane;
  /** re-program ME (and PEER, on NET) with these flags, network and IPv6 setting */
  program(flags: number, network?: number): void;
  drops(direction: number, reason: number): bigint;
  redirects(ifindex: number, direction: number): bigint;
}

async function setup(t: { teardown(fn: () => void): void }, name: string): Promise<Env> {
  const pinRoot = `/sys/fs/bpf/berth-v6path-bpf-${process.pid}-${name}`;
  Dataplane.reset(pinRoot);
  const dp = await Dataplane.openOrLoad({ pinRoot, fastPath: true, natPortMin: 61000, natPortMax: 65535 });
  t.teardown(() => {
    dp.close();
    Dataplane.reset(pinRoot);
  });
  const put = (ep: { ifindex: number; addr: string; addr6: string; mac: string }, net: number, flags: number): void => {
    const v6 = (flags & EndpointFlags.IPV6) !== 0;
    const v = endpointCodec.encode({ addr: ep.addr, ifindex: ep.ifindex, network_id: net, flags, mac: ep.mac, addr6: v6 ? ep.addr6 : '::' });
    dp.maps.epByIfindex.update(ifindexKeyCodec.encode({ ifindex: ep.ifindex }), v);
    dp.maps.epByIp.update(ipKeyCodec.encode({ addr: ep.addr }), v);
    if (v6) dp.maps.epByIp6.update(ip6KeyCodec.encode({ addr: ep.addr6 }), v);
    else dp.maps.epByIp6.delete(ip6KeyCodec.encode({ addr: ep.addr6 }));
  };
  const putNet = (flags: number): void => {
    const v6 = (flags & EndpointFlags.IPV6) !== 0;
    dp.maps.net.update(
      networkKeyCodec.encode({ network_id: NET.id }),
      netValueCodec.encode({
        subnet: NET.subnet, mask: NET.mask, gateway: NET.gateway, flags, bridge_ifindex: LO, gw_mac: GW_MAC,
        subnet6: v6 ? NET.subnet6 : '::', mask6: v6 ? NET.mask6 : '::', gateway6: v6 ? NET.gateway6 : '::',
      }),
    );
    dp.maps.bridge.update(ifindexKeyCodec.encode({ ifindex: LO }), bridgeCodec.encode({ network_id: NET.id, flags }));
  };
  const program = (flags: number, network = NET.id): void => {
    put(ME, network, flags);
    put(PEER, NET.id, flags);
    putNet(flags);
  };
  program(V6);
  put(OTHER, OTHER.id, V6);
  dp.maps.bridge.update(ifindexKeyCodec.encode({ ifindex: OTHER.bridge }), bridgeCodec.encode({ network_id: OTHER.id, flags: V6 }));
  dp.maps.hostAddr6.update(ip6KeyCodec.encode({ addr: HOST6 }), Buffer.alloc(8));
  for (const ifindex of [LO, PEER.ifindex])
    for (const direction of [Direction.FROM_CONTAINER, Direction.TO_CONTAINER])
      dp.maps.counters.update(counterKeyCodec.encode({ ifindex, direction }), zeroPerCpuCounters(dp.cpus));
  const counters = (ifindex: number, direction: number) => {
    const v = dp.maps.counters.lookup(counterKeyCodec.encode({ ifindex, direction }));
    if (!v) throw new Error('no counters');
    return sumPerCpuCounters(v, dp.cpus);
  };
  return {
    dp,
    program,
    drops: (direction, reason) => counters(LO, direction).drop[reason].packets,
    redirects: (ifindex, direction) => counters(ifindex, direction).redirect.packets,
  };
}

/** an IPv6 frame from ME's MAC to dmac */
function f6(o: Ip6Opts & { dmac?: string; smac?: string }, up: Upper = udp6(40000, 5353), exts: Ext[] = []): Buffer {
  const f = frame6({ src: ME.addr6, dst: PEER.addr6, ...o }, exts, up);
  Buffer.from((o.dmac ?? PEER.mac).split(':').map((h) => parseInt(h, 16))).copy(f, 0);
  Buffer.from((o.smac ?? ME.mac).split(':').map((h) => parseInt(h, 16))).copy(f, 6);
  return f;
}

const NS = 135; // neighbour solicitation
const SOLICITED = 'ff02::1:ff00:20';

t.test('veth ingress: container to container over IPv6', async (t) => {
  const env = await setup(t, 'c2c');
  const run = (data: Buffer) => env.dp.progs.ingress.testRun({ data });
  const r0 = env.redirects(PEER.ifindex, Direction.TO_CONTAINER);
  const sent = f6({ dmac: GW_MAC });
  const res = await run(sent);
  t.equal(res.retval >>> 0, TC_ACT_REDIRECT, 'to a neighbour on the same network: redirected');
  t.same(res.data.subarray(0, 6), Buffer.from(PEER.mac.split(':').map((h) => parseInt(h, 16))), 'the destination MAC is the neighbour\'s');
  t.same(res.data.subarray(6), sent.subarray(6), 'the rest of the frame unchanged');
  t.equal(env.redirects(PEER.ifindex, Direction.TO_CONTAINER), r0 + 1n, 'counted as a redirect on the neighbour\'s veth');

  const ext = await run(f6({}, udp6(40000, 5353), [{ kind: 'hop' }, { kind: 'dest' }, { kind: 'routing', segsLeft: 0 }]));
  t.equal(ext.retval >>> 0, TC_ACT_REDIRECT, 'extension headers before the UDP header');
  const first = await run(f6({}, udp6(40000, 5353, Buffer.alloc(64)), [{ kind: 'frag', offset: 0, more: true, id: 7 }]));
  t.equal(first.retval >>> 0, TC_ACT_REDIRECT, 'a first fragment');
  const later = await run(f6({}, { proto: NH.UDP, bytes: Buffer.alloc(64) }, [{ kind: 'frag', offset: 72, more: false, id: 7 }]));
  t.equal(later.retval >>> 0, TC_ACT_REDIRECT, 'a later fragment goes the same way (by address)');

  const iso = env.drops(Direction.FROM_CONTAINER, DropReason.ISOLATION);
  t.equal((await run(f6({ dst: OTHER.addr6 }))).retval >>> 0, TC_ACT_SHOT, 'to a container of another network');
  t.equal((await run(f6({ dst: OTHER.addr6 }, udp6(1, 2, Buffer.alloc(16)), [{ kind: 'frag', offset: 0, more: true, id: 9 }]))).retval >>> 0, TC_ACT_SHOT, '... a first fragment too');
  t.equal(env.drops(Direction.FROM_CONTAINER, DropReason.ISOLATION), iso + 2n, 'counted isolation');

  t.equal((await run(f6({ dst: ME.addr6 }))).retval >>> 0, TC_ACT_UNSPEC, 'to itself: the kernel\'s');
  t.equal((await run(f6({ dst: OUTSIDE6, dmac: GW_MAC }))).retval >>> 0, TC_ACT_UNSPEC, 'to the outside: passed (masquerade is NAT66\'s)');
  t.equal((await run(f6({ dst: HOST6, dmac: GW_MAC }))).retval >>> 0, TC_ACT_UNSPEC, 'to a host address');
  t.equal((await run(f6({ dst: NET.gateway6, dmac: GW_MAC }))).retval >>> 0, TC_ACT_UNSPEC, 'to the gateway');
});

t.test('veth ingress: a container speaks IPv6 only with its own addresses', async (t) => {
  const env = await setup(t, 'spoof');
  const run = async (data: Buffer) => (await env.dp.progs.ingress.testRun({ data })).retval >>> 0;
  const sp = env.drops(Direction.FROM_CONTAINER, DropReason.SPOOFED);
  t.equal(await run(f6({ src: 'fd86:1::99' })), TC_ACT_SHOT, 'another address of the subnet, to a neighbour');
  t.equal(await run(f6({ src: PEER.addr6, dst: OUTSIDE6, dmac: GW_MAC })), TC_ACT_SHOT, 'the neighbour\'s address, going out');
  t.equal(await run(f6({ src: OUTSIDE6, dst: HOST6, dmac: GW_MAC })), TC_ACT_SHOT, 'an outside address, to the host');
  t.equal(await run(f6({ src: '::', dst: HOST6, dmac: GW_MAC })), TC_ACT_SHOT, ':: with UDP');
  t.equal(await run(f6({ src: '::', dst: SOLICITED, dmac: '33:33:ff:00:00:20', hop: 64 }, icmp6(NS))), TC_ACT_SHOT, 'a neighbour solicitation from :: with hop limit 64 is no NDP');
  t.equal(await run(f6({ src: 'fd86:1::99' }, udp6(1, 2, Buffer.alloc(16)), [{ kind: 'dest' }, { kind: 'frag', offset: 0, more: true, id: 3 }])), TC_ACT_SHOT, 'spoofed, behind extension headers');
  t.equal(env.drops(Direction.FROM_CONTAINER, DropReason.SPOOFED), sp + 6n, 'all counted spoofed');

  t.equal(await run(f6({ src: '::', dst: SOLICITED, dmac: '33:33:ff:00:00:20', hop: 255 }, icmp6(NS))), TC_ACT_UNSPEC, 'duplicate address detection (NS from ::, hop limit 255)');
  t.equal(await run(f6({ src: 'fe80::10', dst: 'fe80::20' })), TC_ACT_UNSPEC, 'link-local to link-local');
  t.equal(await run(f6({ src: 'fe80::10', dst: SOLICITED, dmac: '33:33:ff:00:00:20', hop: 255 }, icmp6(NS))), TC_ACT_UNSPEC, 'neighbour solicitation');
  t.equal(await run(f6({ src: ME.addr6, dst: 'ff02::2', dmac: '33:33:00:00:00:02', hop: 255 }, icmp6(133))), TC_ACT_UNSPEC, 'router solicitation from its own address');
});

t.test('veth ingress: a container\'s IPv6 to ::1 is a counted drop (the kernel would drop it on the bridge uncounted)', async (t) => {
  const env = await setup(t, 'lo6');
  const run = async (data: Buffer) => (await env.dp.progs.ingress.testRun({ data })).retval >>> 0;
  const lo = env.drops(Direction.FROM_CONTAINER, DropReason.LOOPBACK_ONLY);
  t.equal(await run(f6({ dst: '::1', dmac: GW_MAC }, udp6(40000, 32500))), TC_ACT_SHOT, 'UDP to [::1]');
  t.equal(await run(f6({ dst: '::1', dmac: GW_MAC }, icmp6(128))), TC_ACT_SHOT, 'an echo request to ::1');
  t.equal(await run(f6({ dst: '::1', dmac: GW_MAC }, udp6(40000, 32500), [{ kind: 'dest' }])), TC_ACT_SHOT, 'behind an extension header');
  t.equal(env.drops(Direction.FROM_CONTAINER, DropReason.LOOPBACK_ONLY), lo + 3n, 'all counted loopback_only');
  t.equal(await run(f6({ dst: '::2', dmac: GW_MAC })), TC_ACT_UNSPEC, '::2 is no loopback address: the masquerade path\'s (no uplink here: passed)');
});

t.test('veth ingress: icc off and internal networks over IPv6', async (t) => {
  const env = await setup(t, 'icc');
  const run = async (data: Buffer) => (await env.dp.progs.ingress.testRun({ data })).retval >>> 0;
  env.program(V6 & ~EndpointFlags.ICC);
  const icc = env.drops(Direction.FROM_CONTAINER, DropReason.ICC);
  t.equal(await run(f6({})), TC_ACT_SHOT, 'to a programmed neighbour');
  t.equal(await run(f6({ dst: 'fd86:1::99' })), TC_ACT_SHOT, 'to a neighbour berth has not programmed');
  t.equal(env.drops(Direction.FROM_CONTAINER, DropReason.ICC), icc + 2n, 'counted icc');
  t.equal(await run(f6({ dst: NET.gateway6, dmac: GW_MAC })), TC_ACT_UNSPEC, 'the gateway still answers');
  t.equal(await run(f6({ src: 'fe80::10', dst: SOLICITED, dmac: '33:33:ff:00:00:20', hop: 255 }, icmp6(NS))), TC_ACT_UNSPEC, 'NDP still works');
  t.equal(await run(f6({ hop: 255 }, icmp6(136))), TC_ACT_UNSPEC, 'a unicast neighbour advertisement to a neighbour (hop limit 255)');
  t.equal(await run(f6({ hop: 64 }, icmp6(136))), TC_ACT_SHOT, '... with hop limit 64 it is no NDP: icc');

  env.program(V6 | EndpointFlags.INTERNAL);
  const int = env.drops(Direction.FROM_CONTAINER, DropReason.INTERNAL);
  t.equal(await run(f6({ dst: OUTSIDE6, dmac: GW_MAC })), TC_ACT_SHOT, 'internal: leaving the subnet');
  t.equal(env.drops(Direction.FROM_CONTAINER, DropReason.INTERNAL), int + 1n, 'counted internal');
  t.equal(await run(f6({ dst: 'fd86:1::99', dmac: '02:00:0a:56:01:63' })), TC_ACT_UNSPEC, 'internal: inside the subnet');
  t.equal((await env.dp.progs.ingress.testRun({ data: f6({}) })).retval >>> 0, TC_ACT_REDIRECT, 'internal: to a neighbour');
});

t.test('a network without IPv6 gets only link traffic; an IPv6-only network no IPv4', async (t) => {
  const env = await setup(t, 'family');
  const ingress = async (data: Buffer) => (await env.dp.progs.ingress.testRun({ data })).retval >>> 0;
  const out = async (data: Buffer, iif: number) => (await env.dp.progs.bridgeOut.testRun({ data, ctx: ctx(LO, iif) })).retval >>> 0;
  env.program(EndpointFlags.ICC | EndpointFlags.MASQUERADE);
  const n0 = env.drops(Direction.FROM_CONTAINER, DropReason.NO_IPV6);
  t.equal(await ingress(f6({ dst: OUTSIDE6, dmac: GW_MAC })), TC_ACT_SHOT, 'a self-given address, going out');
  t.equal(await ingress(f6({ src: 'fe80::10', dst: OUTSIDE6, dmac: GW_MAC })), TC_ACT_SHOT, 'link-local source to a routable address');
  t.equal(await ingress(f6({ dst: SOLICITED, dmac: '33:33:ff:00:00:20', hop: 64 }, icmp6(NS))), TC_ACT_SHOT, 'NDP-looking with hop limit 64: routable');
  t.equal(env.drops(Direction.FROM_CONTAINER, DropReason.NO_IPV6), n0 + 3n, 'counted no_ipv6');
  t.equal(await ingress(f6({ src: 'fe80::10', dst: 'fe80::20' })), TC_ACT_UNSPEC, 'link-local passes');
  t.equal(await ingress(f6({ src: 'fe80::10', dst: SOLICITED, dmac: '33:33:ff:00:00:20', hop: 255 }, icmp6(NS))), TC_ACT_UNSPEC, 'NDP passes');
  t.equal(await ingress(f6({ src: 'fe80::10', dst: 'ff02::16', dmac: '33:33:00:00:00:16', hop: 1 }, icmp6(143))), TC_ACT_UNSPEC, 'MLDv2 report passes');

  const b0 = env.drops(Direction.TO_CONTAINER, DropReason.NO_IPV6);
  t.equal(await out(f6({ src: OUTSIDE6, dst: 'fd86:1::10', smac: GW_MAC, dmac: ME.mac }), 0), TC_ACT_SHOT, 'the bridge: routed IPv6 from the host');
  t.equal(env.drops(Direction.TO_CONTAINER, DropReason.NO_IPV6), b0 + 1n, 'counted no_ipv6 on the bridge');
  t.equal(await out(f6({ src: 'fe80::1', dst: 'fe80::10', smac: GW_MAC, dmac: ME.mac }), 0), TC_ACT_UNSPEC, 'the bridge: link-local passes');

  env.program(EndpointFlags.ICC | EndpointFlags.MASQUERADE | EndpointFlags.IPV6 | EndpointFlags.NO_IPV4);
  const n1 = env.drops(Direction.FROM_CONTAINER, DropReason.NO_IPV6);
  t.equal(await ingress(udpFrame({ smac: ME.mac, dmac: PEER.mac, src: ME.addr, dst: PEER.addr })), TC_ACT_SHOT, 'IPv6-only: IPv4 to a neighbour');
  t.equal(await ingress(udpFrame({ smac: ME.mac, dmac: GW_MAC, src: ME.addr, dst: '198.51.100.9' })), TC_ACT_SHOT, 'IPv6-only: IPv4 going out');
  const dhcp = eth('ff:ff:ff:ff:ff:ff', ME.mac, 0x0800, ipv4({ src: '0.0.0.0', dst: '255.255.255.255', proto: 17 }, udp('0.0.0.0', '255.255.255.255', 68, 67)));
  t.equal(await ingress(dhcp), TC_ACT_SHOT, 'IPv6-only: no DHCP');
  t.equal(env.drops(Direction.FROM_CONTAINER, DropReason.NO_IPV6), n1 + 3n, 'counted no_ipv6');
  t.equal((await env.dp.progs.ingress.testRun({ data: f6({}) })).retval >>> 0, TC_ACT_REDIRECT, 'IPv6-only: IPv6 to a neighbour goes');
});

t.test('veth ingress: malformed IPv6 is the kernel\'s, what berth will not parse is dropped', async (t) => {
  const env = await setup(t, 'malformed');
  const run = async (data: Buffer) => (await env.dp.progs.ingress.testRun({ data })).retval >>> 0;
  const good = f6({});
  t.equal(await run(good.subarray(0, 14 + 40 + 4)), TC_ACT_UNSPEC, 'payload length past the frame: passed untouched for the kernel to drop');
  t.equal(await run(f6({ payloadLen: 200 })), TC_ACT_UNSPEC, 'payload length past the packet');
  t.equal(await run(f6({ version: 4 })), TC_ACT_UNSPEC, 'version 4 in an IPv6 frame');
  t.equal(await run(f6({}, udp6(1, 2), [{ kind: 'dest' }, { kind: 'hop' }])), TC_ACT_UNSPEC, 'hop-by-hop not first');
  t.equal(await run(f6({}, { proto: NH.UDP, bytes: Buffer.alloc(4) }, [{ kind: 'frag', offset: 0, more: true, id: 1 }])), TC_ACT_UNSPEC, 'a first fragment without its whole UDP header');
  const m0 = env.drops(Direction.FROM_CONTAINER, DropReason.MALFORMED);
  const nine: Ext[] = Array.from({ length: 9 }, () => ({ kind: 'dest' as const }));
  t.equal(await run(f6({ src: 'fd86:1::99' }, udp6(1, 2), nine)), TC_ACT_SHOT, 'nine extension headers: dropped');
  const two: Ext[] = [{ kind: 'frag', offset: 0, more: true, id: 1 }, { kind: 'frag', offset: 0, more: true, id: 2 }];
  t.equal(await run(f6({}, udp6(1, 2, Buffer.alloc(16)), two)), TC_ACT_SHOT, 'two fragment headers: dropped');
  const jumbo = f6({ payloadLen: 0 }, udp6(1, 2), [{ kind: 'hop' }]);
  t.equal(await run(jumbo), TC_ACT_SHOT, 'a jumbogram: dropped');
  t.equal(env.drops(Direction.FROM_CONTAINER, DropReason.MALFORMED), m0 + 3n, 'counted malformed');
});

t.test('veth egress: icc over IPv6 for senders berth has not programmed', async (t) => {
  const env = await setup(t, 'egress');
  env.program(V6 & ~EndpointFlags.ICC);
  const run = async (data: Buffer, iif: number) => (await env.dp.progs.egress.testRun({ data, ctx: ctx(LO, iif) })).retval >>> 0;
  const to = (src: string, dst = ME.addr6): Buffer => f6({ src, dst, smac: '02:00:0a:56:01:63', dmac: ME.mac });
  const icc = env.drops(Direction.TO_CONTAINER, DropReason.ICC);
  t.equal(await run(to('fd86:1::99'), 4444), TC_ACT_SHOT, 'from an unknown container through the bridge');
  t.equal(env.drops(Direction.TO_CONTAINER, DropReason.ICC), icc + 1n, 'counted icc on the receiving veth');
  t.equal(await run(to(NET.gateway6), 0), TC_ACT_UNSPEC, 'from the gateway');
  t.equal(await run(to(OUTSIDE6), 0), TC_ACT_UNSPEC, 'from outside (the bridge\'s egress judged it)');
  t.equal(await run(f6({ src: 'fd86:1::99', dst: 'ff02::1:ff00:10', smac: '02:00:0a:56:01:63', dmac: '33:33:ff:00:00:10', hop: 255 }, icmp6(NS)), 4444), TC_ACT_UNSPEC, 'NDP from a neighbour');
  t.equal(await run(f6({ src: 'fd86:1::99', dst: ME.addr6, smac: '02:00:0a:56:01:63', dmac: ME.mac, hop: 255 }, icmp6(136)), 4444), TC_ACT_UNSPEC, 'a unicast neighbour advertisement');
  t.equal(await run(f6({ src: 'fd86:1::99', dst: ME.addr6, smac: '02:00:0a:56:01:63', dmac: ME.mac, hop: 64 }, icmp6(136)), 4444), TC_ACT_SHOT, '... with hop limit 64: icc');
  env.program(V6);
  t.equal(await run(to('fd86:1::99'), 4444), TC_ACT_UNSPEC, 'icc on: passes');
});

t.test('bridge egress: routed IPv6 into a network only from the host or itself', async (t) => {
  const env = await setup(t, 'brout');
  const run = async (data: Buffer, iif: number) => (await env.dp.progs.bridgeOut.testRun({ data, ctx: ctx(LO, iif) })).retval >>> 0;
  const toMe = f6({ src: OUTSIDE6, dst: ME.addr6, smac: GW_MAC, dmac: ME.mac });
  t.equal(await run(toMe, 0), TC_ACT_UNSPEC, 'sent by the host itself');
  t.equal(await run(toMe, LO), TC_ACT_UNSPEC, 'routed back from the same network');
  const np = env.drops(Direction.TO_CONTAINER, DropReason.NOT_PUBLISHED);
  t.equal(await run(toMe, 3333), TC_ACT_SHOT, 'forwarded from another interface: direct access');
  t.equal(await run(f6({ src: OUTSIDE6, dst: 'fd86:1::99', smac: GW_MAC, dmac: ME.mac }), 3333), TC_ACT_SHOT, 'to an address berth does not know');
  t.equal(env.drops(Direction.TO_CONTAINER, DropReason.NOT_PUBLISHED), np + 2n, 'counted not_published');
  const iso = env.drops(Direction.TO_CONTAINER, DropReason.ISOLATION);
  t.equal(await run(f6({ src: OTHER.addr6, dst: ME.addr6, smac: GW_MAC, dmac: ME.mac }), OTHER.bridge), TC_ACT_SHOT, 'from another network of berth\'s');
  t.equal(env.drops(Direction.TO_CONTAINER, DropReason.ISOLATION), iso + 1n, 'counted isolation');
  t.equal(await run(f6({ src: 'fe80::1', dst: 'fe80::10', smac: GW_MAC, dmac: ME.mac }), 3333), TC_ACT_UNSPEC, 'link-local');
  t.equal(await run(f6({ src: 'fe80::1', dst: 'ff02::1', smac: GW_MAC, dmac: '33:33:00:00:00:01', hop: 255 }, icmp6(134)), 3333), TC_ACT_UNSPEC, 'router advertisement');
});

t.test('bridge ingress: a network speaks IPv6 with its programmed endpoints only', async (t) => {
  const env = await setup(t, 'brin');
  const run = async (data: Buffer) => (await env.dp.progs.bridgeIn.testRun({ data, ctx: ctx(LO, LO) })).retval >>> 0;
  const from = (src: string, dst: string, up?: Upper, hop?: number): Buffer => f6({ src, dst, smac: '02:00:0a:56:01:63', dmac: GW_MAC, hop }, up);
  t.equal(await run(from(ME.addr6, OUTSIDE6)), TC_ACT_UNSPEC, 'a programmed endpoint going out');
  const unk = env.drops(Direction.FROM_CONTAINER, DropReason.UNKNOWN_SOURCE);
  t.equal(await run(from('fd86:1::99', OUTSIDE6)), TC_ACT_SHOT, 'a container berth has not programmed may not leave');
  t.equal(env.drops(Direction.FROM_CONTAINER, DropReason.UNKNOWN_SOURCE), unk + 1n, 'counted unknown_source');
  t.equal(await run(from('fd86:1::99', NET.gateway6)), TC_ACT_UNSPEC, '... but reaches the gateway');
  t.equal(await run(from('fd86:1::99', HOST6)), TC_ACT_UNSPEC, '... and the host\'s own addresses');
  const sp = env.drops(Direction.FROM_CONTAINER, DropReason.SPOOFED);
  t.equal(await run(from(OUTSIDE6, HOST6)), TC_ACT_SHOT, 'a source outside the subnet');
  t.equal(await run(from(OTHER.addr6, OUTSIDE6)), TC_ACT_SHOT, 'another network\'s container');
  t.equal(await run(from('::', OUTSIDE6)), TC_ACT_SHOT, ':: with UDP');
  t.equal(env.drops(Direction.FROM_CONTAINER, DropReason.SPOOFED), sp + 3n, 'counted spoofed');
  t.equal(await run(from('::', SOLICITED, icmp6(NS), 255)), TC_ACT_UNSPEC, 'duplicate address detection');
  t.equal(await run(from('fe80::99', 'fe80::1')), TC_ACT_UNSPEC, 'link-local');

  env.program(EndpointFlags.ICC | EndpointFlags.MASQUERADE);
  const n6 = env.drops(Direction.FROM_CONTAINER, DropReason.NO_IPV6);
  t.equal(await run(from('fd86:1::99', OUTSIDE6)), TC_ACT_SHOT, 'a network without IPv6 sends none');
  t.equal(env.drops(Direction.FROM_CONTAINER, DropReason.NO_IPV6), n6 + 1n, 'counted no_ipv6');
  t.equal(await run(from('fe80::99', SOLICITED, icmp6(NS), 255)), TC_ACT_UNSPEC, '... but NDP');
});

t.test('uplink (TC and XDP): a container\'s IPv6 address and ::1 from outside', async (t) => {
  const env = await setup(t, 'uplink');
  const up = async (data: Buffer) => (await env.dp.progs.uplink.testRun({ data, ctx: skbTestContext(LO) })).retval >>> 0;
  const xdp = async (data: Buffer) => (await env.dp.progs.xdp.testRun({ data })).retval >>> 0;
  const inbound = (dst: string): Buffer => f6({ src: OUTSIDE6, dst, smac: '02:00:00:00:99:01', dmac: GW_MAC });
  const np = env.drops(Direction.FROM_CONTAINER, DropReason.NOT_PUBLISHED);
  t.equal(await up(inbound(ME.addr6)), TC_ACT_SHOT, 'TC: to a container\'s address');
  t.equal(await xdp(inbound(PEER.addr6)), XDP_DROP, 'XDP: to a container\'s address');
  t.equal(env.drops(Direction.FROM_CONTAINER, DropReason.NOT_PUBLISHED), np + 2n, 'counted not_published');
  const lo = env.drops(Direction.FROM_CONTAINER, DropReason.LOOPBACK_ONLY);
  t.equal(await up(inbound('::1')), TC_ACT_SHOT, 'TC: to ::1');
  t.equal(await xdp(inbound('::1')), XDP_DROP, 'XDP: to ::1');
  t.equal(env.drops(Direction.FROM_CONTAINER, DropReason.LOOPBACK_ONLY), lo + 2n, 'counted loopback_only');
  t.equal(await up(inbound(HOST6)), TC_ACT_UNSPEC, 'TC: to a host address: the kernel\'s');
  t.equal(await xdp(inbound(HOST6)), XDP_PASS, 'XDP: to a host address');
  t.equal(await up(inbound('fd86:1::99')), TC_ACT_UNSPEC, 'TC: an address of the subnet berth does not know: the bridge decides');
});

t.test('drop events carry IPv6 addresses, and berth monitor prints them', async (t) => {
  const env = await setup(t, 'events');
  const root = `/sys/fs/bpf/berth-v6path-bpf-${process.pid}-events`;
  const n = native();
  const mon = n.openPinnedMap(`${root}/${MapName.MONITOR}`);
  const rb = n.openRingBuffer(`${root}/${MapName.EVENTS}`);
  t.teardown(() => {
    mon.update(le32(0), monitorCfgCodec.encode({ enabled: 0, rate_per_sec: 0, burst: 0 }));
    rb.close();
    mon.close();
  });
  const got: Buffer[] = [];
  rb.start((records) => got.push(...records));
  mon.update(le32(0), monitorCfgCodec.encode({ enabled: 1, rate_per_sec: 1000, burst: 1000 }));
  const r = await env.dp.progs.uplink.testRun({ data: f6({ src: OUTSIDE6, dst: ME.addr6, smac: '02:00:00:00:99:01', dmac: GW_MAC }, udp6(41234, 8080)), ctx: skbTestContext(LO) });
  t.equal(r.retval >>> 0, TC_ACT_SHOT, 'dropped not_published');
  const deadline = Date.now() + 3000;
  while (got.length < 1 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
  t.equal(got.length, 1, 'one record');
  const ev = decodeEvent(got[0], { name: () => ({ container: '', network: '', interface: 'lo', uplink: true }) });
  t.equal(ev.reason, 'not_published');
  t.equal(ev.src, OUTSIDE6);
  t.equal(ev.dst, ME.addr6);
  t.equal(ev.sport, 41234);
  t.equal(ev.dport, 8080);
  t.match(formatEvent(ev), `[${OUTSIDE6}]:41234 -> [${ME.addr6}]:8080`, 'printed with brackets');
});

t.test('cost per packet of the v6 paths (reported, not asserted)', async (t) => {
  const env = await setup(t, 'cost');
  const N = 100000;
  const c2c = await env.dp.progs.ingress.testRun({ data: f6({}), repeat: N });
  t.equal(c2c.retval >>> 0, TC_ACT_REDIRECT);
  const out = await env.dp.progs.ingress.testRun({ data: f6({ dst: OUTSIDE6, dmac: GW_MAC }), repeat: N });
  const bo = await env.dp.progs.bridgeOut.testRun({ data: f6({ src: OUTSIDE6, dst: ME.addr6, smac: GW_MAC, dmac: ME.mac }), ctx: ctx(LO, 0), repeat: N });
  const bi = await env.dp.progs.bridgeIn.testRun({ data: f6({ dst: OUTSIDE6, dmac: GW_MAC }), ctx: ctx(LO, LO), repeat: N });
  t.comment(`IPv6: berth_veth_ingress c2c redirect ${c2c.duration} ns, going out ${out.duration} ns, berth_br_out ${bo.duration} ns, berth_br_in ${bi.duration} ns (BPF_PROG_TEST_RUN, repeat ${N})`);
  t.pass('measured');
});
