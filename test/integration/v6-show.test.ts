// Everything that shows state shows IPv6 (issue 12 item 6), over a
// dual-stack standalone topology run by the daemon, with real IPv6 datagrams:
// `berth trace` of IPv6 packets (from a container, from outside, TCP, UDP,
// ICMPv6) through the entry programs' IPv6 paths; `berth ct` after a real
// published IPv6 flow ([addr]:port, --addr in any spelling, --family);
// `berth stats` counters moving with IPv6 traffic; `berth monitor` showing an
// IPv6 drop's addresses; the Prometheus labels intact; the dashboard's
// snapshot and page showing IPv6 addresses and ports. Needs root, iproute2,
// python3 (the datagram senders and listeners), chromium for the page.
//
// Topology: v6s-a (10.80.0.0/24, fd80:a::/64, bridge bv6s0): v6s-a1
// (fd80:a::10, publishes [::]:PUB -> 80/udp), v6s-a2 (fd80:a::20); v6s-b
// (10.80.1.0/24, fd80:b::/64, bridge bv6s1): v6s-b1 (fd80:b::10); the
// external v6s-x (fd80:ff::2, host side fd80:ff::1: an uplink).
import t from 'tap';
import { ChildProcess, execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../../src/domain/config';
import { startDaemon, Daemon } from '../../src/engine/daemon';
import { Dataplane } from '../../src/platform/dataplane';
import { setQuiet } from '../../src/platform/log';
import { hostVethName } from '../../src/domain/names';
import { readCounters } from '../../src/observe/stats';
import { formatTrace, runTrace } from '../../src/observe/trace';
import { waitFor } from '../lib/dockerd';
import { forceDown } from '../lib/topo';

const pinRoot = '/sys/fs/bpf/berth-v6show';
const CLI = path.resolve(__dirname, '..', '..', 'src', 'cli', 'main.js');
const PUB = 32000 + (process.pid % 400);
const A1 = 'v6s-a1';
const A2 = 'v6s-a2';
const B1 = 'v6s-b1';
const X = 'v6s-x';
const V6 = { a1: 'fd80:a::10', a2: 'fd80:a::20', b1: 'fd80:b::10', x: 'fd80:ff::2', host: 'fd80:ff::1' };
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-v6s-'));
const cfgPath = path.join(dir, 'topology.yaml');
const text = `
networks:
  - name: v6s-a
    subnet: 10.80.0.0/24
    subnet6: fd80:a::/64
    bridge: bv6s0
  - name: v6s-b
    subnet: 10.80.1.0/24
    subnet6: fd80:b::/64
    bridge: bv6s1
containers:
  - name: ${A1}
    network: v6s-a
    ip6: ${V6.a1}
    publish: ["[::]:${PUB}:80/udp"]
  - name: ${A2}
    network: v6s-a
    ip6: ${V6.a2}
  - name: ${B1}
    network: v6s-b
    ip6: ${V6.b1}
externals:
  - name: ${X}
    address: 10.80.255.2/24
    address6: ${V6.x}/64
uplinks: []
interfaces: []
`;
fs.writeFileSync(cfgPath, text);
const cfg = parseConfig(text, cfgPath);
const XHOST = cfg.externals[0]!.hostIfname;
const LINKS = ['bv6s0', 'bv6s1', ...[A1, A2, B1].map(hostVethName), XHOST];

// prints "ready", then "<data> from <address>" per datagram
const LISTEN = `import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(('::', int(sys.argv[1])))
print('ready', flush=True)
while True:
    d, a = s.recvfrom(2048)
    print(d.decode() + ' from ' + a[0], flush=True)
`;
const SEND = `import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))
`;
fs.writeFileSync(path.join(dir, 'listen.py'), LISTEN);
fs.writeFileSync(path.join(dir, 'send.py'), SEND);

class Listener {
  lines: string[] = [];
  private proc: ChildProcess;
  constructor(ns: string, port: number) {
    this.proc = spawn('ip', ['netns', 'exec', ns, 'python3', '-u', path.join(dir, 'listen.py'), String(port)], { stdio: ['ignore', 'pipe', 'ignore'] });
    let buf = '';
    this.proc.stdout!.on('data', (d) => {
      buf += d;
      const parts = buf.split('\n');
      buf = parts.pop()!;
      this.lines.push(...parts);
    });
  }
  ready(): Promise<boolean> {
    return waitFor(() => this.lines.includes('ready'), 10000);
  }
  got(msg: string): boolean {
    return this.lines.some((l) => l.startsWith(`${msg} from `));
  }
  stop(): void {
    if (this.proc.exitCode === null) this.proc.kill('SIGTERM');
  }
}

function send(ns: string, dst: string, port: number, msg: string): Promise<void> {
  return new Promise((resolve) => execFile('ip', ['netns', 'exec', ns, 'python3', path.join(dir, 'send.py'), dst, String(port), msg], { timeout: 10000 }, () => resolve()));
}

/** Send until the listener has it (neighbour discovery and DAD may lose the first), at most 25 tries in 10 s. */
async function deliver(l: Listener, ns: string, dst: string, port: number, msg: string): Promise<boolean> {
  const deadline = Date.now() + 10000;
  for (let i = 0; i < 25 && Date.now() < deadline; i++) {
    await send(ns, dst, port, msg);
    if (await waitFor(() => l.got(msg), 400, 50)) return true;
  }
  return l.got(msg);
}

/** The CLI against our pin root: exit code, stdout, stderr. */
function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [CLI, '--bpffs', pinRoot, ...args], { timeout: 30000 }, (e, out, err) => resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, out: String(out), err: String(err) })),
  );
}

const cleanup = () => forceDown(cfg, pinRoot, { netns: [A1, A2, B1, X], links: LINKS });
const listeners: Listener[] = [];
let daemon: Daemon | undefined;

t.before(cleanup);
t.teardown(async () => {
  for (const l of listeners) l.stop();
  await daemon?.stop();
  await cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
});

t.test('the dual-stack world is up', async (t) => {
  setQuiet(true);
  daemon = await startDaemon({ configPath: cfgPath, pinRoot, metrics: '127.0.0.1:0', startCommands: false, intervalMs: 60000, sweepMs: 600000 });
  t.ok(Dataplane.isPinned(pinRoot));
});

const ctCount = (): number => {
  const dp = Dataplane.openPinned(pinRoot);
  try {
    return dp.maps.ct.keys().length;
  } finally {
    dp.close();
  }
};

t.test('trace: IPv6 from a container to a peer of its network: redirected', async (t) => {
  const r = await runTrace({ pinRoot, from: A1, to: `[${V6.a2}]:80`, proto: 'tcp' });
  t.equal(r.family, 6);
  t.equal(r.program, 'berth_veth_ingress');
  t.same([r.input.src, r.input.dst, r.input.proto], [V6.a1, V6.a2, 'tcp'], "the container's own IPv6 address as the source");
  t.match(r.verdict, /^redirect/);
  t.ok(r.lookups.some((l) => /IPv6 \(berth_net\): subnet fd80:a::\/64, gateway fd80:a::1$/.test(l)), "the network's subnet6 and gateway6");
  t.ok(r.lookups.some((l) => l.includes(`destination ${V6.a2} (berth_ep_by_ip6): endpoint on ifindex`) && !l.includes('another network')), 'berth_ep_by_ip6 finds the peer');
  t.ok(r.output && r.output.dst === V6.a2 && r.output.src === V6.a1, 'output: an IPv6 header, addresses untouched');
  t.ok(r.counters.some((c) => c.container === A1 && c.direction === 'from_container' && c.what === 'redirect' && c.packets === 1), 'counted as redirected from a1');
  const s = formatTrace(r);
  t.match(s, /its IPv6 path/);
  t.match(s, new RegExp(`tcp \\[${V6.a1}\\]:\\d+ -> \\[${V6.a2}\\]:80`), 'the tuple printed as [addr]:port');
});

t.test('status and ports show the IPv6 side', async (t) => {
  const st = await cli(['status']);
  t.equal(st.code, 0, st.err);
  t.match(st.out, new RegExp(`${A1}\\s.*10\\.80\\.0\\.2\\s+${V6.a1}\\s`), "a1's row holds its IPv6 address");
  t.match(st.out, /fd80:a::\/64/, "v6s-a's subnet6");
  const p = await cli(['ports']);
  t.equal(p.code, 0, p.err);
  t.match(p.out, new RegExp(`\\[::\\]:${PUB}\\s+udp\\s+${A1}\\s+v6s-a\\s+\\[${V6.a1}\\]:80`), 'the [::] publish as [::]:PORT -> [addr]:80');
});

t.test('trace: IPv6 to another network: dropped isolation; RFC 5952 text of what was given', async (t) => {
  const r = await runTrace({ pinRoot, from: A1, to: '[FD80:B:0:0:0:0:0:10]:53', proto: 'udp' });
  t.equal(r.input.dst, V6.b1, 'written as fd80:b::10');
  t.match(r.verdict, /^drop/);
  t.equal(r.output, null);
  t.ok(r.lookups.some((l) => l.includes('(berth_ep_by_ip6)') && l.includes('another network')));
  t.ok(r.counters.some((c) => c.container === A1 && c.what === 'drop: isolation' && c.packets === 1), 'isolation drop counted');
});

t.test('trace: an IPv6 published port from outside: DNAT to the container, ct entries shown and deleted', async (t) => {
  const before = ctCount();
  const r = await runTrace({ pinRoot, fromOutside: XHOST, src: V6.x, to: `[${V6.host}]:${PUB}`, proto: 'udp', sport: 40123 });
  t.comment(formatTrace(r));
  t.equal(r.program, 'berth_up_in');
  t.ok(r.lookups.some((l) => l.includes(`destination ${V6.host} (berth_host_addr6): host address`)), 'berth_host_addr6 knows the host address');
  t.ok(r.lookups.some((l) => l.includes(`published port (berth_publish [::]:${PUB}/udp, IPv6): -> [${V6.a1}]:80`)), 'the [::] publish found');
  t.match(r.verdict, /^redirect/);
  t.same(r.output && [r.output.src, r.output.sport, r.output.dst, r.output.dport], [V6.x, 40123, V6.a1, 80], "DNAT to the container, the client's source kept");
  t.ok(r.changed.includes(`dst ${V6.host} -> ${V6.a1}`));
  t.equal(r.conntrack.length, 2, 'both halves');
  t.equal(r.conntrack[0]!.key, `udp [${V6.x}]:40123 -> [${V6.host}]:${PUB}`);
  t.equal(r.conntrack[0]!.rewrite, `udp [${V6.x}]:40123 -> [${V6.a1}]:80`);
  t.ok(r.conntrack[0]!.flags.includes('published'));
  t.equal(r.conntrackDeleted, 2);
  t.equal(ctCount(), before, 'live table as before');
});

t.test('trace: IPv6 direct access to a container from outside: dropped not_published', async (t) => {
  const r = await runTrace({ pinRoot, fromOutside: XHOST, src: V6.x, to: `[${V6.a1}]:80`, proto: 'tcp' });
  t.match(r.verdict, /^drop/);
  t.ok(r.lookups.some((l) => l.includes('(berth_ep_by_ip6): a container address')));
  t.ok(r.counters.some((c) => c.interface === XHOST && c.what === 'drop: not_published' && c.packets === 1));
});

t.test('trace: ICMPv6 echo from a container out of the uplink: NAT66, tracked by identifier', async (t) => {
  const before = ctCount();
  const r = await runTrace({ pinRoot, from: A1, to: V6.x, proto: 'icmp', sport: 777 });
  t.comment(formatTrace(r));
  t.equal(r.input.proto, 'icmpv6', 'icmp to an IPv6 address is ICMPv6');
  t.ok(r.output, 'not dropped');
  t.equal(r.output!.proto, 'icmpv6');
  t.equal(r.output!.src, V6.host, "masqueraded to the uplink's IPv6 address");
  t.equal(r.conntrack[0]?.key, `icmpv6 [${V6.a1}]:777 -> [${V6.x}]:777`, 'tracked by its identifier');
  t.equal(ctCount(), before, 'and deleted');
});

t.test('trace: bad IPv6 input is a clear error, nothing traced', async (t) => {
  await t.rejects(runTrace({ pinRoot, from: A1, to: '[fd80::zz]:80' }), /--to \[fd80::zz\]:80: fd80::zz is not an IPv6 address/);
  await t.rejects(runTrace({ pinRoot, from: A1, to: `${V6.a2}`, proto: 'tcp' }), /a port in 1\.\.65535 is needed for tcp \(IPv6: \[ADDR\]:PORT\)/);
  await t.rejects(runTrace({ pinRoot, fromOutside: XHOST, src: '10.80.255.2', to: `[${V6.host}]:${PUB}`, proto: 'udp' }), /one family for both/);
  await t.rejects(runTrace({ pinRoot, from: A1, to: '10.80.0.3', proto: 'icmpv6' }), /ICMPv6 needs an IPv6 --to/);
  const r = await cli(['trace', '--from', A1, '--to', `[${V6.a2}]:80`, '--json']);
  t.equal(r.code, 0, r.err);
  t.equal(JSON.parse(r.out).input.dst, V6.a2, 'the CLI takes [addr]:port');
});

t.test('real IPv6 traffic: a published flow in berth ct, stats move', async (t) => {
  const web = new Listener(A1, 80);
  listeners.push(web);
  t.ok(await web.ready(), 'listener up in a1');
  const counters = async () => {
    const dp = Dataplane.openPinned(pinRoot);
    try {
      const rows = await readCounters(dp);
      const to = rows.find((r) => r.container === A1 && r.direction === 'to_container');
      const from = rows.find((r) => r.container === A2 && r.direction === 'from_container');
      return { toA1: Number((to?.redirect.packets ?? 0n) + (to?.pass.packets ?? 0n)), fromA2: Number((from?.redirect.packets ?? 0n) + (from?.pass.packets ?? 0n)) };
    } finally {
      dp.close();
    }
  };
  const c0 = await counters();
  t.ok(await deliver(web, X, V6.host, PUB, 'pub6'), 'x -> [fd80:ff::1]:PUB arrives in a1');
  t.ok(web.lines.includes(`pub6 from ${V6.x}`), "with the client's IPv6 source");
  t.ok(await deliver(web, A2, V6.a1, 80, 'peer6'), 'a2 -> a1 over IPv6 arrives');
  const c1 = await counters();
  t.ok(c1.toA1 > c0.toA1, `a1's to_container counter moves with IPv6 traffic (${c0.toA1} -> ${c1.toA1})`);
  t.ok(c1.fromA2 > c0.fromA2, `a2's from_container counter moves (${c0.fromA2} -> ${c1.fromA2})`);
  const st = await cli(['stats', '--json']);
  t.equal(st.code, 0, st.err);
  const a1to = (JSON.parse(st.out) as Array<{ container: string; direction: string; redirect: { packets: number } }>).find((r) => r.container === A1 && r.direction === 'to_container');
  t.ok(a1to && a1to.redirect.packets > 0, '`berth stats --json` shows them');

  const j = await cli(['ct', '--json', '--addr', V6.x]);
  t.equal(j.code, 0, j.err);
  const flows = JSON.parse(j.out) as Array<{ proto: string; kind: string; original: { src: string; sport: number; dst: string; dport: number }; translated: { dst: string; dport: number } }>;
  const f = flows.find((x) => x.kind === 'published' && x.original.dport === PUB);
  t.ok(f, '--addr with an IPv6 address finds the published flow');
  t.same(f && [f.proto, f.original.src, f.original.dst, f.translated.dst, f.translated.dport], ['udp', V6.x, V6.host, V6.a1, 80]);
  const txt = await cli(['ct', '--addr', 'FD80:FF:0::2']);
  t.equal(txt.code, 0, txt.err);
  t.match(txt.out, new RegExp(`\\[${V6.x}\\]:${f?.original.sport} -> \\[${V6.host}\\]:${PUB}`), 'table: [addr]:port, --addr in another spelling');
  t.match(txt.out, new RegExp(`\\[${V6.x}\\]:${f?.original.sport} -> \\[${V6.a1}\\]:80`), 'translated side likewise');
  const v6only = JSON.parse((await cli(['ct', '--json', '--family', '6'])).out) as Array<{ original: { src: string } }>;
  t.ok(v6only.length > 0 && v6only.every((x) => x.original.src.includes(':')), '--family 6: IPv6 flows only');
  const v4only = JSON.parse((await cli(['ct', '--json', '--family', '4', '--addr', V6.x])).out) as unknown[];
  t.same(v4only, [], '--family 4 leaves the IPv6 flow out');
  const bad = await cli(['ct', '--addr', 'fd80::zz']);
  t.not(bad.code, 0);
  t.match(bad.err, /--addr must be an IPv4 or IPv6 address, got 'fd80::zz'/);
  const badF = await cli(['ct', '--family', '5']);
  t.not(badF.code, 0);
  t.match(badF.err, /--family must be 4 or 6/);
});

t.test('monitor: a real IPv6 drop shows its IPv6 addresses', async (t) => {
  const b1 = new Listener(B1, 5300);
  listeners.push(b1);
  t.ok(await b1.ready(), 'listener up in b1');
  const child = spawn(process.execPath, [CLI, '--bpffs', pinRoot, 'monitor', '--json', '--count', '1', '--duration', '30'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGINT');
  });
  // until the monitor has its event: a1 -> b1 over IPv6, refused (isolation); at most 40 datagrams in 20 s
  const deadline = Date.now() + 20000;
  for (let i = 0; i < 40 && Date.now() < deadline && child.exitCode === null && !out.includes('\n'); i++) {
    await send(A1, V6.b1, 5300, `iso${i}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  t.equal(await exited, 0, 'monitor exits after its event');
  const ev = JSON.parse(out.trim().split('\n')[0]!);
  t.match(ev, { reason: 'isolation', container: A1, src: V6.a1, dst: V6.b1, proto: 'udp', dport: 5300, direction: 'from_container' });
  t.notOk(b1.lines.some((l) => l.startsWith('iso')), 'no datagram reached b1');
  const txt = await cli(['stats', '--json']);
  const a1from = (JSON.parse(txt.out) as Array<{ container: string; direction: string; drop: Record<string, { packets: number }> }>).find((r) => r.container === A1 && r.direction === 'from_container');
  t.ok((a1from?.drop.isolation?.packets ?? 0) > 0, 'and counted');
});

t.test('metrics: labels intact beside IPv6 traffic', async (t) => {
  const res = await fetch(daemon!.metricsUrl);
  t.equal(res.status, 200);
  const body = await res.text();
  const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$/;
  const bad = body.split('\n').filter((l) => l && !l.startsWith('#') && !sample.test(l));
  t.same(bad, [], 'every sample line is well formed');
  t.ok(body.split('\n').some((l) => l.startsWith('berth_veth_packets_total{') && l.includes(`container="${A1}"`)), "a1's packets labelled");
  t.ok(body.includes(`reason="isolation"`), 'the isolation drops labelled');
});

t.test('dashboard: IPv6 addresses and ports', async (t) => {
  const res = await fetch(`${daemon!.dashboardUrl}api/snapshot`);
  t.equal(res.status, 200);
  const snap = (await res.json()) as { containers: Array<{ container: string; addresses: string[] }>; ports: Array<{ hostIp: string; hostPort: number; containerIp: string }> };
  t.same(snap.containers.find((c) => c.container === A1)?.addresses, ['10.80.0.2', V6.a1], "a1's addresses, both families");
  t.ok(snap.ports.some((p) => p.hostIp === '::' && p.hostPort === PUB && p.containerIp === V6.a1), 'the [::] publish');
  const CHROMIUM = '/usr/bin/chromium';
  if (!fs.existsSync(CHROMIUM)) {
    t.comment(`${CHROMIUM} missing: the page itself is not checked`);
    return;
  }
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { chromium } = require('playwright-core') as typeof import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'], headless: true });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(daemon!.dashboardUrl);
  await page.waitForSelector(`tr[data-container="${A1}"]`, { timeout: 15000 });
  t.equal((await page.textContent(`tr[data-container="${A1}"] td.addresses`))?.trim(), `10.80.0.2 ${V6.a1}`, 'the page shows the IPv6 address');
  const ports = (await page.textContent('#ports tbody')) ?? '';
  t.ok(ports.includes(`[::]:${PUB}`), `the page shows [::]:${PUB}`);
  t.ok(ports.includes(`[${V6.a1}]:80`), 'and the IPv6 target as [addr]:port');
  t.same(errors, [], 'no page errors');
});
