// The benchmark suite in a reduced form, so that CI keeps it working: one
// round of the published scenario and of its IPv6 twins (published6,
// masquerade6), one rule-scale point, the programming times, the per-packet
// costs. Asserts the output's shape, never timings; for the IPv6 rows also
// that each path's own counters moved (berth's, the ip6tables rules', the
// floor client's IPv6 packets), so the rows measured the path they name.
import t from 'tap';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

const pexec = promisify(execFile);
const RUN = path.resolve(__dirname, '..', '..', 'bench', 'run.js');

const netns = async (): Promise<Set<string>> =>
  new Set((await pexec('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0]).filter(Boolean));
const pins = (): Set<string> => new Set(fs.readdirSync('/sys/fs/bpf').filter((f) => f.startsWith('berth-bench-')));

t.test('npm run bench, reduced: output shape and clean-up', { timeout: 340000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-bench-test-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const json = path.join(dir, 'bench.json');
  const nsBefore = await netns();
  const pinsBefore = pins();
  const { stdout } = await pexec(
    process.execPath,
    [RUN, '--quick', '--runs', '1', '--seconds', '0.5', '--scenario', 'published,published6,masquerade6,scale,program,cost', '--scale', '0,1000', '--program', '1000', '--per-call', '20', '--json', json, '--svg', dir],
    { timeout: 330000, maxBuffer: 16 << 20 },
  );
  t.match(stdout, /VS DOCKER\s+VS FLOOR/, 'the table has the ratio columns');
  t.match(stdout, /Rule scale/);
  const doc = JSON.parse(fs.readFileSync(json, 'utf8'));
  t.match(doc, { command: String, date: String, machine: { cpus: Number, kernel: String }, options: { runs: 1 } });
  const pub = doc.results.filter((r: { scenario: string }) => r.scenario === 'published');
  const paths = new Set(pub.map((r: { path: string }) => r.path));
  t.same([...paths].sort(), ['Docker (iptables)', 'berth tc', 'berth tc+xdp', 'floor (bare veth)'].sort(), 'every path of the published scenario');
  const metrics = new Set(pub.map((r: { metric: string }) => r.metric));
  t.ok(metrics.has('request/response, one CPU') && metrics.has('new connections, one CPU') && metrics.has('TCP throughput, 1 stream'), 'quick metrics');
  for (const r of pub) {
    t.equal(r.summary.runs.length, 1, `${r.path} / ${r.metric}: one run`);
    t.type(r.summary.median, 'number');
    t.ok(r.vsReference && r.vsFloor, `${r.path} / ${r.metric}: ratios to Docker's path and to the floor`);
    t.notOk(r.errors, `${r.path} / ${r.metric}: no errors (${(r.errors ?? []).join('; ')})`);
  }
  const rr = pub.find((r: { metric: string; path: string }) => r.metric === 'request/response, one CPU' && r.path === 'berth tc');
  t.type(rr.p50_us.median, 'number', 'latency percentiles');
  t.type(rr.cpu.median, 'number', 'CPU cost');
  // the IPv6 twins: every path, numbers, ratios to their own floor and reference, and the path's own counters moved
  type Row = { scenario: string; path: string; metric: string; summary: { median: number; runs: number[] }; vsReference?: { median: number }; vsFloor?: { median: number }; errors?: string[]; pathPackets?: { what: string; perRound: number[] } };
  const v6 = { 'published (IPv6)': ['Docker (ip6tables)', 'berth tc', 'berth tc+xdp', 'floor (bare veth)'], 'masquerade (IPv6)': ['Docker (ip6tables)', 'berth tc', 'floor (bare veth)'] };
  for (const [scenario, want] of Object.entries(v6)) {
    const rows = (doc.results as Row[]).filter((r) => r.scenario === scenario);
    t.same([...new Set(rows.map((r) => r.path))].sort(), want.sort(), `${scenario}: every path`);
    t.ok(rows.some((r) => r.metric === 'request/response, one CPU') && rows.some((r) => r.metric === 'new connections, one CPU') && rows.some((r) => r.metric === 'TCP throughput, 1 stream'), `${scenario}: the quick metrics`);
    for (const r of rows) {
      t.equal(r.summary.runs.length, 1, `${scenario} / ${r.path} / ${r.metric}: one run`);
      t.ok(Number.isFinite(r.summary.median) && r.summary.median > 0, `${scenario} / ${r.path} / ${r.metric}: a figure`);
      t.ok(r.vsReference && Number.isFinite(r.vsReference.median) && r.vsFloor && Number.isFinite(r.vsFloor.median), `${scenario} / ${r.path} / ${r.metric}: ratios to its own reference and floor`);
      t.notOk(r.errors, `${scenario} / ${r.path} / ${r.metric}: no errors (${(r.errors ?? []).join('; ')})`);
      t.ok(r.pathPackets && r.pathPackets.perRound.length === 1 && r.pathPackets.perRound[0] > 0, `${scenario} / ${r.path}: the path's own counters moved (${r.pathPackets?.what}: ${r.pathPackets?.perRound})`);
    }
  }
  t.match(stdout, /published \(IPv6\)[\s\S]*masquerade \(IPv6\)/, 'the IPv6 rows are in the same table');
  t.match(stdout, /IPv6 published path, berth tc within 5% of the floor/, 'the IPv6 ratio lines');
  const scale = doc.results.filter((r: { scenario: string }) => r.scenario === 'rule scale');
  t.same([...new Set(scale.map((r: { others: number }) => r.others))].sort((a, b) => (a as number) - (b as number)), [0, 1000], 'rule-scale points');
  t.same([...new Set(scale.map((r: { path: string }) => r.path))].sort(), ['Docker (iptables)', 'berth tc']);
  const hows = doc.program.map((p: { what: string }) => p.what);
  t.ok(hows.some((w: string) => w.startsWith('berth:')) && hows.some((w: string) => w.startsWith('iptables-restore')) && hows.some((w: string) => w.startsWith('iptables: one call')), 'programming times for berth, iptables-restore and per-call iptables');
  t.ok(doc.bpf.length >= 8, 'per-packet costs');
  for (const b of doc.bpf) t.type(b.summary.median, 'number', `${b.program} ${b.verdict}`);
  t.ok(Array.isArray(doc.targets));
  for (const f of ['throughput.svg', 'request-response.svg', 'connections.svg', 'rule-scale.svg']) {
    const text = fs.readFileSync(path.join(dir, f), 'utf8');
    t.match(text, /^<\?xml[\s\S]*<svg[\s\S]*<\/svg>\s*$/, `${f} is an SVG document`);
  }
  const nsAfter = [...(await netns())].filter((n) => !nsBefore.has(n) && /^bn\d+-/.test(n));
  t.same(nsAfter, [], 'no namespaces left behind');
  t.same([...pins()].filter((p) => !pinsBefore.has(p)), [], 'no pins left behind');
});
