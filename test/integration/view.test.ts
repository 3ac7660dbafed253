// The programmed view (src/engine/view.ts) against a real loaded dataplane:
// after every plan/apply through syncScope the view equals what
// readCurrent() reads back from the pins, including after an apply that
// failed half-way and was rolled back, and after another writer changed
// berth_net_meta behind the view's back.
import * as fs from 'node:fs';
import t from 'tap';
import { Dataplane } from '../../src/platform/dataplane';
import { CurrentState, DesiredState, ReconcileError, plan, readCurrent } from '../../src/engine/reconcile';
import { syncScope } from '../../src/engine/scope';
import { ProgrammedView } from '../../src/engine/view';
import { networkKeyCodec, networkMetaCodec } from '../../src/platform/contract';
import { sh } from '../lib/topo';

const PIN = `/sys/fs/bpf/berth-ev-test-view-${process.pid}`;
const BR = 'bevbr0';
const BR6 = 'bevbr6';
const UP = 'bevup0';
const VETHS = ['bevv0', 'bevv1', 'bevv2', 'bevv3'];

function ifindexOf(n: string): number {
  return Number(fs.readFileSync(`/sys/class/net/${n}/ifindex`, 'utf8'));
}
function macOf(n: string): string {
  return fs.readFileSync(`/sys/class/net/${n}/address`, 'utf8').trim();
}

/** A CurrentState as plain sorted data (Maps and arrays in a stable order, buffers as hex). */
function norm(c: CurrentState): unknown {
  const raw = (r: CurrentState['net']) => [...(r ?? new Map()).entries()].map(([k, v]) => [k, v.key.toString('hex'), v.value.toString('hex')]).sort();
  const byKey = <K, V>(m: ReadonlyMap<K, V> | undefined) => [...(m ?? new Map<K, V>()).entries()].sort((a, b) => String(a[0]).localeCompare(String(b[0]), 'en', { numeric: true }));
  const sorted = <T>(a: readonly T[] | undefined) => [...(a ?? [])].map((x) => JSON.stringify(x)).sort();
  return {
    networks: byKey(c.networks),
    endpoints: byKey(c.endpoints),
    byIp: byKey(c.byIp),
    byIp6: byKey(c.byIp6),
    counters: [...c.counters].sort(),
    attachments: sorted(c.attachments),
    progIds: c.progIds,
    net: raw(c.net),
    publish: raw(c.publish),
    hostAddrs: raw(c.hostAddrs),
    hostAddrs6: raw(c.hostAddrs6),
    uplinks: raw(c.uplinks),
    uplinkAttachments: sorted(c.uplinkAttachments),
    bridges: raw(c.bridges),
    bridgeAttachments: sorted(c.bridgeAttachments),
    cgroupAttachments: sorted(c.cgroupAttachments),
    socketHooksAvailable: c.socketHooksAvailable,
  };
}

function cleanup(): void {
  for (const v of VETHS) sh('ip', ['link', 'del', `${v}a`]);
  for (const l of [UP, BR, BR6]) sh('ip', ['link', 'del', l]);
  Dataplane.reset(PIN);
}

t.test('the view equals readCurrent() after every apply, a rolled-back one included', async (t) => {
  cleanup();
  t.teardown(cleanup);
  const ok = (args: string[]): void => {
    if (!sh('ip', args)) throw new Error(`ip ${args.join(' ')} failed`);
  };
  ok(['link', 'add', BR, 'type', 'bridge']);
  ok(['link', 'add', BR6, 'type', 'bridge']);
  ok(['link', 'add', UP, 'type', 'veth', 'peer', 'name', `${UP}p`]);
  for (const v of VETHS) ok(['link', 'add', `${v}a`, 'type', 'veth', 'peer', 'name', `${v}b`]);
  for (const l of [BR, BR6, UP, ...VETHS.map((v) => `${v}a`)]) ok(['link', 'set', l, 'up']);

  const dp = await Dataplane.openOrLoad({ pinRoot: PIN, fastPath: true, natPortMin: 61000, natPortMax: 65535 });
  t.teardown(() => dp.close());
  const view = new ProgrammedView(dp);
  const scope = new Set(['bev-a', 'bev-b']);
  const ep = (i: number, network: string, ip: string, ip6?: string) => ({ container: `bevc${i}`, network, ip, ...(ip6 ? { ip6 } : {}), mac: `02:00:0a:3d:00:${(16 + i).toString(16)}`, ifindex: ifindexOf(`${VETHS[i]}a`), ifname: `${VETHS[i]}a` });
  const netA = { name: 'bev-a', bridge: BR, subnet: '10.61.1.0', prefixLen: 24, gateway: '10.61.1.1', icc: true, masquerade: true, bridgeIfindex: ifindexOf(BR), bridgeMac: macOf(BR) };
  const netB = { name: 'bev-b', bridge: BR6, subnet: '10.61.2.0', prefixLen: 24, gateway: '10.61.2.1', icc: false, masquerade: true, subnet6: 'fd61:2::', prefixLen6: 64, gateway6: 'fd61:2::1', bridgeIfindex: ifindexOf(BR6), bridgeMac: macOf(BR6) };
  const uplink = { ifindex: ifindexOf(UP), ifname: UP, addr: '10.61.255.1', addr6: 'fd61:ff::1', mac: macOf(UP) };
  const shared = { hostAddrs: [{ addr: '10.61.255.1', ifindex: uplink.ifindex }, { addr: 'fd61:ff::1', ifindex: uplink.ifindex }], uplinks: [uplink], served: [{ ifindex: uplink.ifindex, ifname: UP }] };
  const pub = (e: ReturnType<typeof ep>, hostPort: number, network: string) => ({ hostIp: '0.0.0.0', hostPort, proto: 'tcp' as const, container: e.container, network, ip: e.ip, port: 80, ifindex: e.ifindex, mac: e.mac });

  const opts = { id: 'bev-test', scope, view };
  const same = async (label: string): Promise<void> => {
    t.same(norm(await view.current()), norm(await readCurrent(dp)), label);
  };

  // 1: one network, two endpoints, a publish, the shared resources
  const e0 = ep(0, 'bev-a', '10.61.1.10');
  const e1 = ep(1, 'bev-a', '10.61.1.11');
  const d1: DesiredState = { networks: [netA], endpoints: [e0, e1], publish: [pub(e0, 31001, 'bev-a')], ...shared };
  const r1 = await syncScope(dp, d1, opts);
  t.ok(r1.steps.length > 10, `first sync programs (${r1.steps.length} steps)`);
  t.equal(view.reads, 1, 'the view was read from the pins once');
  await same('after the first apply');
  t.same(plan(d1, await view.current(), scope), [], 'planning the same state again against the view: nothing to do');

  // 2: a dual-stack network with an endpoint, one endpoint gone, the publish moved
  const e2 = ep(2, 'bev-b', '10.61.2.10', 'fd61:2::10');
  const d2: DesiredState = { networks: [netA, netB], endpoints: [e0, e2], publish: [pub(e0, 31002, 'bev-a'), pub(e2, 31003, 'bev-b')], ...shared };
  const r2 = await syncScope(dp, d2, opts);
  t.ok(r2.steps.some((s) => s.op === 'detach') && r2.steps.some((s) => s.op === 'attach'), 'endpoints came and went');
  t.equal(view.reads, 1, 'still planned against the view');
  await same('after adding a network and an endpoint and removing one');

  // 3: an apply that fails half-way (an endpoint on an interface that does not exist) is rolled back
  const before = norm(await readCurrent(dp));
  const e3 = ep(3, 'bev-b', '10.61.2.11');
  const d3: DesiredState = { networks: [netA, netB], endpoints: [e0, e2, e3, { ...e3, container: 'bevghost', ip: '10.61.2.99', ifindex: 0x7ffffff0, ifname: 'bevghost' }], publish: d2.publish, ...shared };
  await t.rejects(syncScope(dp, d3, opts), ReconcileError, 'the apply fails on the missing interface');
  t.equal(view.valid, false, 'the failed apply dropped the view');
  t.same(norm(await readCurrent(dp)), before, 'the pins are as before the failed apply');
  await same('after the rolled-back apply (re-read)');
  t.equal(view.reads, 2, 'the view was read again');

  // 4: the same without the ghost goes through against the re-read view
  await syncScope(dp, { ...d3, endpoints: [e0, e2, e3] }, opts);
  await same('after the apply that follows the rollback');

  // 5: another writer adds a network to berth_net_meta: the next plan re-reads
  const other = { name: 'bev-other', bridge: 'bevnone', subnet: '10.61.9.0', prefix_len: 24, gateway: '10.61.9.1', flags: 0 };
  dp.maps.netMeta.update(networkKeyCodec.encode({ network_id: 40 }), networkMetaCodec.encode(other as never));
  await same('after a change behind the view');
  t.equal(view.reads, 3, 'berth_net_meta changed: re-read');
  t.equal(view.lastReason, 'berth_net_meta changed outside this view');
  dp.maps.netMeta.delete(networkKeyCodec.encode({ network_id: 40 }));

  // 6: everything goes
  await syncScope(dp, { networks: [], endpoints: [], publish: [], hostAddrs: [], uplinks: [], served: [] }, opts);
  await same('after removing everything');
  const left = await readCurrent(dp);
  t.equal(left.endpoints.size + left.networks.size + left.attachments.length, 0, 'nothing of the scope is left');
});
