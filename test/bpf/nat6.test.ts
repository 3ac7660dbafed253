// NAT66 through BPF_PROG_TEST_RUN on the real objects (tc_veth, tc_uplink)
// sharing their pinned maps: masquerade, replies, ICMPv6 echo and errors,
// fragments, a published [::] port, a zero UDP checksum. Every checksum of a
// rewritten packet is recomputed here, independently (pseudo-header + upper
// layer, in TS), never read back from the program.
//
// Interfaces of its own (deleted in teardown): U0/U1, U0 the uplink
// (fd85:ff:X::1/64, a permanent neighbour OUT), U1 the network's
// bridge_ifindex for the route lookup (IPv6 forwarding on). Container A
// sends from ifindex 1 (the test-run default); container B is behind C0.
// Redirects are never executed by BPF_PROG_TEST_RUN: nothing leaves the host.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { formatIPv6Bytes, ipv6Bytes, le16 } from '../../src/platform/codec';
import { Dataplane } from '../../src/platform/dataplane';
import {
  DropReason,
  EndpointFlags,
  MapName,
  TC_UPLINK_OBJECT,
  TC_VETH_OBJECT,
  counterKeyCodec,
  ctEntryCodec,
  ctKeyCodec,
  endpointCodec,
  hostAddrValueCodec,
  ifindexKeyCodec,
  ip6KeyCodec,
  netValueCodec,
  networkKeyCodec,
  publishKeyCodec,
  publishValueCodec,
  sumPerCpuCounters,
  uplinkCodec,
  zeroPerCpuCounters,
} from '../../src/platform/contract';
import { BpfMap, BpfObject, bpfObjectPath, native, skbTestContext } from '../../src/platform/native';
import { MAC } from '../lib/packets';
import { namesFrom, parsePolicy } from '../../src/domain/policy';
import { policySlots, readPolicyHits, writePolicy } from '../../src/engine/policy';

const TC_ACT_SHOT = 2;
const TC_ACT_REDIRECT = 7;
const TCP = 6;
const UDP = 17;
const ICMP6 = 58;
const tag = String(process.pid % 100000);
const X = (process.pid % 250).toString(16);
const IF = { u0: `bn6${tag}a`, u1: `bn6${tag}b`, c0: `bn6${tag}c`, c1: `bn6${tag}d` };
const UP6 = `fd85:ff:${X}::1`;
const OUT6 = `fd85:ff:${X}::2`;
const OUT_MAC = '02:00:fd:85:00:02';
const GW6 = `fd85:1:${X}::1`;
const GW_MAC = '02:00:fd:85:01:01';
const A = { addr: '10.85.9.10', addr6: `fd85:1:${X}::10`, mac: '02:00:fd:85:00:0a', ifindex: 1 };
const B = { addr: '10.85.9.20', addr6: `fd85:1:${X}::20`, mac: '02:00:fd:85:00:14', ifindex: 0 };
const NAT_PORTS = { berth_nat_port_min: le16(40000), berth_nat_port_max: le16(60999) };

const sh = (cmd: string, args: string[], quiet = false): void => {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
  } catch (e) {
    if (!quiet) throw e;
  }
};
const ifindexOf = (name: string): number => Number(fs.readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8').trim());
const macOf = (name: string): string => fs.readFileSync(`/sys/class/net/${name}/address`, 'utf8').trim();

// ---- IPv6 frames, built and checked here -----------------------------------

// addresses: the project's IPv6 text <-> bytes (src/domain/ipv6.ts through the codec)
function ip6(s: string): Buffer {
  const b = ipv6Bytes(s);
  if (!b) throw new Error(`not an IPv6 address: ${s}`);
  return b;
}
const ip6str = formatIPv6Bytes;
const hex6 = (b: Buffer): string => ip6str(b);
const norm = (s: string): string => ip6str(ip6(s));

function sum16(buf: Buffer, init = 0): number {
  let s = init;
  for (let i = 0; i + 1 < buf.length; i += 2) s += buf.readUInt16BE(i);
  if (buf.length % 2) s += buf[buf.length - 1] << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return s;
}
/** The upper-layer checksum over the IPv6 pseudo-header (RFC 8200 8.1). */
function csum6(src: Buffer, dst: Buffer, nh: number, l4: Buffer): number {
  const ph = Buffer.alloc(40);
  src.copy(ph, 0);
  dst.copy(ph, 16);
  ph.writeUInt32BE(l4.length, 32);
  ph[39] = nh;
  const c = ~sum16(l4, sum16(ph)) & 0xffff;
  return c;
}

interface F6 {
  smac: string;
  dmac: string;
  src: string;
  dst: string;
  hlim?: number;
  /** a fragment header: offset in bytes, M flag, id */
  frag?: { off: number; more: boolean; id: number };
}
function frame6(o: F6, nh: number, l4: Buffer, fixCsumAt?: number, zeroCsum = false): Buffer {
  const src = ip6(o.src);
  const dst = ip6(o.dst);
  if (fixCsumAt !== undefined && !o.frag?.off) {
    l4.writeUInt16BE(0, fixCsumAt);
    if (!zeroCsum) {
      // a first fragment's checksum covers the whole datagram: the caller passes it whole and we cut it below
      l4.writeUInt16BE(csum6(src, dst, nh, l4) || (nh === UDP ? 0xffff : 0), fixCsumAt);
    }
  }
  let payload = l4;
  let next = nh;
  if (o.frag) {
    const fh = Buffer.alloc(8);
    fh[0] = nh;
    fh.writeUInt16BE(o.frag.off | (o.frag.more ? 1 : 0), 2);
    fh.writeUInt32BE(o.frag.id, 4);
    payload = Buffer.concat([fh, l4]);
    next = 44;
  }
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000, 0);
  h.writeUInt16BE(payload.length, 4);
  h[6] = next;
  h[7] = o.hlim ?? 64;
  src.copy(h, 8);
  dst.copy(h, 24);
  const e = Buffer.alloc(14);
  MAC(o.dmac).copy(e, 0);
  MAC(o.smac).copy(e, 6);
  e.writeUInt16BE(0x86dd, 12);
  return Buffer.concat([e, h, payload]);
}
function tcp(sport: number, dport: number, flags = 0x02): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b.writeUInt32BE(1000, 4);
  b[12] = 5 << 4;
  b[13] = flags;
  b.writeUInt16BE(65535, 14);
  return b;
}
function udp(sport: number, dport: number, data: Buffer): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b.writeUInt16BE(8 + data.length, 4);
  return Buffer.concat([b, data]);
}
function echo(type: number, id: number, seq: number): Buffer {
  const b = Buffer.alloc(16);
  b[0] = type;
  b.writeUInt16BE(id, 4);
  b.writeUInt16BE(seq, 6);
  b.write('berth-v6', 8);
  return b;
}

interface Out6 {
  src: string;
  dst: string;
  hlim: number;
  nh: number;
  l4: Buffer;
  sport: number;
  dport: number;
  /** the upper-layer checksum is right for the packet's own addresses (recomputed here) */
  csumOk: boolean;
}
function parse6(f: Buffer, csumAt: number | null): Out6 {
  const ip = f.subarray(14);
  const len = ip.readUInt16BE(4);
  let nh = ip[6];
  let l4 = ip.subarray(40, 40 + len);
  if (nh === 44) {
    nh = l4[0];
    l4 = l4.subarray(8);
  }
  const src = ip.subarray(8, 24);
  const dst = ip.subarray(24, 40);
  return {
    src: ip6str(src),
    dst: ip6str(dst),
    hlim: ip[7],
    nh,
    l4,
    sport: l4.readUInt16BE(0),
    dport: l4.readUInt16BE(2),
    csumOk: csumAt === null ? true : (~sum16(l4, sum16(Buffer.concat([src, dst, Buffer.from([0, 0, (l4.length >> 8) & 0xff, l4.length & 0xff, 0, 0, 0, nh])]))) & 0xffff) === 0,
  };
}

// ---- setup ------------------------------------------------------------------

function makeInterfaces(): void {
  sh('ip', ['link', 'add', IF.u0, 'type', 'veth', 'peer', 'name', IF.u1]);
  sh('ip', ['link', 'add', IF.c0, 'type', 'veth', 'peer', 'name', IF.c1]);
  for (const n of Object.values(IF)) sh('ip', ['link', 'set', n, 'up']);
  sh('ip', ['-6', 'addr', 'add', `${UP6}/64`, 'dev', IF.u0, 'nodad']);
  sh('ip', ['-6', 'neigh', 'replace', OUT6, 'lladdr', OUT_MAC, 'dev', IF.u0, 'nud', 'permanent']);
  fs.writeFileSync(`/proc/sys/net/ipv6/conf/${IF.u1}/forwarding`, '1');
}
function removeInterfaces(): void {
  sh('ip', ['link', 'del', IF.u0], true);
  sh('ip', ['link', 'del', IF.c0], true);
}

async function loadObject(stem: string, pinRoot: string, rodata: Record<string, Buffer> = {}): Promise<BpfObject> {
  const obj = native().openObject(bpfObjectPath(stem), { pinRoot, rodata });
  try {
    await obj.load();
  } catch (e) {
    obj.close();
    throw e;
  }
  return obj;
}

removeInterfaces();
makeInterfaces();
t.teardown(removeInterfaces);

t.test('NAT66 through BPF_PROG_TEST_RUN', async (t) => {
  const pinRoot = `/sys/fs/bpf/berth-v6nat-bpf-${process.pid}`;
  Dataplane.reset(pinRoot);
  fs.mkdirSync(pinRoot, { recursive: true });
  const objs: BpfObject[] = [];
  const maps: Record<string, BpfMap> = {};
  t.teardown(() => {
    Object.values(maps).forEach((m) => m.close());
    for (const o of objs) o.close();
    Dataplane.reset(pinRoot);
  });
  objs.push(await loadObject(TC_VETH_OBJECT, pinRoot, NAT_PORTS));
  objs.push(await loadObject(TC_UPLINK_OBJECT, pinRoot));
  for (const name of Object.values(MapName)) maps[name] = native().openPinnedMap(`${pinRoot}/${name}`);
  const veth = objs[0].program('berth_veth_ingress');
  const upProg = objs[1].program('berth_up_in');
  const cpus = native().possibleCpus();
  const u0 = ifindexOf(IF.u0);
  const u1 = ifindexOf(IF.u1);
  B.ifindex = ifindexOf(IF.c0);
  const upMac = macOf(IF.u0);
  const flags = EndpointFlags.ICC | EndpointFlags.MASQUERADE | EndpointFlags.IPV6;
  for (const e of [A, B]) {
    const v = endpointCodec.encode({ addr: e.addr, ifindex: e.ifindex, network_id: 1, flags, mac: e.mac, addr6: e.addr6 });
    maps[MapName.EP_BY_IFINDEX].update(ifindexKeyCodec.encode({ ifindex: e.ifindex }), v);
    maps[MapName.EP_BY_IP6].update(ip6KeyCodec.encode({ addr: e.addr6 }), v);
  }
  maps[MapName.NET].update(
    networkKeyCodec.encode({ network_id: 1 }),
    netValueCodec.encode({ subnet: '10.85.9.0', mask: '255.255.255.0', gateway: '10.85.9.1', flags, bridge_ifindex: u1, gw_mac: GW_MAC, subnet6: `fd85:1:${X}::`, mask6: 'ffff:ffff:ffff:ffff::', gateway6: GW6 }),
  );
  maps[MapName.UPLINK].update(ifindexKeyCodec.encode({ ifindex: u0 }), uplinkCodec.encode({ addr: '0.0.0.0', flags: 0, mac: upMac, addr6: UP6 }));
  maps[MapName.HOST_ADDR6].update(ip6KeyCodec.encode({ addr: UP6 }), hostAddrValueCodec.encode({ ifindex: u0, flags: 0 }));
  for (const proto of [TCP, UDP])
    maps[MapName.PUBLISH].update(
      publishKeyCodec.encode({ host_addr: '::', host_port: 8080, proto }),
      publishValueCodec.encode({ addr: B.addr6, port: 80, flags: 0, ifindex: B.ifindex, network_id: 1, mac: B.mac }),
    );
  for (const ifindex of [1, u0, B.ifindex]) for (const direction of [0, 1]) maps[MapName.COUNTERS].update(counterKeyCodec.encode({ ifindex, direction }), zeroPerCpuCounters(cpus));
  const counters = (ifindex: number, direction: number) => sumPerCpuCounters(maps[MapName.COUNTERS].lookup(counterKeyCodec.encode({ ifindex, direction }))!, cpus);
  const run = async (prog: typeof veth, data: Buffer, ifindex?: number) => {
    const r = await prog.testRun({ data, ctx: ifindex ? skbTestContext(ifindex) : undefined });
    return { retval: r.retval >>> 0, data: r.data };
  };
  const fromA = (dst: string, extra: Partial<F6> = {}): F6 => ({ smac: A.mac, dmac: GW_MAC, src: A.addr6, dst, ...extra });
  const toUp = (src: string, extra: Partial<F6> = {}): F6 => ({ smac: OUT_MAC, dmac: upMac, src, dst: UP6, ...extra });

  t.test('masquerade TCP: source to the uplink addr6, checksum, hop limit; the reply comes back', async (t) => {
    const r = await run(veth, frame6(fromA(OUT6), TCP, tcp(41000, 443), 16));
    t.equal(r.retval, TC_ACT_REDIRECT, 'redirected');
    const o = parse6(r.data, 16);
    t.equal(o.src, norm(UP6), 'source is the uplink addr6');
    t.equal(o.dst, norm(OUT6), 'destination kept');
    t.equal(o.sport, 41000, 'the free source port is kept');
    t.equal(o.hlim, 63, 'hop limit decremented');
    t.ok(o.csumOk, 'TCP checksum valid for the rewritten addresses');
    t.same([...r.data.subarray(0, 6)], [...MAC(OUT_MAC)], 'to the neighbour MAC of the route');
    const e = maps[MapName.CT].lookup(ctKeyCodec.encode({ saddr: A.addr6, daddr: OUT6, sport: 41000, dport: 443, proto: TCP }));
    t.ok(e, 'the orig half is keyed by the v6 tuple');
    t.equal(e && norm(ctEntryCodec.decode(e).rewrite.saddr), norm(UP6), 'its rewrite has the uplink addr6');
    const back = await run(upProg, frame6(toUp(OUT6), TCP, tcp(443, 41000, 0x12), 16), u0);
    t.equal(back.retval, TC_ACT_REDIRECT, 'reply redirected');
    const b = parse6(back.data, 16);
    t.equal(b.dst, norm(A.addr6), 'reply to the container');
    t.equal(b.dport, 41000);
    t.ok(b.csumOk, 'reply checksum valid');
  });

  t.test('ICMPv6 echo: the identifier is the tuple, the checksum covers the pseudo-header', async (t) => {
    const r = await run(veth, frame6(fromA(OUT6), ICMP6, echo(128, 0x4242, 1), 2));
    t.equal(r.retval, TC_ACT_REDIRECT);
    const o = parse6(r.data, 2);
    t.equal(o.src, norm(UP6));
    t.ok(o.csumOk, 'ICMPv6 checksum valid (pseudo-header included)');
    const id = o.l4.readUInt16BE(4);
    const back = await run(upProg, frame6(toUp(OUT6), ICMP6, echo(129, id, 1), 2), u0);
    t.equal(back.retval, TC_ACT_REDIRECT, 'echo reply tracked');
    const b = parse6(back.data, 2);
    t.equal(b.dst, norm(A.addr6));
    t.equal(b.l4.readUInt16BE(4), 0x4242, 'identifier restored');
    t.ok(b.csumOk);
  });

  t.test('an ICMPv6 error quoting a masqueraded datagram is translated back', async (t) => {
    const out = await run(veth, frame6(fromA(OUT6), UDP, udp(42000, 53, Buffer.from('q')), 6));
    t.equal(out.retval, TC_ACT_REDIRECT);
    const o = parse6(out.data, 6);
    t.ok(o.csumOk, 'UDP checksum valid');
    const quoted = out.data.subarray(14, 14 + 40 + o.l4.length);
    const err = Buffer.concat([Buffer.from([1, 4, 0, 0, 0, 0, 0, 0]), quoted]);
    const back = await run(upProg, frame6(toUp(OUT6), ICMP6, err, 2), u0);
    t.equal(back.retval, TC_ACT_REDIRECT, 'redirected to the container');
    const b = parse6(back.data, 2);
    t.equal(b.dst, norm(A.addr6), 'outer destination: the container');
    t.equal(b.src, norm(OUT6), 'outer source: the quoted destination itself');
    t.ok(b.csumOk, 'ICMPv6 checksum valid after the quoted rewrite');
    const q = b.l4.subarray(8);
    t.equal(hex6(q.subarray(8, 24)), norm(A.addr6), 'quoted source: the container');
    t.equal(q.readUInt16BE(40), 42000, 'quoted source port restored');
  });

  t.test('fragments: the first records the ports, a later one finds its flow', async (t) => {
    const data = Buffer.alloc(48, 7);
    const whole = udp(43000, 5000, data);
    whole.writeUInt16BE(0, 6);
    whole.writeUInt16BE(csum6(ip6(A.addr6), ip6(OUT6), UDP, whole) || 0xffff, 6);
    const first = frame6(fromA(OUT6, { frag: { off: 0, more: true, id: 0x01020304 } }), UDP, whole.subarray(0, 24));
    const r1 = await run(veth, first);
    t.equal(r1.retval, TC_ACT_REDIRECT, 'first fragment translated');
    const p1 = parse6(r1.data, null);
    t.equal(p1.src, norm(UP6));
    const sport = p1.sport;
    const later = frame6(fromA(OUT6, { frag: { off: 24, more: false, id: 0x01020304 } }), UDP, whole.subarray(24));
    const r2 = await run(veth, later);
    t.equal(r2.retval, TC_ACT_REDIRECT, 'later fragment translated');
    t.equal(parse6(r2.data, null).src, norm(UP6), 'later fragment gets the uplink address');
    // the reassembled datagram's checksum is right for the new addresses
    const re = Buffer.concat([p1.l4, r2.data.subarray(14 + 48)]);
    t.equal(re.readUInt16BE(0), sport);
    t.equal(~sum16(re, sum16(Buffer.concat([ip6(UP6), ip6(OUT6), Buffer.from([0, 0, 0, re.length, 0, 0, 0, UDP])]))) & 0xffff, 0, 'reassembled UDP checksum valid');
    const orphan = frame6(fromA(OUT6, { frag: { off: 24, more: false, id: 0x0badf00d } }), UDP, whole.subarray(24));
    const before = counters(1, 0).drop[DropReason.FRAG_ORPHAN].packets;
    t.equal((await run(veth, orphan)).retval, TC_ACT_SHOT, 'a later fragment without its first is dropped');
    t.equal(counters(1, 0).drop[DropReason.FRAG_ORPHAN].packets, before + 1n, 'counted frag_orphan');
  });

  t.test('a published [::] port: DNAT to the container, the client source kept', async (t) => {
    const r = await run(upProg, frame6(toUp(OUT6), TCP, tcp(50000, 8080), 16), u0);
    t.equal(r.retval, TC_ACT_REDIRECT);
    const o = parse6(r.data, 16);
    t.equal(o.dst, norm(B.addr6), 'to the container');
    t.equal(o.dport, 80, 'the container port');
    t.equal(o.src, norm(OUT6), 'client source kept');
    t.ok(o.csumOk);
    const rep = await run(veth, frame6({ smac: B.mac, dmac: GW_MAC, src: B.addr6, dst: OUT6 }, TCP, tcp(80, 50000, 0x12), 16), B.ifindex);
    t.equal(rep.retval, TC_ACT_REDIRECT, 'the reply is tracked');
    const p = parse6(rep.data, 16);
    t.equal(p.src, norm(UP6), 'reply from the host address');
    t.equal(p.sport, 8080);
    t.ok(p.csumOk);
  });

  t.test('too big for the container veth: too_big, and a Packet Too Big back to the client, checked here', async (t) => {
    const c0 = IF.c0;
    sh('ip', ['link', 'set', 'dev', c0, 'mtu', '1280']);
    t.teardown(() => sh('ip', ['link', 'set', 'dev', c0, 'mtu', '1500'], true));
    const before = counters(u0, 0).drop[DropReason.TOO_BIG].packets;
    const sent = frame6(toUp(OUT6), UDP, udp(50300, 8080, Buffer.alloc(1400 - 48, 0x61)), 6);
    t.equal(sent.length - 14, 1400, 'a 1400-byte IPv6 datagram');
    const r = await run(upProg, sent, u0);
    t.equal(r.retval, TC_ACT_REDIRECT, 'the answer is sent back out of the uplink');
    t.equal(counters(u0, 0).drop[DropReason.TOO_BIG].packets, before + 1n, 'the datagram counted as a too_big drop');
    t.notOk(maps[MapName.CT].lookup(ctKeyCodec.encode({ saddr: OUT6, daddr: UP6, sport: 50300, dport: 8080, proto: UDP })), 'no flow was made for it');
    const d = r.data;
    t.equal(d.length, 14 + 1280, 'Ethernet and 1280 bytes of IPv6, the minimum MTU');
    t.same([...d.subarray(0, 6)], [...MAC(OUT_MAC)], 'to the client MAC');
    t.same([...d.subarray(6, 12)], [...MAC(upMac)], 'from the uplink MAC');
    t.equal(d.readUInt16BE(12), 0x86dd);
    t.equal(d[14] >> 4, 6, 'IPv6');
    t.equal(d.readUInt16BE(14 + 4), 1240, 'payload length');
    t.equal(d[14 + 6], ICMP6, 'ICMPv6');
    t.equal(d[14 + 7], 255, 'hop limit 255');
    t.equal(ip6str(d.subarray(14 + 8, 14 + 24)), norm(UP6), 'from the address the client sent to');
    t.equal(ip6str(d.subarray(14 + 24, 14 + 40)), norm(OUT6), 'to the client');
    const icmp = Buffer.from(d.subarray(14 + 40));
    t.equal(icmp[0], 2, 'type 2: Packet Too Big');
    t.equal(icmp[1], 0, 'code 0');
    t.equal(icmp.readUInt32BE(4), 1280, "the MTU field: the container veth's MTU");
    t.same([...icmp.subarray(8)], [...sent.subarray(14, 14 + 1232)], 'the quote: the first 1232 bytes of the datagram as the client sent it');
    const got = icmp.readUInt16BE(2);
    icmp.writeUInt16BE(0, 2);
    t.equal(got, csum6(ip6(UP6), ip6(OUT6), ICMP6, icmp), 'the ICMPv6 checksum, recomputed here');
    const small = await run(upProg, frame6(toUp(OUT6), UDP, udp(50301, 8080, Buffer.alloc(1200 - 48, 0x62)), 6), u0);
    t.equal(small.retval, TC_ACT_REDIRECT, 'a datagram that fits is translated');
    t.equal(parse6(small.data, 6).dst, norm(B.addr6), 'into the container');
  });

  t.test('the user policy (DOCKER-USER, ip6tables) meets v6 published flows, new and tracked', async (t) => {
    const pm = { rules: maps[MapName.POLICY], hits: maps[MapName.POLICY_HITS], active: maps[MapName.POLICY_ACTIVE] };
    const names = namesFrom(new Map([['b', B.addr], ['a', A.addr]]), new Map(), new Map([['b', B.addr6], ['a', A.addr6]]));
    const program = (yaml: string): void => {
      writePolicy(pm, policySlots(parsePolicy(yaml), names));
    };
    t.teardown(() => writePolicy(pm, []));
    const policyDrops = (): bigint => counters(u0, 0).drop[DropReason.POLICY].packets;
    const syn = (sport: number) => run(upProg, frame6(toUp(OUT6), TCP, tcp(sport, 8080), 16), u0);
    const tracked = (sport: number): boolean => maps[MapName.CT].lookup(ctKeyCodec.encode({ saddr: OUT6, daddr: UP6, sport, dport: 8080, proto: TCP })) !== null;

    program('- {action: deny, source: 0.0.0.0/0}\n- {action: deny, source: 10.0.0.0/8, container: b}\n');
    let before = policyDrops();
    t.equal((await syn(50100)).retval, TC_ACT_REDIRECT, 'IPv4 rules do not match an IPv6 client');
    t.equal(policyDrops(), before, 'no policy drop counted');
    t.same(readPolicyHits(pm, 2).map((h) => h.packets), [0n, 0n], 'no IPv4 rule hit');

    program(`- {action: deny, source: "${OUT6}", proto: tcp, port: 8080}\n`);
    before = policyDrops();
    const r = await syn(50101);
    t.equal(r.retval, TC_ACT_SHOT, 'a v6 rule denies the v6 client');
    t.equal(policyDrops(), before + 1n, 'counted policy on the uplink');
    t.notOk(tracked(50101), 'no flow was created for it');
    t.equal(readPolicyHits(pm, 1)[0]!.packets, 1n, 'the rule counted its hit');

    program(`- {action: allow, source: "fd85::/16", container: b}\n- {action: deny}\n`);
    t.equal((await syn(50102)).retval, TC_ACT_REDIRECT, 'an allow for the container first: through');
    t.same(readPolicyHits(pm, 2).map((h) => h.packets), [1n, 0n], 'the allow matched, the deny-all was not reached');

    program(`- {action: deny, container: a}\n`);
    t.equal((await syn(50103)).retval, TC_ACT_REDIRECT, 'a rule for another container (its v6 address) does not match');
    program(`- {action: deny, source: "fd00::/8", container: b}\n`);
    t.equal((await syn(50104)).retval, TC_ACT_SHOT, 'a container rule matches its v6 address');

    // a live flow is cut at its next packet
    writePolicy(pm, []);
    t.equal((await syn(50105)).retval, TC_ACT_REDIRECT, 'no rules: the flow is set up');
    t.ok(tracked(50105), 'tracked');
    const ack = frame6(toUp(OUT6), TCP, tcp(50105, 8080, 0x10), 16);
    t.equal((await run(upProg, ack, u0)).retval, TC_ACT_REDIRECT, 'its next packet passes');
    program(`- {action: deny, source: "${OUT6}"}\n`);
    before = policyDrops();
    t.equal((await run(upProg, ack, u0)).retval, TC_ACT_SHOT, 'after a deny, the tracked flow is cut');
    t.equal(policyDrops(), before + 1n, 'counted policy');
    const rep = await run(veth, frame6({ smac: B.mac, dmac: GW_MAC, src: B.addr6, dst: OUT6 }, TCP, tcp(80, 50105, 0x10), 16), B.ifindex);
    t.equal(rep.retval, TC_ACT_REDIRECT, "the container's replies are not the client's packets: not filtered (as DOCKER-USER's -i/-o of the published side)");
  });

  t.test('a UDP checksum of 0 is never translated', async (t) => {
    const before = counters(1, 0).drop[DropReason.MALFORMED].packets;
    const r = await run(veth, frame6(fromA(OUT6), UDP, udp(44000, 53, Buffer.from('z')), 6, true));
    t.equal(r.retval, TC_ACT_SHOT, 'dropped');
    t.equal(counters(1, 0).drop[DropReason.MALFORMED].packets, before + 1n, 'counted malformed');
  });

  t.test('no addr6 on the uplink: NO_UPLINK', async (t) => {
    maps[MapName.UPLINK].update(ifindexKeyCodec.encode({ ifindex: u0 }), uplinkCodec.encode({ addr: '0.0.0.0', flags: 0, mac: upMac, addr6: '::' }));
    const before = counters(1, 0).drop[DropReason.NO_UPLINK].packets;
    t.equal((await run(veth, frame6(fromA(OUT6), TCP, tcp(45000, 443), 16))).retval, TC_ACT_SHOT, 'dropped');
    t.equal(counters(1, 0).drop[DropReason.NO_UPLINK].packets, before + 1n, 'counted no_uplink');
  });
});
