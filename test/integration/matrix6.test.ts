// The security matrix in IPv6 (issue 12): every cell of matrix.test.ts that
// has a meaning in IPv6, first through Docker 29's ip6tables rules
// (test/lib/reference6.ts via applyReference, berth absent), then through
// berth; outcome for outcome, berth's drops shown by its counters, a drop
// asserted by the datagram never reaching the listener.
//
// Sources: the uplink, a second NIC ("side"), a foreign bridge ("vbr", not
// served), an L3 device (tun, through a relay), the host itself, a container
// on the same network, one on another network. Targets: the published port
// on every host v6 address (each interface's, both gateway6s), [::1] of a
// port published on every address, the container's v6 address on a
// published and an unpublished port, a container berth has not programmed
// ("ghost": a namespace on berth's bridge with a v6 address, not in the
// config), and a [::1]-only publish. Outside sources try to send to [::1]
// through the host (policy routing, as the IPv4 matrix does for 127.0.0.1);
// the kernel drops ::1 arriving on any interface but lo (ip6_rcv_core), and
// berth drops it before that on a served interface (loopback_only).
//
// What IPv4 has that IPv6 lacks, so no cell: route_localnet (a 127.0.0.1
// publish reached from outside), the raw-table loopback rule.
// Names: prefix v6m, subnets 10.83.0.0/16 and fd83::/16, pin root
// /sys/fs/bpf/berth-v6matrix, host ports 32500-32999. Needs root, iproute2,
// ip6tables (nf_tables), conntrack and python3.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import { parseConfig } from '../../src/config';
import { Dataplane } from '../../src/dataplane';
import { run } from '../../src/exec';
import { externalVethName, hostVethName } from '../../src/names';
import * as standalone from '../../src/standalone';
import { readCounters } from '../../src/stats';
import * as topology from '../../src/topology';
import { applyReference } from '../lib/reference';
import { AGENT_PY, Agent, Arrivals, RELAY_PY, pool } from '../lib/matrix';
import { sh } from '../lib/topo';

const pid = process.pid;
const tag = `v6m${pid % 1000}`;
const pinRoot = '/sys/fs/bpf/berth-v6matrix';
const sfx = `V6M${pid % 1000}`;
const net = (i: number): string => `10.83.${i}`;
/** fd83:I::/64, written so that `${net6(i)}:N` is canonical text (fd83::N for network A) */
const net6 = (i: number): string => (i === 0 ? 'fd83:' : `fd83:${i}:`);
const SUB = { A: net(0), B: net(1), UP: net(2), SIDE: net(3), VBR: net(4), L3: net(5) };
const SUB6 = { A: net6(0), B: net6(1), UP: net6(2), SIDE: net6(3), VBR: net6(4), L3: net6(5) };
// host ports 32500..32999 are this file's
const PUB = 32500 + (pid % 250);
const LOPUB = PUB + 250;
const TCP = { pub: 80, unpub: 8000 };
const UDP = { pub: 7070, unpub: 7071 };
/** the bound on every wait: an expected drop costs this once per cell (all cells of a source run at once) */
const WAIT_S = 1.5;

const N = {
  web: `${tag}-web`,
  peer: `${tag}-peer`,
  b1: `${tag}-b1`,
  up: `${tag}-up`,
  side: `${tag}-side`,
  fb: `${tag}-fb`,
  l3: `${tag}-l3`,
  ghost: `${tag}-ghost`,
};
const IF = { brA: `${tag}ba`, brB: `${tag}bb`, side: `${tag}s0`, vbr: `${tag}vbr`, fb: `${tag}f0`, tun: `${tag}t0`, ghost: `${tag}g0`, up: externalVethName(N.up) };
const dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));
const AGENT = path.join(dir, 'agent.py');
const RELAY = path.join(dir, 'relay.py');
fs.writeFileSync(AGENT, AGENT_PY);
fs.writeFileSync(RELAY, RELAY_PY);

const cfgText = `
networks:
  - name: ${tag}a
    subnet: ${SUB.A}.0/24
    subnet6: ${SUB6.A}:/64
    bridge: ${IF.brA}
  - name: ${tag}b
    subnet: ${SUB.B}.0/24
    subnet6: ${SUB6.B}:/64
    bridge: ${IF.brB}
containers:
  - name: ${N.web}
    network: ${tag}a
    ip: ${SUB.A}.10
    ip6: ${SUB6.A}:10
    publish: ["${PUB}:${TCP.pub}", "${PUB}:${UDP.pub}/udp", "[::1]:${LOPUB}:${TCP.pub}", "[::1]:${LOPUB}:${UDP.pub}/udp"]
  - name: ${N.peer}
    network: ${tag}a
    ip: ${SUB.A}.11
    ip6: ${SUB6.A}:11
  - name: ${N.b1}
    network: ${tag}b
    ip: ${SUB.B}.10
    ip6: ${SUB6.B}:10
externals:
  - name: ${N.up}
    address: ${SUB.UP}.2/24
    address6: ${SUB6.UP}:2/64
uplinks: [${IF.up}]
# served besides the uplink: this file's own second NIC only
interfaces: [${IF.side}]
`;
const cfg = parseConfig(cfgText);


/**
 * Cells where berth is deliberately stricter than Docker 29 (berth drops
 * what Docker's rules pass), with the reason; the first that matches a cell
 * is its reason.
 */
const DIFFERENCES: ReadonlyArray<{ match: (c: Cell) => boolean; reason: string }> = [
  {
    match: (c) => c.source === 'foreign bridge' && c.kind === 'host-address' && c.proto !== 'icmp',
    reason:
      'a foreign bridge is not served unless named (as in IPv4): auto-detection leaves every bridge out, so its DNAT-less traffic to a published port finds no listener; Docker\'s nat PREROUTING DNATs it on every interface',
  },
  {
    match: (c) => c.source === 'L3 (tun)' && c.kind === 'host-address' && c.proto !== 'icmp',
    reason: 'an L3 device is never served (as in IPv4): berth_up_in needs an Ethernet header',
  },
];

/**
 * Cells where berth answers and Docker 29's rules (userland proxy off) do
 * not: the host to [::1] of a published port. reference6.ts explains why
 * Docker's DNAT to [::1] never completes with the proxy off; with the
 * default proxy on, docker-proxy answers there, and berth's connect6 and
 * sendmsg6 hooks do the same (issue 12 item 3). Only the host itself.
 */
const ANSWERS: ReadonlyArray<{ match: (c: Cell) => boolean; reason: string }> = [
  {
    match: (c) => c.source === 'host' && (c.kind === 'loopback-any' || c.kind === 'loopback-only') && c.proto !== 'icmp',
    reason: 'the host to [::1]:PUB/LOPUB: berth\'s socket hooks answer as docker-proxy does; Docker\'s DNAT with the proxy off never completes (reference6.ts)',
  },
];

/** Reasons this matrix has no cause to see: a bug if they grow (every network here has IPv6). */
const NEVER = ['malformed', 'no_endpoint', 'ct_full', 'nat_no_port', 'fragment', 'spoofed', 'policy', 'internal', 'icc', 'no_ipv6', 'frag_orphan', 'too_big', 'ttl_exceeded'];
type Proto = 'tcp' | 'udp' | 'icmp';
type TargetKind = 'host-address' | 'loopback-any' | 'container' | 'ghost' | 'loopback-only';
interface Target {
  name: string;
  kind: TargetKind;
  host: string;
  tcp: number;
  udp: number;
  /** ping this address too (not for 127.0.0.1, nor twice for one address) */
  icmp: boolean;
}
interface Cell {
  source: string;
  target: string;
  kind: TargetKind;
  proto: Proto;
  host: string;
  port: number;
}
interface Source {
  name: string;
  agent: Agent;
}

const arrivals = new Arrivals();
const agents: Agent[] = [];
let relay: ChildProcess | undefined;
let undo: (() => Promise<void>) | null = null;

async function cleanup(): Promise<void> {
  for (const a of agents) a.stop();
  if (relay && relay.exitCode === null) relay.kill('SIGKILL');
  if (undo) await undo().catch((e: Error) => console.error(e.message));
  await standalone.down(cfg, { pinRoot }).catch(() => undefined);
  try {
    Dataplane.reset(pinRoot);
  } catch {
    /* nothing pinned */
  }
  await topology.down(cfg).catch(() => undefined);
  for (const ns of Object.values(N)) {
    const { stdout } = await run('ip', ['netns', 'pids', ns]).catch(() => ({ stdout: '' }));
    for (const p of stdout.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(p), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    sh('ip', ['netns', 'del', ns]);
  }
  for (const l of [IF.side, IF.fb, IF.vbr, IF.tun, IF.ghost, IF.brA, IF.brB, IF.up, ...cfg.containers.map((c) => hostVethName(c.name))]) sh('ip', ['link', 'del', l]);
  await flushConntrack();
  fs.rmSync(dir, { recursive: true, force: true });
}

/** The kernel's conntrack entries of this file's addresses and ports (between the phases, and at the end). */
async function flushConntrack(): Promise<void> {
  const jobs: string[][] = [];
  for (const opt of ['-s', '-d', '--reply-src', '--reply-dst']) {
    jobs.push(['-D', opt, '10.83.0.0/16']);
    jobs.push(['-D', '-f', 'ipv6', opt, 'fd83::/16']);
  }
  for (const f of ['ipv4', 'ipv6']) for (const proto of ['tcp', 'udp']) for (const port of [PUB, LOPUB]) jobs.push(['-D', '-f', f, '-p', proto, '--orig-port-dst', String(port)]);
  await Promise.all(jobs.map((j) => run('conntrack', j, { timeoutMs: 10000 }).catch(() => undefined)));
}

const ip = (...args: string[]): Promise<unknown> => run('ip', args);
/** Docker's forwarding is machine-wide: this file's interfaces forward IPv6 in both phases (force_forwarding, Linux 6.17+). */
const forwarding = (i: string): void => fs.writeFileSync(`/proc/sys/net/ipv6/conf/${i}/force_forwarding`, '1');
const v6on = (i: string): void => fs.writeFileSync(`/proc/sys/net/ipv6/conf/${i}/disable_ipv6`, '0');
const nsV6on = (ns: string, dev: string): Promise<unknown> =>
  run('ip', ['netns', 'exec', ns, 'sh', '-c', `for c in all default ${dev}; do echo 0 > /proc/sys/net/ipv6/conf/$c/disable_ipv6; done`]);

/** A namespace behind a veth whose host side is `hostIf` (or a port of `master`). */
async function vethHost(ns: string, hostIf: string, sub: string, master?: string): Promise<void> {
  await ip('netns', 'add', ns);
  await ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
  if (master) await ip('link', 'set', hostIf, 'master', master, 'up');
  else {
    await ip('addr', 'add', `${sub}.1/24`, 'dev', hostIf);
    await ip('link', 'set', hostIf, 'up');
  }
  await ip('-n', ns, 'addr', 'add', `${sub}.${master === IF.brA ? 99 : 2}/24`, 'dev', 'eth0');
  await ip('-n', ns, 'link', 'set', 'eth0', 'up');
  await ip('-n', ns, 'link', 'set', 'lo', 'up');
  await ip('-n', ns, 'route', 'add', 'default', 'via', `${sub}.1`);
}

/** The same namespace's IPv6 side: `sub6` its /64 (host end ::1 unless on a bridge), itself ::2 (::99 on brA). */
async function vethHost6(ns: string, hostIf: string, sub6: string, master?: string): Promise<void> {
  if (!master) {
    v6on(hostIf);
    await ip('-6', 'addr', 'add', `${sub6}:1/64`, 'dev', hostIf, 'nodad');
  }
  await nsV6on(ns, 'eth0');
  await ip('-n', ns, '-6', 'addr', 'add', `${sub6}:${master === IF.brA ? 99 : 2}/64`, 'dev', 'eth0', 'nodad');
  await ip('-n', ns, '-6', 'route', 'add', 'default', 'via', `${sub6}:1`, 'dev', 'eth0');
}

/** Can this kernel make an L3 device here, without loadable modules? The reason when not. */
async function l3Available(): Promise<string | null> {
  if (!fs.existsSync('/dev/net/tun')) {
    const probe = `${tag}-probe`;
    const tried: string[] = ['tun: no /dev/net/tun'];
    await ip('netns', 'add', probe).catch(() => undefined);
    for (const kind of ['ipip', 'gre']) {
      const err = await run('ip', ['-n', probe, 'link', 'add', `${tag}x`, 'type', kind, 'local', '192.0.2.1', 'remote', '192.0.2.2']).then(
        () => null,
        (e: Error) => e.message.split('\n')[0],
      );
      tried.push(err ? `${kind}: ${err}` : `${kind}: available, but this suite drives its L3 host through tun only`);
    }
    sh('ip', ['netns', 'del', probe]);
    return tried.join('; ');
  }
  return null;
}

/**
 * Outside sources (and containers) send to [::1] through the host, for the
 * published ports only (their own loopback keeps working): policy rules
 * ahead of the local table. IPv6 has no route_localnet: whether the packet
 * leaves at all is the namespace kernel's business, and both phases see the
 * same.
 */
async function loopbackViaHost6(ns: string, dev: string, gw: string | null): Promise<void> {
  await ip('-n', ns, '-6', 'rule', 'add', 'pref', '100', 'lookup', 'local');
  await ip('-n', ns, '-6', 'rule', 'del', 'pref', '0');
  await ip('-n', ns, '-6', 'route', 'add', 'default', ...(gw ? ['via', gw] : []), 'dev', dev, 'table', '200');
  for (const proto of ['tcp', 'udp']) for (const port of [PUB, LOPUB]) await ip('-n', ns, '-6', 'rule', 'add', 'pref', '50', 'to', '::1/128', 'ipproto', proto, 'dport', String(port), 'lookup', '200');
}

function targets(haveL3: boolean): Target[] {
  const hostAddrs: Array<[string, string]> = [
    ['uplink', `${SUB6.UP}:1`],
    ['side NIC', `${SUB6.SIDE}:1`],
    ['foreign bridge', `${SUB6.VBR}:1`],
    ...(haveL3 ? ([['tun', `${SUB6.L3}:1`]] as Array<[string, string]>) : []),
    ['gateway6 A', `${SUB6.A}:1`],
    ['gateway6 B', `${SUB6.B}:1`],
  ];
  return [
    ...hostAddrs.map(([n, a]): Target => ({ name: `${n} [${a}]:PUB`, kind: 'host-address', host: a, tcp: PUB, udp: PUB, icmp: true })),
    { name: '[::1]:PUB (published on every address)', kind: 'loopback-any', host: '::1', tcp: PUB, udp: PUB, icmp: false },
    { name: 'web6, published port', kind: 'container', host: `${SUB6.A}:10`, tcp: TCP.pub, udp: UDP.pub, icmp: true },
    { name: 'web6, unpublished port', kind: 'container', host: `${SUB6.A}:10`, tcp: TCP.unpub, udp: UDP.unpub, icmp: false },
    { name: 'ghost6 (unknown container)', kind: 'ghost', host: `${SUB6.A}:99`, tcp: TCP.pub, udp: UDP.pub, icmp: true },
    { name: '[::1]:LOPUB (loopback-only publish)', kind: 'loopback-only', host: '::1', tcp: LOPUB, udp: LOPUB, icmp: false },
  ];
}

function cellsOf(sources: readonly Source[], ts: readonly Target[]): Cell[] {
  const out: Cell[] = [];
  for (const s of sources)
    for (const tg of ts) {
      const base = { source: s.name, target: tg.name, kind: tg.kind, host: tg.host };
      out.push({ ...base, proto: 'tcp', port: tg.tcp });
      out.push({ ...base, proto: 'udp', port: tg.udp });
      if (tg.icmp) out.push({ ...base, proto: 'icmp', port: 0 });
    }
  return out;
}

const keyOf = (c: Cell): string => `${c.source} -> ${c.target} ${c.proto}`;
let icmpIdent = (pid * 131) % 60000;

/** One cell through a source's agent: its outcome. */
async function probe(agent: Agent, c: Cell, phase: string, i: number): Promise<string> {
  if (c.proto === 'tcp') return agent.command('tcp', c.host, c.port, WAIT_S);
  if (c.proto === 'icmp') return agent.command('icmp', c.host, 1 + (icmpIdent++ % 65000), WAIT_S);
  const token = `6${phase}${i}x${pid}`;
  const sent = await agent.command('udp', c.host, c.port, token);
  if (sent !== 'sent') return sent;
  const where = await arrivals.wait(token, WAIT_S * 1000);
  return where ? `arrived ${where}` : 'never arrived';
}

/** Every cell, one source at a time, that source's cells all at once; with berth's drop counters per source. */
async function runPhase(phase: string, sources: readonly Source[], cells: readonly Cell[], dp?: Dataplane): Promise<{ out: Map<string, string>; drops: Map<string, string[]> }> {
  const out = new Map<string, string>();
  const drops = new Map<string, string[]>();
  for (const s of sources) {
    const mine = cells.map((c, i) => ({ c, i })).filter(({ c }) => c.source === s.name);
    const before = dp ? await dropRows(dp) : undefined;
    const got = await pool(64, mine.map(({ c, i }) => () => probe(s.agent, c, phase, i)));
    mine.forEach(({ c }, k) => out.set(keyOf(c), got[k]!));
    if (dp && before) drops.set(s.name, grown(before, await dropRows(dp)));
  }
  // a datagram that came after its wait is no drop: say so (it would show as a difference)
  cells.forEach((c, i) => {
    const late = arrivals.get(`6${phase}${i}x${pid}`);
    if (c.proto === 'udp' && late && out.get(keyOf(c)) === 'never arrived') out.set(keyOf(c), `arrived late ${late}`);
  });
  return { out, drops };
}

async function dropRows(dp: Dataplane): Promise<Map<string, bigint>> {
  const m = new Map<string, bigint>();
  for (const row of await readCounters(dp))
    for (const [r, pb] of Object.entries(row.drop)) if (pb.packets > 0n) m.set(`${r}@${row.container || row.interface}`, (m.get(`${r}@${row.container || row.interface}`) ?? 0n) + pb.packets);
  return m;
}

function grown(before: Map<string, bigint>, after: Map<string, bigint>): string[] {
  return [...after].filter(([k, v]) => v > (before.get(k) ?? 0n)).map(([k, v]) => `${k}+${v - (before.get(k) ?? 0n)}`);
}

/** Addresses by the name of who has them, for a readable table. */
const NAMES: Array<[string, string]> = [
  [`${SUB6.UP}:2`, 'uplink host'],
  [`${SUB6.SIDE}:2`, 'side host'],
  [`${SUB6.VBR}:2`, 'vbr host'],
  [`${SUB6.L3}:2`, 'tun host'],
  [`${SUB6.A}:11`, 'peer'],
  [`${SUB6.B}:10`, 'b1'],
  [`${SUB6.A}:1`, 'gateway6 A'],
  [`${SUB6.B}:1`, 'gateway6 B'],
];
const pretty = (o: string): string =>
  NAMES.reduce((s, [a, n]) => s.split(` ${a}`).join(` ${n}`), o)
    .replace(/^connected: (\S+) sees (.+)$/, '$1 sees $2')
    .replace(/^arrived at (\S+) from (.+)$/, '$1 from $2');

/** An outcome that reached its target (anything else is a drop, a refusal or an error). */
const reached = (o: string): boolean => /^(connected|arrived|echo reply)/.test(o);

t.teardown(cleanup);

t.test("security matrix in IPv6: every source × every v6 target × TCP/UDP/ICMPv6, Docker 29's ip6tables rules and berth", async (t) => {
  await cleanup().catch(() => undefined);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(AGENT, AGENT_PY);
  fs.writeFileSync(RELAY, RELAY_PY);
  const noL3 = await l3Available();

  // ---- the topology, once: berth's namespaces (topology.up gives them their v6 side), then the host's other interfaces
  await topology.up(cfg, { startCommands: false });
  await vethHost(N.side, IF.side, SUB.SIDE);
  await vethHost6(N.side, IF.side, SUB6.SIDE);
  await ip('link', 'add', IF.vbr, 'type', 'bridge');
  v6on(IF.vbr);
  await ip('addr', 'add', `${SUB.VBR}.1/24`, 'dev', IF.vbr);
  await ip('-6', 'addr', 'add', `${SUB6.VBR}:1/64`, 'dev', IF.vbr, 'nodad');
  await ip('link', 'set', IF.vbr, 'up');
  await vethHost(N.fb, IF.fb, SUB.VBR, IF.vbr);
  await vethHost6(N.fb, IF.fb, SUB6.VBR, IF.vbr);
  await vethHost(N.ghost, IF.ghost, SUB.A, IF.brA);
  await vethHost6(N.ghost, IF.ghost, SUB6.A, IF.brA);
  if (!noL3) {
    await ip('netns', 'add', N.l3);
    await ip('tuntap', 'add', 'dev', IF.tun, 'mode', 'tun');
    await ip('-n', N.l3, 'tuntap', 'add', 'dev', 'tun0', 'mode', 'tun');
    v6on(IF.tun);
    await nsV6on(N.l3, 'tun0');
    await ip('-6', 'addr', 'add', `${SUB6.L3}:1/64`, 'dev', IF.tun, 'nodad');
    await ip('link', 'set', IF.tun, 'up');
    await ip('-n', N.l3, '-6', 'addr', 'add', `${SUB6.L3}:2/64`, 'dev', 'tun0', 'nodad');
    await ip('-n', N.l3, 'link', 'set', 'tun0', 'up');
    await ip('-n', N.l3, 'link', 'set', 'lo', 'up');
    await ip('-n', N.l3, '-6', 'route', 'add', 'default', 'dev', 'tun0');
    relay = spawn('python3', ['-u', RELAY, IF.tun, `/run/netns/${N.l3}`, 'tun0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      relay!.stdout!.once('data', () => resolve());
      relay!.once('exit', (code) => reject(new Error(`tun relay exited ${code}`)));
    });
  } else t.comment(`L3 source skipped: ${noL3}`);
  for (const i of [IF.side, IF.vbr, IF.brA, IF.brB, IF.up, ...(noL3 ? [] : [IF.tun])]) forwarding(i);
  await loopbackViaHost6(N.up, 'eth0', `${SUB6.UP}:1`);
  await loopbackViaHost6(N.side, 'eth0', `${SUB6.SIDE}:1`);
  await loopbackViaHost6(N.fb, 'eth0', `${SUB6.VBR}:1`);
  if (!noL3) await loopbackViaHost6(N.l3, 'tun0', null);
  await loopbackViaHost6(N.peer, 'eth0', `${SUB6.A}:1`);
  await loopbackViaHost6(N.b1, 'eth0', `${SUB6.B}:1`);

  // ---- the agents: servers in web and ghost (both families), probers in every source
  const mk = (name: string, ns: string | null, ports = { tcp: [] as number[], udp: [] as number[] }): Agent => {
    const a = new Agent(name, ns, AGENT, ports, arrivals, true);
    agents.push(a);
    return a;
  };
  const web = mk('web', N.web, { tcp: [TCP.pub, TCP.unpub], udp: [UDP.pub, UDP.unpub] });
  const ghost = mk('ghost', N.ghost, { tcp: [TCP.pub], udp: [UDP.pub] });
  const sources: Source[] = [
    { name: 'uplink', agent: mk('uplink', N.up) },
    { name: 'side NIC', agent: mk('side', N.side) },
    { name: 'foreign bridge', agent: mk('vbr', N.fb) },
    ...(noL3 ? [] : [{ name: 'L3 (tun)', agent: mk('tun', N.l3) }]),
    { name: 'host', agent: mk('host', null) },
    { name: 'same network', agent: mk('peer', N.peer) },
    { name: 'other network', agent: mk('b1', N.b1) },
  ];
  await Promise.all(agents.map((a) => a.start()));
  const ts = targets(!noL3);
  const cells = cellsOf(sources, ts);
  t.same(cells.map(keyOf).filter((k, i, a) => a.indexOf(k) !== i), [], 'cell names are unique');
  for (const [a, port] of [[web, TCP.pub], [web, TCP.unpub], [ghost, TCP.pub]] as const)
    t.match(await a.command('tcp', '::1', port, 5), /^connected: /, `${a.name} serves ${port} on [::1] (from inside)`);

  // ---- phase A: Docker 29's rules (both families; the v6 side from the config), berth absent
  t.notOk(Dataplane.isPinned(pinRoot), 'phase A: berth not loaded');
  const hostIfs = [
    { ifname: IF.side, addr: `${SUB.SIDE}.1`, addr6: `${SUB6.SIDE}:1` },
    { ifname: IF.vbr, addr: `${SUB.VBR}.1`, addr6: `${SUB6.VBR}:1` },
    ...(noL3 ? [] : [{ ifname: IF.tun, addr6: `${SUB6.L3}:1` }]),
  ];
  undo = await applyReference(cfg, { uplinks: [IF.up], chainSuffix: sfx, hostInterfaces: hostIfs });
  t.match((await run('ip6tables-save', ['-t', 'nat'])).stdout, new RegExp(`DNAT --to-destination \\[${SUB6.A}:10\\]:${TCP.pub}`), 'phase A: the ip6tables reference DNATs the v6 publish');
  const startA = Date.now();
  const ref = (await runPhase('a', sources, cells)).out;
  const msA = Date.now() - startA;
  const u = undo;
  undo = null;
  await u();
  await flushConntrack();

  // ---- phase B: berth, no ip6tables rule of ours
  await standalone.up(cfg, { pinRoot, startCommands: false });
  const dp = Dataplane.openPinned(pinRoot);
  t.teardown(() => dp.close());
  const startB = Date.now();
  const phaseB = await runPhase('b', sources, cells, dp);
  const msB = Date.now() - startB;
  const out = phaseB.out;

  // ---- compare, cell for cell
  const stricter = (c: Cell): string | undefined => DIFFERENCES.find((d) => d.match(c))?.reason;
  const answers = (c: Cell): string | undefined => ANSWERS.find((d) => d.match(c))?.reason;
  let same = 0;
  const differing: string[] = [];
  for (const c of cells) {
    const a = ref.get(keyOf(c))!;
    const b = out.get(keyOf(c))!;
    if (a === b) {
      same++;
      t.pass(`${keyOf(c)}: ${a}`);
    } else if (stricter(c)) {
      differing.push(keyOf(c));
      t.ok(reached(a) && !reached(b), `${keyOf(c)}: Docker ${a}, berth ${b} — listed, berth is the stricter (${stricter(c)})`);
    } else if (answers(c)) {
      differing.push(keyOf(c));
      t.ok(!reached(a) && reached(b), `${keyOf(c)}: Docker ${a}, berth ${b} — listed, berth answers as docker-proxy would (${answers(c)})`);
    } else {
      t.equal(b, a, `${keyOf(c)}: berth matches the reference`);
    }
  }
  for (const d of [...DIFFERENCES, ...ANSWERS]) t.ok(cells.some((c) => d.match(c) && ref.get(keyOf(c)) !== out.get(keyOf(c))), `listed difference still shows: ${d.reason.slice(0, 60)}...`);
  for (const [s, grew] of phaseB.drops) {
    const bad = grew.filter((g) => NEVER.includes(g.split('@')[0]!));
    t.same(bad, [], `berth drops from ${s}: ${grew.join(', ') || 'none'}`);
  }
  // every cell to [::1] from outside or from a container is a drop in both phases, berth's counted where
  // it serves the interface (uplink, second NIC) and on the container's veth (LOOPBACK_ONLY, lib/guard6.h)
  for (const s of ['uplink', 'side NIC', 'same network', 'other network']) {
    for (const c of cells.filter((c) => c.source === s && (c.kind === 'loopback-any' || c.kind === 'loopback-only'))) t.notOk(reached(out.get(keyOf(c))!), `${keyOf(c)}: dropped`);
    t.ok((phaseB.drops.get(s) ?? []).some((g) => g.startsWith('loopback_only@')), `${s} -> [::1]: berth counts loopback_only`);
  }

  // ---- the table
  const protos: Proto[] = ['tcp', 'udp', 'icmp'];
  const cellText = (c: Cell | undefined): string => {
    if (!c) return '-';
    const a = pretty(ref.get(keyOf(c))!);
    const b = pretty(out.get(keyOf(c))!);
    return a === b ? a : `Docker: ${a} / berth: ${b}${stricter(c) || answers(c) ? ' (listed)' : ' <-- DIFFERS'}`;
  };
  const rows = sources.flatMap((s) => ts.map((tg) => [s.name, tg.name, ...protos.map((p) => cellText(cells.find((c) => c.source === s.name && c.target === tg.name && c.proto === p)))]));
  const head = ['source', 'target', 'TCP connect', 'UDP arrival', 'ICMPv6 echo'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  t.comment(`v6 matrix: ${cells.length} cells (${sources.length} sources × ${ts.length} targets × TCP/UDP, ICMPv6 where the target has an address of its own), PUB=${PUB} LOPUB=${LOPUB}`);
  t.comment(`${same} cells alike, ${differing.length} listed differences; Docker's rules ${(msA / 1000).toFixed(1)} s, berth ${(msB / 1000).toFixed(1)} s`);
  t.comment(head.map((h, i) => h.padEnd(w[i]!)).join(' | '));
  for (const r of rows) t.comment(r.map((x, i) => x.padEnd(w[i]!)).join(' | '));
  for (const d of [...DIFFERENCES, ...ANSWERS]) t.comment(`listed: ${d.reason}`);
  for (const [s, grew] of phaseB.drops) t.comment(`berth drops from ${s}: ${grew.join(', ') || 'none'}`);
});
