// The import directions of src/ (README's layout table): read every source
// file, resolve its imports to a layer, and check the rules. The remaining
// exceptions are listed below, each with its reason; anything else that
// breaks a rule fails here.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

const SRC = path.resolve(__dirname, '..', '..', '..', 'src');
const LAYERS = ['domain', 'sources', 'platform', 'engine', 'observe', 'cli'] as const;
type Layer = (typeof LAYERS)[number];

/** Files allowed to break a rule, by "from -> to" (paths under src/), with why. */
const EXCEPTIONS: ReadonlyArray<{ from: string; to: string; reason: string }> = [
  { from: 'engine/daemon.ts', to: 'observe/metrics.ts', reason: '`berth run` is the composition root: it serves /metrics' },
  { from: 'engine/daemon.ts', to: 'observe/dashboard/server.ts', reason: '`berth run` serves the live dashboard next to /metrics' },
  { from: 'engine/daemon.ts', to: 'observe/docker-metrics.ts', reason: '`berth run` registers the policy and Docker-mode metrics' },
];

function walk(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

/** Every relative module a file names: import/export ... from, import(), require(). */
function imports(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm)) out.push(m[1]!);
  // package.json (platform/version.ts) is data, and named relative to dist/: not a layer
  return out.filter((spec) => !spec.endsWith('.json')).map((spec) => {
    const base = path.resolve(path.dirname(file), spec);
    for (const c of [`${base}.ts`, path.join(base, 'index.ts'), base]) if (fs.existsSync(c) && fs.statSync(c).isFile()) return path.relative(SRC, c);
    throw new Error(`${path.relative(SRC, file)}: import '${spec}' resolves to nothing`);
  });
}

const layerOf = (rel: string): Layer | 'root' => (LAYERS as readonly string[]).includes(rel.split('/')[0]!) ? (rel.split('/')[0] as Layer) : 'root';

const files = walk(SRC).map((f) => ({ rel: path.relative(SRC, f), deps: imports(f) }));
const edges = files.flatMap((f) => f.deps.map((to) => ({ from: f.rel, to, fromLayer: layerOf(f.rel), toLayer: layerOf(to) })));

/** The rules: which layers each layer may import (its own always). */
const RULES: Array<{ name: string; broken: (e: (typeof edges)[number]) => boolean }> = [
  { name: 'domain imports only domain', broken: (e) => e.fromLayer === 'domain' && e.toLayer !== 'domain' },
  { name: 'platform imports only domain and platform', broken: (e) => e.fromLayer === 'platform' && e.toLayer !== 'platform' && e.toLayer !== 'domain' },
  { name: 'nothing imports cli but cli', broken: (e) => e.toLayer === 'cli' && e.fromLayer !== 'cli' },
  { name: 'engine and sources do not import observe', broken: (e) => (e.fromLayer === 'engine' || e.fromLayer === 'sources') && e.toLayer === 'observe' },
];

t.test('src/ is read whole: every file in a layer, every import resolved', async (t) => {
  t.ok(files.length > 30, `${files.length} files`);
  t.same(files.filter((f) => layerOf(f.rel) === 'root').map((f) => f.rel), [], 'no file outside the layers');
  t.ok(edges.length > 100, `${edges.length} imports`);
  t.ok(edges.some((e) => e.from === 'engine/policy.ts' && e.to === 'domain/policy.ts'), 'the reader sees an edge it must (engine/policy.ts -> domain/policy.ts)');
});

for (const rule of RULES)
  t.test(rule.name, async (t) => {
    const broken = edges.filter(rule.broken);
    const unexplained = broken.filter((e) => !EXCEPTIONS.some((x) => x.from === e.from && x.to === e.to));
    t.same(unexplained.map((e) => `${e.from} -> ${e.to}`), [], 'no import breaks it but the listed exceptions');
    for (const e of broken) {
      const x = EXCEPTIONS.find((x) => x.from === e.from && x.to === e.to)!;
      if (x) t.comment(`exception: ${e.from} -> ${e.to}: ${x.reason}`);
    }
  });

t.test('every exception is still needed and has a reason', async (t) => {
  for (const x of EXCEPTIONS) {
    t.ok(x.reason.length > 10, `${x.from} -> ${x.to}: a reason`);
    t.ok(edges.some((e) => e.from === x.from && e.to === x.to && RULES.some((r) => r.broken(e))), `${x.from} -> ${x.to} still breaks a rule (else remove it from the list)`);
  }
});
