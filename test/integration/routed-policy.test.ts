// The user policy (DOCKER-USER) on a routed network, both families,
// differential: the same cells first through Docker 29's rules with the
// user's rules in DOCKER-USER (test/lib/reference.ts and reference6.ts,
// opts.dockerUser / dockerUser6; berth absent), then through berth with the
// same rules as a berth policy (pinned programs and maps, no daemon, no
// iptables rule of ours), outcome for outcome; then berth alone: with no
// rule every cell gets through (the control), and a deny cuts an
// established TCP flow at its next packet, in each family.
//
// The topology: a network routed for IPv4 and IPv6 (gatewayMode and
// gatewayMode6: routed) with a container ("web") publishing 80/tcp, 7070/udp
// and 82/tcp (the host ports are ignored in routed mode), and two outside
// hosts, each behind its own uplink: "ok" and "no". The rules, in Docker's
// words and berth's:
//   0  -s NO4 -p udp -j DROP                      deny  source NO4, proto udp
//   1  -s NO6 -p tcp --dport 80 -j DROP (ip6)     deny  source NO6, proto tcp, port 80 (the container port)
//   2  -s OK4 -j RETURN                           allow source OK4
//   3  -s OK6 -j RETURN (ip6)                     allow source OK6
//   4  -d WEB -p tcp --dport 80 -j DROP (both)    deny  container web, proto tcp, port 80
// The cells, from each outside host in each family: TCP to web:80, a UDP
// datagram to web:7070, ICMP echo, and web's own UDP exchange with the host's
// echo server (its reply comes in from that host). Drops are asserted by
// non-arrival (a datagram that never reaches the listener, a connect that
// times out, an echo or exchange without reply, each waited for a bounded
// time, never a sleep) and, for berth, by the `policy` drop counter of the
// routed bridge and the rules' hit counters. Names: prefix bfc, subnets
// 10.72.0.0/16 and fd72::/16, pin root /sys/fs/bpf/berth-fc-test*, host ports
// 31000-31999. Needs root, iproute2, iptables and ip6tables (nf_tables),
// conntrack, python3, and Linux 6.17+ (net.ipv6.conf.IF.force_forwarding:
// this file's interfaces only).
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ChildProcess, spawn } from 'node:child_process';
import { parseConfig } from '../../src/domain/config';
import { externalVethName, hostVethName } from '../../src/domain/names';
import { parsePolicy } from '../../src/domain/policy';
import { closePolicyMaps, openPolicyMaps, policySlots, readPolicyHits, writePolicy } from '../../src/engine/policy';
import { Dataplane } from '../../src/platform/dataplane';
import { run } from '../../src/platform/exec';
import * as topology from '../../src/platform/topology';
import { readCounters } from '../../src/observe/stats';
import { standalonePolicyNames } from '../../src/sources/docker/mode';
import * as standalone from '../../src/sources/standalone';
import { applyReference } from '../lib/reference';
import { AGENT_PY, Agent, Arrivals, pool } from '../lib/matrix';
import { removeNetns, sh } from '../lib/topo';

const pid = process.pid;
const tag = `bfc${pid % 1000}`;
const pinRoot = `/sys/fs/bpf/berth-fc-test-${pid}`;
const sfx = `FC${pid % 100000}`;
// 10.72.0.0/16 and fd72::/16 belong to this file: a pid-chosen third octet / group
const T = (pid % 80) * 3;
const SUB = { R: `10.72.${T}`, OK: `10.72.${T + 1}`, NO: `10.72.${T + 2}` };
/** written so that `${SUB6.X}:N` is canonical text */
const SUB6 = { R: `fd72:${(T + 1).toString(16)}:`, OK: `fd72:${(T + 1).toString(16)}:1:`, NO: `fd72:${(T + 1).toString(16)}:2:` };
// host ports 31000..31999 belong to this file (ignored by routed mode, but the file needs them)
const PUB = 31000 + (pid % 300) * 3;
const WEB = { tcp: 80, udp: 7070, line: 82 };
const OUT = { udp: 9001 }; // the outside hosts' echo servers, for web's own flows
/** the bound on every wait: an expected drop costs this once per cell */
const WAIT_S = 1.5;

const N = { web: `${tag}-web`, ok: `${tag}-ok`, no: `${tag}-no` };
const IF = { brR: `${tag}br`, ok: externalVethName(N.ok), no: externalVethName(N.no) };
const ADDR = {
  web4: `${SUB.R}.10`,
  web6: `${SUB6.R}:10`,
  ok4: `${SUB.OK}.2`,
  ok6: `${SUB6.OK}:2`,
  no4: `${SUB.NO}.2`,
  no6: `${SUB6.NO}:2`,
};
const addrOf = (who: 'ok' | 'no', family: 4 | 6): string => ADDR[`${who}${family}` as const];
const dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));
const AGENT = path.join(dir, 'agent.py');
const ECHO = path.join(dir, 'udpecho.py');
const LINE = path.join(dir, 'line.py');
const HOLD = path.join(dir, 'hold.py');
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
/** a line server, both families: logs each line it receives (with the peer) to a file, echoes it back */
const LINE_PY = `import socket, sys, threading
log = open(sys.argv[2], 'a', buffering=1)
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(('::', int(sys.argv[1]))); s.listen(16)
print('READY', flush=True)
def serve(c, a):
    f = c.makefile('rwb', buffering=0)
    for line in f:
        log.write('%s %s\\n' % (a[0], line.decode().strip())); f.write(line)
    c.close()
while True:
    c, a = s.accept(); threading.Thread(target=serve, args=(c, a), daemon=True).start()
`;
/** one open connection; sends each stdin line, prints what comes back (or 'timeout') */
const HOLD_PY = `import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10); s.settimeout(3)
print('connected', flush=True)
f = s.makefile('rb')
for line in sys.stdin:
    s.sendall(line.encode())
    try: print('echo', f.readline().decode().strip(), flush=True)
    except socket.timeout: print('timeout', flush=True)
`;
const lineLog = path.join(dir, 'line.log');

const cfg = parseConfig(`
networks:
  - name: ${tag}r
    subnet: ${SUB.R}.0/24
    subnet6: ${SUB6.R}:/64
    bridge: ${IF.brR}
    gatewayMode: routed
    gatewayMode6: routed
containers:
  - name: ${N.web}
    network: ${tag}r
    ip: ${ADDR.web4}
    ip6: ${ADDR.web6}
    publish: ["${PUB}:${WEB.tcp}", "${PUB}:${WEB.udp}/udp", "${PUB + 1}:${WEB.line}"]
externals:
  - name: ${N.ok}
    address: ${ADDR.ok4}/24
    address6: ${ADDR.ok6}/64
  - name: ${N.no}
    address: ${ADDR.no4}/24
    address6: ${ADDR.no6}/64
uplinks: [${IF.ok}, ${IF.no}]
interfaces: []
`);

/** the same rules, berth's policy and Docker's DOCKER-USER (see the top) */
const POLICY = `
- action: deny
  source: ${ADDR.no4}
  proto: udp
- action: deny
  source: ${ADDR.no6}
  proto: tcp
  port: ${WEB.tcp}
- action: allow
  source: ${ADDR.ok4}
- action: allow
  source: ${ADDR.ok6}
- action: deny
  container: ${N.web}
  proto: tcp
  port: ${WEB.tcp}
`;
const DOCKER_USER = [`-s ${ADDR.no4}/32 -p udp -j DROP`, `-s ${ADDR.ok4}/32 -j RETURN`, `-d ${ADDR.web4}/32 -p tcp -m tcp --dport ${WEB.tcp} -j DROP`];
const DOCKER_USER6 = [`-s ${ADDR.no6}/128 -p tcp -m tcp --dport ${WEB.tcp} -j DROP`, `-s ${ADDR.ok6}/128 -j RETURN`, `-d ${ADDR.web6}/128 -p tcp -m tcp --dport ${WEB.tcp} -j DROP`];

type Proto = 'tcp' | 'udp' | 'icmp' | 'udp-echo';
interface Cell {
  source: 'ok' | 'no' | 'web';
  target: string;
  family: 4 | 6;
  proto: Proto;
  host: string;
  port: number;
}

const arrivals = new Arrivals();
const agents: Agent[] = [];
const procs: ChildProcess[] = [];
let undo: (() => Promise<void>) | null = null;

async function flushConntrack(): Promise<void> {
  const jobs: string[][] = [];
  for (const opt of ['-s', '-d', '--reply-src', '--reply-dst']) {
    jobs.push(['-D', '-f', 'ipv4', opt, `10.72.${T}.0/22`]);
    jobs.push(['-D', '-f', 'ipv6', opt, `${SUB6.R}:/48`]);
  }
  await Promise.all(jobs.map((j) => run('conntrack', j, { timeoutMs: 10000 }).catch(() => undefined)));
}

async function cleanup(): Promise<void> {
  for (const a of agents) a.stop();
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
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
  for (const l of [IF.brR, IF.ok, IF.no, ...cfg.containers.map((c) => hostVethName(c.name))]) sh('ip', ['link', 'del', l]);
  await flushConntrack();
}

const forwarding = (i: string): void => {
  fs.writeFileSync(`/proc/sys/net/ipv4/conf/${i}/forwarding`, '1');
  fs.writeFileSync(`/proc/sys/net/ipv6/conf/${i}/force_forwarding`, '1');
};

/** Starts `python3 script args` in ns; resolves once it prints READY. */
async function startPy(ns: string, script: string, args: string[]): Promise<ChildProcess> {
  const p = spawn('ip', ['netns', 'exec', ns, 'python3', '-u', script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  procs.push(p);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${path.basename(script)} in ${ns} not ready in 10 s`)), 10000);
    p.stdout!.once('data', () => {
      clearTimeout(timer);
      resolve();
    });
    p.once('exit', (code) => reject(new Error(`${path.basename(script)} in ${ns} exited ${code}`)));
  });
  return p;
}

let icmpIdent = (pid * 139) % 60000;
async function probe(sources: Map<string, Agent>, c: Cell, phase: string, i: number): Promise<string> {
  const agent = sources.get(c.source)!;
  if (c.proto === 'tcp') return agent.command('tcp', c.host, c.port, WAIT_S);
  if (c.proto === 'icmp') return agent.command('icmp', c.host, 1 + (icmpIdent++ % 65000), WAIT_S);
  if (c.proto === 'udp-echo') {
    const { stdout } = await run('ip', ['netns', 'exec', agent.ns!, 'python3', ECHO, 'ask', c.host, String(c.port), `${phase}${i}f${pid}`, String(WAIT_S)], { timeoutMs: 20000 });
    return stdout.trim();
  }
  const token = `${phase}${i}f${pid}`;
  const sent = await agent.command('udp', c.host, c.port, token);
  if (sent !== 'sent') return sent;
  const where = await arrivals.wait(token, WAIT_S * 1000);
  return where ? `arrived ${where}` : 'never arrived';
}

const keyOf = (c: Cell): string => `${c.source} -> ${c.target} v${c.family} ${c.proto}`;

function cells(): Cell[] {
  const out: Cell[] = [];
  for (const s of ['ok', 'no'] as const)
    for (const family of [4, 6] as const) {
      const web = family === 4 ? ADDR.web4 : ADDR.web6;
      out.push({ source: s, target: 'web:80', family, proto: 'tcp', host: web, port: WEB.tcp });
      out.push({ source: s, target: 'web:7070', family, proto: 'udp', host: web, port: WEB.udp });
      out.push({ source: s, target: 'web', family, proto: 'icmp', host: web, port: 0 });
      out.push({ source: 'web', target: `${s}'s echo`, family, proto: 'udp-echo', host: addrOf(s, family), port: OUT.udp });
    }
  return out;
}

async function runPhase(phase: string, sources: Map<string, Agent>, cs: readonly Cell[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const got = await pool(16, cs.map((c, i) => () => probe(sources, c, phase, i)));
  cs.forEach((c, i) => out.set(keyOf(c), got[i]!));
  cs.forEach((c, i) => {
    const late = arrivals.get(`${phase}${i}f${pid}`);
    if (c.proto === 'udp' && late && out.get(keyOf(c)) === 'never arrived') out.set(keyOf(c), `arrived late ${late}`);
  });
  return out;
}

async function bridgeDrops(dp: Dataplane): Promise<Map<string, bigint>> {
  const m = new Map<string, bigint>();
  for (const row of await readCounters(dp)) {
    if (row.interface !== IF.brR) continue;
    for (const [r, pb] of Object.entries(row.drop)) if (pb.packets > 0n) m.set(r, (m.get(r) ?? 0n) + pb.packets);
  }
  return m;
}

t.teardown(async () => {
  await cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
});

t.test('DOCKER-USER on a routed network, both families: berth drops exactly what Docker 29 drops, counted as policy', async (t) => {
  await cleanup();
  for (const [f, body] of [[AGENT, AGENT_PY], [ECHO, ECHO_PY], [LINE, LINE_PY], [HOLD, HOLD_PY]] as const) fs.writeFileSync(f, body);

  // ---- the topology, once
  await topology.up(cfg, { startCommands: false });
  for (const i of [IF.brR, IF.ok, IF.no]) forwarding(i);
  const mk = (name: string, ns: string, ports = { tcp: [] as number[], udp: [] as number[] }): Agent => {
    const a = new Agent(name, ns, AGENT, ports, arrivals, true);
    agents.push(a);
    return a;
  };
  const sources = new Map<string, Agent>([
    ['web', mk('web', N.web, { tcp: [WEB.tcp], udp: [WEB.udp] })],
    ['ok', mk('ok', N.ok)],
    ['no', mk('no', N.no)],
  ]);
  await Promise.all(agents.map((a) => a.start()));
  await Promise.all([startPy(N.ok, ECHO, ['serve', String(OUT.udp)]), startPy(N.no, ECHO, ['serve', String(OUT.udp)]), startPy(N.web, LINE, [String(WEB.line), lineLog])]);
  t.match(await sources.get('web')!.command('tcp', '::1', WEB.tcp, 5), /^connected: /, 'web serves 80 (from inside)');
  const cs = cells();
  t.same(cs.map(keyOf).filter((k, i, a) => a.indexOf(k) !== i), [], 'cell names are unique');

  // ---- phase A: Docker 29's rules with the user's DOCKER-USER rules, berth absent
  t.notOk(Dataplane.isPinned(pinRoot), 'phase A: berth not loaded');
  undo = await applyReference(cfg, { uplinks: [IF.ok, IF.no], chainSuffix: sfx, dockerUser: DOCKER_USER, dockerUser6: DOCKER_USER6 });
  const saved = `${(await run('iptables-save', ['-t', 'filter'])).stdout}${(await run('ip6tables-save', ['-t', 'filter'])).stdout}`;
  for (const r of [...DOCKER_USER, ...DOCKER_USER6]) t.ok(saved.includes(`-A DOCKER-USER-${sfx} ${r}`), `phase A: DOCKER-USER holds ${r}`);
  const ref = await runPhase('a', sources, cs);
  const u = undo;
  undo = null;
  await u();
  await flushConntrack();

  // ---- phase B: berth (pinned programs and maps, no daemon) with the same rules as its policy
  const r = await standalone.up(cfg, { pinRoot, startCommands: false });
  const dp = Dataplane.openPinned(pinRoot);
  t.teardown(() => dp.close());
  const maps = openPolicyMaps(dp);
  t.teardown(() => closePolicyMaps(maps));
  const names = standalonePolicyNames(cfg, r.endpoints);
  const program = (yaml: string): number => {
    const p = parsePolicy(yaml, 'policy.yaml');
    writePolicy(maps, policySlots(p, names));
    return p.rules.length;
  };
  const n = program(POLICY);
  const before = await bridgeDrops(dp);
  const out = await runPhase('b', sources, cs);
  const after = await bridgeDrops(dp);
  const hits = readPolicyHits(maps, n).map((h) => h.packets);

  for (const c of cs) t.equal(out.get(keyOf(c)), ref.get(keyOf(c)), `${keyOf(c)}: berth ${out.get(keyOf(c))}, Docker ${ref.get(keyOf(c))}`);

  // what the cells say, independently of the comparison
  const o = (source: string, target: string, family: 4 | 6, proto: Proto): string => out.get(`${source} -> ${target} v${family} ${proto}`) ?? 'missing';
  for (const family of [4, 6] as const) {
    const okAddr = addrOf('ok', family);
    t.match(o('ok', 'web:80', family, 'tcp'), new RegExp(`^connected: web:80 sees ${okAddr}$`), `v${family}: ok (allowed first) reaches the container port 80, its address kept`);
    t.match(o('ok', 'web:7070', family, 'udp'), /^arrived at web:7070 from /, `v${family}: ok's datagram arrives`);
    t.equal(o('ok', 'web', family, 'icmp'), 'echo reply', `v${family}: ok's echo is answered`);
    t.equal(o('web', "ok's echo", family, 'udp-echo'), `reply from ${okAddr}`, `v${family}: web's own exchange with ok gets its reply`);
    t.equal(o('no', 'web:80', family, 'tcp'), 'timeout', `v${family}: no's TCP to the container port 80 is dropped (rule ${family === 4 ? 4 : 1})`);
    t.equal(o('no', 'web', family, 'icmp'), 'echo reply', `v${family}: no's echo is answered (no rule meets ICMP)`);
  }
  t.equal(o('no', 'web:7070', 4, 'udp'), 'never arrived', "v4: no's datagram never reaches the listener (rule 0)");
  t.equal(o('web', "no's echo", 4, 'udp-echo'), 'no reply', "v4: web's own exchange with no gets no reply: the reply comes from no (rule 0)");
  t.match(o('no', 'web:7070', 6, 'udp'), /^arrived at web:7070 from /, "v6: no's datagram arrives (no v6 rule for UDP)");
  t.equal(o('web', "no's echo", 6, 'udp-echo'), `reply from ${ADDR.no6}`, "v6: web's own exchange with no gets its reply");

  // berth's counters: the bridge counted the drops as policy, the rules their hits
  const grew = new Map([...after].filter(([k, v]) => v > (before.get(k) ?? 0n)).map(([k, v]) => [k, v - (before.get(k) ?? 0n)]));
  const policyDrops = grew.get('policy') ?? 0n;
  t.ok(policyDrops >= 4n, `policy drops on the routed bridge grew by ${policyDrops} (>= 4: v4 TCP, v4 datagram, v4 reply, v6 TCP)`);
  t.same([...grew.keys()].filter((k) => k !== 'policy'), [], `no other drop reason on the bridge (${[...grew].map(([k, v]) => `${k}+${v}`).join(', ')})`);
  t.comment(`hits per rule: ${hits.join(', ')}`);
  t.ok(hits[0]! >= 2n, `rule 0 (deny no4 udp) hit by the datagram and the reply: ${hits[0]}`);
  t.ok(hits[1]! >= 1n, `rule 1 (deny no6 tcp/80) hit: ${hits[1]}`);
  t.ok(hits[2]! >= 3n, `rule 2 (allow ok4) hit by ok's TCP, datagram, echo and reply: ${hits[2]}`);
  t.ok(hits[3]! >= 3n, `rule 3 (allow ok6) hit likewise: ${hits[3]}`);
  t.ok(hits[4]! >= 1n, `rule 4 (deny container web tcp/80) hit by no's v4 TCP: ${hits[4]}`);

  // ---- phase C: berth, no rule: every cell gets through (the control)
  program('[]\n');
  const ctl = await runPhase('c', sources, cs);
  for (const c of cs) t.match(ctl.get(keyOf(c)), /^(connected: |arrived at |echo reply|reply from )/, `no rule: ${keyOf(c)} gets through (${ctl.get(keyOf(c))})`);

  // ---- phase D: a new deny cuts an established TCP flow at its next packet, each family
  const lines = (): string[] => (fs.existsSync(lineLog) ? fs.readFileSync(lineLog, 'utf8').split('\n').filter(Boolean) : []);
  const until = async <T>(f: () => T | undefined | false, ms: number): Promise<T | undefined> => {
    const end = Date.now() + ms;
    for (;;) {
      const v = f();
      if (v) return v;
      if (Date.now() > end) return undefined;
      await new Promise((res) => setTimeout(res, 25));
    }
  };
  for (const family of [4, 6] as const) {
    const web = family === 4 ? ADDR.web4 : ADDR.web6;
    const hold = spawn('ip', ['netns', 'exec', N.ok, 'python3', '-u', HOLD, web, String(WEB.line)], { stdio: ['pipe', 'pipe', 'ignore'] });
    procs.push(hold);
    const said: string[] = [];
    hold.stdout!.on('data', (b: Buffer) => said.push(...b.toString().split('\n').filter(Boolean)));
    const say = async (msg: string): Promise<string | undefined> => {
      const k = said.length;
      hold.stdin!.write(`${msg}\n`);
      return until(() => said.slice(k).find((l) => l.startsWith('echo') || l === 'timeout'), 15000);
    };
    t.ok(await until(() => said.includes('connected'), 10000), `v${family}: ok holds a TCP connection to web:${WEB.line}`);
    t.equal(await say(`before${family}`), `echo before${family}`, `v${family}: the flow carries data`);
    const deny = program(`- action: deny\n  source: ${addrOf('ok', family)}\n  proto: tcp\n  port: ${WEB.line}\n`);
    const b0 = (await bridgeDrops(dp)).get('policy') ?? 0n;
    t.equal(await say(`after${family}`), 'timeout', `v${family}: after the deny, no echo on the open connection`);
    t.notOk(await until(() => lines().some((l) => l.endsWith(` after${family}`)), WAIT_S * 1000), `v${family}: the line sent after the deny never reached the server`);
    t.ok(((await bridgeDrops(dp)).get('policy') ?? 0n) > b0, `v${family}: counted as policy on the bridge`);
    t.ok(readPolicyHits(maps, deny)[0]!.packets >= 1n, `v${family}: the deny's hit counter counted it`);
    program('[]\n');
    hold.kill('SIGKILL');
  }
  t.ok(lines().some((l) => l.endsWith(' before4')) && lines().some((l) => l.endsWith(' before6')), 'the server saw the lines sent before each deny');
});
