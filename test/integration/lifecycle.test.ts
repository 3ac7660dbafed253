// Zero-loss lifecycle (issue 13 item 3), standalone mode, real namespaces and berth's own objects.
//
// Sustained traffic runs through berth the whole time, four loaders, each one transaction at a
// time with no retry (a transaction that gets no answer within TMO_S fails):
//   - from outside (an external namespace) to a published UDP port: request/response with sequence
//     numbers (the answer must echo the sequence number);
//   - from outside, a NEW TCP connection to a published port per transaction (connect, echo, close);
//   - masquerade out: a container's UDP echo and new TCP connections to the outside namespace.
// While it runs:
//   (a) `berth run` is killed with SIGKILL and started again;
//   (b) an "upgrade": `berth run` again with the same objects loaded with other const volatile
//       settings (settings.nat: another masquerade port range), so its programs differ; it must
//       replace the programs on the live links with bpf_link_update: every link's prog id changes,
//       no link is re-made (same link ids), and the maps are the same maps (same map ids);
//   (c) a downgrade: the pinned version is made newer than this build; `berth run` without --force
//       must refuse with a message naming both versions and change nothing (prog ids, version).
// Then: 0 failed transactions in every loader, and berth's counters saw the traffic.
//
// Names blc*, subnets 10.77.0.0/16, pin root /sys/fs/bpf/berth-lc-test-<pid>, ports 33500-33999.
import t from 'tap';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../../src/domain/config';
import { externalVethName, hostVethName } from '../../src/domain/names';
import { Dataplane } from '../../src/platform/dataplane';
import { writePinnedVersion } from '../../src/platform/lifecycle';
import { MapName } from '../../src/platform/contract';
import { native } from '../../src/platform/native';
import { readCounters } from '../../src/observe/stats';
import { forceDown } from '../lib/topo';
import { BIN, waitFor } from '../lib/dockerd';
import { TxLoad } from '../lib/txload';

const pid = process.pid;
const id = pid % 1000;
const tag = `blc${id}`;
const pinRoot = `/sys/fs/bpf/berth-lc-test${id}`;
const k = (pid % 120) * 2;
const NET = `10.77.${k}`;
const EXT = `10.77.${k + 1}`;
const PORT = 33500 + (pid % 100) * 5;
const PUB_UDP = PORT;
const PUB_TCP = PORT + 1;
const OUT_UDP = 9000;
const OUT_TCP = 9001;
/** how long the loaders run at most (they stop early when told), and at most how many transactions each */
const DURATION_S = 300;
const MAX_TX = 20000;
const GAP_S = 0.01;
const TMO_S = 1.0;
t.setTimeout(8 * 60 * 1000);

const N = { net: `${tag}-n`, srv: `${tag}-srv`, cli: `${tag}-cli`, ext: `${tag}-ext`, br: `${tag}br` };
const dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));

function config(natPortMin: number): string {
  return [
    'networks:',
    `  - name: ${N.net}`,
    `    subnet: ${NET}.0/24`,
    `    bridge: ${N.br}`,
    'containers:',
    `  - name: ${N.srv}`,
    `    network: ${N.net}`,
    `    ip: ${NET}.10`,
    `    publish: ["${PUB_UDP}:7000/udp", "${PUB_TCP}:7001"]`,
    `  - name: ${N.cli}`,
    `    network: ${N.net}`,
    `    ip: ${NET}.11`,
    'externals:',
    `  - name: ${N.ext}`,
    `    address: ${EXT}.2/24`,
    'uplinks: []',
    'interfaces: []',
    'settings:',
    '  nat:',
    `    portMin: ${natPortMin}`,
    '    portMax: 32767',
    '',
  ].join('\n');
}
const cfgV1 = path.join(dir, 'v1.yaml');
const cfgV2 = path.join(dir, 'v2.yaml');
fs.writeFileSync(cfgV1, config(1024));
fs.writeFileSync(cfgV2, config(2048));
const cfg = parseConfig(config(1024), cfgV1);

// echo servers: UDP echoes the datagram, TCP echoes one read then closes
const SERVER_PY = `
import socket, sys, threading
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', port))
    while True:
        d, a = s.recvfrom(2048); s.sendto(d, a)
def conn(c):
    try:
        c.settimeout(5); d = c.recv(2048); c.sendall(d)
    except Exception:
        pass
    c.close()
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', port)); s.listen(256)
    while True:
        c, _ = s.accept(); threading.Thread(target=conn, args=(c,), daemon=True).start()
threading.Thread(target=udp, args=(int(sys.argv[1]),), daemon=True).start()
tcp(int(sys.argv[2]))
`;
const serverPy = path.join(dir, 'server.py');
fs.writeFileSync(serverPy, SERVER_PY);
const load = new TxLoad(dir, { durationS: DURATION_S, maxTx: MAX_TX, gapS: GAP_S, timeoutS: TMO_S });

const children: ChildProcess[] = [];
let berth: ChildProcess | undefined;

t.teardown(async () => {
  load.kill();
  berth?.kill('SIGKILL');
  for (const c of children) if (c.pid && c.exitCode === null) try { process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ }
  await forceDown(cfg, pinRoot, { netns: [N.srv, N.cli, N.ext], links: [hostVethName(N.srv), hostVethName(N.cli), externalVethName(N.ext), N.br] });
  fs.rmSync(dir, { recursive: true, force: true });
});

function run(args: string[], timeoutMs = 120000): { code: number; out: string } {
  try {
    return { code: 0, out: execFileSync(BIN, ['--bpffs', pinRoot, ...args], { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] }) };
  } catch (e) {
    const x = e as { status?: number; stdout?: string; stderr?: string };
    return { code: x.status ?? -1, out: `${x.stdout ?? ''}${x.stderr ?? ''}` };
  }
}

/** `berth run -f file` as a child; resolves when it serves /metrics (its initial reconcile is done). */
function startBerth(file: string, extra: string[] = []): Promise<ChildProcess> {
  const proc = spawn(BIN, ['--bpffs', pinRoot, 'run', '-f', file, '--metrics', '127.0.0.1:0', '--interval', '1000', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = fs.createWriteStream(path.join(dir, 'berth.log'), { flags: 'a' });
  proc.stderr!.pipe(log);
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`berth run did not start in 120 s: ${out}`)), 120000);
    proc.stdout!.on('data', (d) => {
      out += d;
      if (/metrics at http/.test(out)) {
        clearTimeout(timer);
        resolve(proc);
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`berth run exited ${code}: ${out}`));
    });
  });
}

function kill9(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null) return Promise.resolve();
  return new Promise((r) => {
    p.once('exit', () => r());
    p.kill('SIGKILL');
  });
}

function nsSpawn(ns: string, args: string[], stdout: 'ignore' | 'pipe' = 'ignore'): ChildProcess {
  const c = spawn('ip', ['netns', 'exec', ns, ...args], { stdio: ['ignore', stdout, 'pipe'], detached: true });
  children.push(c);
  return c;
}

interface Hooks {
  links: Map<string, { linkId: number; progId: number }>;
  mapIds: Map<string, number>;
}

function hooks(): Hooks {
  const links = new Map<string, { linkId: number; progId: number }>();
  const ldir = path.join(pinRoot, 'links');
  for (const f of fs.readdirSync(ldir)) {
    const l = native().openPinnedLink(path.join(ldir, f));
    const i = l.info();
    l.close();
    links.set(f, { linkId: i.id, progId: i.progId });
  }
  const mapIds = new Map<string, number>();
  for (const name of Object.values(MapName)) {
    const p = path.join(pinRoot, name);
    if (!fs.existsSync(p)) continue;
    const m = native().openPinnedMap(p);
    mapIds.set(name, m.id);
    m.close();
  }
  return { links, mapIds };
}

async function countersOf(veth: string): Promise<bigint> {
  const dp = Dataplane.openPinned(pinRoot);
  try {
    return (await readCounters(dp)).filter((r) => r.interface === veth).reduce((a, r) => a + r.pass.packets + r.redirect.packets, 0n);
  } finally {
    dp.close();
  }
}

t.test('restart, upgrade and refused downgrade under load: 0 failed transactions', async (t) => {
  try {
    Dataplane.reset(pinRoot);
  } catch {
    /* nothing pinned */
  }
  const up = run(['up', '-f', cfgV1, '--no-run']);
  t.equal(up.code, 0, `berth up: ${up.out}`);
  berth = await startBerth(cfgV1);
  nsSpawn(N.srv, ['python3', serverPy, '7000', '7001']);
  nsSpawn(N.ext, ['python3', serverPy, String(OUT_UDP), String(OUT_TCP)]);
  // the servers answer before the load starts (one probe each, retried only here)
  const ready = await waitFor(() => load.probe(N.ext, 'udp', `${EXT}.1`, PUB_UDP) && load.probe(N.ext, 'tcp', `${EXT}.1`, PUB_TCP) && load.probe(N.cli, 'udp', `${EXT}.2`, OUT_UDP) && load.probe(N.cli, 'tcp', `${EXT}.2`, OUT_TCP), 30000, 200);
  t.ok(ready, 'the published ports and the outside servers answer');
  if (!ready) return;

  const before = { srv: await countersOf(hostVethName(N.srv)), cli: await countersOf(hostVethName(N.cli)) };
  const loaders = [
    load.start('in-udp', N.ext, 'udp', `${EXT}.1`, PUB_UDP),
    load.start('in-tcp', N.ext, 'tcp', `${EXT}.1`, PUB_TCP),
    load.start('out-udp', N.cli, 'udp', `${EXT}.2`, OUT_UDP),
    load.start('out-tcp', N.cli, 'tcp', `${EXT}.2`, OUT_TCP),
  ];
  await load.more(50);

  // (a) kill -9 and restart
  await kill9(berth);
  berth = undefined;
  await load.more(50); // nobody runs berth: forwarding goes on from the pins
  const h0 = hooks();
  berth = await startBerth(cfgV1);
  await load.more(50);
  const h1 = hooks();
  t.same([...h1.links].map(([f, v]) => [f, v.progId]), [...h0.links].map(([f, v]) => [f, v.progId]), 'a restart of the same build changes no program');

  // (b) upgrade: other programs (other const volatile settings) replace the old ones on the live links
  await kill9(berth);
  berth = await startBerth(cfgV2);
  await load.more(50);
  const h2 = hooks();
  t.ok(h1.links.size >= 6, `links pinned: ${[...h1.links.keys()].join(' ')}`);
  for (const [f, v] of h1.links) {
    const now = h2.links.get(f);
    t.ok(now, `${f} still pinned`);
    t.equal(now?.linkId, v.linkId, `${f}: the same link (never detached)`);
    t.not(now?.progId, v.progId, `${f}: prog ${v.progId} -> ${now?.progId} (bpf_link_update)`);
  }
  t.same(h2.mapIds, h1.mapIds, 'every map kept (same layout: the same map objects)');
  const upgraded = Dataplane.pinnedVersion(pinRoot)!;
  t.ok(upgraded, 'a version is pinned');

  // (c) a downgrade is refused and changes nothing: the pinned version says it is newer than this build
  writePinnedVersion(pinRoot, { ...upgraded, epoch: upgraded.epoch + 1 });
  const newer = Dataplane.pinnedVersion(pinRoot)!;
  await kill9(berth);
  berth = undefined;
  const refused = run(['run', '-f', cfgV1, '--metrics', '127.0.0.1:0']);
  t.not(refused.code, 0, 'berth run refuses');
  t.match(refused.out, /refusing to downgrade/);
  t.match(refused.out, new RegExp(`contract epoch ${newer.epoch}\\b`), 'names the pinned version');
  t.match(refused.out, new RegExp(`contract epoch ${upgraded.epoch}\\b`), 'names this build');
  t.match(refused.out, /--force/);
  const h3 = hooks();
  t.same([...h3.links], [...h2.links], 'no link or program changed');
  t.same(h3.mapIds, h2.mapIds, 'no map changed');
  t.same(Dataplane.pinnedVersion(pinRoot), newer, 'the pinned version is untouched');
  await load.more(50);
  // the real berth of this build comes back; the version goes back to this build's
  writePinnedVersion(pinRoot, upgraded);
  berth = await startBerth(cfgV2);
  await load.more(50);

  const results = await load.finish();
  for (const [i, r] of results.entries()) {
    t.ok(r.ok >= 300, `${loaders[i]!.name}: ${r.ok} transactions answered`);
    t.same(r.failed, [], `${loaders[i]!.name}: 0 failed transactions`);
  }
  const summary = results.map((r, i) => `${loaders[i]!.name} ok=${r.ok} failed=${r.failed.length}`).join(', ');
  t.comment(`lifecycle: ${summary}`);
  fs.writeFileSync(path.join(os.tmpdir(), `berth-lifecycle-${pid}.txt`), summary + '\n');
  // berth's own counters saw the traffic on both containers' veths
  t.ok((await countersOf(hostVethName(N.srv))) > before.srv + 600n, 'berth counted the published traffic');
  t.ok((await countersOf(hostVethName(N.cli))) > before.cli + 600n, 'berth counted the masqueraded traffic');
  await kill9(berth);
  berth = undefined;
});
