// berth install-service as a user runs it, into a temporary unit directory
// (this machine may not run systemd): the unit written, systemd-analyze's
// verdict on it, and the refusals (a differing unit, a bad policy file).
import t from 'tap';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

const pexec = promisify(execFile);
const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'berth');
const tag = `sv${process.pid % 100000}`;
const work = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));

const systemdRuns = fs.existsSync('/run/systemd/system');
const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => fs.existsSync(p));

function berth(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return pexec(BIN, args, { timeout: 60000 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

/** `systemd-analyze verify` on a unit: exit code and output (undefined: not installed). */
async function verify(unit: string): Promise<{ code: number; out: string } | undefined> {
  if (!analyze) return undefined;
  return pexec(analyze, ['verify', unit]).then(
    (x) => ({ code: 0, out: x.stdout + x.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
  );
}

t.test('Docker mode: the unit, verified; rerun, refusal, --force', async (t) => {
  const dir = path.join(work, 'units');
  const policy = path.join(work, 'my policy%.yaml'); // a space and a specifier character
  fs.writeFileSync(policy, '- action: deny\n  port: 8080\n');
  const real = fs.realpathSync(BIN);
  const args = ['install-service', '--docker', '--uplinks', 'eth0,eth1', '--policy', policy, '--unit-dir', dir];
  const r = await berth(args);
  t.equal(r.code, 0, r.stderr);
  const unitPath = path.join(dir, 'berth.service');
  t.match(r.stdout, `berth install-service: wrote ${unitPath}\n`);
  if (systemdRuns) t.match(r.stdout, /ran systemctl daemon-reload/);
  else t.match(r.stdout, 'skipped systemctl daemon-reload: systemd is not running here (no /run/systemd/system)');
  const unit = fs.readFileSync(unitPath, 'utf8');
  const exec = unit.split('\n').find((l) => l.startsWith('ExecStart='));
  t.equal(exec, `ExecStart=${process.execPath} ${real} run --docker --uplinks eth0,eth1 --policy "${policy.replace('%', '%%')}"`, 'ExecStart: this node, this berth, absolute paths, quoted');
  t.match(unit, /^SyslogIdentifier=berth$/m);
  t.match(unit, /^Wants=network-online\.target docker\.service$/m);
  t.match(unit, /^Before=docker\.service$/m);
  t.equal((fs.statSync(unitPath).mode & 0o777).toString(8), '644');
  const v = await verify(unitPath);
  if (!v) t.comment('systemd-analyze not installed: unit not verified');
  else {
    t.equal(v.code, 0, `systemd-analyze verify: ${v.out.trim() || 'clean'}`);
    t.notMatch(v.out, /berth\.service/, 'nothing to say about berth.service');
  }

  const again = await berth(args);
  t.equal(again.code, 0);
  t.match(again.stdout, 'is already this unit: left as it is');

  const other = await berth(['install-service', '--docker', '--uplinks', 'eth2', '--unit-dir', dir]);
  t.equal(other.code, 1, 'a differing unit is refused');
  t.match(other.stderr, `berth: refusing to overwrite ${unitPath}: it differs from the unit berth would write (line `);
  t.match(other.stderr, /pass --force to replace it/);
  t.equal(fs.readFileSync(unitPath, 'utf8'), unit, 'left as it was');

  const forced = await berth(['install-service', '--docker', '--uplinks', 'eth2', '--unit-dir', dir, '--force']);
  t.equal(forced.code, 0);
  t.match(forced.stdout, `replaced ${unitPath}`);
  t.match(fs.readFileSync(unitPath, 'utf8'), / run --docker --uplinks eth2\n/);
  t.same(fs.readdirSync(dir), ['berth.service'], 'no temporary file left');
});

t.test('standalone, global options carried, --enable without systemd', { skip: systemdRuns && 'systemd runs here: --enable would start a real service' }, async (t) => {
  const dir = path.join(work, 'units-standalone');
  const topo = path.join(work, 'topology.yaml');
  fs.writeFileSync(topo, 'networks:\n  - name: n\n    subnet: 10.239.250.0/24\ncontainers: []\n');
  const r = await berth(['--bpffs', `/sys/fs/bpf/berth-test-${tag}`, '--cgroup', '/sys/fs/cgroup', 'install-service', '-f', topo, '--unit-dir', dir, '--enable']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, 'skipped systemctl daemon-reload and systemctl enable --now berth: systemd is not running here');
  const unit = fs.readFileSync(path.join(dir, 'berth.service'), 'utf8');
  t.match(unit, `ExecStart=${process.execPath} ${fs.realpathSync(BIN)} --bpffs /sys/fs/bpf/berth-test-${tag} --cgroup /sys/fs/cgroup run -f ${topo}\n`);
  t.match(unit, /^KillMode=process$/m);
  t.match(unit, /^After=network-online\.target$/m);
  const v = await verify(path.join(dir, 'berth.service'));
  if (v) t.equal(v.code, 0, `systemd-analyze verify: ${v.out.trim() || 'clean'}`);
});

t.test('nothing is written for a service that could not start', async (t) => {
  const dir = path.join(work, 'units-bad');
  const bad = path.join(work, 'bad-policy.yaml');
  fs.writeFileSync(bad, '- action: allow\n  source: 10.0.0.1/8\n');
  const r = await berth(['install-service', '--docker', '--policy', bad, '--unit-dir', dir]);
  t.equal(r.code, 1);
  t.match(r.stderr, /\[0\]\.source: host bits set in 10\.0\.0\.1\/8/, 'the policy error names the field');
  const none = await berth(['install-service', '--unit-dir', dir]);
  t.equal(none.code, 1);
  t.match(none.stderr, 'install-service needs --docker (follow dockerd) or -f FILE');
  t.notOk(fs.existsSync(dir), 'no unit directory, no unit');
});
