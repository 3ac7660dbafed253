// The security matrix, part of the differential suite: every source × every
// target × TCP connect, UDP datagram arrival and ICMP echo, first through
// Docker 29's rules (test/lib/reference.ts, berth absent), then through berth
// (no iptables rule of ours); the outcomes must match cell for cell, except
// where berth is deliberately stricter (DIFFERENCES below, each with its
// reason), and then berth's outcome must be the stricter one.
//
// Sources: the listed uplink (an external), another host interface that is
// not an uplink ("side", a second NIC: served by default, as Docker's DNAT
// serves every interface), a foreign bridge with a host behind it ("vbr",
// like libvirt's virbr0), an L3 device (a tun with a namespace behind it,
// through a relay; skipped with the reason where the kernel has no tun), the
// host itself, a container on the same network, one on another network.
// Targets: the published port on each host address (every interface's, both
// gateways, 127.0.0.1), the container's address on a published and on an
// unpublished port, a container berth does not know ("ghost": a namespace
// plugged into berth's bridge, not in the config), and a 127.0.0.1-only
// publish (outside sources route 127.0.0.1 through the host, moby #45610).
//
// Every source runs its cells at once (the agents of test/lib/matrix.ts);
// expected drops cost one bounded wait each, on the listener, never a sleep.
// Traffic only ever goes between this file's namespaces and the host's
// addresses on this file's interfaces. Needs root, iproute2, iptables
// (nf_tables), conntrack and python3.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, ChildProcess } from 'node:child_process';
import { parseConfig } from '../../src/config';
import { Dataplane } from '../../src/dataplane';
import { run } from '../../src/exec';
import { autoUplinks, hostInterfaces } from '../../src/hostnet';
import { externalVethName, hostVethName } from '../../src/names';
import * as standalone from '../../src/standalone';
import { readCounters } from '../../src/stats';
import * as topology from '../../src/topology';
import { applyReference } from '../lib/reference';
import { AGENT_PY, Agent, Arrivals, RELAY_PY, pool } from '../lib/matrix';
import { sh } from '../lib/topo';
import { BIN } from '../lib/dockerd';

const pid = process.pid;
const tag = `mx${pid % 100000}`;
const pinRoot = `/sys/fs/bpf/berth-test-${tag}`;
const sfx = `M${pid % 100000}`;
// second octets 240..250 belong to this file; six /24s from a pid-chosen third octet
const S = 240 + (pid % 11);
const T = (pid % 40) * 6;
const net = (i: number): string => `10.${S}.${T + i}`;
const SUB = { A: net(0), B: net(1), UP: net(2), SIDE: net(3), VBR: net(4), L3: net(5) };
// host ports: clear of the other suites' (20000.., 40000..), of 9469 and of the NAT range
const PUB = 5000 + (pid % 2000);
const LOPUB = PUB + 2000;
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

const cfgText = (interfaces: string[]): string => `
networks:
  - name: ${tag}a
    subnet: ${SUB.A}.0/24
    bridge: ${IF.brA}
  - name: ${tag}b
    subnet: ${SUB.B}.0/24
    bridge: ${IF.brB}
containers:
  - name: ${N.web}
    network: ${tag}a
    ip: ${SUB.A}.10
    publish: ["${PUB}:${TCP.pub}", "${PUB}:${UDP.pub}/udp", "127.0.0.1:${LOPUB}:${TCP.pub}", "127.0.0.1:${LOPUB}:${UDP.pub}/udp"]
  - name: ${N.peer}
    network: ${tag}a
    ip: ${SUB.A}.11
  - name: ${N.b1}
    network: ${tag}b
    ip: ${SUB.B}.10
externals:
  - name: ${N.up}
    address: ${SUB.UP}.2/24
uplinks: [${IF.up}]
# served besides the uplink: this file's own interfaces only
interfaces: [${interfaces.join(', ')}]
`;
// what auto-detection would serve among this file's interfaces (checked below): the second NIC
const cfg = parseConfig(cfgText([IF.side]));

/** The sources that are outside the host (the rest: the host itself and its containers). */
const OUTSIDE = ['uplink', 'side NIC', 'foreign bridge', 'L3 (tun)'];

/**
 * Cells where berth is deliberately stricter than Docker, with the reason;
 * the first that matches a cell is its reason. (Docker 29 is not stricter
 * than the reference anywhere here: the reference already has its raw-table
 * drops and the per-bridge DROP of unpublished ports, and nothing in this
 * matrix needed more.)
 */
const DIFFERENCES: ReadonlyArray<{ match: (c: Cell) => boolean; reason: string }> = [
  {
    match: (c) => OUTSIDE.includes(c.source) && c.kind === 'loopback-any' && c.proto !== 'icmp',
    reason:
      'a packet to 127.0.0.0/8 from outside is a martian: berth drops it on every served interface whatever the port (loopback_only), and the kernel drops it elsewhere; Docker\'s nat PREROUTING DNATs it before the kernel\'s martian check when the port is published on every address, and its reply leaves with source 127.0.0.1. The port stays reachable on the host\'s own addresses',
  },
  {
    match: (c) => c.source === 'foreign bridge' && c.kind === 'host-address' && c.proto !== 'icmp',
    reason:
      'a foreign bridge is not served unless named: auto-detection leaves every bridge out (it may be a network of Docker or of another berth, whose own traffic must never meet berth_up_in); `interfaces: [virbr0]` serves it (checked below)',
  },
  {
    match: (c) => c.source === 'L3 (tun)' && c.kind === 'host-address' && c.proto !== 'icmp',
    reason: 'an L3 device is never served: berth_up_in needs an Ethernet header (auto-detection leaves it out, naming it is refused)',
  },
];

/** Reasons this matrix has no cause to see (no fragments, no spoofing, no policy, nothing full): a bug if they grow. */
const NEVER = ['malformed', 'no_endpoint', 'ct_full', 'nat_no_port', 'fragment', 'spoofed', 'policy', 'internal', 'icc'];

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
  for (const opt of ['-s', '-d', '--reply-src', '--reply-dst']) jobs.push(['-D', opt, `10.${S}.0.0/16`]);
  for (const proto of ['tcp', 'udp']) for (const port of [PUB, LOPUB]) jobs.push(['-D', '-p', proto, '--orig-port-dst', String(port)]);
  await Promise.all(jobs.map((j) => run('conntrack', j, { timeoutMs: 10000 }).catch(() => undefined)));
}

const ip = (...args: string[]): Promise<unknown> => run('ip', args);
const forwarding = (i: string): void => fs.writeFileSync(`/proc/sys/net/ipv4/conf/${i}/forwarding`, '1');

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
 * Outside sources (and containers) send to 127.0.0.1 through the host, for
 * the published ports only (their own loopback keeps working): policy rules
 * ahead of the local table, and route_localnet on the way out.
 */
async function loopbackViaHost(ns: string, dev: string, gw: string | null): Promise<void> {
  await ip('-n', ns, 'rule', 'add', 'pref', '100', 'lookup', 'local');
  await ip('-n', ns, 'rule', 'del', 'pref', '0');
  await ip('-n', ns, 'route', 'add', 'default', ...(gw ? ['via', gw] : []), 'dev', dev, 'table', '200');
  for (const proto of ['tcp', 'udp']) for (const port of [PUB, LOPUB]) await ip('-n', ns, 'rule', 'add', 'pref', '50', 'to', '127.0.0.1/32', 'ipproto', proto, 'dport', String(port), 'lookup', '200');
  await run('ip', ['netns', 'exec', ns, 'sh', '-c', `echo 1 > /proc/sys/net/ipv4/conf/${dev}/route_localnet`]);
}

function targets(haveL3: boolean): Target[] {
  const hostAddrs: Array<[string, string]> = [
    ['uplink', `${SUB.UP}.1`],
    ['side NIC', `${SUB.SIDE}.1`],
    ['foreign bridge', `${SUB.VBR}.1`],
    ...(haveL3 ? ([['tun', `${SUB.L3}.1`]] as Array<[string, string]>) : []),
    ['gateway A', `${SUB.A}.1`],
    ['gateway B', `${SUB.B}.1`],
  ];
  return [
    ...hostAddrs.map(([n, a]): Target => ({ name: `${n} ${a}:PUB`, kind: 'host-address', host: a, tcp: PUB, udp: PUB, icmp: true })),
    { name: '127.0.0.1:PUB (published on every address)', kind: 'loopback-any', host: '127.0.0.1', tcp: PUB, udp: PUB, icmp: false },
    { name: 'web, published port', kind: 'container', host: `${SUB.A}.10`, tcp: TCP.pub, udp: UDP.pub, icmp: true },
    { name: 'web, unpublished port', kind: 'container', host: `${SUB.A}.10`, tcp: TCP.unpub, udp: UDP.unpub, icmp: false },
    { name: 'ghost (unknown container)', kind: 'ghost', host: `${SUB.A}.99`, tcp: TCP.pub, udp: UDP.pub, icmp: true },
    { name: '127.0.0.1:LOPUB (loopback-only publish)', kind: 'loopback-only', host: '127.0.0.1', tcp: LOPUB, udp: LOPUB, icmp: false },
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
  const token = `${phase}${i}x${pid}`;
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
    const late = arrivals.get(`${phase}${i}x${pid}`);
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
  [`${SUB.UP}.2`, 'uplink host'],
  [`${SUB.SIDE}.2`, 'side host'],
  [`${SUB.VBR}.2`, 'vbr host'],
  [`${SUB.L3}.2`, 'tun host'],
  [`${SUB.A}.11`, 'peer'],
  [`${SUB.B}.10`, 'b1'],
  [`${SUB.A}.1`, 'gateway A'],
  [`${SUB.B}.1`, 'gateway B'],
];
const pretty = (o: string): string =>
  NAMES.reduce((s, [a, n]) => s.replace(new RegExp(`\\b${a.replace(/\./g, '\\.')}\\b`, 'g'), n), o)
    .replace(/^connected: (\S+) sees (.+)$/, '$1 sees $2')
    .replace(/^arrived at (\S+) from (.+)$/, '$1 from $2');

/** An outcome that reached its target (anything else is a drop, a refusal or an error). */
const reached = (o: string): boolean => /^(connected|arrived|echo reply)/.test(o);

t.teardown(cleanup);

t.test("security matrix: every source × every target × TCP/UDP/ICMP, Docker 29's rules and berth", async (t) => {
  await cleanup().catch(() => undefined);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(AGENT, AGENT_PY);
  fs.writeFileSync(RELAY, RELAY_PY);
  const noL3 = await l3Available();

  // ---- the topology, once: berth's namespaces, then the host's other interfaces
  await topology.up(cfg, { startCommands: false });
  await vethHost(N.side, IF.side, SUB.SIDE);
  await ip('link', 'add', IF.vbr, 'type', 'bridge');
  await ip('addr', 'add', `${SUB.VBR}.1/24`, 'dev', IF.vbr);
  await ip('link', 'set', IF.vbr, 'up');
  await vethHost(N.fb, IF.fb, SUB.VBR, IF.vbr);
  await vethHost(N.ghost, IF.ghost, SUB.A, IF.brA);
  if (!noL3) {
    await ip('netns', 'add', N.l3);
    await ip('tuntap', 'add', 'dev', IF.tun, 'mode', 'tun');
    await ip('-n', N.l3, 'tuntap', 'add', 'dev', 'tun0', 'mode', 'tun');
    await ip('addr', 'add', `${SUB.L3}.1/24`, 'dev', IF.tun);
    await ip('link', 'set', IF.tun, 'up');
    await ip('-n', N.l3, 'addr', 'add', `${SUB.L3}.2/24`, 'dev', 'tun0');
    await ip('-n', N.l3, 'link', 'set', 'tun0', 'up');
    await ip('-n', N.l3, 'link', 'set', 'lo', 'up');
    await ip('-n', N.l3, 'route', 'add', 'default', 'dev', 'tun0');
    relay = spawn('python3', ['-u', RELAY, IF.tun, `/run/netns/${N.l3}`, 'tun0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      relay!.stdout!.once('data', () => resolve());
      relay!.once('exit', (code) => reject(new Error(`tun relay exited ${code}`)));
    });
  } else t.comment(`L3 source skipped: ${noL3}`);
  // Docker's ip_forward is machine-wide: forwarding on every interface of this file, both phases
  for (const i of [IF.side, IF.vbr, IF.brA, IF.brB, IF.up, ...(noL3 ? [] : [IF.tun])]) forwarding(i);
  // the outside hosts and the containers send to 127.0.0.1:PUB/LOPUB through the host
  await loopbackViaHost(N.up, 'eth0', `${SUB.UP}.1`);
  await loopbackViaHost(N.side, 'eth0', `${SUB.SIDE}.1`);
  await loopbackViaHost(N.fb, 'eth0', `${SUB.VBR}.1`);
  if (!noL3) await loopbackViaHost(N.l3, 'tun0', null);
  await loopbackViaHost(N.peer, 'eth0', `${SUB.A}.1`);
  await loopbackViaHost(N.b1, 'eth0', `${SUB.B}.1`);

  // what berth serves by default among this file's interfaces: the uplink and the second NIC
  const ours = new Set<string>(Object.values(IF));
  t.same(
    autoUplinks(await hostInterfaces()).map((i) => i.ifname).filter((n) => ours.has(n)).sort(),
    [IF.up, IF.side].sort(),
    'auto-detection would serve the uplink and the second NIC, not the foreign bridge, the L3 device or any bridge port: the matrix config says the same',
  );

  // ---- the agents: servers in web and ghost, probers in every source
  const mk = (name: string, ns: string | null, ports = { tcp: [] as number[], udp: [] as number[] }): Agent => {
    const a = new Agent(name, ns, AGENT, ports, arrivals);
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
  // the servers answer from inside their own namespaces before anything is compared
  for (const [a, port] of [[web, TCP.pub], [web, TCP.unpub], [ghost, TCP.pub]] as const)
    t.match(await a.command('tcp', '127.0.0.1', port, 5), /^connected: /, `${a.name} serves ${port} (from inside)`);

  // ---- phase A: Docker 29's rules, berth absent
  t.notOk(Dataplane.isPinned(pinRoot), 'phase A: berth not loaded');
  const hostIfs = [
    { ifname: IF.side, addr: `${SUB.SIDE}.1` },
    { ifname: IF.vbr, addr: `${SUB.VBR}.1` },
    ...(noL3 ? [] : [{ ifname: IF.tun, addr: `${SUB.L3}.1` }]),
  ];
  undo = await applyReference(cfg, { uplinks: [IF.up], chainSuffix: sfx, hostInterfaces: hostIfs });
  const startA = Date.now();
  const ref = (await runPhase('a', sources, cells)).out;
  const msA = Date.now() - startA;
  const u = undo;
  undo = null;
  await u();
  await flushConntrack();

  // ---- phase B: berth, no iptables rule of ours
  await standalone.up(cfg, { pinRoot, startCommands: false });
  const dp = Dataplane.openPinned(pinRoot);
  t.teardown(() => dp.close());
  const ifindex = (n: string): number => Number(fs.readFileSync(`/sys/class/net/${n}/ifindex`, 'utf8'));
  t.same(
    dp.uplinkAttachments().filter((a) => a.kind === 'tc' && a.live).map((a) => a.ifindex).sort(),
    [ifindex(IF.up), ifindex(IF.side)].sort(),
    'berth_up_in is on the uplink and the served second NIC, nowhere else',
  );
  const startB = Date.now();
  const phaseB = await runPhase('b', sources, cells, dp);
  const msB = Date.now() - startB;
  const out = phaseB.out;

  // ---- compare, cell for cell
  const listed = (c: Cell): string | undefined => DIFFERENCES.find((d) => d.match(c))?.reason;
  let same = 0;
  const differing: string[] = [];
  for (const c of cells) {
    const a = ref.get(keyOf(c))!;
    const b = out.get(keyOf(c))!;
    const why = listed(c);
    if (a === b) {
      same++;
      t.pass(`${keyOf(c)}: ${a}`);
    } else if (why) {
      differing.push(keyOf(c));
      t.ok(reached(a) && !reached(b), `${keyOf(c)}: Docker ${a}, berth ${b} — listed difference, berth is the stricter (${why})`);
    } else {
      t.equal(b, a, `${keyOf(c)}: berth matches the reference`);
    }
  }
  for (const d of DIFFERENCES) t.ok(cells.some((c) => d.match(c) && ref.get(keyOf(c)) !== out.get(keyOf(c))), `listed difference still shows: ${d.reason.slice(0, 60)}...`);
  for (const [s, grew] of phaseB.drops) {
    const bad = grew.filter((g) => NEVER.includes(g.split('@')[0]!));
    t.same(bad, [], `berth drops from ${s}: ${grew.join(', ') || 'none'}`);
  }

  // ---- the table
  const protos: Proto[] = ['tcp', 'udp', 'icmp'];
  const cellText = (c: Cell | undefined): string => {
    if (!c) return '-';
    const a = pretty(ref.get(keyOf(c))!);
    const b = pretty(out.get(keyOf(c))!);
    return a === b ? a : `Docker: ${a} / berth: ${b}${listed(c) ? ' (listed)' : ' <-- DIFFERS'}`;
  };
  const rows = sources.flatMap((s) => ts.map((tg) => [s.name, tg.name, ...protos.map((p) => cellText(cells.find((c) => c.source === s.name && c.target === tg.name && c.proto === p)))]));
  const head = ['source', 'target', 'TCP connect', 'UDP arrival', 'ICMP echo'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  t.comment(`matrix: ${cells.length} cells (${sources.length} sources × ${ts.length} targets × TCP/UDP, ICMP where the target has an address of its own), PUB=${PUB} LOPUB=${LOPUB}`);
  t.comment(`${same} cells alike, ${differing.length} listed differences; Docker's rules ${(msA / 1000).toFixed(1)} s, berth ${(msB / 1000).toFixed(1)} s`);
  t.comment(head.map((h, i) => h.padEnd(w[i]!)).join(' | '));
  for (const r of rows) t.comment(r.map((x, i) => x.padEnd(w[i]!)).join(' | '));
  for (const d of DIFFERENCES) t.comment(`listed: ${d.reason}`);
  for (const [s, grew] of phaseB.drops) t.comment(`berth drops from ${s}: ${grew.join(', ') || 'none'}`);

  // ---- a foreign bridge named in `interfaces` is served as Docker serves it
  await standalone.up(parseConfig(cfgText([IF.side, IF.vbr])), { pinRoot, startCommands: false });
  const fbSource = sources.find((s) => s.name === 'foreign bridge')!;
  const fbCells = cells.filter((c) => c.source === 'foreign bridge' && c.proto !== 'icmp' && (c.kind === 'host-address' || c.kind === 'loopback-any'));
  const fbOut = await pool(64, fbCells.map((c, i) => () => probe(fbSource.agent, c, 'c', i)));
  fbCells.forEach((c, i) => {
    // what stays listed once the bridge is served: 127.0.0.0/8 from outside
    const other = DIFFERENCES.find((d) => d.match(c) && !d.reason.startsWith('a foreign bridge'));
    if (other) t.ok(!reached(fbOut[i]!), `vbr served: ${keyOf(c)}: ${fbOut[i]} (still listed: 127.0.0.0/8 from outside)`);
    else t.equal(fbOut[i], ref.get(keyOf(c)), `vbr served: ${keyOf(c)} as with Docker`);
  });
  await standalone.up(cfg, { pinRoot, startCommands: false });

  // ---- an L3 device named as served, or as an uplink, is refused before anything changes
  if (!noL3) {
    const before = dp.uplinkAttachments().map((a) => a.pin).sort();
    await t.rejects(standalone.up(parseConfig(cfgText([IF.side, IF.tun])), { pinRoot, startCommands: false }), new RegExp(`interfaces: ${IF.tun} is an L3 device \\(link type none, tun\\): its packets carry no Ethernet header`), 'berth up refuses an L3 device in interfaces');
    await t.rejects(
      standalone.up(parseConfig(cfgText([IF.side]).replace(`uplinks: [${IF.up}]`, `uplinks: [${IF.tun}]`)), { pinRoot, startCommands: false }),
      new RegExp(`uplinks: ${IF.tun} is an L3 device`),
      'and as an uplink',
    );
    t.same(dp.uplinkAttachments().map((a) => a.pin).sort(), before, 'nothing attached or detached by the refused runs');
    // Docker mode: --interfaces, refused before dockerd is even asked (there is none at this socket)
    const otherRoot = `${pinRoot}-docker`;
    const r = await run(BIN, ['--bpffs', otherRoot, 'run', '--docker', '--docker-socket', path.join(dir, 'no-dockerd.sock'), '--uplinks', '', '--interfaces', IF.tun, '--metrics', '127.0.0.1:0'], { timeoutMs: 30000 }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code?: unknown; stderr?: string }) => ({ code: e.code, stderr: e.stderr ?? '' }),
    );
    t.equal(r.code, 1, 'berth run --docker --interfaces TUN exits 1');
    t.match(r.stderr, new RegExp(`^berth: interfaces: ${IF.tun} is an L3 device \\(link type none, tun\\)`), 'naming the interface and why');
    t.notOk(fs.existsSync(otherRoot), 'nothing pinned');
  }
});
