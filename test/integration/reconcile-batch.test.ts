// apply() in batches against real loaded dataplanes: 2,000 endpoints programmed
// by one batched apply read back exactly as the one-by-one path leaves them
// (four of them real veths whose hooks attach between the runs, and count a
// real datagram); a batch that fills a map rolls back to exactly the state
// before, with the step, error and rollback count of the one-by-one path; and
// the event-loop delay during a big apply, both ways (reported, not asserted).
import t from 'tap';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Dataplane } from '../../src/platform/dataplane';
import { CurrentState, DesiredEndpoint, DesiredState, ReconcileError, Step, apply, plan, readCurrent } from '../../src/engine/reconcile';
import { BATCH_MIN } from '../../src/engine/batch';
import { readCounters } from '../../src/observe/stats';
import { nsOk, removeNetns, sh } from '../lib/topo';

const tag = `bbt${process.pid % 100000}`;
const root = (s: string): string => `/sys/fs/bpf/berth-bt-test${process.pid}-${s}`;
const NS = `${tag}ns`;
const REAL = 4;
const FAKE_IFINDEX = 910000; // no real interface has these
const NET = { name: `${tag}net`, bridge: `${tag}br`, subnet: '10.63.0.0', prefixLen: 16, gateway: '10.63.0.1', icc: true, subnet6: 'fd63::', prefixLen6: 64, gateway6: 'fd63::1' };
const scope = new Set([NET.name]);
const hostVeth = (i: number): string => `${tag}v${i}`;
const roots: string[] = [];

t.teardown(() => {
  for (const r of roots) Dataplane.reset(r);
  for (let i = 0; i < REAL; i++) sh('ip', ['link', 'del', hostVeth(i)]);
  removeNetns([NS]);
});

function ifindexOf(ifname: string): number {
  return Number(require('node:fs').readFileSync(`/sys/class/net/${ifname}/ifindex`, 'utf8'));
}

/** REAL veths (their peers in NS, with the endpoint's address) and the rest endpoints without interfaces. */
function endpoints(n: number, macByte = 0): DesiredEndpoint[] {
  return Array.from({ length: n }, (_, i) => {
    const real = i < REAL;
    const n = i + 10;
    return {
      container: `${tag}c${i}`,
      network: NET.name,
      ip: `10.63.${1 + (n >> 8)}.${n & 255}`,
      ip6: i % 2 ? `fd63::${(i + 16).toString(16)}` : undefined,
      mac: `02:63:${macByte.toString(16).padStart(2, '0')}:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
      ifindex: real ? ifindexOf(hostVeth(i)) : FAKE_IFINDEX + i,
      ifname: real ? hostVeth(i) : `${tag}f${i}`,
    };
  });
}

function desired(n: number, macByte = 0): DesiredState {
  return { networks: [NET], endpoints: endpoints(n, macByte) };
}

/** The plan without attach steps for interfaces that do not exist. */
function planFor(dp: Dataplane, d: DesiredState, cur: CurrentState): Step[] {
  void dp;
  return plan(d, cur, scope).filter((s) => s.op !== 'attach' || s.ifindex < FAKE_IFINDEX);
}

/** readCurrent with program ids replaced by whether each hook runs this dataplane's program, so two loads compare. */
function normal(c: CurrentState): unknown {
  const ids = c.progIds as Record<string, unknown>;
  return {
    ...c,
    progIds: undefined,
    attachments: [...c.attachments]
      .map((a) => ({ ifindex: a.ifindex, direction: a.direction, live: a.live, ours: a.progId === ids[a.direction] }))
      .sort((a, b) => a.ifindex - b.ifindex || a.direction.localeCompare(b.direction)),
    uplinkAttachments: undefined,
    bridgeAttachments: undefined,
    cgroupAttachments: undefined,
  };
}

async function load(name: string, maxEndpoints?: number): Promise<Dataplane> {
  const r = root(name);
  roots.push(r);
  Dataplane.reset(r);
  const dp = await Dataplane.openOrLoad({ pinRoot: r, maxEndpoints, ctMax: 1024 });
  t.teardown(() => dp.close());
  return dp;
}

/** Apply while sampling the event-loop delay; one-by-one when `perStep` (the beforeStep hook turns batching off). */
async function timedApply(dp: Dataplane, steps: Step[], perStep: boolean): Promise<{ p99: number; max: number; ms: number }> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  // the monitor's first tick only sets its baseline: let it pass before the apply
  await new Promise((r) => setTimeout(r, 20));
  const t0 = performance.now();
  await apply(dp, steps, perStep ? { beforeStep: () => undefined } : undefined);
  const ms = performance.now() - t0;
  // let the monitor's timer fire once more: a synchronous apply shows only then
  await new Promise((r) => setTimeout(r, 10));
  h.disable();
  return { p99: h.percentile(99) / 1e6, max: h.max / 1e6, ms };
}

t.before(() => {
  removeNetns([NS]);
  t.ok(sh('ip', ['netns', 'add', NS]), 'namespace');
  for (let i = 0; i < REAL; i++) {
    sh('ip', ['link', 'del', hostVeth(i)]);
    t.ok(sh('ip', ['link', 'add', hostVeth(i), 'type', 'veth', 'peer', 'name', `p${i}`, 'netns', NS]), `veth ${i}`);
    sh('ip', ['link', 'set', hostVeth(i), 'up']);
    nsOk(NS, ['ip', 'addr', 'add', `10.63.1.${i + 10}/16`, 'dev', `p${i}`]);
    nsOk(NS, ['ip', 'link', 'set', `p${i}`, 'up']);
  }
});

let shared: Dataplane | undefined;

t.test('2,000 endpoints: one batched apply reads back as the one-by-one path leaves them', async (t) => {
  const N = 2000;
  const a = await load('a');
  const b = await load('b');
  shared = a;
  const d = desired(N);
  const stepsA = planFor(a, d, await readCurrent(a));
  const stepsB = planFor(b, d, await readCurrent(b));
  t.same(stepsB.map((s) => s.what), stepsA.map((s) => s.what), 'the same plan for both');
  const runs = stepsB.filter((s, i) => (s.op === 'put' || s.op === 'delete') && (i === 0 || stepsB[i - 1].op !== s.op || (stepsB[i - 1] as { map?: string }).map !== (s as { map?: string }).map));
  t.ok(runs.length < 12, `the plan comes in a few long runs (${runs.length} runs for ${stepsB.length} steps), batch size >= ${BATCH_MIN}`);

  const idle = monitorEventLoopDelay({ resolution: 1 });
  idle.enable();
  await new Promise((r) => setTimeout(r, 500));
  idle.disable();
  t.comment(`event-loop delay at rest on this machine (500 ms): p99 ${(idle.percentile(99) / 1e6).toFixed(1)} ms max ${(idle.max / 1e6).toFixed(1)} ms`);
  const one = await timedApply(a, stepsA, true);
  const batched = await timedApply(b, stepsB, false);
  t.comment(`apply of ${stepsB.length} steps (${N} endpoints): one by one ${one.ms.toFixed(0)} ms, event-loop delay p99 ${one.p99.toFixed(1)} ms max ${one.max.toFixed(1)} ms; batched ${batched.ms.toFixed(0)} ms, p99 ${batched.p99.toFixed(1)} ms max ${batched.max.toFixed(1)} ms`);

  const curA = await readCurrent(a);
  const curB = await readCurrent(b);
  t.equal(curB.endpoints.size, N, 'every endpoint is there');
  t.equal(curB.counters.size, 2 * N, 'two counters per endpoint');
  t.equal(curB.byIp6?.size, N / 2, 'every IPv6 address');
  t.same(normal(curB), normal(curA), 'readCurrent: batched equals one by one');
  t.equal(curB.attachments.filter((x) => x.live).length, 2 * REAL, 'the real veths got their hooks between the runs');
  t.same(planFor(b, d, curB), [], 'nothing left to do');

  // the hooks run and count: a container's datagram to the gateway (nothing listens: the
  // kernel answers unreachable; what matters is that berth's hook on the veth counted it)
  const v0 = ifindexOf(hostVeth(0));
  const fromC = async (): Promise<bigint> => {
    const row = (await readCounters(b)).find((r) => r.ifindex === v0 && r.direction === 'from_container');
    return row ? row.pass.packets + row.redirect.packets + Object.values(row.drop).reduce((n, x) => n + x.packets, 0n) : 0n;
  };
  const before = await fromC();
  t.ok(nsOk(NS, ['ping', '-c', '1', '-W', '1', '10.63.0.1']) || true, 'a ping from the first real endpoint');
  let after = before;
  for (let k = 0; k < 50 && after === before; k++) {
    if (k) await new Promise((r) => setTimeout(r, 20));
    after = await fromC();
  }
  t.ok(after > before, `the batched endpoint's hook counted the container's packet (${before} -> ${after})`);

  // and all of it goes again in batches: the removal of every endpoint
  const gone: DesiredState = { networks: [NET], endpoints: [] };
  const rmA = plan(gone, curA, scope);
  const rmB = plan(gone, curB, scope);
  await apply(a, rmA, { beforeStep: () => undefined });
  await apply(b, rmB);
  const endA = await readCurrent(a);
  const endB = await readCurrent(b);
  t.same(normal(endB), normal(endA), 'removal: batched equals one by one');
  t.equal(endB.endpoints.size, 0, 'no endpoint left');
  t.equal(endB.counters.size, 0, 'no counter left');
});

t.test('a batch that fills a map rolls back to exactly the state before, as the one-by-one path does', async (t) => {
  const MAX = 64;
  const a = await load('c', MAX);
  const b = await load('d', MAX);
  // before: 40 endpoints; then 100 with new MACs (40 updates, 60 new), more than berth_ep_meta holds
  for (const dp of [a, b]) await apply(dp, planFor(dp, desired(40), await readCurrent(dp)));
  const beforeA = normal(await readCurrent(a));
  const beforeB = normal(await readCurrent(b));
  t.same(beforeB, beforeA, 'the same state before');

  const errs: ReconcileError[] = [];
  for (const [dp, perStep] of [[a, true], [b, false]] as const) {
    const steps = planFor(dp, desired(100, 1), await readCurrent(dp));
    try {
      await apply(dp, steps, perStep ? { beforeStep: () => undefined } : undefined);
      t.fail('apply should fail: the map is full');
    } catch (e) {
      t.type(e, ReconcileError);
      errs.push(e as ReconcileError);
    }
  }
  const [ea, eb] = errs;
  t.comment(`one by one: ${ea.message}`);
  t.comment(`batched:    ${eb.message}`);
  t.equal(eb.message, ea.message, 'the same error: step, map, errno and rollback count');
  t.match(eb.message, /reconcile failed at step \d+\/\d+ \(put endpoint .*\): map\.update map 'berth_ep_meta': .* \((E2BIG|ENOSPC)\); rolled back \d+ step\(s\)/);
  t.equal(eb.rolledBack, ea.rolledBack);
  t.same(eb.step, ea.step, 'the same failing step');
  t.same(normal(await readCurrent(b)), beforeB, 'batched: exactly the state before');
  t.same(normal(await readCurrent(a)), beforeA, 'one by one: exactly the state before');
});

t.test('bad input changes nothing: a batch with a wrong-sized key is refused before any write', async (t) => {
  const dp = shared ?? (await load('e'));
  const before = normal(await readCurrent(dp));
  const steps: Step[] = Array.from({ length: BATCH_MIN + 2 }, (_, i) => ({
    op: 'put',
    map: 'epByIp',
    what: `address ${i}`,
    key: i === 5 ? Buffer.alloc(3) : Buffer.from([10, 63, 9, i]),
    value: Buffer.alloc(dp.maps.epByIp.valueSize),
  }));
  await t.rejects(apply(dp, steps), { name: 'ReconcileError', message: /step 6\/10 \(put address 5\)/ }, 'the bad step is named');
  t.same(normal(await readCurrent(dp)), before, 'nothing written');
});
