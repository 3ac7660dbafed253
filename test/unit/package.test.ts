/**
 * The npm package's prebuilt parts, checked cheaply: where src/platform/native.ts looks
 * for the addon and what it says when nothing loads, what scripts/install.js
 * does in a checkout, next to a prebuild and without a build chain, what
 * `npm pack` would put in the tarball, and (when it has been built with
 * `npm run build:prebuild`) that the static prebuild needs no shared libbpf,
 * libelf or zlib and loads.
 */
import t, { Test } from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { ADDON_FILE, NativeAddon, PACKAGE_ROOT, addonCandidates, loadAddon } from '../../src/platform/native';

const ROOT = PACKAGE_ROOT;
const TUPLE = `${process.platform}-${process.arch}`;
const PREBUILD = path.join(ROOT, 'prebuilds', TUPLE, ADDON_FILE);
const INSTALL_JS = path.join(ROOT, 'scripts', 'install.js');

function tmpdir(t: Tap): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-pkg-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}
type Tap = Test;

t.test('addonCandidates: source build first, then the prebuild for the platform', async (t) => {
  t.same(addonCandidates('/pkg', 'linux', 'arm64', undefined), [
    '/pkg/build/Release/berth_native.node',
    '/pkg/prebuilds/linux-arm64/berth_native.node',
  ]);
  t.same(addonCandidates('/pkg', 'linux', 'x64', 'rel/x.node'), [
    path.resolve('rel/x.node'),
    '/pkg/build/Release/berth_native.node',
    '/pkg/prebuilds/linux-x64/berth_native.node',
  ], 'BERTH_ADDON goes first');
  t.equal(addonCandidates()[0], path.join(ROOT, 'build', 'Release', ADDON_FILE), 'default root is the package root');
});

t.test('loadAddon: first that exists and loads wins', async (t) => {
  const loaded: string[] = [];
  const warnings: string[] = [];
  const r = loadAddon<string>(
    ['/a.node', '/b.node', '/c.node', '/d.node'],
    (f) => {
      loaded.push(f);
      if (f === '/b.node') throw new Error('/b.node: cannot open shared object file: libbpf.so.1\nsecond line');
      return `addon ${f}`;
    },
    (f) => f !== '/a.node',
    (m) => warnings.push(m),
  );
  t.same(r, { addon: 'addon /c.node', path: '/c.node' });
  t.same(loaded, ['/b.node', '/c.node'], 'a missing file is not required; /d.node never tried');
  t.equal(warnings.length, 1, 'skipping a file that exists but fails is warned about');
  t.match(warnings[0], /\/b\.node: \/b\.node: cannot open shared object file: libbpf\.so\.1$/m);
  t.notMatch(warnings[0], /second line/);

  const quiet: string[] = [];
  loadAddon(['/a.node', '/c.node'], () => 'x', (f) => f === '/c.node', (m) => quiet.push(m));
  t.same(quiet, [], 'files that are merely absent give no warning');
});

t.test('loadAddon: when none loads, the error lists every place and why', async (t) => {
  const dir = tmpdir(t);
  const garbage = path.join(dir, 'garbage.node');
  fs.writeFileSync(garbage, 'not an ELF file\n');
  const places = [path.join(dir, 'build', 'Release', ADDON_FILE), garbage, path.join(dir, 'prebuilds', 'linux-arm64', ADDON_FILE)];
  let err: (Error & { code?: string; candidates?: string[] }) | undefined;
  try {
    loadAddon(places); // the real require and fs.existsSync
  } catch (e) {
    err = e as Error;
  }
  t.ok(err, 'throws');
  t.equal(err?.code, 'BERTH_ADDON_NOT_FOUND');
  t.same(err?.candidates, places);
  const lines = (err?.message ?? '').split('\n');
  t.match(lines[0], /cannot load the native addon \(berth_native\.node\) for \w+-\w+\. Looked in:/);
  t.equal(lines[1], `  ${places[0]}: not found`);
  t.match(lines[2], new RegExp(`^  ${garbage.replace(/[.]/g, '\\.')}: .*(invalid ELF header|too short)`), 'the dlopen error of the file that exists');
  t.equal(lines[3], `  ${places[2]}: not found`);
  t.match(err?.message, /npm run build/, 'says how to build in a checkout');
  t.match(err?.message, /BERTH_BUILD_FROM_SOURCE=1 node \/\S+\/scripts\/install\.js.*cmake.*libbpf-dev/, "and how in an installed package");
});

/** Runs scripts/install.js as installed in pkgRoot (or the checkout) with a PATH. */
function runInstall(scriptRoot: string, env: Record<string, string>) {
  return spawnSync(process.execPath, [path.join(scriptRoot, 'scripts', 'install.js')], {
    encoding: 'utf8',
    env: { HOME: os.tmpdir(), ...env },
    timeout: 60_000,
  });
}

/** A fake installed package: package.json, scripts/install.js, optionally a prebuild. */
function fakePackage(t: Tap, prebuild?: string | Buffer): string {
  const dir = tmpdir(t);
  fs.mkdirSync(path.join(dir, 'scripts'));
  fs.copyFileSync(INSTALL_JS, path.join(dir, 'scripts', 'install.js'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'berth', version: '0.0.0', devDependencies: { 'cmake-js': '^7' } }));
  if (prebuild !== undefined) {
    fs.mkdirSync(path.join(dir, 'prebuilds', TUPLE), { recursive: true });
    if (typeof prebuild === 'string') fs.copyFileSync(prebuild, path.join(dir, 'prebuilds', TUPLE, ADDON_FILE));
    else fs.writeFileSync(path.join(dir, 'prebuilds', TUPLE, ADDON_FILE), prebuild);
  }
  return dir;
}

t.test('install.js: nothing to do in a checkout (npm ci must not build)', async (t) => {
  const r = runInstall(ROOT, { PATH: '/nonexistent' });
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stderr, '', 'silent');
  t.equal(r.stdout, '');
});

t.test('install.js: no prebuild that loads and no build chain: says what is missing, fails', async (t) => {
  const dir = fakePackage(t, Buffer.from('not an ELF file\n'));
  const r = runInstall(dir, { PATH: '/nonexistent' });
  t.equal(r.status, 1, 'the install fails');
  t.match(r.stderr, new RegExp(`no usable prebuilt addon for ${TUPLE} \\(prebuilds/${TUPLE}/berth_native\\.node: .+\\)`));
  t.match(r.stderr, /missing:\n {2}- cmake .*\n {2}- a C\+\+ compiler .*\n {2}- pkg-config /);
  t.notMatch(r.stderr, /cmake-js compile/, 'no build was started');
  t.notOk(fs.existsSync(path.join(dir, 'build')), 'nothing built');
});

t.test('install.js: a prebuild that loads means nothing to do', { skip: !fs.existsSync(PREBUILD) && `no ${path.relative(ROOT, PREBUILD)} (npm run build:prebuild)` }, async (t) => {
  const dir = fakePackage(t, PREBUILD);
  const r = runInstall(dir, { PATH: '/nonexistent' });
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stderr, '', 'silent');
  t.notOk(fs.existsSync(path.join(dir, 'build')), 'nothing built');
});

t.test('npm pack would ship the runtime and nothing of tests or benchmarks', async (t) => {
  const r = spawnSync('npm', ['pack', '--dry-run', '--ignore-scripts', '--json'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  t.equal(r.status, 0, r.stderr);
  const files: string[] = JSON.parse(r.stdout)[0].files.map((f: { path: string }) => f.path);
  for (const f of ['bin/berth', 'dist/src/cli/main.js', 'dist/src/platform/native.js', 'dist/src/observe/dashboard/server.js', 'examples/demo.yaml', 'packaging/berth.service',
    'src/observe/dashboard/static/index.html', 'src/observe/dashboard/static/app.js', 'scripts/install.js', 'native/CMakeLists.txt', 'native/addon.cc', 'README.md']) {
    t.ok(files.includes(f), `ships ${f}`);
  }
  const stems = fs.readdirSync(path.join(ROOT, 'bpf')).filter((f) => f.endsWith('.bpf.c')).map((f) => f.replace(/\.bpf\.c$/, ''));
  t.ok(stems.length > 0);
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  t.same(pkg.files.filter((f: string) => f.startsWith('build/bpf/')).sort(), stems.map((s) => `build/bpf/${s}.bpf.o`).sort(),
    'package.json "files" names the object of every bpf/*.bpf.c and no other');
  for (const s of stems) {
    if (fs.existsSync(path.join(ROOT, 'build', 'bpf', `${s}.bpf.o`))) t.ok(files.includes(`build/bpf/${s}.bpf.o`), `ships build/bpf/${s}.bpf.o`);
  }
  const unwanted = files.filter((f) =>
    /^(test|bench|dist\/test|dist\/bench|build\/Release|build-prebuild|node_modules|\.ci|scripts\/ensure)/.test(f) ||
    /\.(map|ts)$/.test(f) || /^build\/bpf\/native_/.test(f));
  t.same(unwanted, [], 'no tests, benchmarks, fixtures, dev build, sources maps or TypeScript');
  if (fs.existsSync(PREBUILD)) t.ok(files.includes(`prebuilds/${TUPLE}/${ADDON_FILE}`), 'ships the prebuild');

  // Every file or folder that src/ finds at run time by a literal path from
  // the package root (path.join(PACKAGE_ROOT, 'a', 'b')) or from its compiled
  // location (path.resolve(__dirname, '..', 'x')) must be in the tarball.
  const assets = new Set<string>();
  const walk = (dir: string): string[] => fs.readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
  for (const src of walk(path.join(ROOT, 'src'))) {
    const text = fs.readFileSync(src, 'utf8');
    for (const m of text.matchAll(/path\.(?:join|resolve)\((PACKAGE_ROOT|__dirname)((?:,\s*'[^']*')+)\)/g)) {
      const parts = [...m[2].matchAll(/'([^']*)'/g)].map((p) => p[1]);
      const from = m[1] === 'PACKAGE_ROOT' ? ROOT : path.join(ROOT, 'dist', path.relative(ROOT, path.dirname(src)));
      const rel = path.relative(ROOT, path.resolve(from, ...parts));
      if (rel !== '' && !rel.startsWith('..')) assets.add(rel);
    }
  }
  t.ok(assets.has('examples/demo.yaml') && assets.has('build/bpf'), `found the run-time paths (${[...assets].sort().join(', ')})`);
  for (const a of [...assets].sort()) {
    if (a === 'build/bpf' && !fs.existsSync(path.join(ROOT, a))) continue; // not built here: checked by the list above
    t.ok(files.some((f) => f === a || f.startsWith(`${a}/`)), `ships ${a}, which src/ opens at run time`);
  }

  t.equal(pkg.scripts.install, 'node scripts/install.js');
  for (const dev of ['cmake-js', 'typescript', 'tap', '@types/node', 'playwright-core']) {
    t.notOk(dev in (pkg.dependencies ?? {}), `${dev} is not a runtime dependency`);
  }
});

t.test('the prebuild: static libbpf, libelf and zlib, only N-API exported, loads', { skip: !fs.existsSync(PREBUILD) && `no ${path.relative(ROOT, PREBUILD)} (npm run build:prebuild)` }, async (t) => {
  const dyn = spawnSync('readelf', ['-d', '--dyn-syms', '-W', PREBUILD], { encoding: 'utf8' });
  if (dyn.error) {
    t.fail(`readelf (binutils, part of the build chain that made the prebuild) did not run: ${dyn.error.message}`);
    return;
  }
  t.equal(dyn.status, 0, dyn.stderr);
  const needed = [...dyn.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
  t.ok(needed.includes('libc.so.6'), `NEEDED: ${needed.join(' ')}`);
  const allowed = /^(libc\.so\.6|libm\.so\.6|libstdc\+\+\.so\.6|libgcc_s\.so\.1|ld-linux-[\w-]+\.so\.\d)$/;
  t.same(needed.filter((n) => !allowed.test(n)), [], 'needs only libc, libm, libstdc++, libgcc_s and the loader');
  t.notMatch(dyn.stdout, /TEXTREL/, 'no text relocations');
  // defined global symbols in .dynsym: Ndx is a number, not UND
  const exported = dyn.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((c) => c.length >= 8 && /^\d+:$/.test(c[0]) && c[4] === 'GLOBAL' && c[6] !== 'UND')
    .map((c) => c[7].replace(/@.*/, ''))
    .sort();
  t.same(exported, ['napi_register_module_v1', 'node_api_module_get_api_version_v1'], 'no libbpf or C++ symbol leaks out');

  const { addon, path: p } = loadAddon<NativeAddon>([PREBUILD]);
  t.equal(p, PREBUILD);
  t.match(addon.libbpfVersion(), /^\d+\.\d+/, 'libbpf linked in answers');
  t.ok(addon.possibleCpus() >= 1);
});
