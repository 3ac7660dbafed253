// The differential test: the same topology, first with the exact rules
// Docker 29 installs (test/lib/reference.ts) and berth absent, then with
// berth up and no iptables rule of ours; the scenario matrix of
// test/lib/scenarios.ts runs against both and every outcome must match,
// except where Docker 29 is stricter than the reference rules (ALLOWED
// below), and then berth must be the stricter. For berth the drop counters
// must explain every drop, and iptables/nftables must show nothing of it.
// Needs root, iproute2, iptables (nf_tables), nftables (nft), conntrack,
// python3 and /bin/busybox. Traffic only between this file's namespaces and
// the host.
//
// Both families (issue 12): the topology is dual stack (its config carries
// subnet6/ip6/address6 and a [::1] publish) and a second family loop runs
// scenarioMatrix6 too, through Docker 29's ip6tables rules in phase A and
// through berth in phase B, compared outcome for outcome the same way, with
// berth's counters. BERTH_V6_DIFF=0 runs IPv4 alone.
import t from 'tap';
import { parseConfig } from '../../src/domain/config';
import { run } from '../../src/platform/exec';
import { Dataplane } from '../../src/platform/dataplane';
import { hostVethName } from '../../src/domain/names';
import * as standalone from '../../src/sources/standalone';
import { readCounters } from '../../src/observe/stats';
import * as topology from '../../src/platform/topology';
import { applyReference } from '../lib/reference';
import { side6FromConfig } from '../lib/reference6';
import {
  Scenario,
  addV6,
  buildTopo,
  cleanupTopo,
  flushKernelConntrack,
  internalDefaultRoute,
  prepareScenarios,
  removeRoot,
  scenarioMatrix,
  scenarioMatrix6,
  waitReady,
} from '../lib/scenarios';

const pid = process.pid;
const sfx = `D${pid}`;
const pinRoot = `/sys/fs/bpf/berth-test-nd${pid}`;
// ports: 40000.. keeps clear of reference.test.ts (20000..39999); all below 60003
const B = 40000 + (pid % 5000);
const PUB = B; // tcp, every address -> web:80
const LOPUB = B + 5000; // tcp, 127.0.0.1 -> web:80
const UPUB = B + 10000; // udp, every address -> udp:5000
const RPUB = B + 15000; // tcp range RPUB..RPUB+2 -> rng:8000-8002
/** the IPv6 family loop (see the top): off until berth's IPv6 datapath lands */
const V6 = process.env.BERTH_V6_DIFF !== '0';
// second octets 170..174 belong to this file; its IPv6: fd87:2::/32
const topo = ((): ReturnType<typeof buildTopo> => {
  return buildTopo({
    tag: `nd${pid}`,
    octets: { a: 170, b: 171, i: 172, e: 173 },
    third: pid % 250,
    pub: PUB,
    loPub: LOPUB,
    extras: { udpPub: UPUB, rangePub: RPUB },
    ...(V6 ? { v6: { prefix: `fd87:2:${(pid % 65536).toString(16)}`, inConfig: true } } : {}),
  });
})();
const { cfg } = topo;

/**
 * Scenarios whose outcome may differ: only where Docker 29 is stricter than
 * the reference rules, with the reason; berth's outcome must then be
 * unreachable. (None: the reference already carries Docker 29's stricter
 * rules — the raw-table direct-access and 127.0.0.1 drops and the per-bridge
 * DROP of unpublished ports.)
 */
const ALLOWED: Record<string, string> = {};

/**
 * IPv6 scenarios where berth may serve what Docker 29's proxy-off rules
 * cannot: the host to [::1] (reference6.ts: the answer, un-NATed to ::1, is
 * not routed from the bridge, so the reference times out). berth's cgroup
 * connect6/sendmsg6 hooks translate at the socket, as docker-proxy (Docker's
 * default) answers there; berth's outcome must then be an answer.
 */
const SERVED_BY_BERTH: Record<string, string> = {
  'v6 host -> [::1]:LOPUB (loopback publish)': 'the socket hooks serve [::1], as docker-proxy does',
  'v6 host -> [::1]:PUB (publish on any)': 'the same, for a port published on every address',
  'v6 host -> [::1]:UPUB (UDP)': 'the same, for UDP (sendmsg6/recvmsg6)',
};

/**
 * reference.ts scopes its nat OUTPUT entry rules to the config's own local
 * addresses and 127.0.0.1 *loopback* publishes; Docker's own rule
 * (`OUTPUT -m addrtype --dst-type LOCAL -j DOCKER`) also catches the host's
 * connections to 127.0.0.1 on ports published on every address (reached with
 * the userland proxy off thanks to route_localnet). These scoped entries add
 * exactly that for this config's ports; they are removed before the undo.
 */
/** berth's drops by reason, summed over every counter row. */
async function drops(dp: Dataplane): Promise<Map<string, bigint>> {
  const m = new Map<string, bigint>();
  for (const row of await readCounters(dp)) for (const [r, pb] of Object.entries(row.drop)) m.set(r, (m.get(r) ?? 0n) + pb.packets);
  return m;
}

/** Which drops happened on which interface between two readings. */
async function dropRows(dp: Dataplane): Promise<Map<string, bigint>> {
  const m = new Map<string, bigint>();
  for (const row of await readCounters(dp))
    for (const [r, pb] of Object.entries(row.drop)) if (pb.packets > 0n) m.set(`${r}@${row.container || row.interface}/${row.direction}`, pb.packets);
  return m;
}

function grown(before: Map<string, bigint>, after: Map<string, bigint>): string[] {
  return [...after].filter(([k, v]) => v > (before.get(k) ?? 0n)).map(([k, v]) => `${k}+${v - (before.get(k) ?? 0n)}`);
}

/** Lines of `text` mentioning any of berth's names for this topology. */
function mentions(text: string): string[] {
  const needles = [
    ...Object.values(topo.bridges),
    ...topo.allLinks,
    ...cfg.containers.map((c) => hostVethName(c.name)),
    topo.uplink,
    pinRoot,
    `nd${pid}`,
    sfx,
    ...cfg.networks.map((n) => n.subnetCidr),
    ...topo.addresses,
  ];
  return text.split('\n').filter((l) => needles.some((n) => new RegExp(`(^|[^0-9a-zA-Z.])${n.replace(/[.]/g, '\\.')}($|[^0-9a-zA-Z])`).test(l)));
}

t.test('berth behaves like Docker 29\'s rules, scenario by scenario', async (t) => {
  await cleanupTopo(topo);
  let undo: (() => Promise<void>) | null = null;
  let dp: Dataplane | null = null;
  t.teardown(async () => {
    dp?.close();
    if (undo) {
          await undo().catch((e: Error) => console.error(e.message));
    }
    await standalone.down(cfg, { pinRoot }).catch(() => undefined);
    try {
      Dataplane.reset(pinRoot);
    } catch {
      /* not pinned */
    }
    await topology.down(cfg).catch(() => undefined);
    await cleanupTopo(topo);
    await flushKernelConntrack(topo);
    removeRoot(topo);
  });

  // ---- the topology, once
  await topology.up(cfg);
  if (V6) {
    t.same(side6FromConfig(cfg), topo.v6!.side, 'the config\'s IPv6 side is the topology\'s (subnet6, ip6, address6, both-family publishes)');
    await addV6(topo);
  } else t.comment('IPv6 family loop off (BERTH_V6_DIFF=0)');
  await waitReady(topo);
  await prepareScenarios(topo);
  const matrix: Scenario[] = [...scenarioMatrix(topo), ...(V6 ? scenarioMatrix6(topo) : [])];
  t.same(
    matrix.map((s) => s.name).filter((n, i, a) => a.indexOf(n) !== i),
    [],
    'scenario names are unique',
  );
  t.throws(() => buildTopoWithInternalPublish(), /internal/, 'outside -> a port published on an internal network: rejected by the config (not a scenario)');

  // ---- phase A: the reference rules, berth absent
  t.notOk(Dataplane.isPinned(pinRoot), 'phase A: berth not loaded');
  undo = await applyReference(cfg, { uplinks: [topo.uplink], chainSuffix: sfx, ...(V6 ? { v6: topo.v6!.side } : {}) });
  const ref = new Map<string, string>();
  for (const s of matrix) ref.set(s.name, await s.run());
  const u = undo;
  undo = null;
  await u();
  t.same(mentions((await run('iptables-save', [])).stdout), [], 'phase A undone: nothing of ours in iptables-save');
  if (V6) t.same(mentions((await run('ip6tables-save', [])).stdout), [], 'phase A undone: nothing of ours in ip6tables-save');
  await flushKernelConntrack(topo);

  // ---- phase B: berth, no iptables rule of ours
  await internalDefaultRoute(topo, false);
  await standalone.up(cfg, { pinRoot, startCommands: true });
  await internalDefaultRoute(topo, true);
  dp = Dataplane.openPinned(pinRoot);
  t.same(mentions((await run('iptables-save', [])).stdout), [], 'berth up: iptables-save shows nothing of berth');
  if (V6) t.same(mentions((await run('ip6tables-save', [])).stdout), [], 'berth up: ip6tables-save shows nothing of berth');
  t.same(mentions((await run('nft', ['list', 'ruleset'])).stdout), [], 'berth up: nft list ruleset shows nothing of berth');

  const out = new Map<string, string>();
  const dropInfo = new Map<string, string[]>();
  for (const s of matrix) {
    const before = await drops(dp);
    const rowsBefore = await dropRows(dp);
    out.set(s.name, await s.run());
    const after = await drops(dp);
    const got = grown(before, after).map((g) => g.replace(/\+\d+$/, ''));
    dropInfo.set(s.name, grown(rowsBefore, await dropRows(dp)));
    t.same(got.sort(), [...(s.berthDrops ?? [])].sort(), `berth counters for "${s.name}": ${dropInfo.get(s.name)!.join(', ') || 'no drops'}`);
  }

  // ---- compare
  for (const s of matrix) {
    const a = ref.get(s.name)!;
    const b = out.get(s.name)!;
    if (ALLOWED[s.name] && a !== b) {
      t.match(b, /^unreachable/, `${s.name}: differs (allowed: ${ALLOWED[s.name]}), berth is the stricter`);
    } else if (SERVED_BY_BERTH[s.name] && a !== b) {
      t.match(a, /^unreachable/, `${s.name}: the reference does not answer`);
      t.match(b, /^(reached, source |answer )/, `${s.name}: berth answers (${SERVED_BY_BERTH[s.name]})`);
    } else {
      t.same(b, a, `${s.name}: berth matches the reference`);
    }
  }
  const w = Math.max(...matrix.map((s) => s.name.length));
  const wr = Math.max(9, ...[...ref.values()].map((v) => v.length));
  t.comment(`${'scenario'.padEnd(w)} | ${'reference'.padEnd(wr)} | berth`);
  for (const s of matrix) {
    const a = ref.get(s.name)!;
    const b = out.get(s.name)!;
    const mark = a === b ? '' : ALLOWED[s.name] || SERVED_BY_BERTH[s.name] ? '  (allowed)' : '  <-- DIFFERS';
    t.comment(`${s.name.padEnd(w)} | ${a.padEnd(wr)} | ${b}${mark}`);
  }
});

/** A publish on an internal network cannot even be configured (so "outside -> it" is no scenario). */
function buildTopoWithInternalPublish(): void {
  parseConfig(`
networks:
  - name: ${topo.nets.I}x
    subnet: 10.174.${pid % 250}.0/24
    internal: true
containers:
  - name: nd${pid}-ix
    network: ${topo.nets.I}x
    ip: 10.174.${pid % 250}.10
    publish: ["${PUB}:80"]
uplinks: []
`);
}
