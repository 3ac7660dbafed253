// The ip6tables reference (test/lib/reference6.ts) on a real dual-stack
// topology, berth absent: Docker 29's iptables AND ip6tables rules installed
// in uniquely named chains (applyReference), then the IPv6 scenario matrix
// (scenarioMatrix6) with real traffic between this file's own namespaces
// and the host, each outcome checked against what Docker 29's rules give,
// and, scenario for scenario, against the outcome of its IPv4 twin on the
// same topology (addresses mapped), so that both families are seen to behave
// alike except where IPv6 itself differs (::1, below). Drops are checked
// where they happen: the packet counters of the ip6tables rule that must
// have dropped it (so it never reached the listener). Needs root, iproute2,
// ip6tables (nf_tables), python3, iputils ping and /bin/busybox; Linux 6.17+
// (per-interface IPv6 forwarding).
//
// Names and tags: v6r<pid>; IPv4 10.87.0.0/16, IPv6 fd87:1::/32; host ports
// 33000-33999.
import t from 'tap';
import * as fs from 'node:fs';
import { run } from '../../src/platform/exec';
import * as topology from '../../src/platform/topology';
import { applyReference, dockerRules, dockerRulesV6 } from '../lib/reference';
import { side6FromConfig } from '../lib/reference6';
import {
  Scenario,
  addV6,
  buildTopo,
  cleanupTopo,
  flushKernelConntrack,
  prepareScenarios,
  removeRoot,
  scenarioMatrix,
  scenarioMatrix6,
  waitReady,
} from '../lib/scenarios';

const pid = process.pid;
const sfx = `V${pid % 100000}`;
const third = (pid % 60) * 4;
const PB = 33000 + (pid % 166) * 6; // PB..PB+5: PUB, LOPUB, UPUB, RPUB..RPUB+2
const PUB = PB;
const LOPUB = PB + 1;
const UPUB = PB + 2;
const RPUB = PB + 3;
const topo = buildTopo({
  tag: `v6r${pid % 100000}`,
  octets: { a: 87, b: 87, i: 87, e: 87 },
  third,
  sub4: { A: `10.87.${third}`, B: `10.87.${third + 1}`, I: `10.87.${third + 2}`, E: `10.87.${third + 3}` },
  pub: PUB,
  loPub: LOPUB,
  extras: { udpPub: UPUB, rangePub: RPUB },
  v6: { prefix: `fd87:1:${(pid % 65536).toString(16)}`, inConfig: true },
});
const { cfg } = topo;
const v6 = topo.v6!;
const opts = { uplinks: [topo.uplink], chainSuffix: sfx, v6: v6.side };

const readOr = (p: string): string | null => (fs.existsSync(p) ? fs.readFileSync(p, 'utf8').trim() : null);

/** Packet counter of the one rule of ours (in `cmd`-save -c) whose text contains every needle. */
async function counter(cmd: 'ip6tables' | 'iptables', table: string, ...needles: string[]): Promise<number> {
  const { stdout } = await run(`${cmd}-save`, ['-c', '-t', table]);
  const lines = stdout.split('\n').filter((l) => l.includes(`-${sfx}`) && needles.every((n) => l.includes(n)));
  if (lines.length !== 1) throw new Error(`${cmd} ${table}: ${lines.length} rules with ${needles.join(' ')}`);
  return Number(/^\[(\d+):/.exec(lines[0]!)![1]);
}

/** The host's count of IPv6 packets refused by ip6_rcv_core (a ::1 destination off lo lands there). */
function inHdrErrors(): number {
  const m = /^Ip6InHdrErrors\s+(\d+)/m.exec(fs.readFileSync('/proc/net/snmp6', 'utf8'));
  return Number(m![1]);
}

t.test('IPv6 scenarios through Docker 29\'s ip6tables rules, in both families', async (t) => {
  await cleanupTopo(topo);
  let undo: (() => Promise<void>) | null = null;
  t.teardown(async () => {
    if (undo) await undo().catch((e: Error) => console.error(e.message));
    await topology.down(cfg).catch(() => undefined);
    await cleanupTopo(topo);
    await flushKernelConntrack(topo);
    removeRoot(topo);
  });

  t.same(side6FromConfig(cfg), v6.side, 'the config file\'s IPv6 side (subnet6, ip6, address6, both-family publishes, [::1]) is the topology\'s');
  await topology.up(cfg);
  await addV6(topo); // a no-op where src/platform/topology.ts built the IPv6 side
  await waitReady(topo);
  await prepareScenarios(topo);
  const m4 = scenarioMatrix(topo);
  const m6 = scenarioMatrix6(topo);
  t.same([...m4, ...m6].map((s) => s.name).filter((n, i, a) => a.indexOf(n) !== i), [], 'scenario names are unique');

  const ffPaths = [...v6.side.networks.map((n) => n.bridge), topo.uplink].map((i) => `/proc/sys/net/ipv6/conf/${i}/force_forwarding`);
  const ffBefore = ffPaths.map(readOr);
  t.notOk(ffBefore.includes(null), 'per-interface IPv6 forwarding (force_forwarding) exists here');
  const allFwd = readOr('/proc/sys/net/ipv6/conf/all/forwarding');

  undo = await applyReference(cfg, opts);
  const saved6 = (await run('ip6tables-save', [])).stdout.split('\n');
  const saved4 = (await run('iptables-save', [])).stdout.split('\n');
  const r6 = dockerRulesV6(cfg, opts)!;
  const r4 = dockerRules(cfg, opts);
  for (const tbl of ['filter', 'nat', 'raw'] as const) {
    t.same(r6[tbl].filter((l) => l.startsWith('-A') && !saved6.includes(l)), [], `ip6tables ${tbl}: every rule is in ip6tables-save, as written`);
    t.same(r4[tbl].filter((l) => l.startsWith('-A') && !saved4.includes(l)), [], `iptables ${tbl}: every rule is in iptables-save, as written`);
  }
  t.ok(r6.nat.some((l) => l.includes(`-s ${v6.sub.A}::/64 ! -o `) && l.endsWith('-j MASQUERADE')), 'NAT66 of the ULA subnet');
  t.same(ffPaths.map(readOr), ffPaths.map(() => '1'), 'force_forwarding on for the bridges and the uplink');
  t.equal(readOr('/proc/sys/net/ipv6/conf/all/forwarding'), allFwd, 'the machine-wide IPv6 forwarding is left alone');

  // ---- IPv4 first (its twin outcomes), then IPv6, with the drop counters
  const out4 = new Map<string, string>();
  for (const s of m4) out4.set(s.name, await s.run());
  await flushKernelConntrack(topo);

  const S = v6.sub;
  const H = v6.hostAddr;
  const X = v6.extAddr;
  const A = (last: number): string => `${S.A}::${last}`;
  const bridged = readOr('/proc/sys/net/bridge/bridge-nf-call-ip6tables') === '1';
  const T = 'unreachable (timeout)';
  const expected: Record<string, string> = {
    'v6 TCP publish: outside -> [host]:PUB, client source kept': `reached, source ${X}`,
    'v6 TCP publish: outside -> [host]:PUB, content': "answer 'hello from web'",
    'v6 UDP publish: outside -> [host]:UPUB': `answer 'seen ${X}' from [${H}]:${UPUB}`,
    'v6 range publish: outside -> [host]:R..R+2': "answer 'port 8000'; answer 'port 8001'; answer 'port 8002'",
    'v6 masquerade TCP: container -> outside': `reached, source ${H}`,
    'v6 masquerade TCP: icc=false network -> outside': `reached, source ${H}`,
    'v6 masquerade UDP: container -> outside': `answer 'seen ${H}' from [${X}]:5353`,
    'v6 ICMPv6 echo: container -> outside': 'echo reply',
    // same network: not masqueraded (-o is the bridge); the reply is bridged and un-NATed by br_netfilter
    'v6 hairpin: container -> [host]:PUB -> other container': bridged ? `reached, source ${A(11)}` : T,
    'v6 hairpin: container -> [gateway]:PUB -> other container': bridged ? `reached, source ${A(11)}` : T,
    'v6 hairpin: container -> [host]:PUB -> itself': `reached, source ${A(1)}`,
    'v6 hairpin: other network -> [host]:PUB': `reached, source ${A(1)}`,
    'v6 hairpin UDP: container -> [host]:UPUB': bridged ? `answer 'seen ${A(11)}' from [${H}]:${UPUB}` : T,
    // ::1: the DNAT is there, but the answer, un-NATed to ::1, has no route from the bridge (reference6.ts)
    'v6 host -> [::1]:LOPUB (loopback publish)': T,
    'v6 host -> [::1]:PUB (publish on any)': T,
    'v6 host -> own uplink address:PUB': `reached, source ${A(1)}`,
    'v6 host -> [::1]:UPUB (UDP)': T,
    'v6 outside -> [::1]:LOPUB via the host': T,
    'v6 outside -> [::1]:PUB via the host': T,
    'v6 outside -> [host]:8000 (unpublished, nothing on the host)': 'unreachable (refused)',
    'v6 outside -> container address:80 (published port)': T,
    'v6 outside -> container address:8000 (unpublished)': T,
    'v6 outside -> internal container address': T,
    'v6 same network, icc: container -> container': "answer 'hello from web'",
    'v6 isolation: network B -> container on A': T,
    'v6 isolation: network A -> container on B': T,
    'v6 icc=false: container -> container on the same network': bridged ? T : "answer 'hello from web'",
    'v6 icc=false: container -> its gateway (ICMPv6)': 'echo reply',
    'v6 internal: container -> outside (TCP)': T,
    'v6 internal: container -> outside (ICMPv6)': 'no reply',
  };
  t.same(m6.map((s) => s.name).filter((n) => !(n in expected)), [], 'every v6 scenario has its expected outcome');

  /** for a drop: the ip6tables rule that must drop it, and its counter before */
  const dropAt: Record<string, [string, ...string[]]> = {
    'v6 outside -> container address:80 (published port)': ['raw', `-d ${A(10)}/128 ! -i`, '-j DROP'],
    'v6 outside -> container address:8000 (unpublished)': ['raw', `-d ${A(10)}/128 ! -i`, '-j DROP'],
    'v6 isolation: network B -> container on A': ['raw', `-d ${A(10)}/128 ! -i`, '-j DROP'],
    'v6 isolation: network A -> container on B': ['raw', `-d ${S.B}::11/128 ! -i`, '-j DROP'],
    'v6 outside -> internal container address': ['filter', `! -s ${S.I}::/64 ! -i`, '-j DROP'],
    'v6 internal: container -> outside (TCP)': ['filter', `! -d ${S.I}::/64 -i`, '-j DROP'],
    'v6 internal: container -> outside (ICMPv6)': ['filter', `! -d ${S.I}::/64 -i`, '-j DROP'],
    ...(bridged ? { 'v6 icc=false: container -> container on the same network': ['filter', `DOCKER-FORWARD-${sfx} -i ${topo.bridges.B} -o ${topo.bridges.B} -j DROP`] as [string, string] } : {}),
  };
  const out6 = new Map<string, string>();
  for (const s of m6) {
    const at = dropAt[s.name];
    const before = at ? await counter('ip6tables', at[0], ...at.slice(1)) : 0;
    const hdrBefore = inHdrErrors();
    out6.set(s.name, await s.run());
    t.equal(out6.get(s.name), expected[s.name], `${s.name}: ${expected[s.name]}`);
    if (at) t.ok((await counter('ip6tables', at[0], ...at.slice(1))) > before, `${s.name}: dropped by the ip6tables rule ${at.slice(1).join(' ... ')}`);
    if (s.name.includes('[::1]') && s.name.includes('via the host')) t.ok(inHdrErrors() > hdrBefore, `${s.name}: refused by the host's ip6_rcv_core (Ip6InHdrErrors)`);
  }

  // ---- both families, outcome for outcome (addresses mapped to their v6 twins)
  const map = new Map<string, string>();
  const netsV4 = [topo.sub.A, topo.sub.B, topo.sub.I];
  const netsV6 = [S.A, S.B, S.I];
  for (const c of v6.side.containers) {
    const c4 = cfg.containers.find((x) => x.name === c.name)!;
    map.set(c4.ip, c.ip6);
  }
  netsV4.forEach((n4, i) => map.set(`${n4}.1`, `${netsV6[i]}::1`));
  map.set(topo.hostAddr, H);
  map.set(topo.extAddr, X);
  const to6 = (o: string): string =>
    o.replace(/\b\d+\.\d+\.\d+\.\d+\b/g, (a) => map.get(a) ?? a).replace(/ from ([0-9a-f:]+):(\d+)$/, (_m, a: string, p: string) => ` from [${a}]:${p}`);
  /** where IPv6 itself differs from IPv4 under Docker 29's rules, with the reason */
  const differs: Record<string, string> = {
    'v6 host -> [::1]:LOPUB (loopback publish)': 'no route_localnet in IPv6: the answer un-NATed to ::1 is not routed from the bridge',
    'v6 host -> [::1]:PUB (publish on any)': 'the same: ::1 is never translated back in from a bridge',
    'v6 host -> [::1]:UPUB (UDP)': 'the same, for UDP',
  };
  const twins = m6.map((s): [Scenario, string] => [s, s.name.slice(3).replace(/\[host\]/g, 'host').replace(/\[gateway\]/, 'gateway').replace(/\[::1\]/g, '127.0.0.1').replace('ICMPv6 echo', 'ICMP echo').replace('(ICMPv6)', '(ICMP)')]);
  for (const [s, n4] of twins) {
    t.ok(out4.has(n4), `${s.name}: its IPv4 twin is "${n4}"`);
    const o4 = out4.get(n4)!;
    if (differs[s.name]) t.not(out6.get(s.name), to6(o4), `${s.name}: differs from IPv4 (${differs[s.name]})`);
    else t.equal(out6.get(s.name), to6(o4), `${s.name}: the IPv4 outcome, in IPv6`);
  }
  t.equal(twins.length, m6.length);
  const w = Math.max(...m6.map((s) => s.name.length));
  t.comment(`${'scenario'.padEnd(w)} | IPv6 reference | IPv4 twin`);
  for (const [s, n4] of twins) t.comment(`${s.name.padEnd(w)} | ${out6.get(s.name)} | ${out4.get(n4)}`);

  // ---- undo: nothing of ours in either family, sysctls back
  const u = undo;
  undo = null;
  await u();
  const left = async (cmd: string): Promise<string[]> => (await run(cmd, [])).stdout.split('\n').filter((l) => l.includes(`-${sfx}`));
  t.same(await left('ip6tables-save'), [], 'undo: nothing of ours in ip6tables-save');
  t.same(await left('iptables-save'), [], 'undo: nothing of ours in iptables-save');
  t.same(ffPaths.map(readOr), ffBefore, 'force_forwarding restored');
});
