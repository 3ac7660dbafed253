// Shared resources have an owner (issue 13): two files on one pin root. b.yaml
// publishes a port on 127.0.0.1, [::1] and every address, and has an external
// (its host side is an uplink); a.yaml publishes nothing and serves no
// interface. `berth run -f a.yaml` and then `berth down -f a.yaml` must leave
// b's socket hooks and uplink hooks where they are: the host still reaches
// b's port on 127.0.0.1 and [::1] (the connection arrives, berth's socket
// translation counter moves), and the external still reaches it on its
// uplink (the packets counted on that uplink). The claims are pinned state:
// each step below opens the dataplane afresh, as another process would.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { parseConfig } from '../../src/domain/config';
import { Dataplane } from '../../src/platform/dataplane';
import { hostVethName } from '../../src/domain/names';
import * as standalone from '../../src/sources/standalone';
import { startDaemon } from '../../src/engine/daemon';
import { readClaims } from '../../src/engine/owners';
import { readGlobals } from '../../src/observe/stats';
import { readCounters } from '../../src/observe/stats';
import { sh } from '../lib/topo';

const tag = `ben${process.pid % 10000}`;
const pinRoot = `/sys/fs/bpf/berth-en-test-shared${process.pid % 100000}`;
const work = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));
const www = path.join(work, 'www');
const PORT_LO = 33010 + (process.pid % 40) * 2;
const PORT_ANY = PORT_LO + 1;
const n = (k: string): string => `${tag}${k}`;

const textB = [
  'networks:',
  `  - name: ${n('nb')}`,
  '    subnet: 10.76.2.0/24',
  '    subnet6: fd76:2::/64',
  `    bridge: ${n('bb')}`,
  'containers:',
  `  - name: ${n('web')}`,
  `    network: ${n('nb')}`,
  '    ip: 10.76.2.10',
  '    ip6: fd76:2::10',
  `    run: [/bin/busybox, sh, -c, "mkdir -p ${www} && echo hello-b > ${www}/index.html && exec /bin/busybox httpd -f -p 80 -h ${www}"]`,
  `    publish: ["127.0.0.1:${PORT_LO}:80", "[::1]:${PORT_LO}:80", "${PORT_ANY}:80"]`,
  'externals:',
  `  - name: ${n('x')}`,
  '    address: 10.76.250.2/24',
  'uplinks: []',
  'interfaces: []',
  '',
].join('\n');
const textA = [
  'networks:',
  `  - name: ${n('na')}`,
  '    subnet: 10.76.1.0/24',
  `    bridge: ${n('ba')}`,
  'containers:',
  `  - name: ${n('c')}`,
  `    network: ${n('na')}`,
  '    ip: 10.76.1.10',
  'uplinks: []',
  'interfaces: []',
  '',
].join('\n');
const pathA = path.join(work, 'a.yaml');
const pathB = path.join(work, 'b.yaml');
fs.writeFileSync(pathA, textA);
fs.writeFileSync(pathB, textB);
const cfgA = parseConfig(textA, pathA);
const cfgB = parseConfig(textB, pathB);
const ext = cfgB.externals[0]!;

t.teardown(async () => {
  for (const cfg of [cfgA, cfgB]) {
    try {
      await standalone.down(cfg, { pinRoot });
    } catch {
      /* forced below */
    }
  }
  try {
    Dataplane.reset(pinRoot);
  } catch {
    /* nothing pinned */
  }
  for (const ns of [n('web'), n('c'), ext.name]) {
    sh('ip', ['netns', 'del', ns]);
    sh('ip', ['link', 'del', hostVethName(ns)]);
  }
  sh('ip', ['link', 'del', ext.hostIfname]);
  for (const b of [n('bb'), n('ba')]) sh('ip', ['link', 'del', b]);
  fs.rmSync(work, { recursive: true, force: true });
});

function get(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path: '/', timeout: 3000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body.trim()));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Bounded: at most `tries` attempts, 200 ms apart (the first while httpd may still be starting). */
async function getWithRetry(host: string, port: number, tries = 25): Promise<string> {
  let last: unknown;
  for (let i = 0; i < tries; i++) {
    try {
      return await get(host, port);
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw last;
}

const HOOKS = ['connect4', 'sendmsg4', 'recvmsg4', 'connect6', 'sendmsg6', 'recvmsg6'];
const ifindexOf = (ifname: string): number => Number(fs.readFileSync(`/sys/class/net/${ifname}/ifindex`, 'utf8'));

/** b's port reached three ways, each checked on berth's counters too. */
async function bStillServed(t: Test, when: string): Promise<void> {
  for (const h of HOOKS) t.ok(fs.existsSync(path.join(pinRoot, 'links', `cg-${h}`)), `${when}: socket hook ${h} attached`);
  t.ok(fs.existsSync(path.join(pinRoot, 'links', `up-${ifindexOf(ext.hostIfname)}-tc`)), `${when}: b's uplink ${ext.hostIfname} keeps its hook`);
  const dp = Dataplane.openPinned(pinRoot);
  try {
    const before = readGlobals(dp).sock_translations;
    t.equal(await getWithRetry('127.0.0.1', PORT_LO), 'hello-b', `${when}: host -> 127.0.0.1:${PORT_LO} arrives`);
    t.equal(await getWithRetry('::1', PORT_LO), 'hello-b', `${when}: host -> [::1]:${PORT_LO} arrives`);
    t.ok(readGlobals(dp).sock_translations >= before + 2n, `${when}: both went through berth's socket hooks`);
    const upIfindex = ifindexOf(ext.hostIfname);
    const fromOutside = async (): Promise<bigint> => (await readCounters(dp)).filter((r) => r.ifindex === upIfindex).reduce((s, r) => s + r.pass.packets + r.redirect.packets, 0n);
    const seen = await fromOutside();
    const body = execFileSync('ip', ['netns', 'exec', ext.name, '/bin/busybox', 'timeout', '3', '/bin/busybox', 'wget', '-q', '-O', '-', `http://10.76.250.1:${PORT_ANY}/`], { encoding: 'utf8', timeout: 10000 }).trim();
    t.equal(body, 'hello-b', `${when}: the external -> ${PORT_ANY} on b's uplink arrives`);
    t.ok((await fromOutside()) > seen, `${when}: counted on the uplink`);
  } finally {
    dp.close();
  }
}

t.test('one scope\'s run and down leave the shared resources another scope needs', async (t) => {
  await standalone.up(cfgB, { pinRoot });
  await bStillServed(t, 'b alone');
  const claims = readClaims(pinRoot).claims;
  t.match(claims, [{ scope: `file:${n('nb')}`, networks: [n('nb')], socketHooks: true, hostAddrs: true }], 'b claims the hooks, pinned');

  // berth run -f a.yaml: its reconciles need no hooks and no uplink
  const d = await startDaemon({ configPath: pathA, pinRoot, metrics: '127.0.0.1:0', intervalMs: 600000, sweepMs: 600000 });
  try {
    await d.sync();
    t.same(readClaims(pinRoot).claims.map((c) => c.scope).sort(), [`file:${n('na')}`, `file:${n('nb')}`], 'each file its claim');
    t.match(readClaims(pinRoot).claims.find((c) => c.scope === `file:${n('na')}`), { socketHooks: false, uplinks: [] }, 'a needs none of them');
    await bStillServed(t, 'after a runs');
  } finally {
    await d.stop();
  }

  const downA = await standalone.down(cfgA, { pinRoot });
  t.equal(downA.unpinned, false, 'b still needs the dataplane');
  t.same(readClaims(pinRoot).claims.map((c) => c.scope), [`file:${n('nb')}`], "a's claim went with it");
  await bStillServed(t, 'after a is down');

  // a again, then b goes first: a needs no hooks, so they go with b's claim, and a's endpoint stays
  await standalone.up(cfgA, { pinRoot });
  const downB = await standalone.down(cfgB, { pinRoot });
  t.equal(downB.unpinned, false, 'a still holds the dataplane');
  for (const h of HOOKS) t.notOk(fs.existsSync(path.join(pinRoot, 'links', `cg-${h}`)), `socket hook ${h} detached with its last user`);
  t.notOk(fs.readdirSync(path.join(pinRoot, 'links')).some((f) => f.startsWith('up-')), 'no uplink hook left: no one serves one');
  const dp = Dataplane.openPinned(pinRoot);
  try {
    t.ok((await dp.maps.hostAddr.dump()).length > 0, 'a still claims the host addresses');
  } finally {
    dp.close();
  }
  const last = await standalone.down(cfgA, { pinRoot });
  t.equal(last.unpinned, true, 'the last scope out unpins the dataplane, claims included');
  t.notOk(fs.existsSync(pinRoot));
});
