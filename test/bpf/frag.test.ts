// Fragments of translated flows, and TTL / MTU on every path berth redirects,
// through BPF_PROG_TEST_RUN on the real objects (tc_veth, tc_uplink) sharing
// their pinned maps (bpf/lib/frag.h, bpf/lib/hop.h).
//
// The MTU is measured on the IPv4 datagram (tot_len): a frame longer than the
// MTU only by bytes past tot_len is sent, on every path.
//
// Interfaces of its own (deleted in teardown, also after a failure):
//   U0/U1: U0 is the uplink (10.91.X.1/24), U1 the network's bridge_ifindex
//          for the route lookups (forwarding on);
//   C0/C1: host veths of containers A and B (network 10.91.Y.0/24).
// Redirects are never executed by BPF_PROG_TEST_RUN: nothing leaves the host.
import t, { Test } from 'tap';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { le16 } from '../../src/platform/codec';
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
  fragKeyCodec,
  fragPortsCodec,
  hostAddrValueCodec,
  ifindexKeyCodec,
  ipKeyCodec,
  netValueCodec,
  networkKeyCodec,
  publishKeyCodec,
  publishValueCodec,
  sumPerCpuCounters,
  uplinkCodec,
  zeroPerCpuCounters,
} from '../../src/platform/contract';
import { BpfMap, BpfObject, BpfProgram, bpfObjectPath, native, skbTestContext } from '../../src/platform/native';
import { IP, checksum, eth, ipv4, udp } from '../lib/packets';

const TC_ACT_UNSPEC = 0xffffffff;
const TC_ACT_SHOT = 2;
const TC_ACT_REDIRECT = 7;
const UDP = 17;
const DF = 0x4000;
const MF = 0x2000;

const tag = String(process.pid % 100000);
const X = 1 + (process.pid % 120);
const Y = 130 + (process.pid % 120);
const IF = { u0: `fgu${tag}a`, u1: `fgu${tag}b`, c0: `fgc${tag}a`, c1: `fgc${tag}b` };
const UPLINK_ADDR = `10.91.${X}.1`;
const OUT = `10.91.${X}.2`; // no neighbour entry: out by bpf_redirect_neigh
const CLIENT = `10.91.${X}.50`;
const CLIENT_MAC = '02:00:0a:5b:00:32';
const GW = `10.91.${Y}.1`;
const GW_MAC = '02:00:0a:5b:00:01';
const A = { addr: `10.91.${Y}.10`, mac: '02:00:0a:5b:00:0a', ifindex: 0 };
const B = { addr: `10.91.${Y}.20`, mac: '02:00:0a:5b:00:14', ifindex: 0 };
const PUB_PORT = 31053; // -p UPLINK_ADDR:31053:53/udp
const NAT = { berth_nat_port_min: le16(31100), berth_nat_port_max: le16(31999) };

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
const setMtu = (name: string, mtu: number): string => sh('ip', ['link', 'set', name, 'mtu', String(mtu)]);

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

// ---- frames ----------------------------------------------------------------

/** A UDP datagram (its checksum over the whole of it), as IP fragments of at most `chunk` payload bytes. */
function udpFragments(o: { dmac: string; smac: string; src: string; dst: string; sport: number; dport: number; id: number; size: number; chunk: number; ttl?: number }): Buffer[] {
  const data = Buffer.alloc(o.size - 8);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + o.id) & 0xff;
  const seg = udp(o.src, o.dst, o.sport, o.dport, data);
  const frames: Buffer[] = [];
  for (let off = 0; off < seg.length; off += o.chunk) {
    const last = off + o.chunk >= seg.length;
    const ip = ipv4({ src: o.src, dst: o.dst, proto: UDP, ttl: o.ttl, frag: (last ? 0 : MF) | (off / 8) }, seg.subarray(off, off + o.chunk));
    ip.writeUInt16BE(o.id, 4);
    ip.writeUInt16BE(0, 10);
    ip.writeUInt16BE(checksum(ip.subarray(0, 20)), 10);
    frames.push(eth(o.dmac, o.smac, 0x0800, ip));
  }
  return frames;
}

/** A whole UDP datagram of `size` UDP bytes with the given flags. */
function udpDatagram(o: { dmac: string; smac: string; src: string; dst: string; sport: number; dport: number; size: number; ttl?: number; frag?: number }): Buffer {
  return eth(o.dmac, o.smac, 0x0800, ipv4({ src: o.src, dst: o.dst, proto: UDP, ttl: o.ttl, frag: o.frag ?? DF }, udp(o.src, o.dst, o.sport, o.dport, Buffer.alloc(o.size - 8, 0x5a))));
}

const ipStr = (b: Buffer, o: number): string => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
interface Frag {
  src: string;
  dst: string;
  ttl: number;
  id: number;
  off: number;
  mf: boolean;
  payload: Buffer;
  hdrOk: boolean;
}
function fragOf(frame: Buffer): Frag {
  const l3 = frame.subarray(14);
  const ihl = (l3[0] & 15) * 4;
  const fo = l3.readUInt16BE(6);
  return {
    src: ipStr(l3, 12),
    dst: ipStr(l3, 16),
    ttl: l3[8],
    id: l3.readUInt16BE(4),
    off: (fo & 0x1fff) * 8,
    mf: !!(fo & MF),
    payload: l3.subarray(ihl, l3.readUInt16BE(2)),
    hdrOk: checksum(l3.subarray(0, ihl)) === 0,
  };
}

/** Reassemble translated fragments and check them from scratch: headers, one tuple, the UDP checksum over the whole datagram. */
function checkReassembled(t: Test, frames: Buffer[], want: { src: string; dst: string; sport: number; dport: number }, original: Buffer[]): void {
  const fr = frames.map(fragOf);
  for (const [i, f] of fr.entries()) {
    t.ok(f.hdrOk, `fragment ${i}: IP header checksum right`);
    t.equal(f.src, want.src, `fragment ${i}: source`);
    t.equal(f.dst, want.dst, `fragment ${i}: destination`);
    t.equal(f.ttl, fragOf(original[i]).ttl - 1, `fragment ${i}: TTL decremented (routed)`);
    t.equal(f.id, fragOf(original[i]).id, `fragment ${i}: IP id kept`);
    t.equal(f.off, fragOf(original[i]).off, `fragment ${i}: offset kept`);
    if (i > 0) t.same(f.payload, fragOf(original[i]).payload, `fragment ${i}: payload byte for byte`);
  }
  const seg = Buffer.concat(fr.sort((a, b) => a.off - b.off).map((f) => f.payload));
  t.equal(seg.readUInt16BE(0), want.sport, 'reassembled: source port');
  t.equal(seg.readUInt16BE(2), want.dport, 'reassembled: destination port');
  t.equal(seg.readUInt16BE(4), seg.length, 'reassembled: UDP length');
  const ph = Buffer.alloc(12);
  IP(want.src).copy(ph, 0);
  IP(want.dst).copy(ph, 4);
  ph[9] = UDP;
  ph.writeUInt16BE(seg.length, 10);
  t.equal(checksum(Buffer.concat([ph, seg])), 0, 'reassembled: UDP checksum over the whole datagram right');
  const orig = Buffer.concat(original.map((f) => fragOf(f).payload));
  t.same(seg.subarray(8), orig.subarray(8), 'reassembled: data unchanged');
}

// ---- the loaded dataplane --------------------------------------------------

interface Env {
  veth: BpfProgram;
  up: BpfProgram;
  maps: Record<string, BpfMap>;
  cpus: number;
  ifx: { u0: number; u1: number; c0: number; c1: number };
}

async function loadObject(stem: string, pinRoot: string, rodata: Record<string, Buffer>): Promise<BpfObject> {
  const obj = native().openObject(bpfObjectPath(stem), { pinRoot, rodata, maxEntries: {} });
  try {
    await obj.load();
  } catch (e) {
    obj.close();
    throw e;
  }
  return obj;
}

async function setup(t: Test): Promise<Env> {
  const pinRoot = `/sys/fs/bpf/berth-test-fg${process.pid}`;
  Dataplane.reset(pinRoot);
  fs.mkdirSync(pinRoot, { recursive: true });
  const objs: BpfObject[] = [];
  const maps: Record<string, BpfMap> = {};
  t.teardown(() => {
    Object.values(maps).forEach((m) => m.close());
    for (const o of objs) o.close();
    Dataplane.reset(pinRoot);
  });
  objs.push(await loadObject(TC_VETH_OBJECT, pinRoot, NAT));
  objs.push(await loadObject(TC_UPLINK_OBJECT, pinRoot, {}));
  for (const name of Object.values(MapName)) maps[name] = native().openPinnedMap(`${pinRoot}/${name}`);
  const ifx = { u0: ifindexOf(IF.u0), u1: ifindexOf(IF.u1), c0: ifindexOf(IF.c0), c1: ifindexOf(IF.c1) };
  const env: Env = { veth: objs[0].program('berth_veth_ingress'), up: objs[1].program('berth_up_in'), maps, cpus: native().possibleCpus(), ifx };
  A.ifindex = ifx.c0;
  B.ifindex = ifx.c1;
  const flags = EndpointFlags.ICC | EndpointFlags.MASQUERADE;
  for (const e of [A, B]) {
    const v = endpointCodec.encode({ addr: e.addr, ifindex: e.ifindex, network_id: 1, flags, mac: e.mac });
    maps[MapName.EP_BY_IFINDEX].update(ifindexKeyCodec.encode({ ifindex: e.ifindex }), v);
    maps[MapName.EP_BY_IP].update(ipKeyCodec.encode({ addr: e.addr }), v);
  }
  maps[MapName.NET].update(
    networkKeyCodec.encode({ network_id: 1 }),
    netValueCodec.encode({ subnet: `10.91.${Y}.0`, mask: '255.255.255.0', gateway: GW, flags, bridge_ifindex: ifx.u1, gw_mac: GW_MAC }),
  );
  maps[MapName.UPLINK].update(ifindexKeyCodec.encode({ ifindex: ifx.u0 }), uplinkCodec.encode({ addr: UPLINK_ADDR, flags: 0, mac: macOf(IF.u0) }));
  maps[MapName.HOST_ADDR].update(ipKeyCodec.encode({ addr: UPLINK_ADDR }), hostAddrValueCodec.encode({ ifindex: ifx.u0, flags: 0 }));
  maps[MapName.PUBLISH].update(
    publishKeyCodec.encode({ host_addr: UPLINK_ADDR, host_port: PUB_PORT, proto: UDP }),
    publishValueCodec.encode({ addr: B.addr, port: 53, flags: 0, ifindex: B.ifindex, network_id: 1, mac: B.mac }),
  );
  for (const ifindex of [ifx.u0, ifx.c0, ifx.c1])
    for (const direction of [0, 1]) maps[MapName.COUNTERS].update(counterKeyCodec.encode({ ifindex, direction }), zeroPerCpuCounters(env.cpus));
  return env;
}

async function run(prog: BpfProgram, data: Buffer, ifindex: number) {
  const r = await prog.testRun({ data, ctx: skbTestContext(ifindex) });
  return { retval: r.retval >>> 0, data: r.data };
}
function counters(env: Env, ifindex: number, direction: number) {
  const v = env.maps[MapName.COUNTERS].lookup(counterKeyCodec.encode({ ifindex, direction }));
  if (!v) throw new Error(`no counters for ${ifindex}/${direction}`);
  return sumPerCpuCounters(v, env.cpus);
}
const drops = (env: Env, ifindex: number, reason: number): bigint => counters(env, ifindex, 0).drop[reason].packets;
const ct = (env: Env, k: { saddr: string; daddr: string; sport: number; dport: number; proto: number }) => {
  const v = env.maps[MapName.CT].lookup(ctKeyCodec.encode(k));
  return v ? ctEntryCodec.decode(v) : null;
};

// ---- tests -----------------------------------------------------------------

removeInterfaces();
makeInterfaces();
t.teardown(removeInterfaces);

t.test('fragments and the next hop', async (t) => {
  const env = await setup(t);
  const { ifx } = env;
  const upMac = macOf(IF.u0);
  const veth = (d: Buffer, ifindex = A.ifindex) => run(env.veth, d, ifindex);
  const up = (d: Buffer) => run(env.up, d, ifx.u0);
  const sendAll = async (frames: Buffer[], f: (d: Buffer) => Promise<{ retval: number; data: Buffer }>) => {
    const out: Buffer[] = [];
    for (const [i, fr] of frames.entries()) {
      const r = await f(fr);
      t.equal(r.retval, TC_ACT_REDIRECT, `fragment ${i} redirected`);
      out.push(r.data);
    }
    return out;
  };

  t.test('masquerade: a 4000-byte datagram in fragments, first then later, and its fragmented reply', async (t) => {
    const frames = udpFragments({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: OUT, sport: 31200, dport: 9000, id: 0x1001, size: 4000, chunk: 1480 });
    t.equal(frames.length, 3);
    const out = await sendAll(frames, veth);
    checkReassembled(t, out, { src: UPLINK_ADDR, dst: OUT, sport: 31200, dport: 9000 }, frames);
    const rec = env.maps[MapName.FRAG].lookup(fragKeyCodec.encode({ saddr: A.addr, daddr: OUT, id: 0x1001, proto: UDP }));
    t.same(rec && fragPortsCodec.decode(rec), { sport: 31200, dport: 9000 }, 'the first fragment recorded its ports under the arriving tuple');
    const o = ct(env, { saddr: A.addr, daddr: OUT, sport: 31200, dport: 9000, proto: UDP });
    t.equal(o?.packets, 3n, 'every fragment counted in the orig half');
    t.equal(counters(env, A.ifindex, 0).redirect.packets, 3n, 'counted as redirected');
    t.equal(counters(env, ifx.u0, 1).redirect.packets, 3n, 'counted as leaving on the uplink');

    const reply = udpFragments({ dmac: upMac, smac: CLIENT_MAC, src: OUT, dst: UPLINK_ADDR, sport: 9000, dport: 31200, id: 0x2002, size: 4000, chunk: 1480 });
    const back = await sendAll(reply, up);
    checkReassembled(t, back, { src: OUT, dst: A.addr, sport: 9000, dport: 31200 }, reply);
    t.equal(counters(env, A.ifindex, 1).redirect.packets, 3n, 'counted into the container');
  });

  t.test('a later fragment before its first is dropped and counted (frag_orphan), never sent untranslated', async (t) => {
    const frames = udpFragments({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: OUT, sport: 31201, dport: 9000, id: 0x1002, size: 3000, chunk: 1480 });
    const before = drops(env, A.ifindex, DropReason.FRAG_ORPHAN);
    const r = await veth(frames[1]);
    t.equal(r.retval, TC_ACT_SHOT);
    t.equal(drops(env, A.ifindex, DropReason.FRAG_ORPHAN), before + 1n, 'counted as frag_orphan');
    t.notOk(env.maps[MapName.FRAG].lookup(fragKeyCodec.encode({ saddr: A.addr, daddr: OUT, id: 0x1002, proto: UDP })), 'nothing recorded');
    // the datagram's first fragment then goes (the receiver's reassembly times out, as in Cilium)
    t.equal((await veth(frames[0])).retval, TC_ACT_REDIRECT, 'its first fragment is translated');
    const again = await veth(frames[1]);
    t.equal(again.retval, TC_ACT_REDIRECT, 'a later fragment after the first finds the record');
    t.equal(fragOf(again.data).src, UPLINK_ADDR);
  });

  t.test('a later fragment arriving on the uplink with no record is left to the host', async (t) => {
    const frames = udpFragments({ dmac: upMac, smac: CLIENT_MAC, src: CLIENT, dst: UPLINK_ADDR, sport: 5000, dport: PUB_PORT, id: 0x3003, size: 3000, chunk: 1480 });
    const before = counters(env, ifx.u0, 0).pass.packets;
    const r = await up(frames[1]);
    t.equal(r.retval, TC_ACT_UNSPEC);
    t.same(r.data, frames[1], 'passed byte for byte');
    t.equal(counters(env, ifx.u0, 0).pass.packets, before + 1n);
  });

  t.test('a published port: fragments in, fragments of the reply out', async (t) => {
    const frames = udpFragments({ dmac: upMac, smac: CLIENT_MAC, src: CLIENT, dst: UPLINK_ADDR, sport: 5001, dport: PUB_PORT, id: 0x3004, size: 4000, chunk: 1480 });
    const out = await sendAll(frames, up);
    checkReassembled(t, out, { src: CLIENT, dst: B.addr, sport: 5001, dport: 53 }, frames);
    const reply = udpFragments({ dmac: GW_MAC, smac: B.mac, src: B.addr, dst: CLIENT, sport: 53, dport: 5001, id: 0x4004, size: 4000, chunk: 1480 });
    const back = await sendAll(reply, (d) => veth(d, B.ifindex));
    checkReassembled(t, back, { src: UPLINK_ADDR, dst: CLIENT, sport: PUB_PORT, dport: 5001 }, reply);
  });

  t.test('hairpin: fragments to a published port of the host, from a container of the same network', async (t) => {
    const frames = udpFragments({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: UPLINK_ADDR, sport: 31202, dport: PUB_PORT, id: 0x1005, size: 4000, chunk: 1480 });
    const out = await sendAll(frames, veth);
    checkReassembled(t, out, { src: A.addr, dst: B.addr, sport: 31202, dport: 53 }, frames);
    const reply = udpFragments({ dmac: A.mac, smac: B.mac, src: B.addr, dst: A.addr, sport: 53, dport: 31202, id: 0x4005, size: 3000, chunk: 1480 });
    const back = await sendAll(reply, (d) => veth(d, B.ifindex));
    checkReassembled(t, back, { src: UPLINK_ADDR, dst: A.addr, sport: PUB_PORT, dport: 31202 }, reply);
  });

  t.test('TTL 1', async (t) => {
    const fromA = (sport: number, ttl: number) => udpDatagram({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: OUT, sport, dport: 9001, size: 100, ttl });
    t.equal((await veth(fromA(31210, 64))).retval, TC_ACT_REDIRECT, 'a masqueraded flow');
    const tracked = await veth(fromA(31210, 1));
    t.equal(tracked.retval, TC_ACT_UNSPEC, 'masquerade, tracked: passed to the kernel (it answers time exceeded)');
    t.same(tracked.data, fromA(31210, 1), '... untranslated');
    const fresh = await veth(fromA(31211, 1));
    t.equal(fresh.retval, TC_ACT_UNSPEC, 'masquerade, new: passed to the kernel');
    t.notOk(ct(env, { saddr: A.addr, daddr: OUT, sport: 31211, dport: 9001, proto: UDP }), '... and no flow made');

    const pubIn = (sport: number, ttl: number) => udpDatagram({ dmac: upMac, smac: CLIENT_MAC, src: CLIENT, dst: UPLINK_ADDR, sport, dport: PUB_PORT, size: 100, ttl });
    let before = drops(env, ifx.u0, DropReason.TTL_EXCEEDED);
    t.equal((await up(pubIn(5010, 1))).retval, TC_ACT_SHOT, 'published, new: dropped');
    t.equal(drops(env, ifx.u0, DropReason.TTL_EXCEEDED), before + 1n, '... counted ttl_exceeded');
    t.notOk(ct(env, { saddr: CLIENT, daddr: UPLINK_ADDR, sport: 5010, dport: PUB_PORT, proto: UDP }), '... and no flow made');
    t.equal((await up(pubIn(5010, 64))).retval, TC_ACT_REDIRECT, 'a published flow');
    t.equal((await up(pubIn(5010, 1))).retval, TC_ACT_SHOT, 'published, tracked: dropped');
    t.equal(drops(env, ifx.u0, DropReason.TTL_EXCEEDED), before + 2n, '... counted ttl_exceeded');
    const rep = (ttl: number) => udpDatagram({ dmac: GW_MAC, smac: B.mac, src: B.addr, dst: CLIENT, sport: 53, dport: 5010, size: 100, ttl });
    const r = await veth(rep(1), B.ifindex);
    t.equal(r.retval, TC_ACT_UNSPEC, "published, the container's reply: passed to the kernel");
    t.same(r.data, rep(1), '... untranslated');

    const masqReply = udpDatagram({ dmac: upMac, smac: CLIENT_MAC, src: OUT, dst: UPLINK_ADDR, sport: 9001, dport: 31210, size: 100, ttl: 1 });
    before = drops(env, ifx.u0, DropReason.TTL_EXCEEDED);
    t.equal((await up(masqReply)).retval, TC_ACT_SHOT, 'a masquerade reply on the uplink: dropped');
    t.equal(drops(env, ifx.u0, DropReason.TTL_EXCEEDED), before + 1n, '... counted ttl_exceeded');

    const hp = (ttl: number) => udpDatagram({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: UPLINK_ADDR, sport: 31212, dport: PUB_PORT, size: 100, ttl });
    before = drops(env, A.ifindex, DropReason.TTL_EXCEEDED);
    t.equal((await veth(hp(1))).retval, TC_ACT_SHOT, 'hairpin, new: dropped');
    t.equal(drops(env, A.ifindex, DropReason.TTL_EXCEEDED), before + 1n, '... counted ttl_exceeded');
    t.equal((await veth(hp(64))).retval, TC_ACT_REDIRECT, 'a hairpin flow');
    const hr = udpDatagram({ dmac: A.mac, smac: B.mac, src: B.addr, dst: A.addr, sport: 53, dport: 31212, size: 100, ttl: 1 });
    before = drops(env, B.ifindex, DropReason.TTL_EXCEEDED);
    t.equal((await veth(hr, B.ifindex)).retval, TC_ACT_SHOT, 'hairpin reply: dropped (passed, the bridge would take it to the client untranslated)');
    t.equal(drops(env, B.ifindex, DropReason.TTL_EXCEEDED), before + 1n, '... counted ttl_exceeded');
  });

  t.test('bigger than the next hop\'s MTU', async (t) => {
    setMtu(IF.u0, 1400);
    setMtu(IF.c1, 1400);
    t.teardown(() => {
      setMtu(IF.u0, 1500);
      setMtu(IF.c1, 1500);
    });
    const fromA = (sport: number, frag: number) => udpDatagram({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: OUT, sport, dport: 9002, size: 1430, frag });
    // a flow opened while the packets fit
    t.equal((await veth(udpDatagram({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: OUT, sport: 31220, dport: 9002, size: 100 }))).retval, TC_ACT_REDIRECT);
    const df = await veth(fromA(31220, DF));
    t.equal(df.retval, TC_ACT_UNSPEC, 'masquerade, tracked, DF: passed to the kernel (it answers frag-needed)');
    t.same(df.data, fromA(31220, DF), '... untranslated');
    let before = drops(env, A.ifindex, DropReason.TOO_BIG);
    t.equal((await veth(fromA(31220, 0))).retval, TC_ACT_SHOT, 'masquerade, tracked, DF clear: dropped (berth does not fragment)');
    t.equal(drops(env, A.ifindex, DropReason.TOO_BIG), before + 1n, '... counted too_big');
    t.equal((await veth(fromA(31221, DF))).retval, TC_ACT_UNSPEC, 'masquerade, new, DF: passed to the kernel');
    t.notOk(ct(env, { saddr: A.addr, daddr: OUT, sport: 31221, dport: 9002, proto: UDP }), '... no flow made');
    t.equal((await veth(fromA(31222, 0))).retval, TC_ACT_SHOT, 'masquerade, new, DF clear: dropped');
    t.equal(drops(env, A.ifindex, DropReason.TOO_BIG), before + 2n, '... counted too_big');
    // a first fragment is a datagram of its own size here: 1480 bytes of payload do not fit 1400
    const frames = udpFragments({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: OUT, sport: 31220, dport: 9002, id: 0x1006, size: 3000, chunk: 1480 });
    t.equal((await veth(frames[0])).retval, TC_ACT_SHOT, 'a first fragment too big for the uplink: dropped (no DF)');

    const pubIn = (sport: number) => udpDatagram({ dmac: upMac, smac: CLIENT_MAC, src: CLIENT, dst: UPLINK_ADDR, sport, dport: PUB_PORT, size: 1430 });
    before = drops(env, ifx.u0, DropReason.TOO_BIG);
    t.equal((await up(pubIn(5020))).retval, TC_ACT_SHOT, "published, new: bigger than the container veth's MTU, dropped");
    t.equal(drops(env, ifx.u0, DropReason.TOO_BIG), before + 1n, '... counted too_big');
    t.notOk(ct(env, { saddr: CLIENT, daddr: UPLINK_ADDR, sport: 5020, dport: PUB_PORT, proto: UDP }), '... and no flow made');
    t.equal((await up(udpDatagram({ dmac: upMac, smac: CLIENT_MAC, src: CLIENT, dst: UPLINK_ADDR, sport: 5020, dport: PUB_PORT, size: 100 }))).retval, TC_ACT_REDIRECT, 'a small one opens the flow');
    t.equal((await up(pubIn(5020))).retval, TC_ACT_SHOT, 'published, tracked: dropped');
    t.equal(drops(env, ifx.u0, DropReason.TOO_BIG), before + 2n, '... counted too_big');
    const rep = udpDatagram({ dmac: GW_MAC, smac: B.mac, src: B.addr, dst: CLIENT, sport: 53, dport: 5020, size: 1430 });
    const r = await veth(rep, B.ifindex);
    t.equal(r.retval, TC_ACT_UNSPEC, "published, the container's reply with DF, too big for the uplink: passed to the kernel");
    t.same(r.data, rep, '... untranslated');

    const hp = udpDatagram({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: UPLINK_ADDR, sport: 31223, dport: PUB_PORT, size: 1430 });
    before = drops(env, A.ifindex, DropReason.TOO_BIG);
    t.equal((await veth(hp)).retval, TC_ACT_SHOT, "hairpin: bigger than the target's veth MTU, dropped");
    t.equal(drops(env, A.ifindex, DropReason.TOO_BIG), before + 1n, '... counted too_big');
  });

  t.test('bytes past tot_len do not count toward the MTU (ip_rcv_core trims them before forwarding)', async (t) => {
    setMtu(IF.u0, 1400);
    setMtu(IF.c1, 1400);
    t.teardown(() => {
      setMtu(IF.u0, 1500);
      setMtu(IF.c1, 1500);
    });
    // a datagram of `size` UDP bytes and `pad` bytes past its tot_len: the frame is bigger than 14 + 1400
    const padded = (d: Buffer, pad: number): Buffer => Buffer.concat([d, Buffer.alloc(pad, 0xa5)]);
    const totLen = (b: Buffer): number => b.readUInt16BE(16);
    const fits = 1000;
    const tooBig = 1430; // 20 + 1430 > 1400
    const pad = 600;

    // masquerade (source only: the kernel's own route is asked when too big)
    t.equal((await veth(udpDatagram({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: OUT, sport: 31240, dport: 9004, size: 100 }))).retval, TC_ACT_REDIRECT, 'a masqueraded flow');
    const m = padded(udpDatagram({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: OUT, sport: 31240, dport: 9004, size: fits }), pad);
    t.ok(m.length > 14 + 1400, `the frame (${m.length} bytes) is longer than the uplink's MTU allows`);
    let r = await veth(m);
    t.equal(r.retval, TC_ACT_REDIRECT, 'masquerade, tracked, DF, fits but for the padding: translated and sent');
    t.equal(fragOf(r.data).src, UPLINK_ADDR, '... masqueraded (never passed untranslated for the kernel to forward as it is)');
    t.equal(totLen(r.data), totLen(m), '... tot_len kept');
    t.same(r.data.subarray(14 + totLen(m)), m.subarray(14 + totLen(m)), '... the bytes past tot_len as they came');
    const mNew = padded(udpDatagram({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: OUT, sport: 31241, dport: 9004, size: fits }), pad);
    r = await veth(mNew);
    t.equal(r.retval, TC_ACT_REDIRECT, 'masquerade, new, DF, fits but for the padding: translated');
    t.ok(ct(env, { saddr: A.addr, daddr: OUT, sport: 31241, dport: 9004, proto: UDP }), '... its flow made');
    const mBig = padded(udpDatagram({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: OUT, sport: 31240, dport: 9004, size: tooBig }), 100);
    r = await veth(mBig);
    t.equal(r.retval, TC_ACT_UNSPEC, 'masquerade, tracked, DF, too big without the padding too: passed to the kernel (it answers frag-needed)');
    t.same(r.data, mBig, '... untranslated');
    let before = drops(env, A.ifindex, DropReason.TOO_BIG);
    t.equal((await veth(padded(udpDatagram({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: OUT, sport: 31240, dport: 9004, size: tooBig, frag: 0 }), 100))).retval, TC_ACT_SHOT, '... DF clear: dropped');
    t.equal(drops(env, A.ifindex, DropReason.TOO_BIG), before + 1n, '... counted too_big');

    // published from outside (destination translated: into B's veth, MTU 1400)
    const pubIn = (sport: number, size: number, n: number) => padded(udpDatagram({ dmac: upMac, smac: CLIENT_MAC, src: CLIENT, dst: UPLINK_ADDR, sport, dport: PUB_PORT, size }), n);
    r = await up(pubIn(5030, fits, pad));
    t.equal(r.retval, TC_ACT_REDIRECT, 'published, new, fits but for the padding: translated and sent');
    t.equal(fragOf(r.data).dst, B.addr, '... to the container');
    r = await up(pubIn(5030, fits, pad));
    t.equal(r.retval, TC_ACT_REDIRECT, 'published, tracked, fits but for the padding: translated and sent');
    before = drops(env, ifx.u0, DropReason.TOO_BIG);
    t.equal((await up(pubIn(5031, tooBig, 100))).retval, TC_ACT_SHOT, 'published, new, too big without the padding too: dropped');
    t.equal((await up(pubIn(5030, tooBig, 100))).retval, TC_ACT_SHOT, 'published, tracked, too big without the padding too: dropped');
    t.equal(drops(env, ifx.u0, DropReason.TOO_BIG), before + 2n, '... both counted too_big');
    t.notOk(ct(env, { saddr: CLIENT, daddr: UPLINK_ADDR, sport: 5031, dport: PUB_PORT, proto: UDP }), '... and no flow made for the new one');

    // hairpin (A to the host's published port, into B's veth)
    const hp = (size: number, n: number) => padded(udpDatagram({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: UPLINK_ADDR, sport: 31242, dport: PUB_PORT, size }), n);
    r = await veth(hp(fits, pad));
    t.equal(r.retval, TC_ACT_REDIRECT, 'hairpin, fits but for the padding: translated and sent');
    t.equal(fragOf(r.data).dst, B.addr, '... to the target container');
    before = drops(env, A.ifindex, DropReason.TOO_BIG);
    t.equal((await veth(hp(tooBig, 100))).retval, TC_ACT_SHOT, 'hairpin, too big without the padding too: dropped');
    t.equal(drops(env, A.ifindex, DropReason.TOO_BIG), before + 1n, '... counted too_big');
  });

  t.test('DF and too big where the kernel would forward it: dropped, never passed untranslated', async (t) => {
    // the flow left by U0 (MTU 1400 now), but the kernel's own route to OUT
    // now leaves by C0 (MTU 1500): passed, the packet would leave untranslated
    t.equal((await veth(udpDatagram({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: OUT, sport: 31230, dport: 9003, size: 100 }))).retval, TC_ACT_REDIRECT);
    setMtu(IF.u0, 1400);
    sh('ip', ['route', 'add', `${OUT}/32`, 'dev', IF.c0]);
    t.teardown(() => {
      sh('ip', ['route', 'del', `${OUT}/32`, 'dev', IF.c0], true);
      setMtu(IF.u0, 1500);
    });
    const before = drops(env, A.ifindex, DropReason.TOO_BIG);
    const r = await veth(udpDatagram({ dmac: GW_MAC, smac: A.mac, src: A.addr, dst: OUT, sport: 31230, dport: 9003, size: 1430 }));
    t.equal(r.retval, TC_ACT_SHOT, 'dropped');
    t.equal(drops(env, A.ifindex, DropReason.TOO_BIG), before + 1n, '... counted too_big');
  });
});
