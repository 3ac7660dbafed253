// No fail-open window across an upgrade, and the --force path (issue 13 lifecycle), standalone mode,
// real namespaces and berth's own objects.
//
// A policy denies one published UDP port; a prober outside sends to it all the time, a listener in
// the container counts what arrives (it must stay 0), while a second published UDP port carries
// request/response transactions (0 may fail).
//   (a) "upgrade" to a second build of the objects, made here with -DBERTH_TEST_POLICY_LAYOUT: the
//       same bytes, another BTF layout of berth_policy's value, so that map cannot be converted and
//       is reset. The takeover must keep the old programs on the links until the first reconcile has
//       written the new maps (the policy among them), then move every link (same link ids, new prog
//       ids). The new berth_policy is a new map, and its own hit counter counts the denies.
//   (b) a downgrade: the pinned version is made newer than this build; `berth run` refuses with a
//       message naming both versions, and nothing changes (links, prog ids, map ids, version);
//       `berth run --force` takes it over (the policy map is reset again: deferred again), and the
//       traffic goes on, the denied flow still denied.
//
// Names blf*, subnets 10.65.0.0/16 (10.65.250.0/24 is test/unit/notify.test.ts's), pin root
// /sys/fs/bpf/berth-lf-test<id>, ports 30500-30999.
import t from 'tap';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../../src/domain/config';
import { externalVethName, hostVethName } from '../../src/domain/names';
import { Dataplane } from '../../src/platform/dataplane';
import { PENDING_DIR, writePinnedVersion } from '../../src/platform/lifecycle';
import { MapName } from '../../src/platform/contract';
import { native } from '../../src/platform/native';
import { closePolicyMaps, openPolicyMaps, readPolicyHits } from '../../src/engine/policy';
import { forceDown } from '../lib/topo';
import { BIN, waitFor } from '../lib/dockerd';
import { TxLoad } from '../lib/txload';

const pid = process.pid;
const id = pid % 1000;
const tag = `blf${id}`;
const pinRoot = `/sys/fs/bpf/berth-lf-test${id}`;
const k = (pid % 120) * 2;
const NET = `10.65.${k}`;
const EXT = `10.65.${k + 1}`;
const PUB_OK = 30500 + (pid % 100) * 5;
const PUB_DENY = PUB_OK + 1;
t.setTimeout(12 * 60 * 1000);

const N = { net: `${tag}-n`, srv: `${tag}-srv`, ext: `${tag}-ext`, br: `${tag}br` };
const dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));
const ROOT = path.resolve(__dirname, '..', '..', '..');

const text = [
  'networks:',
  `  - name: ${N.net}`,
  `    subnet: ${NET}.0/24`,
  `    bridge: ${N.br}`,
  'containers:',
  `  - name: ${N.srv}`,
  `    network: ${N.net}`,
  `    ip: ${NET}.10`,
  `    publish: ["${PUB_OK}:7000/udp", "${PUB_DENY}:7100/udp"]`,
  'externals:',
  `  - name: ${N.ext}`,
  `    address: ${EXT}.2/24`,
  'uplinks: []',
  'interfaces: []',
  '',
].join('\n');
const cfgPath = path.join(dir, 'topo.yaml');
fs.writeFileSync(cfgPath, text);
const cfg = parseConfig(text, cfgPath);
const policyPath = path.join(dir, 'policy.yaml');
fs.writeFileSync(policyPath, `- action: deny\n  proto: udp\n  port: ${PUB_DENY}\n`);

// in the container: a UDP echo on 7000; on 7100 a listener that counts what arrives (probes and the control apart)
const SERVER_PY = `
import socket, sys, threading, os
def echo():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 7000))
    while True:
        d, a = s.recvfrom(2048); s.sendto(d, a)
threading.Thread(target=echo, daemon=True).start()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 7100))
probes = control = 0
out = sys.argv[1]
while True:
    d, a = s.recvfrom(2048)
    if d.startswith(b'probe'): probes += 1
    else: control += 1
    with open(out + '.tmp', 'w') as f: f.write('%d %d' % (probes, control))
    os.rename(out + '.tmp', out)
`;
// outside: a datagram to the denied port every 2 ms until the stop file; the count sent
const PROBER_PY = `
import socket, sys, time, os
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
host, port, out, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
n = 0
end = time.time() + 600
while not os.path.exists(stop) and time.time() < end and n < 300000:
    s.sendto(b'probe %d' % n, (host, port)); n += 1
    if n % 50 == 0:
        with open(out + '.tmp', 'w') as f: f.write(str(n))
        os.rename(out + '.tmp', out)
    time.sleep(0.002)
with open(out + '.tmp', 'w') as f: f.write(str(n))
os.rename(out + '.tmp', out)
`;
const serverPy = path.join(dir, 'server.py');
const proberPy = path.join(dir, 'prober.py');
fs.writeFileSync(serverPy, SERVER_PY);
fs.writeFileSync(proberPy, PROBER_PY);
const arrived = path.join(dir, 'arrived');
const sent = path.join(dir, 'sent');
const proberStop = path.join(dir, 'stop-prober');
const load = new TxLoad(dir, { durationS: 600, maxTx: 40000, gapS: 0.01, timeoutS: 1.0 });

const children: ChildProcess[] = [];
let berth: ChildProcess | undefined;

t.teardown(async () => {
  load.kill();
  fs.writeFileSync(proberStop, '');
  berth?.kill('SIGKILL');
  for (const c of children) if (c.pid && c.exitCode === null) try { process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ }
  await forceDown(cfg, pinRoot, { netns: [N.srv, N.ext], links: [hostVethName(N.srv), externalVethName(N.ext), N.br] });
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The second build: every object again, with -DBERTH_TEST_POLICY_LAYOUT (berth_policy's value: another layout, the same bytes). */
async function buildTestObjects(out: string): Promise<void> {
  fs.mkdirSync(out, { recursive: true });
  const clang = /^CLANG_BPF:FILEPATH=(.*)$/m.exec(fs.readFileSync(path.join(ROOT, 'build', 'CMakeCache.txt'), 'utf8'))?.[1] ?? 'clang';
  const arch = os.arch() === 'x64' ? 'x86' : os.arch() === 'arm64' ? 'arm64' : os.arch();
  const stems = ['tc_veth', 'tc_uplink', 'xdp_uplink', 'tc_bridge', 'cgroup_sock'];
  await Promise.all(
    stems.map(
      (s) =>
        new Promise<void>((resolve, reject) => {
          const args = ['-target', 'bpf', '-O2', '-g', '-Wall', '-Werror', `-D__TARGET_ARCH_${arch}`, '-DBERTH_TEST_POLICY_LAYOUT',
            `-I${ROOT}/bpf`, `-I${ROOT}/bpf/include`, '-c', `${ROOT}/bpf/${s}.bpf.c`, '-o', path.join(out, `${s}.bpf.o`)];
          const c = spawn(clang, args, { stdio: ['ignore', 'ignore', 'pipe'] });
          let err = '';
          c.stderr!.on('data', (d) => (err += d));
          c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${clang} ${s}: exit ${code}: ${err}`))));
        }),
    ),
  );
}

function run(args: string[], env: NodeJS.ProcessEnv = process.env): { code: number; out: string } {
  try {
    return { code: 0, out: execFileSync(BIN, ['--bpffs', pinRoot, ...args], { encoding: 'utf8', timeout: 300000, stdio: ['ignore', 'pipe', 'pipe'], env }) };
  } catch (e) {
    const x = e as { status?: number; stdout?: string; stderr?: string };
    return { code: x.status ?? -1, out: `${x.stdout ?? ''}${x.stderr ?? ''}` };
  }
}

const berthLog = path.join(dir, 'berth.log');

/** `berth run` as a child; resolves when it serves /metrics (its initial reconcile is done). */
function startBerth(extra: string[] = [], env: NodeJS.ProcessEnv = process.env): Promise<ChildProcess> {
  const proc = spawn(BIN, ['--bpffs', pinRoot, 'run', '-f', cfgPath, '--policy', policyPath, '--metrics', '127.0.0.1:0', '--interval', '1000', ...extra], { stdio: ['ignore', 'pipe', 'pipe'], env });
  proc.stderr!.pipe(fs.createWriteStream(berthLog, { flags: 'a' }));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`berth run did not start in 300 s: ${out}`)), 300000);
    proc.stdout!.on('data', (d) => {
      out += d;
      if (/metrics at http/.test(out)) {
        clearTimeout(timer);
        resolve(proc);
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      setTimeout(() => reject(new Error(`berth run exited ${code}: ${out}; its log: ${fs.readFileSync(berthLog, 'utf8').slice(-2000)}`)), 200);
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

function nsSpawn(ns: string, args: string[]): ChildProcess {
  const c = spawn('ip', ['netns', 'exec', ns, ...args], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
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

/** The deny rule's hits (slot 0 of the bank in force, in the map pinned now). */
function denyHits(): bigint {
  const m = openPolicyMaps({ pinRoot });
  try {
    return readPolicyHits(m, 1)[0]!.packets;
  } finally {
    closePolicyMaps(m);
  }
}

const readNum = (f: string): number[] => {
  try {
    return fs.readFileSync(f, 'utf8').split(' ').map(Number);
  } catch {
    return [0, 0];
  }
};

/** Wait until the prober has sent `n` more datagrams. */
async function probesMore(n: number): Promise<void> {
  const from = readNum(sent)[0]!;
  t.ok(await waitFor(() => readNum(sent)[0]! >= from + n, 180000, 20), `the prober sent ${n} more (from ${from})`);
}

t.test('an upgrade that resets the policy map, then a refused and a forced downgrade: the denied flow never arrives', async (t) => {
  try {
    Dataplane.reset(pinRoot);
  } catch {
    /* nothing pinned */
  }
  const testObjects = path.join(dir, 'objects');
  const building = buildTestObjects(testObjects);
  const up = run(['up', '-f', cfgPath, '--no-run']);
  t.equal(up.code, 0, `berth up: ${up.out}`);
  berth = await startBerth();
  nsSpawn(N.srv, ['python3', serverPy, arrived]);
  const ready = await waitFor(() => load.probe(N.ext, 'udp', `${EXT}.1`, PUB_OK), 120000, 200);
  t.ok(ready, 'the allowed published port answers');
  // the listener counts: a control datagram from inside the container arrives
  execFileSync('ip', ['netns', 'exec', N.srv, 'python3', '-c', "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'control', ('127.0.0.1', 7100))"]);
  t.ok(await waitFor(() => readNum(arrived)[1] === 1, 10000, 20), 'the listener on the denied port counts what arrives');
  if (!ready) return;
  const loader = load.start('allowed-udp', N.ext, 'udp', `${EXT}.1`, PUB_OK);
  nsSpawn(N.ext, ['python3', proberPy, `${EXT}.1`, String(PUB_DENY), sent, proberStop]);
  await load.more(30, 180000);
  await probesMore(200);
  const hits0 = denyHits();
  t.ok(hits0 >= 200n, `the policy denies the probes (${hits0} hits)`);
  t.equal(readNum(arrived)[0], 0, 'no probe arrived before the upgrade');

  // (a) the upgrade to the second build: berth_policy is reset, the takeover deferred
  await building;
  const h1 = hooks();
  await kill9(berth);
  berth = undefined;
  await probesMore(100); // nobody runs berth: the pinned programs deny
  fs.writeFileSync(berthLog, '');
  const testEnv = { ...process.env, BERTH_BPF_OBJECT_DIR: testObjects };
  berth = await startBerth([], testEnv);
  await load.more(30, 180000);
  await probesMore(200);
  const h2 = hooks();
  const log2 = fs.readFileSync(berthLog, 'utf8');
  t.match(log2, /"map":"berth_policy"/, 'berth_policy was reset (no conversion)');
  t.match(log2, /takeover deferred/, 'the takeover was deferred');
  t.match(log2, /takeover finished/, 'and finished after the first reconcile');
  t.notOk(fs.existsSync(path.join(pinRoot, PENDING_DIR)), 'nothing is left pending');
  t.not(h2.mapIds.get(MapName.POLICY), h1.mapIds.get(MapName.POLICY), 'berth_policy is a new map');
  t.not(h2.mapIds.get(MapName.POLICY_ACTIVE), h1.mapIds.get(MapName.POLICY_ACTIVE), 'berth_policy_active too (the bank index goes with its banks)');
  t.equal(h2.mapIds.get(MapName.EP_BY_IFINDEX), h1.mapIds.get(MapName.EP_BY_IFINDEX), 'a map whose layout is the same is kept');
  t.ok(h1.links.size >= 4, `links pinned: ${[...h1.links.keys()].join(' ')}`);
  for (const [f, v] of h1.links) {
    const now = h2.links.get(f);
    t.equal(now?.linkId, v.linkId, `${f}: the same link (never detached)`);
    t.not(now?.progId, v.progId, `${f}: prog ${v.progId} -> ${now?.progId}`);
  }
  const hits1 = denyHits();
  t.ok(hits1 >= 200n, `the new programs deny through the new berth_policy (${hits1} hits there)`);
  t.equal(readNum(arrived)[0], 0, 'no probe arrived across the upgrade');

  // (b) a downgrade is refused and changes nothing
  const upgraded = Dataplane.pinnedVersion(pinRoot)!;
  writePinnedVersion(pinRoot, { ...upgraded, epoch: upgraded.epoch + 1 });
  const newer = Dataplane.pinnedVersion(pinRoot)!;
  await kill9(berth);
  berth = undefined;
  const refused = run(['run', '-f', cfgPath, '--policy', policyPath, '--metrics', '127.0.0.1:0']);
  t.not(refused.code, 0, 'berth run refuses');
  t.match(refused.out, /refusing to downgrade/);
  t.match(refused.out, new RegExp(`written by berth \\S+ \\(contract epoch ${newer.epoch}\\b`), 'names the pinned version');
  t.match(refused.out, new RegExp(`newer than this berth \\S+ \\(contract epoch ${upgraded.epoch}\\b`), 'names this build');
  t.match(refused.out, /--force/);
  const h3 = hooks();
  t.same([...h3.links], [...h2.links], 'no link or program changed');
  t.same(h3.mapIds, h2.mapIds, 'no map changed');
  t.same(Dataplane.pinnedVersion(pinRoot), newer, 'the pinned version is untouched');
  t.notOk(fs.existsSync(path.join(pinRoot, PENDING_DIR)), 'nothing pending');
  await load.more(30, 180000);

  // --force: this build takes it over (berth_policy's layout differs again: reset, deferred, finished)
  fs.writeFileSync(berthLog, '');
  berth = await startBerth(['--force']);
  await load.more(30, 180000);
  await probesMore(200);
  const h4 = hooks();
  const log4 = fs.readFileSync(berthLog, 'utf8');
  t.match(log4, /"forced":true/, 'the takeover says it was forced');
  t.match(log4, /takeover finished/);
  for (const [f, v] of h3.links) {
    const now = h4.links.get(f);
    t.equal(now?.linkId, v.linkId, `${f}: the same link`);
    t.not(now?.progId, v.progId, `${f}: prog ${v.progId} -> ${now?.progId}`);
  }
  const forced = Dataplane.pinnedVersion(pinRoot)!;
  t.equal(forced.epoch, upgraded.epoch, "the version is this build's again");
  t.not(forced.programs, upgraded.programs, "this build's programs, not the second build's");
  t.ok(denyHits() >= 200n, 'the forced build denies the probes');

  fs.writeFileSync(proberStop, '');
  const [res] = await load.finish();
  t.ok(res!.ok >= 100, `allowed flow: ${res!.ok} transactions answered`);
  t.same(res!.failed, [], 'allowed flow: 0 failed');
  const [probes] = readNum(arrived);
  const total = readNum(sent)[0]!;
  t.ok(total >= 800, `${total} probes sent to the denied port`);
  t.equal(probes, 0, `none of the ${total} probes arrived`);
  t.comment(`upgrade-window: allowed ok=${res!.ok} failed=${res!.failed.length}; denied sent=${total} arrived=${probes}`);
  t.equal(loader.name, 'allowed-udp');
  await kill9(berth);
  berth = undefined;
});
