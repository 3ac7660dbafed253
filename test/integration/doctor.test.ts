// berth doctor on this machine, a foreign BPF program on an interface it is
// asked about, and up/run refusing to start when something vital is missing.
import t from 'tap';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { BpfLink, BpfObject, bpfObjectPath, native } from '../../src/platform/native';
import { linkExists, netnsExists, sh } from '../lib/topo';
import { Dockerd, dockerSkipReason } from '../lib/dockerd';

const pexec = promisify(execFile);
const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'berth');
const tag = `dr${process.pid % 100000}`;
const pinRoot = `/sys/fs/bpf/berth-test-${tag}`;
const work = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));

interface Row {
  check: string;
  status: 'ok' | 'warn' | 'fail';
  found: string;
  fix: string;
}

/** Runs bin/berth with node directly (so PATH can be anything); resolves with the exit code. */
function berth(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  return pexec(process.execPath, [BIN, '--bpffs', pinRoot, ...args], { timeout: 60000, env }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

const VITAL = ['kernel', 'BTF', 'tcx', 'bpffs', 'privileges', 'libbpf (native addon)', 'tool: nsenter'];

t.test('berth doctor --json on this machine: every vital row ok', async (t) => {
  const r = await berth(['doctor', '--json']);
  t.equal(r.code, 0, 'exit 0');
  const out = JSON.parse(r.stdout) as { ok: boolean; mode: string; rows: Row[] };
  t.equal(out.ok, true);
  t.equal(out.mode, 'standalone');
  for (const check of VITAL) t.equal(out.rows.find((x) => x.check === check)?.status, 'ok', check);
  t.same(out.rows.filter((x) => x.status === 'fail'), []);
  t.equal(out.rows.find((x) => x.check === 'cgroup v2')?.status, 'ok', 'this machine has a cgroup v2 mount (pure or hybrid)');
  for (const x of out.rows) t.ok(x.status === 'ok' ? x.fix === '' : x.fix.length > 0, `${x.check}: a fix exactly when not ok`);

  const text = await berth(['doctor']);
  t.match(text.stdout, /^CHECK\s+STATUS\s+FOUND\s+FIX\n/);
  t.match(text.stdout, /\nberth can work here/);

  // Docker mode adds dockerd's rows; the exit status follows the fail rows
  const d = await berth(['doctor', '--docker', '--docker-socket', path.join(work, 'no-docker.sock'), '--json']);
  const dj = JSON.parse(d.stdout) as { ok: boolean; rows: Row[] };
  t.equal(d.code, dj.ok ? 0 : 1);
  for (const check of ['docker: dockerd', 'docker: iptables', 'docker: userland-proxy', 'docker: ip6tables', 'docker: live-restore', "docker: Docker's iptables chains", 'docker: FORWARD policy'])
    t.ok(dj.rows.some((x) => x.check === check), check);
  t.match(dj.rows.find((x) => x.check === 'docker: dockerd'), { status: 'warn', found: /no socket at/ });
});

t.test('a foreign program on an interface berth would attach to is a warning', async (t) => {
  const a = `${tag}a`;
  const b = `${tag}b`;
  t.teardown(() => void sh('ip', ['link', 'del', a]));
  await pexec('ip', ['link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
  const n = native();
  // its pinned map goes under this test's own pin root, not /sys/fs/bpf itself
  fs.mkdirSync(pinRoot, { recursive: true });
  const obj: BpfObject = n.openObject(bpfObjectPath('native_fixture'), { pinRoot });
  const links: BpfLink[] = [];
  t.teardown(() => {
    for (const l of links) l.close();
    obj.close();
    fs.rmSync(pinRoot, { recursive: true, force: true });
  });
  await obj.load();
  const ifindex = Number(fs.readFileSync(`/sys/class/net/${a}/ifindex`, 'utf8'));
  links.push(n.attachTcx(obj.program('fx_tc'), ifindex, 'ingress'));
  links.push(n.attachXdp(obj.program('fx_xdp'), ifindex, 'skb'));

  const r = await berth(['doctor', '--uplinks', `${a},${tag}zz`, '--json']);
  t.equal(r.code, 0, 'warnings only');
  const rows = (JSON.parse(r.stdout) as { rows: Row[] }).rows;
  const on = rows.find((x) => x.check === `programs on ${a}`)!;
  t.match(on, { status: 'warn', found: /^foreign: .*fx_xdp \(xdp \(generic\)/, fix: /--uplinks/ });
  // tcx: on the interface row when bpftool lists tcx per interface, else on the host-wide row
  const tcxRow = rows.find((x) => x.check === 'tcx programs');
  t.ok(/fx_tc \(tcx/.test(on.found) || (tcxRow?.status === 'warn' && /fx_tc/.test(tcxRow.found)), 'the foreign tcx program is named');
  t.match(rows.find((x) => x.check === `programs on ${tag}zz`), { status: 'warn', found: /does not exist/ });
  t.equal(rows.find((x) => x.check === 'programs on lo'), undefined, 'only the interfaces asked about');
});

t.test('up and run refuse to start, before any side effect, when something vital is missing', async (t) => {
  const cfgPath = path.join(work, 'refuse.yaml');
  const ns = `${tag}-c`;
  const bridge = `b${tag}`.slice(0, 15);
  fs.writeFileSync(cfgPath, ['networks:', `  - name: ${tag}`, `    subnet: 10.239.${process.pid % 200}.0/24`, `    bridge: ${bridge}`, 'uplinks: []', 'interfaces: []', 'containers:', `  - name: ${ns}`, `    network: ${tag}`, ''].join('\n'));
  t.teardown(() => {
    sh('ip', ['netns', 'del', ns]);
    sh('ip', ['link', 'del', bridge]);
    sh(BIN, ['--bpffs', pinRoot, 'reset']);
  });
  // nsenter exists, but not on this PATH: berth could not start a run: command
  const env = { ...process.env, PATH: path.join(work, 'empty-path') };
  const up = await berth(['up', '-f', cfgPath], env);
  t.equal(up.code, 1, 'up exits 1');
  t.match(up.stderr, /^berth: cannot start: .*tool: nsenter: \/\S+\/nsenter, but not on PATH; for .* \(fix: add \/\S+ to PATH\).*; 'berth doctor' shows every check\n$/);
  t.notOk(netnsExists(ns) || linkExists(bridge) || fs.existsSync(pinRoot), 'nothing made');

  const runD = await berth(['run', '-f', cfgPath, '--metrics', '127.0.0.1:0'], env);
  t.equal(runD.code, 1, 'run exits 1');
  t.equal(runD.stderr, up.stderr, 'with the same message');
  t.notOk(netnsExists(ns) || fs.existsSync(pinRoot), 'nothing made');

  const doc = await berth(['doctor', '--json'], env);
  t.equal(doc.code, 1, 'doctor exits 1');
  t.match((JSON.parse(doc.stdout) as { rows: Row[] }).rows.find((x) => x.check === 'tool: nsenter'), { status: 'fail' });
});

t.test("doctor --docker reads a real dockerd's settings", { skip: dockerSkipReason() ?? false }, async (t) => {
  // --iptables=false: this machine's iptables stay as they are
  const d = new Dockerd({ tag: `${tag}k`, iptables: false, bridge: `${tag}d0`, bridgeCidr: `10.239.${(process.pid % 200) + 40}.1/24`, liveRestore: true });
  t.teardown(() => d.cleanup().catch(() => undefined));
  await d.start();
  const r = await berth(['doctor', '--docker', '--docker-socket', d.sock, '--uplinks', 'lo', '--json']);
  const rows = (JSON.parse(r.stdout) as { rows: Row[] }).rows;
  const get = (check: string): Row | undefined => rows.find((x) => x.check === check);
  t.match(get('docker: dockerd'), { status: 'ok', found: new RegExp(`^pid \\d+, Docker \\S+, API at ${d.sock.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) });
  t.match(get('docker: iptables'), { status: 'ok', found: /^dockerd --iptables=false \(pid \d+\)$/ }, "from the command line of the dockerd serving that socket");
  t.match(get('docker: userland-proxy'), { status: 'ok', found: /^dockerd --userland-proxy=false/ });
  t.match(get('docker: live-restore'), { status: 'ok', found: /^dockerd --live-restore=true/ });
  t.equal(r.code, 0, 'nothing fails');
});
