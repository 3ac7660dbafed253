#!/usr/bin/env node
'use strict';
// npm "prepack" script: builds everything the package ships and refuses to
// pack when a piece is missing, so `npm pack` from a clean clone (with the
// build chain that scripts/ensure.sh installs) gives a complete tarball:
//   - npm ci when node_modules is missing (cmake-js, tsc),
//   - the dev build (cmake-js compile --out build: build/bpf/*.bpf.o and the
//     dev addon) and tsc (dist/),
//   - the static prebuild (npm run build:prebuild -> prebuilds/<platform>-<arch>/),
// then checks that each bpf/*.bpf.c has its object, that package.json's
// `files` names exactly those objects, that dist/src holds no output of a
// deleted source, and that the prebuild needs no shared libbpf, libelf or zlib.
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const npmCli = process.env.npm_execpath;
const npm = npmCli && npmCli.endsWith('.js') ? [process.execPath, npmCli] : ['npm'];

function run(argv) {
  process.stderr.write(`prepack: ${argv.join(' ')}\n`);
  const r = spawnSync(argv[0], argv.slice(1), { cwd: root, stdio: ['ignore', 2, 2] }); // build output on stderr: npm pack --json owns stdout
  if (r.error || r.status !== 0) {
    throw new Error(`${argv.join(' ')} failed (${r.error ? r.error.message : `exit ${r.status}`})`);
  }
}

function fail(msg) {
  process.stderr.write(`prepack: ${msg}\n`);
  process.exit(1);
}

try {
  if (!fs.existsSync(path.join(root, 'node_modules', '.bin', 'cmake-js'))) {
    run([...npm, 'ci', '--no-audit', '--no-fund']);
  }
  run([...npm, 'run', 'build']);
  run([...npm, 'run', 'build:prebuild']);
} catch (e) {
  fail(e.message);
}

const stems = fs
  .readdirSync(path.join(root, 'bpf'))
  .filter((f) => f.endsWith('.bpf.c'))
  .map((f) => f.slice(0, -'.bpf.c'.length))
  .sort();
const objects = stems.map((s) => `build/bpf/${s}.bpf.o`);
for (const o of objects) if (!fs.existsSync(path.join(root, o))) fail(`missing ${o}`);
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const listed = pkg.files.filter((f) => f.startsWith('build/bpf/')).sort();
if (JSON.stringify(listed) !== JSON.stringify(objects)) {
  fail(`package.json "files" lists ${JSON.stringify(listed)} but bpf/*.bpf.c gives ${JSON.stringify(objects)}`);
}

// tsc never deletes: a dist/src/*.js whose source is gone would be shipped.
function jsFiles(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? jsFiles(p) : e.name.endsWith('.js') ? [p] : [];
  });
}
const stale = jsFiles(path.join(root, 'dist', 'src')).filter((js) => {
  const rel = path.relative(path.join(root, 'dist'), js);
  return !fs.existsSync(path.join(root, rel.replace(/\.js$/, '.ts')));
});
if (stale.length > 0) {
  fail(`dist/ has output whose source is gone: ${stale.map((f) => path.relative(root, f)).join(', ')}; remove dist/ and pack again`);
}

const prebuild = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'berth_native.node');
if (!fs.existsSync(prebuild)) fail(`missing ${path.relative(root, prebuild)}`);
const r = spawnSync('readelf', ['-d', prebuild], { encoding: 'utf8' });
if (r.status !== 0) fail(`readelf -d ${prebuild} failed: ${r.stderr || r.error}`);
const needed = [...r.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
const bad = needed.filter((n) => /^lib(bpf|elf|z|zstd|nl-3|nl-route-3)\.so/.test(n));
if (bad.length > 0) fail(`${path.relative(root, prebuild)} needs ${bad.join(', ')}; it must link them statically`);
process.stderr.write(`prepack: ok (${objects.length} BPF objects; prebuild needs ${needed.join(' ')})\n`);
