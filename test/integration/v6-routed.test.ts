// Routed IPv6 (gateway_mode_ipv6=routed, issue 12), differential: the same
// cells first through Docker 29's rules (test/lib/reference.ts and
// reference6.ts, berth absent), then through berth (no iptables rule of ours,
// no daemon: only the pinned programs and maps), outcome for outcome.
//
// The topology: a dual-stack network that is nat for IPv4 and routed for
// IPv6 (so each family shows its own mode) with a container ("web")
// publishing PUB:80/tcp and PUB:7070/udp, a dual-stack nat network with a
// container ("nat1") publishing NATPUB, an external namespace behind the
// listed uplink and one behind another host interface (a second NIC, served).
// The cells: from each outside host, web's v6 address on its published ports
// (TCP connect with the client's address seen, UDP datagram arrival), on
// unpublished ports, ICMPv6 echo, the host port of its publish on the host's
// v6 address (no DNAT: routed), its IPv4 side (the host port, DNATed; its
// address, refused); nat1's v6 host port and v6 address; and web opening a
// TCP connection, a UDP exchange and an echo towards each outside host over
// IPv6 (answered, untranslated) and a TCP connection over IPv4
// (masqueraded). Drops are asserted by non-arrival (a datagram that never
// reaches the listener, a connect that times out, an echo without reply,
// each waited for a bounded time, never a sleep) and, for berth, by its drop
// counters. Names: prefix v6g, subnets 10.79.0.0/16 and fd79::/16, pin root
// /sys/fs/bpf/berth-v6gw-*, host ports 33000-33499. Needs root, iproute2,
// iptables and ip6tables (nf_tables), conntrack and python3, and Linux 6.17+
// (net.ipv6.conf.IF.force_forwarding: this file's interfaces only).
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { parseConfig } from '../../src/domain/config';
import { CtFlags, EndpointFlags, ctEntryCodec, ctKeyCodec, endpointCodec } from '../../src/platform/contract';
import { Dataplane } from '../../src/platform/dataplane';
import { run } from '../../src/platform/exec';
import { externalVethName, hostVethName } from '../../src/domain/names';
import * as standalone from '../../src/sources/standalone';
import { readCounters } from '../../src/observe/stats';
import * as topology from '../../src/platform/topology';
import { applyReference } from '../lib/reference';
import { AGENT_PY, Agent, Arrivals, pool } from '../lib/matrix';
import { removeNetns, sh } from '../lib/topo';

const pid = process.pid;
const tag = `v6g${pid % 1000}`;
const pinRoot = `/sys/fs/bpf/berth-v6gw-${pid}`;
const sfx = `V6G${pid % 1000}`;
const SUB = { R: '10.79.0', N: '10.79.1', UP: '10.79.2', SIDE: '10.79.3' };
/** written so that `${SUB6.X}:N` is canonical text */
const SUB6 = { R: 'fd79:', N: 'fd79:1:', UP: 'fd79:2:', SIDE: 'fd79:3:' };
// host ports 33000..33499 belong to this file
const PUB = 33000 + (pid % 200); // web: PUB:80/tcp, PUB:7070/udp (IPv4: DNAT; IPv6: routed, host port ignored)
const NATPUB = PUB + 250; // nat1: NATPUB:80/tcp, NATPUB:7070/udp
const WEB = { tcp: 80, udp: 7070, tcpUnpub: 8000, udpUnpub: 7071 };
const OUT = { tcp: 9000, udp: 9001 }; // served by the outside hosts, for web's own flows
/** the bound on every wait: an expected drop costs this once per cell */
const WAIT_S = 1.5;

const N = { web: `${tag}-web`, nat1: `${tag}-nat1`, up: `${tag}-up`, side: `${tag}-side` };
const IF = { brR: `${tag}br`, brN: `${tag}bn`, side: `${tag}s0`, up: externalVethName(N.up) };
const dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));
const AGENT = path.join(dir, 'agent.py');
const ECHO = path.join(dir, 'udpecho.py');
/** `serve PORT`: echo every datagram back (both families); `ask HOST PORT TOKEN TIMEOUT`: one exchange */
const ECHO_PY = `import socket, sys
if sys.argv[1] == 'serve':
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(('::', int(sys.argv[2])))
    print('READY', flush=True)
    while True:
        d, a = s.recvfrom(2048)
        s.sendto(d, a)
else:
    s = socket.socket(socket.AF_INET6 if ':' in sys.argv[2] else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(float(sys.argv[5]))
    s.sendto(sys.argv[4].encode(), (sys.argv[2], int(sys.argv[3])))
    try:
        d, a = s.recvfrom(2048)
        print('reply from %s' % a[0] if d.decode() == sys.argv[4] else 'wrong reply')
    except (socket.timeout, TimeoutError):
        print('no reply')
`;

const cfg = parseConfig(`
networks:
  - name: ${tag}r
    subnet: ${SUB.R}.0/24
    subnet6: ${SUB6.R}:/64
    bridge: ${IF.brR}
    gatewayMode6: routed
  - name: ${tag}n
    subnet: ${SUB.N}.0/24
    subnet6: ${SUB6.N}:/64
    bridge: ${IF.brN}
containers:
  - name: ${N.web}
    network: ${tag}r
    ip: ${SUB.R}.10
    ip6: ${SUB6.R}:10
    publish: ["${PUB}:${WEB.tcp}", "${PUB}:${WEB.udp}/udp"]
  - name: ${N.nat1}
    network: ${tag}n
    ip: ${SUB.N}.10
    ip6: ${SUB6.N}:10
    publish: ["${NATPUB}:${WEB.tcp}", "${NATPUB}:${WEB.udp}/udp"]
externals:
  - name: ${N.up}
    address: ${SUB.UP}.2/24
    address6: ${SUB6.UP}:2/64
uplinks: [${IF.up}]
interfaces: [${IF.side}]
`);

type Proto = 'tcp' | 'udp' | 'icmp' | 'udp-echo';
interface Cell {
  source: string;
  target: string;
  proto: Proto;
  host: string;
  port: number;
}

const arrivals = new Arrivals();
const agents: Agent[] = [];
const echoes: Array<ReturnType<typeof spawn>> = [];
let undo: (() => Promise<void>) | null = null;

async function flushConntrack(): Promise<void> {
  const jobs: string[][] = [];
  for (const opt of ['-s', '-d', '--reply-src', '--reply-dst']) {
    jobs.push(['-D', '-f', 'ipv4', opt, '10.79.0.0/16']);
    jobs.push(['-D', '-f', 'ipv6', opt, 'fd79::/16']);
  }
  for (const f of ['ipv4', 'ipv6']) for (const proto of ['tcp', 'udp']) for (const port of [PUB, NATPUB]) jobs.push(['-D', '-f', f, '-p', proto, '--orig-port-dst', String(port)]);
  await Promise.all(jobs.map((j) => run('conntrack', j, { timeoutMs: 10000 }).catch(() => undefined)));
}

async function cleanup(): Promise<void> {
  for (const a of agents) a.stop();
  for (const e of echoes) if (e.exitCode === null) e.kill('SIGKILL');
  if (undo) await undo().catch((e: Error) => console.error(e.message));
  undo = null;
  await standalone.down(cfg, { pinRoot }).catch(() => undefined);
  try {
    Dataplane.reset(pinRoot);
  } catch {
    /* nothing pinned */
  }
  await topology.down(cfg).catch(() => undefined);
  removeNetns(Object.values(N));
  for (const l of [IF.side, IF.brR, IF.brN, IF.up, ...cfg.containers.map((c) => hostVethName(c.name))]) sh('ip', ['link', 'del', l]);
  await flushConntrack();
}

const ip = (...args: string[]): Promise<unknown> => run('ip', args);
const forwarding = (i: string): void => {
  fs.writeFileSync(`/proc/sys/net/ipv4/conf/${i}/forwarding`, '1');
  fs.writeFileSync(`/proc/sys/net/ipv6/conf/${i}/force_forwarding`, '1');
};

async function startEcho(ns: string): Promise<void> {
  const p = spawn('ip', ['netns', 'exec', ns, 'python3', '-u', ECHO, 'serve', String(OUT.udp)], { stdio: ['ignore', 'pipe', 'pipe'] });
  echoes.push(p);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`udp echo in ${ns} not ready in 10 s`)), 10000);
    p.stdout!.once('data', () => {
      clearTimeout(timer);
      resolve();
    });
    p.once('exit', (code) => reject(new Error(`udp echo in ${ns} exited ${code}`)));
  });
}

let icmpIdent = (pid * 137) % 60000;
async function probe(agents: Map<string, Agent>, c: Cell, phase: string, i: number): Promise<string> {
  const agent = agents.get(c.source)!;
  if (c.proto === 'tcp') return agent.command('tcp', c.host, c.port, WAIT_S);
  if (c.proto === 'icmp') return agent.command('icmp', c.host, 1 + (icmpIdent++ % 65000), WAIT_S);
  if (c.proto === 'udp-echo') {
    const { stdout } = await run('ip', ['netns', 'exec', agent.ns!, 'python3', ECHO, 'ask', c.host, String(c.port), `${phase}${i}e${pid}`, String(WAIT_S)], { timeoutMs: 20000 });
    return stdout.trim();
  }
  const token = `${phase}${i}g${pid}`;
  const sent = await agent.command('udp', c.host, c.port, token);
  if (sent !== 'sent') return sent;
  const where = await arrivals.wait(token, WAIT_S * 1000);
  return where ? `arrived ${where}` : 'never arrived';
}

const keyOf = (c: Cell): string => `${c.source} -> ${c.target} ${c.proto}`;

/**
 * Before a phase: wait (bounded) until web6 answers a ping from the uplink. In CI the first
 * probes of phase A once raced the start of the v6 path on a loaded machine (uplink -> web6
 * cells timed out or arrived late, all other cells right); both rule sets pass this ping,
 * so the cells then judge the rules, not the start.
 */
async function pathReady(sources: Map<string, Agent>): Promise<boolean> {
  const up = sources.get('uplink')!;
  for (const until = Date.now() + 30000; Date.now() < until; ) {
    if ((await up.command('icmp', web6, 1 + (icmpIdent++ % 65000), WAIT_S)) === 'echo reply') return true;
  }
  return false;
}

async function dropRows(dp: Dataplane): Promise<Map<string, bigint>> {
  const m = new Map<string, bigint>();
  for (const row of await readCounters(dp))
    for (const [r, pb] of Object.entries(row.drop)) if (pb.packets > 0n) m.set(`${r}@${row.container || row.interface}`, (m.get(`${r}@${row.container || row.interface}`) ?? 0n) + pb.packets);
  return m;
}

const web6 = `${SUB6.R}:10`;
const web4 = `${SUB.R}.10`;
const nat16 = `${SUB6.N}:10`;

function cells(): Cell[] {
  const out: Cell[] = [];
  for (const [source, host4, host6] of [['uplink', `${SUB.UP}.1`, `${SUB6.UP}:1`], ['side NIC', `${SUB.SIDE}.1`, `${SUB6.SIDE}:1`]] as const) {
    const add = (target: string, proto: Proto, host: string, port: number): void => void out.push({ source, target, proto, host, port });
    add('web6, published port', 'tcp', web6, WEB.tcp);
    add('web6, published port', 'udp', web6, WEB.udp);
    add('web6, unpublished port', 'tcp', web6, WEB.tcpUnpub);
    add('web6, unpublished port', 'udp', web6, WEB.udpUnpub);
    add('web6, the host port on its address', 'tcp', web6, PUB);
    add('web6', 'icmp', web6, 0);
    add('web\'s host port on the host\'s v6 address', 'tcp', host6, PUB);
    add('web\'s host port on the host\'s v6 address', 'udp', host6, PUB);
    add('web\'s host port on the host\'s v4 address (nat)', 'tcp', host4, PUB);
    add('web\'s host port on the host\'s v4 address (nat)', 'udp', host4, PUB);
    add('web4, its published container port (nat)', 'tcp', web4, WEB.tcp);
    add('web4, its published container port (nat)', 'udp', web4, WEB.udp);
    add('web4', 'icmp', web4, 0);
    add('nat1 v6 host port', 'tcp', host6, NATPUB);
    add('nat1 v6 host port', 'udp', host6, NATPUB);
    add('nat16, its published container port', 'tcp', nat16, WEB.tcp);
    add('nat16, its published container port', 'udp', nat16, WEB.udp);
    add('nat16', 'icmp', nat16, 0);
  }
  for (const [target, host4, host6] of [['uplink host', `${SUB.UP}.2`, `${SUB6.UP}:2`], ['side host', `${SUB.SIDE}.2`, `${SUB6.SIDE}:2`]] as const) {
    out.push({ source: 'web', target: `${target} v6`, proto: 'tcp', host: host6, port: OUT.tcp });
    out.push({ source: 'web', target: `${target} v6`, proto: 'udp-echo', host: host6, port: OUT.udp });
    out.push({ source: 'web', target: `${target} v6`, proto: 'icmp', host: host6, port: 0 });
    // IPv4 masquerades out of an uplink only (berth: no_uplink elsewhere, its documented rule)
    if (target === 'uplink host') out.push({ source: 'web', target: `${target} v4`, proto: 'tcp', host: host4, port: OUT.tcp });
  }
  out.push({ source: 'host', target: 'web6, unpublished port', proto: 'tcp', host: web6, port: WEB.tcpUnpub });
  return out;
}

async function runPhase(phase: string, sources: Map<string, Agent>, cs: readonly Cell[], dp?: Dataplane): Promise<{ out: Map<string, string>; drops: Map<string, Map<string, bigint>> }> {
  const out = new Map<string, string>();
  const drops = new Map<string, Map<string, bigint>>();
  for (const s of sources.keys()) {
    const mine = cs.map((c, i) => ({ c, i })).filter(({ c }) => c.source === s);
    if (!mine.length) continue;
    const before = dp ? await dropRows(dp) : undefined;
    const got = await pool(32, mine.map(({ c, i }) => () => probe(sources, c, phase, i)));
    mine.forEach(({ c }, k) => out.set(keyOf(c), got[k]!));
    if (dp && before) {
      const after = await dropRows(dp);
      drops.set(s, new Map([...after].filter(([k, v]) => v > (before.get(k) ?? 0n)).map(([k, v]) => [k, v - (before.get(k) ?? 0n)])));
    }
  }
  cs.forEach((c, i) => {
    const late = arrivals.get(`${phase}${i}g${pid}`);
    if (c.proto === 'udp' && late && out.get(keyOf(c)) === 'never arrived') out.set(keyOf(c), `arrived late ${late}`);
  });
  return { out, drops };
}

t.teardown(async () => {
  await cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
});

t.test('routed IPv6 on a nat-v4 network: berth lets in exactly what Docker 29\'s rules let in, each family its own mode', async (t) => {
  await cleanup();
  fs.writeFileSync(AGENT, AGENT_PY);
  fs.writeFileSync(ECHO, ECHO_PY);

  // ---- the topology, once
  await topology.up(cfg, { startCommands: false });
  await ip('netns', 'add', N.side);
  await ip('link', 'add', IF.side, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', N.side);
  fs.writeFileSync(`/proc/sys/net/ipv6/conf/${IF.side}/disable_ipv6`, '0');
  await ip('addr', 'add', `${SUB.SIDE}.1/24`, 'dev', IF.side);
  await ip('-6', 'addr', 'add', `${SUB6.SIDE}:1/64`, 'dev', IF.side, 'nodad');
  await ip('link', 'set', IF.side, 'up');
  await run('ip', ['netns', 'exec', N.side, 'sh', '-c', 'for c in all default eth0; do echo 0 > /proc/sys/net/ipv6/conf/$c/disable_ipv6; done']);
  await ip('-n', N.side, 'addr', 'add', `${SUB.SIDE}.2/24`, 'dev', 'eth0');
  await ip('-n', N.side, '-6', 'addr', 'add', `${SUB6.SIDE}:2/64`, 'dev', 'eth0', 'nodad');
  await ip('-n', N.side, 'link', 'set', 'eth0', 'up');
  await ip('-n', N.side, 'link', 'set', 'lo', 'up');
  await ip('-n', N.side, 'route', 'add', 'default', 'via', `${SUB.SIDE}.1`);
  await ip('-n', N.side, '-6', 'route', 'add', 'default', 'via', `${SUB6.SIDE}:1`, 'dev', 'eth0');
  for (const i of [IF.side, IF.brR, IF.brN, IF.up]) forwarding(i);

  const mk = (name: string, ns: string | null, ports = { tcp: [] as number[], udp: [] as number[] }): Agent => {
    const a = new Agent(name, ns, AGENT, ports, arrivals, true);
    agents.push(a);
    return a;
  };
  const web = mk('web', N.web, { tcp: [WEB.tcp, WEB.tcpUnpub, PUB], udp: [WEB.udp, WEB.udpUnpub] });
  const nat1 = mk('nat1', N.nat1, { tcp: [WEB.tcp], udp: [WEB.udp] });
  const sources = new Map<string, Agent>([
    ['uplink', mk('up', N.up, { tcp: [OUT.tcp], udp: [] })],
    ['side NIC', mk('side', N.side, { tcp: [OUT.tcp], udp: [] })],
    ['web', web],
    ['host', mk('host', null)],
  ]);
  await Promise.all(agents.map((a) => a.start()));
  await Promise.all([startEcho(N.up), startEcho(N.side)]);
  for (const [a, port] of [[web, WEB.tcp], [web, WEB.tcpUnpub], [nat1, WEB.tcp]] as const)
    t.match(await a.command('tcp', '::1', port, 5), /^connected: /, `${a.name} serves ${port} on [::1] (from inside)`);
  const cs = cells();
  t.same(cs.map(keyOf).filter((k, i, a) => a.indexOf(k) !== i), [], 'cell names are unique');

  // ---- phase A: Docker 29's rules (both families), berth absent
  t.notOk(Dataplane.isPinned(pinRoot), 'phase A: berth not loaded');
  undo = await applyReference(cfg, { uplinks: [IF.up], chainSuffix: sfx, hostInterfaces: [{ ifname: IF.side, addr: `${SUB.SIDE}.1`, addr6: `${SUB6.SIDE}:1` }] });
  const rules6 = (await run('ip6tables-save', [])).stdout;
  t.match(rules6, new RegExp(`-o ${IF.brR} -p ipv6-icmp -j ACCEPT`), 'phase A: the reference accepts ICMPv6 into the routed-v6 bridge');
  t.notMatch(rules6, new RegExp(`-d ${web6}/128 ! -i ${IF.brR} -j DROP`), 'phase A: no direct-access drop for the routed-v6 container');
  t.notMatch(rules6, new RegExp(`-s ${SUB6.R}:/64 ! -o ${IF.brR} -j MASQUERADE`), 'phase A: no NAT66 for the routed-v6 network');
  t.ok(await pathReady(sources), 'phase A: web6 answers a ping from the uplink');
  const ref = (await runPhase('a', sources, cs)).out;
  const u = undo;
  undo = null;
  await u();
  await flushConntrack();

  // ---- phase B: berth (pinned programs and maps, no daemon), no iptables rule of ours; XDP on the served interfaces too
  await standalone.up(cfg, { pinRoot, startCommands: false, xdp: true });
  const dp = Dataplane.openPinned(pinRoot);
  t.teardown(() => dp.close());
  const flags = (await dp.maps.epByIp6.dump()).map(([, v]) => endpointCodec.decode(v)).map((e) => [e.addr6, e.flags & (EndpointFlags.ROUTED | EndpointFlags.ROUTED6 | EndpointFlags.MASQUERADE)]);
  t.same(
    flags.sort(),
    [[web6, EndpointFlags.ROUTED6 | EndpointFlags.MASQUERADE], [nat16, EndpointFlags.MASQUERADE]].sort(),
    'endpoint flags per family: web ROUTED6 and MASQUERADE (its IPv4 is nat), nat1 MASQUERADE only',
  );
  t.ok(await pathReady(sources), 'phase B: web6 answers a ping from the uplink');
  const phaseB = await runPhase('b', sources, cs, dp);
  const out = phaseB.out;

  // ---- compare, cell for cell
  for (const c of cs) t.equal(out.get(keyOf(c)), ref.get(keyOf(c)), `${keyOf(c)}: berth ${out.get(keyOf(c))}, Docker ${ref.get(keyOf(c))}`);

  // what the cells say, independently of the comparison: Docker 29's routed IPv6 next to nat IPv4
  const o = (source: string, target: string, proto: Proto): string => out.get(`${source} -> ${target} ${proto}`) ?? 'missing';
  const esc = (s: string): string => s.replace(/[.:]/g, (m) => `\\${m}`);
  for (const s of ['uplink', 'side NIC']) {
    const client6 = s === 'uplink' ? `${SUB6.UP}:2` : `${SUB6.SIDE}:2`;
    const client4 = s === 'uplink' ? `${SUB.UP}.2` : `${SUB.SIDE}.2`;
    t.match(o(s, 'web6, published port', 'tcp'), new RegExp(`^connected: web:${WEB.tcp} sees ${esc(client6)}$`), `${s}: the published container port on web's own v6 address, the client's address kept`);
    t.match(o(s, 'web6, published port', 'udp'), new RegExp(`^arrived at web:${WEB.udp} from ${esc(client6)}$`), `${s}: the UDP datagram arrives, source kept`);
    t.equal(o(s, 'web6, unpublished port', 'tcp'), 'timeout', `${s}: an unpublished v6 port: dropped`);
    t.equal(o(s, 'web6, unpublished port', 'udp'), 'never arrived', `${s}: a datagram to an unpublished v6 port never arrives`);
    t.equal(o(s, 'web6, the host port on its address', 'tcp'), 'timeout', `${s}: the host port means nothing on web's v6 address`);
    t.equal(o(s, 'web6', 'icmp'), 'echo reply', `${s}: ICMPv6 echo is accepted`);
    t.equal(o(s, 'web\'s host port on the host\'s v6 address', 'tcp'), 'refused', `${s}: the routed-v6 publish takes no v6 host port`);
    t.equal(o(s, 'web\'s host port on the host\'s v6 address', 'udp'), 'never arrived', `${s}: nor for UDP`);
    t.match(o(s, 'web\'s host port on the host\'s v4 address (nat)', 'tcp'), new RegExp(`^connected: web:${WEB.tcp} sees ${esc(client4)}$`), `${s}: IPv4 is nat: the host port DNATs to web, source kept`);
    t.match(o(s, 'web\'s host port on the host\'s v4 address (nat)', 'udp'), /^arrived at web:/, `${s}: for UDP too`);
    t.equal(o(s, 'web4, its published container port (nat)', 'tcp'), 'timeout', `${s}: IPv4 is nat: web's v4 address is not reachable directly`);
    t.equal(o(s, 'web4, its published container port (nat)', 'udp'), 'never arrived', `${s}: not by UDP either`);
    t.equal(o(s, 'web4', 'icmp'), 'no reply', `${s}: nor by ICMP`);
    t.match(o(s, 'nat1 v6 host port', 'tcp'), /^connected: nat1:/, `${s}: the nat network's v6 published port works as before`);
    t.match(o(s, 'nat1 v6 host port', 'udp'), /^arrived at nat1:/, `${s}: for UDP too`);
    t.equal(o(s, 'nat16, its published container port', 'tcp'), 'timeout', `${s}: the nat container's v6 address is not reachable directly`);
    t.equal(o(s, 'nat16, its published container port', 'udp'), 'never arrived', `${s}: not by UDP either`);
    t.equal(o(s, 'nat16', 'icmp'), 'no reply', `${s}: nor by ICMPv6`);
  }
  for (const [target, host4, host6] of [['uplink host', `${SUB.UP}.1`, `${SUB6.UP}:2`], ['side host', `${SUB.SIDE}.1`, `${SUB6.SIDE}:2`]] as const) {
    t.match(o('web', `${target} v6`, 'tcp'), new RegExp(`sees ${esc(web6)}$`), `web's v6 connection to the ${target} gets its answer, untranslated (no NAT66)`);
    t.equal(o('web', `${target} v6`, 'udp-echo'), `reply from ${host6}`, `its v6 UDP exchange with the ${target} gets the reply`);
    t.equal(o('web', `${target} v6`, 'icmp'), 'echo reply', `its ICMPv6 echo to the ${target} gets the reply`);
    if (target === 'uplink host') t.match(o('web', `${target} v4`, 'tcp'), new RegExp(`sees ${esc(host4)}$`), `its v4 connection to the ${target} is masqueraded (IPv4 is nat)`);
  }
  t.match(o('host', 'web6, unpublished port', 'tcp'), /^connected: /, 'the host itself reaches any port of web6 (Docker leaves the host\'s own traffic alone)');

  // ---- berth's counters explain its drops: not_published on the routed bridge (v6) and at the served interface (direct access)
  for (const s of ['uplink', 'side NIC']) {
    const grew = phaseB.drops.get(s) ?? new Map<string, bigint>();
    const np = grew.get(`not_published@${IF.brR}`) ?? 0n;
    // at least: TCP unpublished + TCP host port on web6 + UDP unpublished
    t.ok(np >= 3n, `${s}: not_published on the routed-v6 bridge grew by ${np} (>= 3)`);
    const served = s === 'uplink' ? IF.up : IF.side;
    // web4 TCP, UDP, ICMP and nat16 TCP, UDP, ICMPv6 at least
    t.ok((grew.get(`not_published@${served}`) ?? 0n) >= 6n, `${s}: web's v4 address and nat1's v6 address refused at the served interface`);
    t.same([...grew.keys()].filter((k) => !k.startsWith('not_published@')), [], `${s}: no other drop reason (${[...grew].map(([k, v]) => `${k}+${v}`).join(', ')})`);
  }
  t.same([...(phaseB.drops.get('web') ?? new Map()).keys()], [], 'web\'s own flows: nothing dropped');

  const { readStatus } = await import('../../src/observe/status');
  t.same(
    (await readStatus(pinRoot)).networks.map((n) => `${n.name} v4 ${n.routed ? 'routed' : 'nat'}, v6 ${n.routed6 ? 'routed' : 'nat'}`).sort(),
    [`${tag}n v4 nat, v6 nat`, `${tag}r v4 nat, v6 routed`],
    'berth status: each family\'s gateway mode, read back from the maps',
  );

  // ---- web's v6 flows are berth's routed flows: tracked, identity rewrite; its v4 flows masqueraded
  const flows = (await dp.maps.ct.dump()).map(([k, v]) => ({ k: ctKeyCodec.decode(k), v: ctEntryCodec.decode(v) }));
  const routed = flows.filter(({ v }) => v.flags & CtFlags.ROUTED);
  const outTcp = routed.find(({ k }) => k.saddr === web6 && k.daddr === `${SUB6.UP}:2` && k.dport === OUT.tcp && k.proto === 6);
  t.ok(outTcp, 'the v6 TCP connection to the uplink host is a routed flow');
  t.same(outTcp && [outTcp.v.rewrite.saddr, outTcp.v.rewrite.daddr], [web6, `${SUB6.UP}:2`], 'untranslated');
  t.ok(routed.some(({ k, v }) => k.daddr === web6 && k.sport === OUT.udp && (v.flags & CtFlags.REPLY) && v.packets > 0n), 'the v6 UDP reply half saw the answer');
  t.notOk(routed.some(({ k }) => k.saddr === web6 && k.sport === WEB.tcp), 'answers from the published port are not tracked');
  t.ok(flows.some(({ k, v }) => k.saddr === web4 && (v.flags & CtFlags.MASQ) && !(v.flags & CtFlags.REPLY)), 'the v4 connection is a masqueraded flow');
  t.notOk(flows.some(({ k, v }) => k.saddr === web6 && (v.flags & CtFlags.MASQ)), 'no NAT66 flow of web');
});
