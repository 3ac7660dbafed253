/**
 * The native addon against a real kernel: needs root, bpffs at /sys/fs/bpf
 * and the fixtures built by cmake (build/bpf/native_fixture.bpf.o,
 * build/bpf/native_bad.bpf.o).
 */
import t, { Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { native, bpfObjectPath, isBpfError, BpfObject, BpfMap, BpfProgram } from '../../src/platform/native';

const addon = native();
const FIXTURE = bpfObjectPath('native_fixture');
const BAD = bpfObjectPath('native_bad');
const PIN_DIR = `/sys/fs/bpf/berth-test-native-${process.pid}`;
const VETH_A = `btn${process.pid % 10000}a`;
const VETH_B = `btn${process.pid % 10000}b`;
const TC_ACT_SHOT = 2;

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

/** struct fx_value { __u64 packets; __u32 bytes; enum fx_verdict verdict; } */
function fxValue(packets: number, bytes: number, verdict = 0): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(BigInt(packets), 0);
  b.writeUInt32LE(bytes, 8);
  b.writeUInt32LE(verdict, 12);
  return b;
}

function ifindex(name: string): number {
  return Number(fs.readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8').trim());
}

type Tap = Test;

/** Expect fn (sync or async) to fail with a BpfError carrying this code. */
async function rejectsCode(tt: Tap, fn: () => unknown, code: string, op?: string, msg?: string): Promise<void> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  tt.ok(isBpfError(err), `${msg ?? code}: throws a BpfError`);
  if (isBpfError(err)) {
    tt.equal(err.code, code, `${msg ?? code}: code (${err.message})`);
    tt.type(err.errno, 'number');
    tt.ok(err.errno > 0, 'errno positive');
    if (op) tt.equal(err.op, op, `${msg ?? code}: op`);
  }
}

fs.mkdirSync(PIN_DIR, { recursive: true });
t.teardown(() => {
  fs.rmSync(PIN_DIR, { recursive: true, force: true });
  try {
    execFileSync('ip', ['link', 'del', VETH_A], { stdio: 'ignore' });
  } catch {
    /* not created or already gone */
  }
});

t.test('module basics', async (tt) => {
  tt.match(addon.libbpfVersion(), /^\d+\.\d+$/);
  const cpus = addon.possibleCpus();
  tt.ok(Number.isInteger(cpus) && cpus >= 1, 'possibleCpus');
  tt.equal(addon.probeTcx(), true, 'kernel 6.6+ supports tcx');
  tt.equal(addon.probeTcx(), true, 'cached probe');
  tt.equal(addon.unpin(`${PIN_DIR}/does-not-exist`), false, 'unpin of a missing path');
});

t.test('openObject argument checks', async (tt) => {
  await rejectsCode(tt, () => addon.openObject(FIXTURE, { pinRoot: PIN_DIR, rodata: { fx_setting: Buffer.alloc(2) } }),
    'EINVAL', 'object.open', 'wrong rodata size');
  await rejectsCode(tt, () => addon.openObject(FIXTURE, { pinRoot: PIN_DIR, rodata: { nope: Buffer.alloc(4) } }),
    'ENOENT', 'object.open', 'unknown rodata variable');
  await rejectsCode(tt, () => addon.openObject(FIXTURE, { pinRoot: PIN_DIR, maxEntries: { nope: 4 } }),
    'ENOENT', 'object.open', 'unknown map in maxEntries');
  await rejectsCode(tt, () => addon.openObject(FIXTURE, { pinRoot: PIN_DIR, maxEntries: { fx_hash: -1 } }),
    'EINVAL', 'object.open', 'bad maxEntries');
  await rejectsCode(tt, () => addon.openObject(42 as unknown as string), 'EINVAL', 'object.open', 'path not a string');
  await rejectsCode(tt, () => addon.openObject('/nonexistent/x.bpf.o'), 'ENOENT', 'object.open', 'missing file');
});

t.test('BpfObject / BpfMap / BpfProgram', async (tt) => {
  const obj: BpfObject = addon.openObject(FIXTURE, {
    pinRoot: PIN_DIR,
    rodata: { fx_setting: u32(9) },
    maxEntries: { fx_hash: 128 },
  });
  tt.teardown(() => obj.close());
  tt.equal(obj.path, FIXTURE);

  // BTF works before load
  tt.same(obj.btfStruct('fx_value'), {
    name: 'fx_value',
    size: 16,
    members: [
      { name: 'packets', offset: 0, size: 8 },
      { name: 'bytes', offset: 8, size: 4 },
      { name: 'verdict', offset: 12, size: 4 },
    ],
  });
  tt.same(obj.btfEnum('fx_verdict'), { name: 'fx_verdict', values: { FX_PASS: 0, FX_DROP: 1, FX_REDIRECT: 7 } });
  await rejectsCode(tt, () => obj.btfStruct('no_such_struct'), 'ENOENT', 'object.btfStruct');
  await rejectsCode(tt, () => obj.btfEnum('no_such_enum'), 'ENOENT', 'object.btfEnum');

  // nothing usable before load
  await rejectsCode(tt, () => obj.maps(), 'EINVAL', 'object.maps', 'maps() before load');
  await rejectsCode(tt, () => obj.map('fx_hash'), 'EINVAL', 'object.map', 'map() before load');
  await rejectsCode(tt, () => obj.program('fx_tc'), 'EINVAL', 'object.program', 'program() before load');

  await obj.load();
  await rejectsCode(tt, () => obj.load(), 'EINVAL', 'object.load', 'second load');

  const names = obj.maps().map((m) => m.name).sort();
  tt.same(names, ['fx_hash', 'fx_percpu', 'fx_pinned'], 'internal maps skipped');
  tt.same(obj.programs().map((p) => p.name).sort(), ['fx_tc', 'fx_xdp']);
  await rejectsCode(tt, () => obj.map('nope'), 'ENOENT', 'object.map');
  await rejectsCode(tt, () => obj.map('.rodata'), 'ENOENT', 'object.map', 'internal map hidden');
  await rejectsCode(tt, () => obj.program('nope'), 'ENOENT', 'object.program');

  const hash: BpfMap = obj.map('fx_hash');
  tt.teardown(() => hash.close());
  tt.match(hash, { name: 'fx_hash', type: 1, keySize: 4, valueSize: 16, maxEntries: 128, perCpu: false });
  tt.equal(hash.valueBufferSize, 16);
  tt.ok(hash.id > 0, 'map id');
  tt.ok(hash.fd > 2, 'map fd');

  tt.test('element ops', async (st) => {
    st.equal(hash.lookup(u32(1)), null, 'missing key');
    hash.update(u32(1), fxValue(10, 100));
    st.same(hash.lookup(u32(1)), fxValue(10, 100));
    await rejectsCode(st, () => hash.update(u32(1), fxValue(1, 1), 'noexist'), 'EEXIST', 'map.update');
    await rejectsCode(st, () => hash.update(u32(2), fxValue(1, 1), 'exist'), 'ENOENT', 'map.update');
    hash.update(u32(1), fxValue(11, 110), 'exist');
    st.same(hash.lookup(u32(1)), fxValue(11, 110));
    await rejectsCode(st, () => hash.update(u32(1), fxValue(1, 1), 'bogus' as 'any'), 'EINVAL', 'map.update', 'bad flag');

    // wrong lengths: rejected, nothing changed
    await rejectsCode(st, () => hash.update(Buffer.alloc(3), fxValue(5, 5)), 'EINVAL', 'map.update', 'short key');
    await rejectsCode(st, () => hash.update(u32(1), Buffer.alloc(15)), 'EINVAL', 'map.update', 'short value');
    await rejectsCode(st, () => hash.update(u32(1), 'x' as unknown as Buffer), 'EINVAL', 'map.update', 'value type');
    await rejectsCode(st, () => hash.lookup(Buffer.alloc(8)), 'EINVAL', 'map.lookup', 'long key');
    await rejectsCode(st, () => hash.delete(Buffer.alloc(2)), 'EINVAL', 'map.delete', 'short key');
    st.same(hash.lookup(u32(1)), fxValue(11, 110), 'unchanged after rejected updates');
    st.same(hash.keys(), [u32(1)]);

    st.equal(hash.delete(u32(1)), true);
    st.equal(hash.delete(u32(1)), false, 'second delete');
    st.same(hash.keys(), []);
  });

  tt.test('batch ops', async (st) => {
    const keys = Array.from({ length: 100 }, (_, i) => u32(i + 1));
    const values = keys.map((_, i) => fxValue(i, i * 10, i % 2));

    // one bad value: whole batch rejected before any syscall
    const bad = values.slice();
    bad[50] = Buffer.alloc(8);
    await rejectsCode(st, () => hash.updateBatch(keys, bad), 'EINVAL', 'map.updateBatch', 'bad value in batch');
    await rejectsCode(st, () => hash.updateBatch(keys, values.slice(1)), 'EINVAL', 'map.updateBatch', 'length mismatch');
    st.same(hash.keys(), [], 'nothing written');
    // the promise API rejects rather than throwing synchronously
    const p = hash.updateBatch(keys, bad);
    st.ok(p instanceof Promise);
    await st.rejects(p, { code: 'EINVAL' });

    await hash.updateBatch(keys, values);
    const dump = await hash.dump();
    st.equal(dump.length, 100);
    const sorted = dump.slice().sort((a, b) => a[0].readUInt32LE() - b[0].readUInt32LE());
    st.same(sorted.map(([k]) => k), keys);
    st.same(sorted.map(([, v]) => v), values);
    st.equal(hash.keys().length, 100);

    await rejectsCode(st, () => hash.updateBatch(keys.slice(0, 1), values.slice(0, 1), 'noexist'), 'EEXIST', 'map.updateBatch');
    await st.rejects(hash.updateBatch([u32(500), u32(501), u32(7)], values.slice(0, 3), 'noexist'), { code: 'EEXIST', element: 2 }, 'the failing element is named');
    st.equal(hash.delete(u32(500)) && hash.delete(u32(501)), true, 'the elements before it were written');
    await hash.updateBatch([], []);

    // lookupBatch: each key's value in order, null for an absent one; a bad key refused before any lookup
    const got = await hash.lookupBatch([u32(3), u32(999), u32(100)]);
    st.same(got, [values[2], null, values[99]]);
    st.same(await hash.lookupBatch([]), []);
    await rejectsCode(st, () => hash.lookupBatch([u32(1), Buffer.alloc(2)]), 'EINVAL', 'map.lookupBatch', 'short key in batch');

    const toDelete = [...keys.slice(0, 60), u32(1000), u32(1001)];
    st.equal(await hash.deleteBatch(toDelete), 60, 'only existing keys counted');
    st.equal((await hash.dump()).length, 40);
    await rejectsCode(st, () => hash.deleteBatch([Buffer.alloc(1)]), 'EINVAL', 'map.deleteBatch');
    st.equal(await hash.deleteBatch(keys), 40);
    st.same(await hash.dump(), []);
  });

  tt.test('per-CPU map', async (st) => {
    const pc = obj.map('fx_percpu');
    st.teardown(() => pc.close());
    const cpus = addon.possibleCpus();
    st.equal(pc.perCpu, true);
    st.equal(pc.valueSize, 16);
    st.equal(pc.valueBufferSize, 16 * cpus);
    await rejectsCode(st, () => pc.update(u32(1), Buffer.alloc(16)), 'EINVAL', 'map.update', 'one-CPU value refused');
    const v = Buffer.alloc(pc.valueBufferSize);
    for (let c = 0; c < cpus; c++) v.writeBigUInt64LE(BigInt(c + 1), c * 16);
    pc.update(u32(1), v);
    st.same(pc.lookup(u32(1)), v);
    const d = await pc.dump();
    st.equal(d.length, 1);
    st.same(d[0][1], v);
    await pc.updateBatch([u32(2), u32(3)], [v, v]);
    st.equal((await pc.dump()).length, 3);
  });

  tt.test('testRun proves rodata', async (st) => {
    const prog: BpfProgram = obj.program('fx_tc');
    st.teardown(() => prog.close());
    st.equal(prog.type, 3, 'BPF_PROG_TYPE_SCHED_CLS');
    st.ok(prog.id > 0);
    const r = await prog.testRun({ data: Buffer.alloc(64), repeat: 5 });
    st.equal(r.retval, 9, 'fx_setting from rodata');
    st.type(r.duration, 'number');
    st.ok(r.duration >= 0);
    st.ok(Buffer.isBuffer(r.data));
    st.equal(r.data.length, 64, 'data_size_out');
    const shot = await prog.testRun({ data: Buffer.alloc(14) });
    st.equal(shot.retval, TC_ACT_SHOT, 'short packet dropped');
    await rejectsCode(st, () => prog.testRun({ data: 'x' as unknown as Buffer }), 'EINVAL', 'program.testRun');
    // the program counts in fx_pinned[0]
    const pinned = obj.map('fx_pinned');
    st.teardown(() => pinned.close());
    st.equal(pinned.lookup(u32(0))!.readBigUInt64LE(), 6n, '5 repeats + 1 run');

    // a second object without rodata gets the default, and reuses the pinned map
    const obj2 = addon.openObject(FIXTURE, { pinRoot: PIN_DIR });
    st.teardown(() => obj2.close());
    await obj2.load();
    const prog2 = obj2.program('fx_tc');
    st.teardown(() => prog2.close());
    st.equal((await prog2.testRun({ data: Buffer.alloc(64) })).retval, 7, 'default fx_setting');
    const pinned2 = obj2.map('fx_pinned');
    st.teardown(() => pinned2.close());
    st.equal(pinned2.id, pinned.id, 'LIBBPF_PIN_BY_NAME map reused');
    st.equal(pinned2.lookup(u32(0))!.readBigUInt64LE(), 7n);
  });

  tt.test('testRunBatch: many runs on one worker, a refused run in its own slot', async (st) => {
    const prog: BpfProgram = obj.program('fx_tc');
    st.teardown(() => prog.close());
    const pinned = obj.map('fx_pinned');
    st.teardown(() => pinned.close());
    const before = pinned.lookup(u32(0))!.readBigUInt64LE();
    const frame = Buffer.alloc(64, 0xab);
    const res = await prog.testRunBatch([{ data: frame }, { data: Buffer.alloc(14) }, { data: Buffer.alloc(5) }, { data: frame, ctx: Buffer.alloc(192) }]);
    st.equal(res.length, 4);
    st.equal(res[0].retval, 9, 'fx_setting');
    st.same(res[0].data, frame, 'output data');
    st.equal(res[1].retval, TC_ACT_SHOT, 'short packet dropped');
    st.equal(res[2].code, 'EINVAL', 'a frame shorter than Ethernet is refused by the kernel, in its slot');
    st.equal(res[2].retval, undefined);
    st.equal(res[3].retval, 9, 'with a context');
    st.equal(pinned.lookup(u32(0))!.readBigUInt64LE(), before + 3n, 'three runs reached the program');
    st.same(await prog.testRunBatch([]), [], 'no runs');
    await rejectsCode(st, () => prog.testRunBatch({} as unknown as []), 'EINVAL', 'program.testRunBatch');
    await rejectsCode(st, () => prog.testRunBatch([{ data: 'x' as unknown as Buffer }]), 'EINVAL', 'program.testRunBatch');
  });

  tt.test('pins', async (st) => {
    const auto = `${PIN_DIR}/fx_pinned`;
    st.ok(fs.existsSync(auto), 'pinned by name under pinRoot');
    const viaPin = addon.openPinnedMap(auto);
    st.teardown(() => viaPin.close());
    st.equal(viaPin.name, 'fx_pinned');
    st.equal(viaPin.keySize, 4);
    st.equal(viaPin.valueSize, 8);
    st.equal(viaPin.maxEntries, 4);
    st.equal(viaPin.type, 2);

    const hp = path.join(PIN_DIR, 'hash');
    hash.pin(hp);
    await rejectsCode(st, () => hash.pin(hp), 'EEXIST', 'map.pin');
    const h2 = addon.openPinnedMap(hp);
    st.teardown(() => h2.close());
    st.equal(h2.id, hash.id);
    h2.update(u32(77), fxValue(7, 7));
    st.same(hash.lookup(u32(77)), fxValue(7, 7), 'same map through the pin');
    hash.delete(u32(77));

    const prog = obj.program('fx_xdp');
    st.teardown(() => prog.close());
    const pp = path.join(PIN_DIR, 'prog');
    prog.pin(pp);
    const p2 = addon.openPinnedProgram(pp);
    st.teardown(() => p2.close());
    st.equal(p2.id, prog.id);
    st.equal(p2.type, 6, 'BPF_PROG_TYPE_XDP');
    st.equal(p2.name, 'fx_xdp');
    await rejectsCode(st, () => addon.openPinnedMap(pp), 'EINVAL', 'map.openPinned', 'program pin is not a map');
    await rejectsCode(st, () => addon.openPinnedLink(hp), 'EINVAL', 'link.openPinned', 'map pin is not a link');

    st.equal(addon.unpin(hp), true);
    st.equal(addon.unpin(hp), false);
    st.equal(addon.unpin(pp), true);
    await rejectsCode(st, () => addon.openPinnedMap(hp), 'ENOENT', 'map.openPinned');
    st.same(hash.keys(), [], 'map still usable after unpin');
  });

  tt.test('close semantics', async (st) => {
    const m = obj.map('fx_hash');
    const p = obj.program('fx_tc');
    obj.close();
    obj.close(); // idempotent
    await rejectsCode(st, () => obj.maps(), 'EBADF', 'object.maps');
    await rejectsCode(st, () => obj.btfStruct('fx_value'), 'EBADF', 'object.btfStruct');
    // children keep their own fds
    m.update(u32(5), fxValue(5, 5));
    st.same(m.lookup(u32(5)), fxValue(5, 5), 'map usable after object close');
    st.equal((await p.testRun({ data: Buffer.alloc(64) })).retval, 9, 'program usable after object close');
    m.close();
    m.close();
    st.equal(m.fd, -1);
    await rejectsCode(st, () => m.lookup(u32(5)), 'EBADF', 'map.lookup');
    await rejectsCode(st, () => m.update(u32(5), fxValue(1, 1)), 'EBADF', 'map.update');
    await rejectsCode(st, () => m.keys(), 'EBADF', 'map.keys');
    await rejectsCode(st, () => m.dump(), 'EBADF', 'map.dump');
    await rejectsCode(st, () => m.deleteBatch([u32(5)]), 'EBADF', 'map.deleteBatch');
    p.close();
    await rejectsCode(st, () => p.testRun({ data: Buffer.alloc(64) }), 'EBADF', 'program.testRun');
    await rejectsCode(st, () => p.pin(`${PIN_DIR}/x`), 'EBADF', 'program.pin');
    st.same(hash.lookup(u32(5)), fxValue(5, 5), 'other handles unaffected');
  });
});

t.test('load failure carries the verifier log', async (tt) => {
  const bad = addon.openObject(BAD, { pinRoot: PIN_DIR });
  tt.teardown(() => bad.close());
  let err: unknown;
  try {
    await bad.load();
  } catch (e) {
    err = e;
  }
  tt.ok(isBpfError(err), 'rejected with a BpfError');
  if (isBpfError(err)) {
    tt.equal(err.op, 'object.load');
    tt.equal(err.code, 'EACCES');
    tt.equal(err.errno, 13);
    tt.match(err.message, /^object\.load object '.*native_bad\.bpf\.o': .* \(EACCES\)$/);
    tt.type(err.verifierLog, 'string');
    tt.match(err.verifierLog, /BEGIN PROG LOAD LOG/);
    tt.match(err.verifierLog, /invalid access to packet/);
  }
  await rejectsCode(tt, () => bad.maps(), 'EINVAL', 'object.maps', 'not loaded after failure');
});

t.test('links: tcx, xdp, clsact', async (tt) => {
  execFileSync('ip', ['link', 'add', VETH_A, 'type', 'veth', 'peer', 'name', VETH_B]);
  const ifA = ifindex(VETH_A);
  const ifB = ifindex(VETH_B);

  const obj = addon.openObject(FIXTURE, { pinRoot: PIN_DIR });
  tt.teardown(() => obj.close());
  await obj.load();
  const tc = obj.program('fx_tc');
  const xdp = obj.program('fx_xdp');
  tt.teardown(() => {
    tc.close();
    xdp.close();
  });

  await rejectsCode(tt, () => addon.attachTcx({} as BpfProgram, ifA, 'ingress'), 'EINVAL', 'link.attachTcx', 'not a program');
  await rejectsCode(tt, () => addon.attachTcx(tc, ifA, 'sideways' as 'ingress'), 'EINVAL', 'link.attachTcx', 'bad direction');

  const link = addon.attachTcx(tc, ifA, 'ingress');
  const info = link.info();
  tt.match(info, { progId: tc.id, type: 11, ifindex: ifA, attachType: 46 });
  tt.ok(info.id > 0);
  const egress = addon.attachTcx(tc, ifA, 'egress');
  tt.match(egress.info(), { ifindex: ifA, attachType: 47 });
  egress.close();

  const lp = path.join(PIN_DIR, 'tcx_link');
  link.pin(lp);
  const l2 = addon.openPinnedLink(lp);
  tt.match(l2.info(), { id: info.id, progId: tc.id, ifindex: ifA });
  link.close();
  tt.equal(l2.info().ifindex, ifA, 'pinned link stays attached after close');
  l2.detach();
  tt.equal(l2.info().ifindex, 0, 'detached: no ifindex');
  l2.close();
  await rejectsCode(tt, () => l2.info(), 'EBADF', 'link.info');
  await rejectsCode(tt, () => l2.detach(), 'EBADF', 'link.detach');
  tt.equal(addon.unpin(lp), true);

  const xl = addon.attachXdp(xdp, ifB, 'skb');
  tt.match(xl.info(), { progId: xdp.id, type: 6, ifindex: ifB });
  await rejectsCode(tt, () => addon.attachXdp(xdp, ifB, 'bogus' as 'skb'), 'EINVAL', 'link.attachXdp');
  await rejectsCode(tt, () => addon.attachXdp(xdp, ifB, 'skb'), 'EBUSY', 'link.attachXdp', 'second xdp link');
  xl.close();

  tt.equal(addon.tcDetach(ifB, 'ingress', 7), false, 'nothing attached (no clsact yet)');
  addon.tcAttach(tc, ifB, 'ingress', 7);
  addon.tcAttach(tc, ifB, 'ingress', 7); // replace is fine
  const filters = execFileSync('tc', ['filter', 'show', 'dev', VETH_B, 'ingress']).toString();
  tt.match(filters, /fx_tc/);
  tt.equal(addon.tcDetach(ifB, 'ingress', 7), true);
  tt.equal(addon.tcDetach(ifB, 'ingress', 7), false);
  await rejectsCode(tt, () => addon.tcAttach(tc, ifB, 'ingress', 0), 'EINVAL', 'tc.attach', 'priority 0');
});

t.test('netlink argument checks (nothing reaches the kernel)', async (tt) => {
  const nl = addon.openNetlink();
  tt.teardown(() => nl.close());
  tt.equal(nl.netns, null, 'the caller\'s namespace');
  const bad = (fn: () => unknown, op: string, msg: string) => rejectsCode(tt, fn, 'EINVAL', op, msg);
  await bad(() => nl.link(''), 'netlink.link', 'empty name');
  await bad(() => nl.link('x'.repeat(16)), 'netlink.link', 'name longer than IFNAMSIZ-1');
  await bad(() => nl.addBridge('a/b'), 'netlink.addBridge', 'slash in a name');
  await bad(() => nl.addBridge(3 as unknown as string), 'netlink.addBridge', 'name not a string');
  await bad(() => nl.addVeth('bnlu0', 'bnlu0'), 'netlink.addVeth', 'peer named like the link in one namespace');
  await bad(() => nl.addVeth('bnlu0', 'bnlu1', { peerNetns: {} as unknown as string }), 'netlink.addVeth', 'netns not a path or fd');
  await bad(() => nl.addVeth('bnlu0', 'bnlu1', { nope: 1 } as never), 'netlink.addVeth', 'unknown option');
  await bad(() => nl.setLink('lo', { up: 'yes' as unknown as boolean }), 'netlink.setLink', 'up not a boolean');
  await bad(() => nl.setLink('lo', { mtu: 10 }), 'netlink.setLink', 'mtu below 68');
  await bad(() => nl.setLink('lo', { colour: 'red' } as never), 'netlink.setLink', 'unknown change');
  await bad(() => nl.setLink('lo', undefined as never), 'netlink.setLink', 'changes missing');
  await bad(() => nl.addAddress('lo', { address: '10.71.0.300', prefixLen: 24 }), 'netlink.addAddress', 'bad address');
  await bad(() => nl.addAddress('lo', { address: '10.71.0.1', prefixLen: 33 }), 'netlink.addAddress', 'prefix too long');
  await bad(() => nl.addAddress('lo', { address: 'fd71::1', prefixLen: 64, broadcast: true }), 'netlink.addAddress', 'broadcast on IPv6');
  await bad(() => nl.addAddress('lo', { address: '10.71.0.1', prefixLen: 24, nodad: true }), 'netlink.addAddress', 'nodad on IPv4');
  await bad(() => nl.addAddress('lo', { address: '10.71.0.1', prefixLen: 24, broadcast: 'fd71::ff' }), 'netlink.addAddress', 'broadcast of the other family');
  await bad(() => nl.addRoute({ dst: 'default' }), 'netlink.addRoute', 'default route without family, gateway or dev');
  await bad(() => nl.addRoute({ dst: '10.71.0.0/40', dev: 'lo' }), 'netlink.addRoute', 'prefix length out of range');
  await bad(() => nl.addRoute({ dst: 'default', gateway: 'fd71::1', family: 4 }), 'netlink.addRoute', 'gateway of the other family');
  await bad(() => nl.routes(5 as 4), 'netlink.routes', 'family 5');
  await bad(() => nl.addresses('4' as unknown as 4), 'netlink.addresses', 'family as a string');
  await bad(() => addon.netnsAdd('../etc'), 'netns.add', 'netns name with a slash');
  await bad(() => addon.netnsAdd('..'), 'netns.add', 'netns name ..');
  await bad(() => addon.netnsDelete(''), 'netns.delete', 'empty netns name');
  await bad(() => addon.writeSysctl(null, '../../etc/passwd', '1'), 'sysctl.write', 'sysctl key escaping /proc/sys');
  await bad(() => addon.writeSysctl(null, '/proc/sys/net/ipv4/ip_forward', '1'), 'sysctl.write', 'absolute sysctl key');
  await bad(() => addon.writeSysctl(null, 'net/ipv4/ip_forward', 1 as unknown as string), 'sysctl.write', 'value not a string');
  await rejectsCode(tt, () => addon.subscribeNetlink(undefined as never), 'EINVAL', 'netlink.subscribe', 'onEvent missing');
  await rejectsCode(tt, () => addon.subscribeNetlink(() => {}, 'x' as never), 'EINVAL', 'netlink.subscribe', 'onError not a function');
  await rejectsCode(tt, () => addon.openNetlink('/nonexistent/netns'), 'ENOENT', 'netlink.open', 'netns path missing');
  await rejectsCode(tt, () => addon.openNetlink('/proc/self/status'), 'EINVAL', 'netlink.open', 'path that is no netns');
  nl.close();
  nl.close(); // idempotent
  tt.equal(nl.closed, true);
  await rejectsCode(tt, () => nl.links(), 'EBADF', 'netlink.links', 'use after close');
  await rejectsCode(tt, () => nl.addBridge('bnlu0'), 'EBADF', 'netlink.addBridge', 'use after close');
});
