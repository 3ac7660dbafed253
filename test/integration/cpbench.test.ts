// The control-plane bench (`--suite controlplane`) in a reduced form, so that
// it keeps working: sizes 0 and 2, two rounds, short windows, both modes.
// Asserts the output's shape and that the figures were taken (answers seen
// through berth and through Docker's rules, spawns counted, the event loop
// read), never timings; and that nothing is left behind (namespaces, links,
// pins, dockerd folders, processes of the suite's tag).
import t from 'tap';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { dockerSkipReason } from '../lib/dockerd';

const pexec = promisify(execFile);
const RUN = path.resolve(__dirname, '..', '..', 'bench', 'run.js');

const lines = async (cmd: string, args: string[]): Promise<string[]> => (await pexec(cmd, args)).stdout.split('\n').filter(Boolean);

t.test('bench --suite controlplane, reduced: figures, shape and clean-up', { skip: dockerSkipReason() ?? false, timeout: 900000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cpbench-test-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const json = path.join(dir, 'cp.json');
  const child = await pexec(process.execPath, [RUN, '--suite', 'controlplane', '--sizes', '0,2', '--runs', '2', '--rest-seconds', '6', '--churn', '2', '--spawn-containers', '1', '--json', json], { timeout: 880000, maxBuffer: 16 << 20 });
  t.match(child.stdout, /MODE\s+PATH\s+OTHERS\s+MEDIAN\s+P90/, 'the latency table');
  const doc = JSON.parse(fs.readFileSync(json, 'utf8'));
  t.same(doc.errors, [], 'no part failed');
  t.notOk(doc.partial, 'the final file');
  t.match(doc, { suite: 'controlplane', command: String, date: String, machine: { cpus: Number }, options: { sizes: [0, 2], runs: 2 } });
  for (const [mode, world] of [['docker', 'iptables'], ['docker', 'berth'], ['standalone', 'berth']]) {
    for (const size of [0, 2]) {
      const r = doc.latency.find((x: { mode: string; world: string; size: number }) => x.mode === mode && x.world === world && x.size === size);
      t.ok(r, `${mode}/${world} N=${size}: a latency row`);
      t.equal(r?.failed, 0, `${mode}/${world} N=${size}: every round answered`);
      t.ok(r && r.latencyMs.runs.every((x: number) => Number.isFinite(x) && x >= 0), `${mode}/${world} N=${size}: a figure per round`);
      t.ok(r && r.outcomes.answer >= r.latencyMs.runs.length, `${mode}/${world} N=${size}: the prober saw the answers`);
      const p = doc.program.find((x: { mode: string; world: string; size: number }) => x.mode === mode && x.world === world && x.size === size);
      t.equal(p?.answered, size, `${mode}/${world} N=${size}: every other port answered`);
    }
  }
  for (const mode of ['docker', 'standalone']) {
    for (const size of [0, 2]) {
      const d = doc.daemon.find((x: { mode: string; size: number }) => x.mode === mode && x.size === size);
      t.ok(d && d.rssMiB > 10 && d.cpuSelfPerMin > 0, `${mode} N=${size}: RSS and CPU of the daemon`);
      t.ok(d && Number.isFinite(d.eventLoopRest.p99Ms) && d.scrapeBytes > 1000 && d.scrapeMs.runs.length === 10, `${mode} N=${size}: event loop and scrapes`);
      if (mode === 'docker') t.ok(d && Number.isFinite(d.churn.p99Ms) && d.churn.containers === 2, `docker N=${size}: the churn window`);
      const s = doc.spawns.find((x: { mode: string; size: number }) => x.mode === mode && x.size === size);
      // today's daemon runs ip for every container; once netlink lands this may be zero, and the row still exists
      t.ok(s && typeof s.start === 'object' && typeof s.restPerMinute === 'object', `${mode} N=${size}: the spawn counts`);
    }
  }
  t.equal(doc.standalone.length, 2, 'berth up/down timed per size');
  t.equal(doc.sizeSeconds.length, 6, 'how long each size took, per mode and world');
  // nothing left behind
  t.same((await lines('ip', ['netns', 'list'])).filter((l) => l.startsWith('bcp')), [], 'no namespace of the suite');
  t.same((await lines('ip', ['-o', 'link', 'show'])).filter((l) => / bcp\d+/.test(l)), [], 'no link of the suite');
  t.same(fs.readdirSync('/sys/fs/bpf').filter((f) => f.startsWith('berth-cp-')), [], 'no pin root of the suite');
  t.same(fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('berth-cp-') || f.startsWith('berth-dk-bcp')), [], 'no folder of the suite');
  const procs = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      return /berth-cp-bcp|berth-dk-bcp/.test(fs.readFileSync(`/proc/${p}/cmdline`, 'utf8'));
    } catch {
      return false;
    }
  });
  t.same(procs, [], 'no process of the suite (prober, dockerd, containerd, berth)');
});
