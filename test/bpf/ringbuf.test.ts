// The native RingBuffer and the drop monitor on the real objects: enable the
// monitor, cause NOT_PUBLISHED drops on berth_up_in with BPF_PROG_TEST_RUN
// (a packet from outside to a container address), receive decoded events.
import t from 'tap';
import { le32 } from '../../src/platform/codec';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { Dataplane } from '../../src/platform/dataplane';
import {
  DropReason,
  EndpointFlags,
  MapName,
  counterKeyCodec,
  dropEventCodec,
  endpointCodec,
  endpointMetaCodec,
  ifindexKeyCodec,
  ipKeyCodec,
  monitorCfgCodec,
  netValueCodec,
  networkKeyCodec,
  networkMetaCodec,
  uplinkCodec,
  zeroPerCpuCounters,
} from '../../src/platform/contract';
import { BpfProgram, isBpfError, native, skbTestContext } from '../../src/platform/native';
import { DropMonitor, MonitorEvent, decodeEvent } from '../../src/observe/monitor';
import { eth, ipv4, tcp } from '../lib/packets';

const tag = String(process.pid % 100000);
const X = process.pid % 250;
const IF = { u0: `bor${tag}a`, u1: `bor${tag}b`, c0: `bor${tag}c`, c1: `bor${tag}d` };
const pinRoot = `/sys/fs/bpf/berth-test-ob${process.pid}-rb`;
const CLIENT = `10.184.${X}.50`;
const UPLINK_ADDR = `10.184.${X}.1`;
const B = { addr: `10.185.${X}.20`, mac: '02:00:0a:b9:00:14' };

function sh(args: string[]): void {
  try {
    execFileSync('ip', args, { stdio: 'ignore' });
  } catch {
    /* cleanup of what may not exist */
  }
}
const ifindexOf = (name: string): number => Number(fs.readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8').trim());
const macOf = (name: string): string => fs.readFileSync(`/sys/class/net/${name}/address`, 'utf8').trim();

function cleanup(): void {
  sh(['link', 'del', IF.u0]);
  sh(['link', 'del', IF.c0]);
  try {
    Dataplane.reset(pinRoot);
  } catch {
    /* not there */
  }
}

cleanup();
t.teardown(cleanup);
execFileSync('ip', ['link', 'add', IF.u0, 'type', 'veth', 'peer', 'name', IF.u1]);
execFileSync('ip', ['link', 'add', IF.c0, 'type', 'veth', 'peer', 'name', IF.c1]);
for (const n of Object.values(IF)) execFileSync('ip', ['link', 'set', n, 'up']);

let dp: Dataplane;
t.before(async () => {
  // loads and pins every object (nothing is attached)
  dp = await Dataplane.openOrLoad({ pinRoot, ctMax: 4096 });
});
t.teardown(() => dp?.close());

let up: BpfProgram;
let u0 = 0;
let c0 = 0;

t.test('set up an uplink and a container endpoint', async (t) => {
  const n = native();
  const m = (name: string) => n.openPinnedMap(`${pinRoot}/${name}`);
  u0 = ifindexOf(IF.u0);
  c0 = ifindexOf(IF.c0);
  const ep = endpointCodec.encode({ addr: B.addr, ifindex: c0, network_id: 1, flags: EndpointFlags.ICC | EndpointFlags.MASQUERADE, mac: B.mac });
  const maps = {
    byIf: m(MapName.EP_BY_IFINDEX),
    byIp: m(MapName.EP_BY_IP),
    net: m(MapName.NET),
    netMeta: m(MapName.NET_META),
    epMeta: m(MapName.EP_META),
    uplink: m(MapName.UPLINK),
    counters: m(MapName.COUNTERS),
  };
  maps.byIf.update(ifindexKeyCodec.encode({ ifindex: c0 }), ep);
  maps.byIp.update(ipKeyCodec.encode({ addr: B.addr }), ep);
  maps.net.update(
    networkKeyCodec.encode({ network_id: 1 }),
    netValueCodec.encode({ subnet: `10.185.${X}.0`, mask: '255.255.255.0', gateway: `10.185.${X}.1`, flags: EndpointFlags.ICC | EndpointFlags.MASQUERADE, bridge_ifindex: ifindexOf(IF.u1), gw_mac: '02:00:0a:b9:00:01' }),
  );
  maps.netMeta.update(networkKeyCodec.encode({ network_id: 1 }), networkMetaCodec.encode({ name: `ob${tag}-net`, bridge: IF.u1, subnet: `10.185.${X}.0`, prefix_len: 24, gateway: `10.185.${X}.1`, flags: 0 }));
  maps.epMeta.update(ifindexKeyCodec.encode({ ifindex: c0 }), endpointMetaCodec.encode({ container: `ob${tag}-b`, ifname: IF.c0, network_id: 1 }));
  maps.uplink.update(ifindexKeyCodec.encode({ ifindex: u0 }), uplinkCodec.encode({ addr: UPLINK_ADDR, flags: 0, mac: macOf(IF.u0) }));
  for (const ifindex of [u0, c0]) for (const direction of [0, 1]) maps.counters.update(counterKeyCodec.encode({ ifindex, direction }), zeroPerCpuCounters(n.possibleCpus()));
  Object.values(maps).forEach((x) => x.close());
  up = dp.progs.uplink;
  t.ok(u0 > 0 && c0 > 0);
});

const dropFrame = (sport: number) =>
  eth(macOf(IF.u0), '02:00:0a:b8:00:32', 0x0800, ipv4({ src: CLIENT, dst: B.addr, proto: 6 }, tcp(CLIENT, B.addr, sport, 80, 0x02, Buffer.from('x'))));
const drop = async (sport: number) => (await up.testRun({ data: dropFrame(sport), ctx: skbTestContext(u0) })).retval;

t.test('openRingBuffer: argument and kernel errors are BpfErrors', async (t) => {
  const n = native();
  let err: unknown;
  try {
    n.openRingBuffer(`${pinRoot}/${MapName.MONITOR}`);
  } catch (e) {
    err = e;
  }
  t.ok(isBpfError(err), 'not a ring buffer: BpfError');
  t.match(err, { code: 'EINVAL', op: 'ringbuf.open' });
  err = undefined;
  try {
    n.openRingBuffer(`${pinRoot}/nope`);
  } catch (e) {
    err = e;
  }
  t.match(err, { code: 'ENOENT', op: 'ringbuf.open', errno: 2 });
  const rb = n.openRingBuffer(`${pinRoot}/${MapName.EVENTS}`);
  t.equal(rb.name, MapName.EVENTS);
  t.equal(rb.size, 256 * 1024);
  t.throws(() => rb.start(42 as unknown as () => void), { code: 'EINVAL' }, 'onEvents must be a function');
  rb.start(() => undefined);
  t.equal(rb.running, true);
  t.throws(() => rb.start(() => undefined), { code: 'EBUSY' }, 'started twice');
  rb.stop();
  t.equal(rb.running, false);
  rb.stop(); // idempotent
  rb.close();
  t.throws(() => rb.start(() => undefined), { code: 'EBADF', op: 'ringbuf.start' }, 'closed');
});

t.test('raw RingBuffer: enabled monitor, NOT_PUBLISHED drops arrive as records', async (t) => {
  const n = native();
  const mon = n.openPinnedMap(`${pinRoot}/${MapName.MONITOR}`);
  const rb = n.openRingBuffer(`${pinRoot}/${MapName.EVENTS}`);
  t.teardown(() => {
    mon.update(le32(0), monitorCfgCodec.encode({ enabled: 0, rate_per_sec: 0, burst: 0 }));
    rb.close();
    mon.close();
  });
  const got: Buffer[] = [];
  let batches = 0;
  rb.start((records) => {
    batches++;
    got.push(...records);
  });
  mon.update(le32(0), monitorCfgCodec.encode({ enabled: 1, rate_per_sec: 1000, burst: 1000 }));
  for (let i = 0; i < 3; i++) t.equal(await drop(41000 + i), 2, 'TC_ACT_SHOT');
  const deadline = Date.now() + 3000;
  while (got.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.equal(got.length, 3, 'three records');
  t.ok(batches >= 1);
  const ev = dropEventCodec.decode(got[0]);
  t.equal(ev.reason, DropReason.NOT_PUBLISHED);
  t.equal(ev.ifindex, u0);
  t.equal(ev.saddr, CLIENT);
  t.equal(ev.daddr, B.addr);
  t.equal(ev.dport, 80);
  t.same(got.map((g) => dropEventCodec.decode(g).sport).sort(), [41000, 41001, 41002]);
  t.equal(ev.proto, 6);
});

t.test('DropMonitor: decoded, named events; disabled again on stop', async (t) => {
  const mon = DropMonitor.open({ pinRoot, rate: 500 });
  const events: MonitorEvent[] = [];
  mon.start((e) => events.push(e));
  const cfgMap = native().openPinnedMap(`${pinRoot}/${MapName.MONITOR}`);
  t.teardown(() => cfgMap.close());
  t.match(monitorCfgCodec.decode(cfgMap.lookup(le32(0))!), { enabled: 1, rate_per_sec: 500 }, 'enabled while listening');
  for (let i = 0; i < 2; i++) await drop(42000 + i);
  const deadline = Date.now() + 3000;
  while (events.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  mon.stop();
  t.equal(events.length, 2);
  t.match(events[0], { reason: 'not_published', interface: IF.u0, direction: 'from_outside', proto: 'tcp', src: CLIENT, dst: B.addr, dport: 80 });
  t.ok(Math.abs(Date.parse(events[0].time) - Date.now()) < 10000, 'wall-clock time');
  t.equal(monitorCfgCodec.decode(cfgMap.lookup(le32(0))!).enabled, 0, 'disabled after stop');
  await drop(42100);
  await new Promise((r) => setTimeout(r, 100));
  t.equal(events.length, 2, 'nothing after stop');
  mon.stop(); // idempotent
});

t.test('decodeEvent names container veths', async (t) => {
  const raw = dropEventCodec.encode({ ts_ns: process.hrtime.bigint(), ifindex: c0, reason: DropReason.ICC, saddr: '1.2.3.4', daddr: '5.6.7.8', sport: 1, dport: 2, proto: 17, direction: 0, len: 60 });
  const e = decodeEvent(raw, { name: () => ({ container: 'web', network: 'front', interface: 'vethx', uplink: false }) });
  t.match(e, { reason: 'icc', container: 'web', network: 'front', direction: 'from_container', proto: 'udp', len: 60 });
});
