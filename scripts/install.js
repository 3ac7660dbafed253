#!/usr/bin/env node
'use strict';
// npm "install" script of the berth package. Plain JavaScript, no dependencies.
//
//   - In a checkout (a .git or tsconfig.json next to package.json) it does
//     nothing: the dev flow builds with `npm run build` (scripts/ensure.sh),
//     and `npm ci` must neither start a native build nor fail.
//   - When the prebuilt addon for this platform and architecture loads
//     (prebuilds/<platform>-<arch>/berth_native.node), it does nothing.
//   - Otherwise it builds the addon from source into build/Release with
//     cmake-js (native/CMakeLists.txt: the addon only; the BPF objects are
//     shipped prebuilt), when cmake, a C++ compiler, pkg-config and libbpf's
//     headers are there. When something is missing it says what and fails.
//
// BERTH_BUILD_FROM_SOURCE=1 skips the prebuild and builds from source.
// src/platform/native.ts looks in the same places at run time.
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const tuple = `${process.platform}-${process.arch}`;
const prebuild = path.join(root, 'prebuilds', tuple, 'berth_native.node');
const built = path.join(root, 'build', 'Release', 'berth_native.node');

function say(msg) {
  process.stderr.write(`berth install: ${msg}\n`);
}

function isCheckout(dir) {
  return fs.existsSync(path.join(dir, '.git')) || fs.existsSync(path.join(dir, 'tsconfig.json'));
}

/** null when the addon at file loads, else why not */
function loadError(file) {
  if (!fs.existsSync(file)) return 'not found';
  try {
    require(file);
    return null;
  } catch (e) {
    return String((e && e.message) || e).split('\n')[0];
  }
}

function has(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

/** What a source build needs that is not there, as install hints. */
function missingBuildChain() {
  const missing = [];
  if (!has('cmake', ['--version'])) missing.push('cmake (Debian: apt-get install cmake)');
  if (!['c++', 'g++', 'clang++'].some((cxx) => has(cxx, ['--version']))) {
    missing.push('a C++ compiler (Debian: apt-get install g++)');
  }
  if (!has('pkg-config', ['--version'])) missing.push('pkg-config (Debian: apt-get install pkg-config)');
  else if (!has('pkg-config', ['--exists', 'libbpf'])) missing.push("libbpf's headers (Debian: apt-get install libbpf-dev)");
  return missing;
}

/** How to run cmake-js: the package's own if installed, else through npm exec. */
function cmakeJs() {
  try {
    const bin = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
    return [process.execPath, bin];
  } catch {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
    const version = (pkg.devDependencies && pkg.devDependencies['cmake-js']) || 'latest';
    const npmCli = process.env.npm_execpath;
    const npm = npmCli && npmCli.endsWith('.js') ? [process.execPath, npmCli] : ['npm'];
    return [...npm, 'exec', '--yes', `--package=cmake-js@${version}`, '--', 'cmake-js'];
  }
}

function main() {
  if (isCheckout(root)) return 0;

  const forced = /^(1|true|yes)$/i.test(process.env.BERTH_BUILD_FROM_SOURCE || '');
  if (!forced) {
    const why = loadError(prebuild);
    if (why === null) return 0;
    say(`no usable prebuilt addon for ${tuple} (${path.relative(root, prebuild)}: ${why}); building it from source`);
  } else {
    say('BERTH_BUILD_FROM_SOURCE is set; building the addon from source');
  }

  const missing = missingBuildChain();
  if (missing.length > 0) {
    say(
      `cannot build the native addon from source; missing:\n` +
        missing.map((m) => `  - ${m}`).join('\n') +
        `\nInstall them, then run: ${forced ? 'BERTH_BUILD_FROM_SOURCE=1 ' : ''}node ${path.join(root, 'scripts', 'install.js')}`,
    );
    return 1;
  }

  const [cmd, ...args] = cmakeJs();
  args.push('compile', '--directory', path.join(root, 'native'), '--out', path.join(root, 'build'));
  say(`${[cmd, ...args].join(' ')}`);
  // npm's settings reach cmake-js as npm_config_* (nodedir, for one), but not
  // `global` of an `npm install -g`: npm exec would then install cmake-js
  // globally instead of into its cache.
  const env = { ...process.env };
  delete env.npm_config_global;
  const r = spawnSync(cmd, args, { cwd: root, env, stdio: ['ignore', 2, 2] });
  if (r.error || r.status !== 0) {
    say(`the source build failed (${r.error ? r.error.message : `exit ${r.status}`}); see the output above`);
    return 1;
  }
  const why = loadError(built);
  if (why !== null) {
    say(`built ${path.relative(root, built)} but it does not load: ${why}`);
    return 1;
  }
  say(`built ${path.relative(root, built)}`);
  return 0;
}

process.exitCode = main();
