// Routed mode (gateway_mode_ipv4=routed), differential: the same cells first
// through Docker 29's rules (test/lib/reference.ts, berth absent), then
// through berth (no iptables rule of ours, no daemon: only the pinned
// programs and maps), outcome for outcome.
//
// The topology: a routed network with a container ("web") publishing
// 33xxx:80/tcp, 33xxx:7070/udp and 127.0.0.1:33yyy:81/tcp, a nat network
// with a container ("nat1") publishing a host port, an external namespace
// behind the listed uplink and one behind another host interface (a second
// NIC, served as auto-detection would serve it). The cells: from each outside
// host, the routed container's address on its published ports (TCP connect,
// UDP datagram arrival), on unpublished ports, ICMP echo, the host port of its
// publishes; the nat container's host port and its address; from the host,
// 127.0.0.1 on the routed publish's host port; and the routed container
// opening a TCP connection, a UDP exchange and an echo towards each outside
// host, getting the answer back. Drops are asserted by non-arrival (a
// datagram that never reaches the listener, a connect that times out, an echo
// without reply, each waited for a bounded time, never a sleep) and, for
// berth, by the drop counters. Needs root, iproute2, iptables (nf_tables),
// conntrack and python3. Traffic only between this file's namespaces and the
// host's addresses on this file's interfaces.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../../src/domain/config';
import { CtFlags, ctEntryCodec, ctKeyCodec } from '../../src/platform/contract';
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
const tag = `rt${pid % 100000}`;
const pinRoot = `/sys/fs/bpf/berth-test-rt${pid}`;
const sfx = `R${pid % 100000}`;
// 10.93.0.0/16 belongs to this file: four /24s from a pid-chosen third octet
const T = (pid % 60) * 4;
const net = (i: number): string => `10.93.${T + i}`;
const SUB = { R: net(0), N: net(1), UP: net(2), SIDE: net(3) };
// host ports 33000..33999 belong to this file
const PUB = 33000 + (pid % 300); // routed web: PUB:80/tcp, PUB:7070/udp (host port ignored by Docker)
const LOPUB = PUB + 300; // routed web: 127.0.0.1:LOPUB:81 (opens 81 to everyone in routed mode)
const NATPUB = PUB + 600; // nat1: NATPUB:80/tcp, NATPUB:7070/udp
const WEB = { tcp: 80, tcpLo: 81, udp: 7070, tcpUnpub: 8000, udpUnpub: 7071 };
const OUT = { tcp: 9000, udp: 9001 }; // served by the outside hosts, for the containers' own flows
/** the bound on every wait: an expected drop costs this once per cell */
const WAIT_S = 1.5;

const N = { web: `${tag}-web`, nat1: `${tag}-nat1`, up: `${tag}-up`, side: `${tag}-side` };
const IF = { brR: `${tag}br`, brN: `${tag}bn`, side: `${tag}s0`, up: externalVethName(N.up) };
const dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));
const AGENT = path.join(dir, 'agent.py');
const ECHO = path.join(dir, 'udpecho.py');
/** `serve PORT`: echo every datagram back; `ask HOST PORT TOKEN TIMEOUT`: one exchange, "reply from A" or "no reply" */
const ECHO_PY = `import socket, sys
if sys.argv[1] == 'serve':
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('0.0.0.0', int(sys.argv[2])))
    print('READY', flush=True)
    while True:
        d, a = s.recvfrom(2048)
        s.sendto(d, a)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
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
    bridge: ${IF.brR}
    gatewayMode: routed
  - name: ${tag}n
    subnet: ${SUB.N}.0/24
    bridge: ${IF.brN}
containers:
  - name: ${N.web}
    network: ${tag}r
    ip: ${SUB.R}.10
    publish: ["${PUB}:${WEB.tcp}", "${PUB}:${WEB.udp}/udp", "127.0.0.1:${LOPUB}:${WEB.tcpLo}"]
  - name: ${N.nat1}
    network: ${tag}n
    ip: ${SUB.N}.10
    publish: ["${NATPUB}:${WEB.tcp}", "${NATPUB}:${WEB.udp}/udp"]
externals:
  - name: ${N.up}
    address: ${SUB.UP}.2/24
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
const echoes: Array<ReturnType<typeof import('node:child_process').spawn>> = [];
let undo: (() => Promise<void>) | null = null;

async function flushConntrack(): Promise<void> {
  const jobs: string[][] = [];
  for (const opt of ['-s', '-d', '--reply-src', '--reply-dst']) jobs.push(['-D', opt, `10.93.${T}.0/22`]);
  for (const proto of ['tcp', 'udp']) for (const port of [PUB, LOPUB, NATPUB]) jobs.push(['-D', '-p', proto, '--orig-port-dst', String(port)]);
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
const forwarding = (i: string): void => fs.writeFileSync(`/proc/sys/net/ipv4/conf/${i}/forwarding`, '1');

async function startEcho(ns: string): Promise<void> {
  const { spawn } = await import('node:child_process');
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

let icmpIdent = (pid * 131) % 60000;
async function probe(agents: Map<string, Agent>, c: Cell, phase: string, i: number): Promise<string> {
  const agent = agents.get(c.source)!;
  if (c.proto === 'tcp') return agent.command('tcp', c.host, c.port, WAIT_S);
  if (c.proto === 'icmp') return agent.command('icmp', c.host, 1 + (icmpIdent++ % 65000), WAIT_S);
  if (c.proto === 'udp-echo') {
    const { stdout } = await run('ip', ['netns', 'exec', agent.ns!, 'python3', ECHO, 'ask', c.host, String(c.port), `${phase}${i}e${pid}`, String(WAIT_S)], { timeoutMs: 20000 });
    return stdout.trim();
  }
  const token = `${phase}${i}x${pid}`;
  const sent = await agent.command('udp', c.host, c.port, token);
  if (sent !== 'sent') return sent;
  const where = await arrivals.wait(token, WAIT_S * 1000);
  return where ? `arrived ${where}` : 'never arrived';
}

const keyOf = (c: Cell): string => `${c.source} -> ${c.target} ${c.proto}`;

async function dropRows(dp: Dataplane): Promise<Map<string, bigint>> {
  const m = new Map<string, bigint>();
  for (const row of await readCounters(dp))
    for (const [r, pb] of Object.entries(row.drop)) if (pb.packets > 0n) m.set(`${r}@${row.container || row.interface}`, (m.get(`${r}@${row.container || row.interface}`) ?? 0n) + pb.packets);
  return m;
}

function cells(): Cell[] {
  const out: Cell[] = [];
  const web = `${SUB.R}.10`;
  const nat1 = `${SUB.N}.10`;
  for (const [source, hostAddr] of [['uplink', `${SUB.UP}.1`], ['side NIC', `${SUB.SIDE}.1`]] as const) {
    const add = (target: string, proto: Proto, host: string, port: number): void => void out.push({ source, target, proto, host, port });
    add('routed web, published port', 'tcp', web, WEB.tcp);
    add('routed web, published port', 'udp', web, WEB.udp);
    add('routed web, port published on 127.0.0.1', 'tcp', web, WEB.tcpLo);
    add('routed web, unpublished port', 'tcp', web, WEB.tcpUnpub);
    add('routed web, unpublished port', 'udp', web, WEB.udpUnpub);
    add('routed web, the host port on its address', 'tcp', web, PUB);
    add('routed web', 'icmp', web, 0);
    add('routed publish\'s host port on the host', 'tcp', hostAddr, PUB);
    add('routed publish\'s host port on the host', 'udp', hostAddr, PUB);
    add('nat1 host port', 'tcp', hostAddr, NATPUB);
    add('nat1 host port', 'udp', hostAddr, NATPUB);
    add('nat1 address, its published container port', 'tcp', nat1, WEB.tcp);
    add('nat1 address, its published container port', 'udp', nat1, WEB.udp);
    add('nat1', 'icmp', nat1, 0);
  }
  for (const [target, host] of [['uplink host', `${SUB.UP}.2`], ['side host', `${SUB.SIDE}.2`]] as const) {
    out.push({ source: 'routed web', target, proto: 'tcp', host, port: OUT.tcp });
    out.push({ source: 'routed web', target, proto: 'udp-echo', host, port: OUT.udp });
    out.push({ source: 'routed web', target, proto: 'icmp', host, port: 0 });
  }
  out.push({ source: 'host', target: '127.0.0.1, the routed publish\'s host port', proto: 'tcp', host: '127.0.0.1', port: PUB });
  out.push({ source: 'host', target: '127.0.0.1, the routed 127.0.0.1 publish\'s host port', proto: 'tcp', host: '127.0.0.1', port: LOPUB });
  out.push({ source: 'host', target: 'routed web, unpublished port', proto: 'tcp', host: web, port: WEB.tcpUnpub });
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
    const late = arrivals.get(`${phase}${i}x${pid}`);
    if (c.proto === 'udp' && late && out.get(keyOf(c)) === 'never arrived') out.set(keyOf(c), `arrived late ${late}`);
  });
  return { out, drops };
}

t.teardown(async () => {
  await cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
});

t.test('routed mode: berth lets in exactly what Docker 29\'s rules let in, cell for cell', async (t) => {
  await cleanup();
  fs.writeFileSync(AGENT, AGENT_PY);
  fs.writeFileSync(ECHO, ECHO_PY);

  // ---- the topology, once
  await topology.up(cfg, { startCommands: false });
  await ip('netns', 'add', N.side);
  await ip('link', 'add', IF.side, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', N.side);
  await ip('addr', 'add', `${SUB.SIDE}.1/24`, 'dev', IF.side);
  await ip('link', 'set', IF.side, 'up');
  await ip('-n', N.side, 'addr', 'add', `${SUB.SIDE}.2/24`, 'dev', 'eth0');
  await ip('-n', N.side, 'link', 'set', 'eth0', 'up');
  await ip('-n', N.side, 'link', 'set', 'lo', 'up');
  await ip('-n', N.side, 'route', 'add', 'default', 'via', `${SUB.SIDE}.1`);
  for (const i of [IF.side, IF.brR, IF.brN, IF.up]) forwarding(i);

  const mk = (name: string, ns: string | null, ports = { tcp: [] as number[], udp: [] as number[] }): Agent => {
    const a = new Agent(name, ns, AGENT, ports, arrivals);
    agents.push(a);
    return a;
  };
  const web = mk('web', N.web, { tcp: [WEB.tcp, WEB.tcpLo, WEB.tcpUnpub, PUB], udp: [WEB.udp, WEB.udpUnpub] });
  const nat1 = mk('nat1', N.nat1, { tcp: [WEB.tcp], udp: [WEB.udp] });
  const sources = new Map<string, Agent>([
    ['uplink', mk('up', N.up, { tcp: [OUT.tcp], udp: [] })],
    ['side NIC', mk('side', N.side, { tcp: [OUT.tcp], udp: [] })],
    ['routed web', web],
    ['host', mk('host', null)],
  ]);
  await Promise.all(agents.map((a) => a.start()));
  await Promise.all([startEcho(N.up), startEcho(N.side)]);
  for (const [a, port] of [[web, WEB.tcp], [web, WEB.tcpUnpub], [nat1, WEB.tcp]] as const)
    t.match(await a.command('tcp', '127.0.0.1', port, 5), /^connected: /, `${a.name} serves ${port} (from inside)`);
  const cs = cells();
  t.same(cs.map(keyOf).filter((k, i, a) => a.indexOf(k) !== i), [], 'cell names are unique');

  // ---- phase A: Docker 29's rules, berth absent
  t.notOk(Dataplane.isPinned(pinRoot), 'phase A: berth not loaded');
  undo = await applyReference(cfg, { uplinks: [IF.up], chainSuffix: sfx, hostInterfaces: [{ ifname: IF.side, addr: `${SUB.SIDE}.1` }] });
  const ref = (await runPhase('a', sources, cs)).out;
  const u = undo;
  undo = null;
  await u();
  await flushConntrack();

  // ---- phase B: berth (pinned programs and maps, no daemon), no iptables rule of ours
  await standalone.up(cfg, { pinRoot, startCommands: false });
  const dp = Dataplane.openPinned(pinRoot);
  t.teardown(() => dp.close());
  const phaseB = await runPhase('b', sources, cs, dp);
  const out = phaseB.out;

  // ---- compare, cell for cell
  for (const c of cs) t.equal(out.get(keyOf(c)), ref.get(keyOf(c)), `${keyOf(c)}: berth ${out.get(keyOf(c))}, Docker ${ref.get(keyOf(c))}`);

  // what the cells say, independently of the comparison: Docker 29's routed mode
  const o = (source: string, target: string, proto: Proto): string => out.get(`${source} -> ${target} ${proto}`) ?? 'missing';
  for (const s of ['uplink', 'side NIC']) {
    const client = s === 'uplink' ? `${SUB.UP}.2` : `${SUB.SIDE}.2`;
    t.match(o(s, 'routed web, published port', 'tcp'), new RegExp(`^connected: web:${WEB.tcp} sees ${client.replace(/\./g, '\\.')}$`), `${s}: the published container port, on the container's own address, the client's address kept`);
    t.match(o(s, 'routed web, published port', 'udp'), new RegExp(`^arrived at web:${WEB.udp} from ${client.replace(/\./g, '\\.')}$`), `${s}: the UDP datagram arrives`);
    t.match(o(s, 'routed web, port published on 127.0.0.1', 'tcp'), /^connected: /, `${s}: a 127.0.0.1 publish opens its container port to everyone in routed mode`);
    t.equal(o(s, 'routed web, unpublished port', 'tcp'), 'timeout', `${s}: an unpublished port: dropped`);
    t.equal(o(s, 'routed web, unpublished port', 'udp'), 'never arrived', `${s}: a datagram to an unpublished port never arrives`);
    t.equal(o(s, 'routed web, the host port on its address', 'tcp'), 'timeout', `${s}: the host port means nothing on the container's address`);
    t.equal(o(s, 'routed web', 'icmp'), 'echo reply', `${s}: ICMP echo is accepted`);
    t.equal(o(s, 'routed publish\'s host port on the host', 'tcp'), 'refused', `${s}: the routed publish takes no host port`);
    t.equal(o(s, 'routed publish\'s host port on the host', 'udp'), 'never arrived', `${s}: nor for UDP`);
    t.match(o(s, 'nat1 host port', 'tcp'), /^connected: nat1:/, `${s}: the nat network's published port works as before`);
    t.match(o(s, 'nat1 host port', 'udp'), /^arrived at nat1:/, `${s}: for UDP too`);
    t.equal(o(s, 'nat1 address, its published container port', 'tcp'), 'timeout', `${s}: the nat container is not reachable directly`);
    t.equal(o(s, 'nat1 address, its published container port', 'udp'), 'never arrived', `${s}: not by UDP either`);
    t.equal(o(s, 'nat1', 'icmp'), 'no reply', `${s}: nor by ICMP`);
  }
  for (const [target, host] of [['uplink host', `${SUB.UP}.2`], ['side host', `${SUB.SIDE}.2`]] as const) {
    t.match(o('routed web', target, 'tcp'), new RegExp(`sees ${SUB.R.replace(/\./g, '\\.')}\\.10$`), `the container's connection to the ${target} gets its answer, untranslated`);
    t.equal(o('routed web', target, 'udp-echo'), `reply from ${host}`, `its UDP exchange with the ${target} gets the reply`);
    t.equal(o('routed web', target, 'icmp'), 'echo reply', `its echo to the ${target} gets the reply`);
  }
  t.equal(o('host', '127.0.0.1, the routed publish\'s host port', 'tcp'), 'refused', 'the host: nothing on 127.0.0.1 at the routed host port');

  // ---- berth's counters explain its drops: not_published on the routed bridge, for the outside sources
  for (const s of ['uplink', 'side NIC']) {
    const grew = phaseB.drops.get(s) ?? new Map<string, bigint>();
    const np = grew.get(`not_published@${IF.brR}`) ?? 0n;
    // at least: TCP unpublished + TCP host port on the container's address + UDP unpublished
    t.ok(np >= 3n, `${s}: not_published on the routed bridge grew by ${np} (>= 3)`);
    t.ok((grew.get(`not_published@${IF.up}`) ?? 0n) + (grew.get(`not_published@${IF.side}`) ?? 0n) > 0n, `${s}: the nat container's address refused at the served interface`);
    t.same([...grew.keys()].filter((k) => !k.startsWith('not_published@')), [], `${s}: no other drop reason (${[...grew].map(([k, v]) => `${k}+${v}`).join(', ')})`);
  }
  t.same([...(phaseB.drops.get('routed web') ?? new Map()).keys()], [], 'the routed container\'s own flows: nothing dropped');

  // ---- what berth ports shows: the routed container ports on the container's address, no host port
  const { readPorts } = await import('../../src/observe/ports');
  t.same(
    (await readPorts(dp)).filter((r) => r.container === N.web).map((r) => `${r.hostIp}:${r.hostPort}/${r.proto}${r.routed ? ' routed' : ''}`).sort(),
    [`${SUB.R}.10:${WEB.tcp}/tcp routed`, `${SUB.R}.10:${WEB.tcpLo}/tcp routed`, `${SUB.R}.10:${WEB.udp}/udp routed`].sort(),
    'berth ports: the routed publishes',
  );

  const { readStatus } = await import('../../src/observe/status');
  t.same(
    (await readStatus(pinRoot)).networks.map((n) => `${n.name} ${n.routed ? 'routed' : 'nat'}`).sort(),
    [`${tag}n nat`, `${tag}r routed`],
    'berth status: the gateway mode of each network, read back from the maps',
  );

  // ---- the container's flows are berth's routed flows: tracked, identity rewrite
  const routedFlows = (await dp.maps.ct.dump())
    .map(([k, v]) => ({ k: ctKeyCodec.decode(k), v: ctEntryCodec.decode(v) }))
    .filter(({ v }) => v.flags & CtFlags.ROUTED);
  const outTcp = routedFlows.find(({ k }) => k.saddr === `${SUB.R}.10` && k.daddr === `${SUB.UP}.2` && k.dport === OUT.tcp && k.proto === 6);
  t.ok(outTcp, 'the TCP connection to the uplink host is a routed flow');
  t.same(outTcp && [outTcp.v.rewrite.saddr, outTcp.v.rewrite.daddr], [`${SUB.R}.10`, `${SUB.UP}.2`], 'untranslated');
  t.ok(routedFlows.some(({ k, v }) => k.daddr === `${SUB.R}.10` && k.sport === OUT.udp && (v.flags & CtFlags.REPLY) && v.packets > 0n), 'the UDP reply half saw the answer');
  t.notOk(routedFlows.some(({ k }) => k.saddr === `${SUB.R}.10` && k.sport === WEB.tcp), 'answers from the published port are not tracked');
});
