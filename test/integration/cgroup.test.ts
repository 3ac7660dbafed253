// Where the host socket hooks go, on the real kernel:
//  - `--cgroup DIR` with a private cgroup2 mount at DIR: the hooks attach
//    there (pinned links, the kernel's own list for DIR, status), and the host
//    reaches a published 127.0.0.1 port through them;
//  - no cgroup v2 at all (berth in a mount namespace whose cgroup2 mounts are
//    unmounted): one clear warning, no cgroup links, status says why, and the
//    rest of the dataplane is programmed and forwards;
//  - `--cgroup` at a directory that is not cgroup v2: refused before anything
//    is made.
import t from 'tap';
import { execFile, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { parseConfig } from '../../src/domain/config';
import { Dataplane } from '../../src/platform/dataplane';
import { hostVethName } from '../../src/domain/names';
import * as standalone from '../../src/sources/standalone';
import { findCgroup2 } from '../../src/platform/cgroup';
import { SockProgName } from '../../src/platform/contract';
import { linkExists, netnsExists, ownChanges, sh } from '../lib/topo';

const pexec = promisify(execFile);
const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'berth');
const CGROUP_JS = path.resolve(__dirname, '..', '..', 'src', 'platform', 'cgroup.js');
const tag = `cg${process.pid % 100000}`;
const third = process.pid % 200;
const work = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));
const PORT = 30000 + (process.pid % 2000);

interface Case {
  key: string;
  pinRoot: string;
  cfgPath: string;
  net: string;
  bridge: string;
  srv: string;
  cli: string;
  subnet: string;
  ip: (host: number) => string;
  port: number;
}

/** A network with an httpd (published on 127.0.0.1 only) and a client; torn down even on failure. */
function makeCase(t: { teardown(fn: () => void | Promise<void>): void }, key: string, n: number): Case {
  const base = `10.239.${third + n}`;
  const c: Case = {
    key,
    pinRoot: `/sys/fs/bpf/berth-test-${tag}${key}`,
    cfgPath: path.join(work, `${key}.yaml`),
    net: `${tag}${key}`,
    bridge: `b${tag}${key}`.slice(0, 15),
    srv: `${tag}${key}-s`,
    cli: `${tag}${key}-c`,
    subnet: `${base}.0/24`,
    ip: (h) => `${base}.${h}`,
    port: PORT + n,
  };
  const www = path.join(work, `www-${key}`);
  const text = [
    'networks:',
    `  - name: ${c.net}`,
    `    subnet: ${c.subnet}`,
    `    bridge: ${c.bridge}`,
    'uplinks: []',
    'interfaces: []',
    'containers:',
    `  - name: ${c.srv}`,
    `    network: ${c.net}`,
    `    ip: ${c.ip(10)}`,
    `    run: [/bin/busybox, sh, -c, "mkdir -p ${www} && echo hello-${key} > ${www}/index.html && exec /bin/busybox httpd -f -p 80 -h ${www}"]`,
    `    publish: ["127.0.0.1:${c.port}:80"]`,
    `  - name: ${c.cli}`,
    `    network: ${c.net}`,
    `    ip: ${c.ip(11)}`,
    '',
  ].join('\n');
  fs.writeFileSync(c.cfgPath, text);
  const cfg = parseConfig(text, c.cfgPath);
  t.teardown(async () => {
    try {
      await standalone.down(cfg, { pinRoot: c.pinRoot });
    } catch {
      /* forced cleanup below */
    }
    try {
      Dataplane.reset(c.pinRoot);
    } catch {
      /* ignore */
    }
    for (const ns of [c.srv, c.cli]) {
      sh('ip', ['netns', 'del', ns]);
      sh('ip', ['link', 'del', hostVethName(ns)]);
    }
    sh('ip', ['link', 'del', c.bridge]);
  });
  return c;
}

t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));

const berth = (pinRoot: string, args: string[], env: NodeJS.ProcessEnv = process.env) => pexec(BIN, ['--bpffs', pinRoot, ...args], { timeout: 90000, env });

function get(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', timeout: 3000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function getWithRetry(port: number, tries = 30): Promise<string> {
  let last: unknown;
  for (let i = 0; i < tries; i++) {
    try {
      return await get(port);
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw last;
}

/** Program ids the kernel lists as attached to a cgroup directory (bpftool), by attach type. */
function cgroupProgIds(dir: string): number[] {
  const out = execFileSync('bpftool', ['cgroup', 'show', dir, '-j'], { encoding: 'utf8' });
  return (JSON.parse(out.trim() || '[]') as Array<{ id: number }>).map((p) => p.id);
}

const HOOKS = ['connect4', 'sendmsg4', 'recvmsg4', 'connect6', 'sendmsg6', 'recvmsg6'];
const SOCK_PROGS: string[] = [SockProgName.CONNECT4, SockProgName.SENDMSG4, SockProgName.RECVMSG4, SockProgName.CONNECT6, SockProgName.SENDMSG6, SockProgName.RECVMSG6];
const sockProgIds = (st: { programs: Array<{ name: string; id: number }> }): number[] => st.programs.filter((p) => SOCK_PROGS.includes(p.name)).map((p) => p.id);
const haveBpftool = fs.existsSync('/usr/sbin/bpftool') || fs.existsSync('/usr/bin/bpftool');

t.test('--cgroup DIR: the socket hooks attach to a private cgroup2 mount', async (t) => {
  const c = makeCase(t, 'm', 0);
  const dir = path.join(work, 'cg2 mount'); // a space, as mountinfo escapes it (\040)
  fs.mkdirSync(dir);
  execFileSync('mount', ['-t', 'cgroup2', 'none', dir]);
  t.teardown(() => {
    // the links go first (reset in makeCase's teardown runs after this one), so unmount lazily
    if (!sh('umount', [dir])) sh('umount', ['-l', dir]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const up = await berth(c.pinRoot, ['--cgroup', dir, 'up', '-f', c.cfgPath]);
  t.match(up.stdout, /2 container\(s\) on 1 network\(s\)/);
  t.notMatch(up.stderr, /unavailable/, 'no warning');
  for (const h of HOOKS) t.ok(fs.existsSync(path.join(c.pinRoot, 'links', `cg-${h}`)), `pinned link cg-${h}`);

  const st = JSON.parse((await berth(c.pinRoot, ['--cgroup', dir, 'status', '--json'])).stdout);
  t.same(st.socketHooks, { available: true, cgroup: dir, source: 'option', attached: HOOKS });
  const text = (await berth(c.pinRoot, ['--cgroup', dir, 'status'])).stdout;
  t.match(text, `host socket hooks: attached (${HOOKS.join(', ')}); cgroup2 at ${dir} (--cgroup)`);
  // BERTH_CGROUP says the same as --cgroup
  const viaEnv = JSON.parse((await berth(c.pinRoot, ['status', '--json'], { ...process.env, BERTH_CGROUP: dir })).stdout);
  t.equal(viaEnv.socketHooks.cgroup, dir, 'BERTH_CGROUP');

  if (haveBpftool) {
    const ids = cgroupProgIds(dir);
    const mine = sockProgIds(st);
    t.equal(mine.length, HOOKS.length);
    for (const id of mine) t.ok(ids.includes(id), `the kernel lists program ${id} on ${dir}`);
  }

  // the packet path: the host dials 127.0.0.1:PORT, the connect4 hook sends it to the container
  t.equal((await getWithRetry(c.port)).trim(), 'hello-m', 'host -> 127.0.0.1 published port through the hooks');

  // a second up changes nothing, the hooks stay where they are
  t.same(ownChanges((await berth(c.pinRoot, ['--cgroup', dir, 'up', '-f', c.cfgPath])).stdout), []);
  await berth(c.pinRoot, ['down', '-f', c.cfgPath]);
  t.notOk(fs.existsSync(c.pinRoot), 'down unpins the dataplane, links included');
});

t.test('no cgroup v2: one clear warning, the rest of the dataplane still programs and forwards', async (t) => {
  const c = makeCase(t, 'n', 1);
  // A mount namespace of its own without any cgroup2 mount. Propagation stays as it is, so
  // the namespaces berth makes (bind mounts under /run/netns) are seen outside; each cgroup2
  // mount is made private in there before it is unmounted, so this machine's stay.
  const before = findCgroup2(fs.readFileSync('/proc/self/mountinfo', 'utf8'));
  sh('ip', ['netns', 'add', `${tag}-probe`]); // makes /run/netns a shared mount if it is not one yet
  sh('ip', ['netns', 'del', `${tag}-probe`]);
  const helper = path.join(work, 'no-cgroup2.js');
  fs.writeFileSync(
    helper,
    `const fs = require('node:fs'); const cp = require('node:child_process');
const { parseMountinfo } = require(${JSON.stringify(CGROUP_JS)});
for (const e of parseMountinfo(fs.readFileSync('/proc/self/mountinfo', 'utf8')).filter((e) => e.fsType === 'cgroup2').reverse()) {
  cp.execFileSync('mount', ['--make-private', e.mountPoint]);
  cp.execFileSync('umount', ['-l', e.mountPoint]);
}
const child = cp.spawn(process.argv[2], process.argv.slice(3), { stdio: 'inherit' });
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => child.kill(sig));
child.on('exit', (code) => process.exit(code ?? 1));
`,
  );
  const noCg = (args: string[]) => pexec('unshare', ['--mount', '--propagation', 'unchanged', process.execPath, helper, BIN, '--bpffs', c.pinRoot, ...args], { timeout: 90000 });

  const up = await noCg(['up', '-f', c.cfgPath]);
  t.match(up.stdout, /2 container\(s\) on 1 network\(s\)/, 'up succeeds');
  const warnings = up.stderr.split('\n').filter((l) => l.includes('host socket hooks unavailable'));
  t.equal(warnings.length, 1, 'said once');
  t.match(JSON.parse(warnings[0]!), { level: 'warn', msg: 'host socket hooks unavailable: no cgroup2 mount in /proc/self/mountinfo; mount one (mount -t cgroup2 none /sys/fs/cgroup) or pass --cgroup' });
  for (const h of HOOKS) t.notOk(fs.existsSync(path.join(c.pinRoot, 'links', `cg-${h}`)), `no cgroup link ${h}`);

  const st = JSON.parse((await noCg(['status', '--json'])).stdout);
  t.equal(st.socketHooks.available, false);
  t.match(st.socketHooks.reason, /no cgroup2 mount in \/proc\/self\/mountinfo/);
  t.same(st.socketHooks.attached, []);
  t.match((await noCg(['status'])).stdout, /host socket hooks: unavailable: no cgroup2 mount in \/proc\/self\/mountinfo; mount one/);
  t.same(
    st.endpoints.map((e: { container: string; hooks: string[] }) => [e.container, [...e.hooks].sort()]).sort(),
    [
      [c.cli, ['egress', 'ingress']],
      [c.srv, ['egress', 'ingress']],
    ],
    'endpoints programmed and hooked',
  );

  // nothing of this pin root is attached to the machine's real cgroup2 mount either
  const real = findCgroup2(fs.readFileSync('/proc/self/mountinfo', 'utf8'));
  if (haveBpftool && real) {
    const sockIds = sockProgIds(st);
    t.equal(sockIds.length, HOOKS.length);
    const attached = cgroupProgIds(real.path);
    t.notOk(sockIds.some((id: number) => attached.includes(id)), `no berth socket hook of this pin root on ${real.path}`);
  }

  // the rest forwards: container to container through the fast path, counted as redirects
  await pexec('ip', ['netns', 'exec', c.cli, 'ping', '-c', '3', '-i', '0.2', '-W', '2', c.ip(10)]);
  const stats = JSON.parse((await berth(c.pinRoot, ['stats', '--json'])).stdout);
  const toSrv = stats.find((r: { container: string; direction: string }) => r.container === c.srv && r.direction === 'to_container');
  t.ok(toSrv.redirect.packets >= 3, `pings redirected into the server (${toSrv.redirect.packets})`);

  // up again in the same state: no steps, and no rollback of anything
  t.match((await noCg(['up', '-f', c.cfgPath])).stdout, /0 dataplane change\(s\)/);

  // the daemon reconciles again and again, and says it once
  const d = spawn('unshare', ['--mount', '--propagation', 'unchanged', process.execPath, helper, BIN, '--bpffs', c.pinRoot, 'run', '-f', c.cfgPath, '--metrics', '127.0.0.1:0', '--interval', '200'], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  t.teardown(() => {
    try {
      process.kill(-d.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  });
  let out = '';
  let err = '';
  d.stdout!.on('data', (x) => (out += x));
  d.stderr!.on('data', (x) => (err += x));
  const exited = new Promise<number | null>((r) => d.on('exit', (code) => r(code)));
  for (let i = 0; i < 150 && !/metrics at/.test(out) && d.exitCode === null; i++) await new Promise((r) => setTimeout(r, 100));
  t.match(out, /berth run: metrics at http/, `the daemon runs (${err.trim().split('\n').pop()})`);
  await new Promise((r) => setTimeout(r, 1500)); // several reconciles
  process.kill(d.pid!, 'SIGTERM');
  t.equal(await exited, 0, 'stops cleanly');
  const lines = err.split('\n').filter(Boolean);
  t.ok(lines.every((l) => l.startsWith('{') && JSON.parse(l)), 'every daemon event is one JSON line');
  const events = lines.map((l) => JSON.parse(l) as { level: string; msg: string });
  t.equal(events.filter((e) => e.level === 'warn' && e.msg.startsWith('host socket hooks unavailable')).length, 1, 'one warning over many reconciles');
  t.match(JSON.parse(lines.find((l) => l.includes('"berth running"'))!), { socketHooks: /^host socket hooks unavailable/ }, 'the start line says so too');
  t.same(findCgroup2(fs.readFileSync('/proc/self/mountinfo', 'utf8')), before, "this machine's cgroup2 mount is untouched");
});

t.test('--cgroup at a directory that is not cgroup v2 is refused before anything is made', async (t) => {
  const c = makeCase(t, 'x', 2);
  const notCg = path.join(work, 'plain');
  fs.mkdirSync(notCg);
  const err = await berth(c.pinRoot, ['--cgroup', notCg, 'up', '-f', c.cfgPath]).then(
    () => null,
    (e: { code: number; stderr: string }) => e,
  );
  t.ok(err, 'up fails');
  t.equal(err!.code, 1);
  t.match(err!.stderr, `berth: --cgroup ${notCg}: not a cgroup v2 directory (it is on `);
  t.notOk(fs.existsSync(c.pinRoot), 'nothing pinned');
  t.notOk(netnsExists(c.srv) || linkExists(c.bridge), 'no topology made');
  const st = JSON.parse((await berth(c.pinRoot, ['--cgroup', notCg, 'status', '--json'])).stdout);
  t.match(st.socketHooks, { available: false, reason: /not a cgroup v2 directory/ }, 'status says why');
});
