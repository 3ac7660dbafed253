// A flood of spoofed SYNs to a published port locks nobody out.
//
// Topology (standalone, the daemon in this process, its sweeper running):
// network A with "web", which publishes PUB -> 80 (answers "ok" and closes)
// and PUB+1 -> 81 (echoes, for long-lived connections); two externals behind
// their own uplinks: "atk", the attacker, and "cli", the real clients. The
// conntrack table is small and its unassured part smaller (settings below),
// so the flood overflows the unassured ring hundreds of times.
//
// The attacker sends BERTH_FLOOD_SYNS (default 30,000) SYNs from random
// spoofed sources (100.64.0.0/10, which nothing routes back) with a python
// raw socket, as fast as it can, stopping by itself after the count or
// BERTH_FLOOD_SECONDS (default 20). The container answers every SYN, so each
// one leaves a half-open (SYN_RECV) flow: before berth kept unassured flows
// apart, each took an entry as ESTABLISHED for 5 days, the table filled, and
// no real client got in. Here, real clients connect one after the other
// during the flood and right after it: every connection must succeed; three
// long-lived connections opened before the flood must keep working through
// it; and the counters must show the evictions.
import t from 'tap';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../../src/domain/config';
import { ctSummary } from '../../src/engine/conntrack';
import { Daemon, startDaemon } from '../../src/engine/daemon';
import { Dataplane } from '../../src/platform/dataplane';
import { externalVethName, hostVethName } from '../../src/domain/names';
import { readCounters } from '../../src/observe/stats';
import { forceDown } from '../lib/topo';
import { waitFor } from '../lib/dockerd';

const tag = `fl${process.pid % 100000}`;
const pinRoot = `/sys/fs/bpf/berth-test-${tag}`;
const o = 200 + (process.pid % 40);
const SUB = { A: `10.${o}.241`, ATK: `10.${o}.242`, CLI: `10.${o}.243` };
const N = { web: `${tag}-web`, atk: `${tag}-atk`, cli: `${tag}-cli` };
const BR = `${tag}ba`;
const PUB = 20000 + (process.pid % 20000);
const ECHO = PUB + 1;
const SYNS = Number(process.env.BERTH_FLOOD_SYNS ?? 30000);
const FLOOD_SECONDS = Number(process.env.BERTH_FLOOD_SECONDS ?? 20);
/** the conntrack table: 4096 entries, at most 128 flows unassured */
const CT_MAX = 4096;
const UNASSURED = 128;
/** real connections to make after the flood ended */
const AFTER = 200;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));
const SERVER = `import socket, socketserver, sys
class Once(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(5)
        self.request.recv(64)
        self.request.sendall(b'ok\\n')
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(60)
        while True:
            d = self.request.recv(64)
            if not d:
                return
            self.request.sendall(d)
class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 4096
import threading
a = Server(('0.0.0.0', 80), Once)
b = Server(('0.0.0.0', 81), Echo)
threading.Thread(target=b.serve_forever, daemon=True).start()
a.serve_forever()
`;
// one real connection after the other (at most count, 0: no limit): connect,
// ask, read "ok"; a JSON line each
const CLIENT = `import json, signal, socket, sys, time
host, port, maxsec, gap, count = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
stop = False
def term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, term)
end = time.monotonic() + maxsec
made = 0
while not stop and time.monotonic() < end and (not count or made < count):
    made += 1
    t0 = time.monotonic()
    ok, err = False, ''
    try:
        with socket.create_connection((host, port), timeout=10) as c:
            c.settimeout(10)
            c.sendall(b'hi\\n')
            d = c.recv(16)
            ok = d.startswith(b'ok')
            err = '' if ok else 'reply %r' % d
    except OSError as e:
        err = '%s: %s' % (type(e).__name__, e)
    print(json.dumps({'t': t0, 'ms': (time.monotonic() - t0) * 1000, 'ok': ok, 'err': err}), flush=True)
    time.sleep(gap)
`;
// long-lived connections: opened before the flood, a ping on each every 50 ms
const HOLDER = `import json, signal, socket, sys, time
host, port, n, maxsec = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
socks = [socket.create_connection((host, port), timeout=5) for _ in range(n)]
print(json.dumps({'open': n}), flush=True)
stop = False
def term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, term)
rounds, failures, end = 0, [], time.monotonic() + maxsec
while not stop and time.monotonic() < end:
    for i, s in enumerate(socks):
        try:
            s.sendall(b'ping %d\\n' % rounds)
            if not s.recv(64).startswith(b'ping'):
                failures.append('round %d conn %d: bad echo' % (rounds, i))
        except OSError as e:
            failures.append('round %d conn %d: %s' % (rounds, i, e))
    rounds += 1
    time.sleep(0.05)
print(json.dumps({'rounds': rounds, 'failures': failures}), flush=True)
`;
// SYNs with random spoofed sources, TCP checksum computed, IP's by the kernel
const FLOOD = `import json, random, socket, struct, sys, time
dst, dport, count, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
d = socket.inet_aton(dst)
dsum = (d[0] << 8 | d[1]) + (d[2] << 8 | d[3]) + 6 + 20
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
rnd = random.Random(20240601)
t0 = time.monotonic()
sent = 0
while sent < count:
    if sent % 256 == 0 and time.monotonic() - t0 > limit:
        break
    src = 0x64400000 | rnd.getrandbits(22)
    sport = 1024 + rnd.getrandbits(15)
    seq = rnd.getrandbits(32)
    c = (src >> 16) + (src & 0xffff) + dsum + sport + dport + (seq >> 16) + (seq & 0xffff) + 0x5002 + 64240
    c = (c & 0xffff) + (c >> 16)
    c = (c & 0xffff) + (c >> 16)
    tcp = struct.pack('!HHIIBBHHH', sport, dport, seq, 0, 0x50, 0x02, 64240, ~c & 0xffff, 0)
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 40, sent & 0xffff, 0x4000, 64, 6, 0, struct.pack('!I', src), d)
    s.sendto(ip + tcp, (dst, 0))
    sent += 1
print(json.dumps({'start': t0, 'end': time.monotonic(), 'sent': sent}), flush=True)
`;
for (const [f, body] of Object.entries({ 'server.py': SERVER, 'client.py': CLIENT, 'holder.py': HOLDER, 'flood.py': FLOOD })) fs.writeFileSync(path.join(dir, f), body);

const text = `
networks:
  - name: ${tag}-a
    subnet: ${SUB.A}.0/24
    bridge: ${BR}
containers:
  - name: ${N.web}
    network: ${tag}-a
    ip: ${SUB.A}.10
    run: [python3, -u, ${dir}/server.py]
    publish: ["${PUB}:80", "${ECHO}:81"]
externals:
  - name: ${N.atk}
    address: ${SUB.ATK}.2/24
  - name: ${N.cli}
    address: ${SUB.CLI}.2/24
uplinks: [${externalVethName(N.atk)}, ${externalVethName(N.cli)}]
# served: the two uplinks alone (never the machine's own interfaces)
interfaces: []
settings:
  conntrack:
    max: ${CT_MAX}
    unassuredMax: ${UNASSURED}
`;
const cfgPath = path.join(dir, 'topology.yaml');
fs.writeFileSync(cfgPath, text);
const cfg = parseConfig(text, cfgPath);
const procs: ChildProcess[] = [];
let daemon: Daemon | undefined;

t.teardown(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  try {
    await daemon?.stop();
  } catch {
    /* forced cleanup below */
  }
  await forceDown(cfg, pinRoot, { netns: Object.values(N), links: [BR, hostVethName(N.web), externalVethName(N.atk), externalVethName(N.cli)] });
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A python script in a namespace; its stdout lines as they come, and its exit. */
function py(ns: string, script: string, ...args: string[]) {
  const lines: string[] = [];
  let err = '';
  const p = spawn('ip', ['netns', 'exec', ns, 'python3', '-u', path.join(dir, script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(p);
  let buf = '';
  p.stdout!.on('data', (b: Buffer) => {
    buf += b.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts.filter(Boolean));
  });
  p.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
  return { p, lines, exited, stderr: () => err };
}

/** p, or 'timeout' after ms (the timer cleared either way, so it holds nothing up). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

interface Conn {
  t: number;
  ms: number;
  ok: boolean;
  err: string;
}

t.test('a SYN flood with spoofed sources locks no real client out', async (t) => {
  daemon = await startDaemon({ configPath: cfgPath, pinRoot, metrics: '127.0.0.1:0', intervalMs: 2000, sweepMs: 1000 });
  const host = `${SUB.CLI}.1`;
  const target = `${SUB.ATK}.1`;

  // the server answers through the published port
  const up = await waitFor(async () => {
    const probe = py(N.cli, 'client.py', host, String(PUB), '5', '0', '1');
    await probe.exited;
    return probe.lines.some((l) => (JSON.parse(l) as Conn).ok);
  }, 20000, 200);
  t.ok(up, 'the published port answers before the flood');

  const holder = py(N.cli, 'holder.py', host, String(ECHO), '3', '120');
  t.ok(await waitFor(() => holder.lines.some((l) => l.includes('"open"')), 10000, 50), 'three long-lived connections open');
  const dp0 = Dataplane.openPinned(pinRoot);
  const before = ctSummary(dp0.maps, dp0.cpus);
  dp0.close();

  const clients = py(N.cli, 'client.py', host, String(PUB), '120', '0.002', '0');
  t.ok(await waitFor(() => clients.lines.length >= 20, 20000, 50), 'real clients connecting');

  const flood = py(N.atk, 'flood.py', target, String(PUB), String(SYNS), String(FLOOD_SECONDS));
  const code = await within(flood.exited, (FLOOD_SECONDS + 30) * 1000);
  t.equal(code, 0, `the flood ran and stopped by itself ${flood.stderr()}`);
  const f = JSON.parse(flood.lines[flood.lines.length - 1]) as { start: number; end: number; sent: number };

  // right after it: the next AFTER connections
  const after = () => clients.lines.map((l) => JSON.parse(l) as Conn).filter((c) => c.t > f.end);
  t.ok(await waitFor(() => after().length >= AFTER, 60000, 100), `${AFTER} connections after the flood`);
  clients.p.kill('SIGTERM');
  holder.p.kill('SIGTERM');
  t.not(await within(Promise.all([clients.exited, holder.exited]), 15000), 'timeout', 'clients and holder stopped');

  const conns = clients.lines.map((l) => JSON.parse(l) as Conn);
  const during = conns.filter((c) => c.t >= f.start && c.t <= f.end);
  const afterFlood = conns.filter((c) => c.t > f.end);
  const failed = conns.filter((c) => !c.ok);
  const slow = conns.filter((c) => c.ms > 1000);
  const maxMs = Math.max(...conns.map((c) => c.ms));
  const dp = Dataplane.openPinned(pinRoot);
  t.teardown(() => dp.close());
  const s = ctSummary(dp.maps, dp.cpus);
  const drops = (await readCounters(dp)).filter((r) => r.interface === externalVethName(N.atk) || r.interface === externalVethName(N.cli));
  const refused = drops.reduce((n, r) => n + (r.drop.ct_full?.packets ?? 0n), 0n);
  const metrics = await (await fetch(daemon.metricsUrl)).text();
  const metric = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1]);
  const held = JSON.parse(holder.lines[holder.lines.length - 1]) as { rounds: number; failures: string[] };

  t.comment(
    `flood: ${f.sent} spoofed SYNs in ${(f.end - f.start).toFixed(2)} s (${Math.round(f.sent / (f.end - f.start))}/s); ` +
      `real connections: ${during.length} during (${during.filter((c) => c.ok).length} ok), ${afterFlood.length} right after (${afterFlood.filter((c) => c.ok).length} ok), ` +
      `${conns.length} in all, ${failed.length} failed, ${slow.length} over 1 s, slowest ${maxMs.toFixed(1)} ms; ` +
      `long-lived: ${held.rounds} rounds on 3 connections, ${held.failures.length} failures; ` +
      `conntrack since the flood began: ${s.created - before.created} created, ${s.evicted - before.evicted} evicted, ${s.assured - before.assured} assured, ${s.refused - before.refused} refused; ` +
      `metrics: berth_conntrack_evicted_total ${metric('berth_conntrack_evicted_total')}, berth_conntrack_assured_total ${metric('berth_conntrack_assured_total')}`,
  );

  t.ok(f.sent >= Math.min(SYNS, 10000), `the attacker sent ${f.sent} SYNs`);
  t.ok(during.length > 0, `real clients connected during the flood (${during.length})`);
  t.equal(failed.length, 0, `every real connection succeeded${failed.length ? `: ${failed.slice(0, 5).map((c) => c.err).join('; ')}` : ''}`);
  t.ok(afterFlood.length >= AFTER, 'and right after it');
  t.same(held.failures, [], 'the long-lived connections kept working through the flood');
  t.ok(held.rounds > 10, `... for ${held.rounds} rounds`);
  t.ok(s.evicted - before.evicted >= f.sent - UNASSURED - 10 - f.sent / 100, `nearly every flood flow was evicted (${s.evicted - before.evicted} of ${f.sent})`);
  t.equal(s.refused, before.refused, 'no flow refused');
  t.equal(refused, 0n, 'no CT_FULL drop on the uplinks');
  t.ok(metric('berth_conntrack_evicted_total') >= s.evicted - before.evicted, 'the evictions are in /metrics');
  t.equal(metric('berth_conntrack_unassured_capacity_flows'), UNASSURED);
});
