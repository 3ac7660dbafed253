// A pinned map whose layout changed, migrated by a new build on the real kernel
// (src/platform/lifecycle.ts): the dataplane is loaded, then two of its pinned maps are swapped
// for maps of an older contract (test/fixtures/lifecycle_old.bpf.c) holding entries, and the
// pinned version made the old build's. Opening it again must convert berth_uplink (addr6 is new:
// zero; addr, flags and mac carried over by name), reset berth_net_meta (a member changed type)
// with a warning naming it, keep every other map; since a map was reset the takeover is deferred
// (the link keeps the old program and the old maps, pinned under pending/) until finishUpgrade,
// which moves the link onto the new programs and catches the migrated map up.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Dataplane } from '../../src/platform/dataplane';
import { hex, planConversion, readPinnedVersion, writePinnedVersion } from '../../src/platform/lifecycle';
import { readStatus } from '../../src/observe/status';
import { gatherFacts } from '../../src/observe/doctor';
import { formatStatus } from '../../src/cli/format';
import { MapName, ifindexKeyCodec, networkKeyCodec, networkMetaCodec, uplinkCodec } from '../../src/platform/contract';
import { bpfObjectPath, native } from '../../src/platform/native';

const id = process.pid % 1000;
const pinRoot = `/sys/fs/bpf/berth-lc-test-mig${id}`;
const VETH = [`blcm${id}a`, `blcm${id}b`];

const cleanup = (): void => {
  try {
    Dataplane.reset(pinRoot);
  } catch {
    /* nothing pinned */
  }
  try {
    execFileSync('ip', ['link', 'del', VETH[0]!], { stdio: 'ignore' });
  } catch {
    /* gone */
  }
};
t.teardown(cleanup);

t.test('a changed map layout: converted by member name, or reset when it cannot be', async (t) => {
  cleanup();
  execFileSync('ip', ['link', 'add', VETH[0]!, 'type', 'veth', 'peer', 'name', VETH[1]!]);
  const ifindex = Number(fs.readFileSync(`/sys/class/net/${VETH[0]}/ifindex`, 'utf8'));
  const dp = await Dataplane.openOrLoad({ pinRoot });
  dp.attachVeth(ifindex);
  const before = dp.attachments().map((a) => [a.linkId, a.progId]);
  const keptId = dp.maps.ct.id;
  dp.close();

  // the older contract's maps, with entries, where the current ones were pinned
  const old = native().openObject(bpfObjectPath('lifecycle_old'));
  t.teardown(() => old.close());
  await old.load();
  const oldUplink = old.map(MapName.UPLINK);
  const k1 = ifindexKeyCodec.encode({ ifindex: 7 });
  const v1 = Buffer.alloc(16);
  v1.writeUInt32BE(0x0a4d0001, 0); // 10.77.0.1
  v1.writeUInt32LE(3, 4);
  Buffer.from([2, 0, 0, 0xaa, 0xbb, 0xcc]).copy(v1, 8);
  oldUplink.update(k1, v1);
  const k2 = ifindexKeyCodec.encode({ ifindex: 9 });
  const v2 = Buffer.from(v1);
  v2.writeUInt32BE(0x0a4d0101, 0);
  oldUplink.update(k2, v2);
  const oldMeta = old.map(MapName.NET_META);
  oldMeta.update(networkKeyCodec.encode({ network_id: 1 }), Buffer.alloc(oldMeta.valueSize, 1));
  for (const m of [oldUplink, oldMeta]) {
    const pin = path.join(pinRoot, m.name);
    native().unpin(pin);
    m.pin(pin);
  }
  // ... as the old build recorded it: its own layout hash, so this build sees another layout
  const v = readPinnedVersion(pinRoot)!;
  writePinnedVersion(pinRoot, { ...v, layout: 1n });

  const lines: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  let dp2: Dataplane;
  try {
    dp2 = await Dataplane.openOrLoad({ pinRoot });
  } finally {
    process.stderr.write = write;
  }
  t.teardown(() => dp2.close());

  const up = new Map(dp2.maps.uplink.keys().map((k) => [ifindexKeyCodec.decode(k).ifindex, uplinkCodec.decode(dp2.maps.uplink.lookup(k)!)]));
  t.same(
    [...up.entries()].sort((a, b) => a[0] - b[0]),
    [
      [7, { addr: '10.77.0.1', flags: 3, mac: '02:00:00:aa:bb:cc', addr6: '::' }],
      [9, { addr: '10.77.1.1', flags: 3, mac: '02:00:00:aa:bb:cc', addr6: '::' }],
    ],
    'berth_uplink converted: its members carried over, addr6 zero',
  );
  t.equal(dp2.maps.uplink.valueSize, uplinkCodec.size, 'berth_uplink has the new layout');
  t.not(dp2.maps.uplink.id, oldUplink.id, 'a new map');
  t.equal(dp2.maps.netMeta.keys().length, 0, 'berth_net_meta reset: no conversion exists');
  t.equal(dp2.maps.netMeta.valueSize, networkMetaCodec.size, 'berth_net_meta has the new layout');
  t.equal(dp2.maps.ct.id, keptId, 'a map whose layout is the same is the same map');
  const warn = lines.map((l) => JSON.parse(l)).find((l) => l.map === MapName.NET_META);
  t.match(warn, { level: 'warn', reason: 'member prefix_len changed type' }, 'the reset is said, with its map and reason');
  const info = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'dataplane takeover deferred: the links keep the old programs until a reconcile has written the new maps');
  t.match(info, { mapsMigrated: [{ map: MapName.UPLINK, entries: 2, added: ['addr6'], removed: [] }], mapsReset: [{ map: MapName.NET_META }] });
  // deferred: a map was reset, so the link keeps the old program (on the old maps) until the maps are written
  t.ok(dp2.upgradePending, 'the takeover is pending');
  t.same(dp2.attachments().map((a) => [a.linkId, a.progId]), before, 'the links still run the old programs');
  t.same(fs.readdirSync(path.join(pinRoot, 'pending', 'maps')).sort(), [MapName.NET_META, MapName.UPLINK].sort(), 'the old maps the old programs use, pinned under pending/');
  t.equal(readPinnedVersion(pinRoot)!.layout, 1n, 'the version is still the old build');
  t.ok(before.some(([, p]) => p === dp2.progs.ingress.id), "the handle's programs are the old ones (what a reconcile attaches meanwhile)");
  // what the old programs write meanwhile into a migrated map is caught up at the finish
  const k3 = ifindexKeyCodec.encode({ ifindex: 11 });
  const v3 = Buffer.from(v1);
  v3.writeUInt32BE(0x0a4d0201, 0);
  oldUplink.update(k3, v3);
  const fin = await dp2.finishUpgrade();
  t.match(fin, { linksUpdated: 2, linksLeft: 0 }, 'finishUpgrade moved both links');
  t.notOk(dp2.upgradePending, 'nothing is pending');
  t.notOk(fs.existsSync(path.join(pinRoot, 'pending')), 'pending/ is gone');
  t.same(uplinkCodec.decode(dp2.maps.uplink.lookup(k3)!), { addr: '10.77.2.1', flags: 3, mac: '02:00:00:aa:bb:cc', addr6: '::' }, "the old map's later entry was caught up");
  t.equal(await dp2.finishUpgrade(), undefined, 'a second finish has nothing to do');
  const after = dp2.attachments().map((a) => [a.linkId, a.progId]);
  t.same(after.map((a) => a[0]), before.map((a) => a[0]), 'the same links');
  for (const [i, a] of after.entries()) t.not(a[1], before[i]![1], 'a new program on the link');
  t.ok(after.every((a) => a[1] === dp2.progs.ingress.id || a[1] === dp2.progs.egress.id), "the handle's programs followed the links");
  t.equal(readPinnedVersion(pinRoot)!.layout, v.layout, "the pinned version is this build's again");
  // berth status and doctor show the pinned version
  const st = await readStatus(pinRoot);
  t.match(st.version, { epoch: v.epoch, release: v.release, layout: hex(v.layout) }, 'status: the pinned version');
  t.match(formatStatus(st), `version: berth ${v.release}, contract epoch ${v.epoch}, layout ${hex(v.layout)}`);
  const facts = await gatherFacts({ pinRoot });
  t.match(facts.pinnedVersion, `berth ${v.release} (contract epoch ${v.epoch}`, 'doctor: the pinned version');
});

t.test('the layouts of the old fixture against the current objects (what the migration read)', async (t) => {
  const old = native().openObject(bpfObjectPath('lifecycle_old'));
  const cur = native().openObject(bpfObjectPath('tc_veth'));
  t.teardown(() => {
    old.close();
    cur.close();
  });
  const c = planConversion(old.mapLayout(MapName.UPLINK), cur.mapLayout(MapName.UPLINK));
  t.notOk('reason' in c, 'berth_uplink converts');
  const r = planConversion(old.mapLayout(MapName.NET_META), cur.mapLayout(MapName.NET_META));
  t.same(r, { reason: 'member prefix_len changed type' });
  t.same(planConversion(cur.mapLayout(MapName.CT), cur.mapLayout(MapName.UPLINK)), { reason: 'the key layout changed' });
  t.same(planConversion(cur.mapLayout(MapName.COUNTERS), cur.mapLayout(MapName.COUNTERS)), { reason: 'per-CPU values are not converted' });
});
