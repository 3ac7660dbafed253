// A standalone reload touches only what changed (issue 13): a daemon with a
// file of K = 20 containers; a reload adding one builds the topology of that
// one only (the reload's summary names it alone, nothing taken down), and its
// published UDP port answers the host on 127.0.0.1 through berth's socket
// hooks (counted); a reload removing it takes down its namespace (as `berth
// down` would) and its datagram is never answered (nothing translated
// either). A bad file in between is refused and changes nothing.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../../src/domain/config';
import { Dataplane } from '../../src/platform/dataplane';
import { hostVethName } from '../../src/domain/names';
import { startDaemon } from '../../src/engine/daemon';
import { readGlobals } from '../../src/observe/stats';
import { forceDown, netnsExists } from '../lib/topo';

const K = 20;
const tag = `bnr${process.pid % 10000}`;
const pinRoot = `/sys/fs/bpf/berth-nv-test-rl${process.pid % 100000}`;
const work = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));
const PORT = 31750 + (process.pid % 250);
const BR = `${tag}b`;
const NET = `${tag}n`;
const olds = Array.from({ length: K }, (_, i) => `${tag}c${i}`);
const W = `${tag}w`;
const PY = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
const echoLog = path.join(work, 'echo.log');
const echoPy = path.join(work, 'echo.py');
fs.writeFileSync(
  echoPy,
  `import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',8080))\nwhile True:\n  d,a=s.recvfrom(2048)\n  open(${JSON.stringify(echoLog)},'a').write(d.decode()+'\\n')\n  s.sendto(b'pong',a)\n`,
);

function fileText(withW: boolean): string {
  const lines = ['networks:', `  - name: ${NET}`, '    subnet: 10.62.2.0/24', `    bridge: ${BR}`, 'containers:'];
  olds.forEach((c, i) => lines.push(`  - name: ${c}`, `    network: ${NET}`, `    ip: 10.62.2.${10 + i}`));
  if (withW) lines.push(`  - name: ${W}`, `    network: ${NET}`, '    ip: 10.62.2.50', `    run: [${PY}, ${echoPy}]`, `    publish: ["127.0.0.1:${PORT}:8080/udp"]`);
  lines.push('uplinks: []', 'interfaces: []', '');
  return lines.join('\n');
}
const cfgPath = path.join(work, 'reload.yaml');
const full = parseConfig(fileText(true), cfgPath);

t.teardown(async () => {
  await forceDown(full, pinRoot, { netns: [...olds, W], links: [...[...olds, W].map(hostVethName), BR] });
  fs.rmSync(work, { recursive: true, force: true });
});

/** One datagram from the host to 127.0.0.1:PORT: the answer, or null when none came within 1 s. */
function ask(payload: string): string | null {
  const py = `import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(1)\ns.sendto(b'${payload}',('127.0.0.1',${PORT}))\ntry:\n  print(s.recvfrom(2048)[0].decode())\nexcept (socket.timeout, ConnectionRefusedError):\n  print('')\n`;
  return execFileSync('python3', ['-c', py], { encoding: 'utf8', timeout: 10000 }).trim() || null;
}

function translations(): bigint {
  const dp = Dataplane.openPinned(pinRoot);
  try {
    return readGlobals(dp).sock_translations;
  } finally {
    dp.close();
  }
}

const received = (): string[] => (fs.existsSync(echoLog) ? fs.readFileSync(echoLog, 'utf8').split('\n').filter(Boolean) : []);

t.test(`a reload with ${K} containers up builds and takes down only what changed`, async (t) => {
  fs.writeFileSync(cfgPath, fileText(false));
  const d = await startDaemon({ configPath: cfgPath, pinRoot, metrics: '127.0.0.1:0', intervalMs: 3600000, sweepMs: 3600000 });
  t.teardown(() => d.stop());
  t.ok(olds.every(netnsExists), `${K} containers up`);

  // one more container
  fs.writeFileSync(cfgPath, fileText(true));
  const added = await d.reload();
  t.same(added, { applied: true, up: { networks: [], containers: [W], externals: [] }, down: { networks: [], containers: [], externals: [] } }, `the reload built ${W} alone, of ${K + 1}`);
  const before = translations();
  let answer: string | null = null;
  for (let i = 0; i < 10 && answer === null; i++) answer = ask(`hello${i}`);
  t.equal(answer, 'pong', `${W}'s published port answers on 127.0.0.1:${PORT}`);
  t.ok(received().length >= 1, `the datagram arrived in ${W}`);
  t.ok(translations() > before, "through berth's socket hooks");

  // a bad file: refused, nothing changes
  fs.writeFileSync(cfgPath, fileText(true).replace('10.62.2.50', '10.62.3.50'));
  const bad = await d.reload();
  t.equal(bad?.applied, false, 'a container outside its subnet: refused');
  t.equal(ask('still'), 'pong', 'and the port still answers');

  // the container goes
  fs.writeFileSync(cfgPath, fileText(false));
  const removed = await d.reload();
  t.same(removed, { applied: true, up: { networks: [], containers: [], externals: [] }, down: { networks: [], containers: [W], externals: [] } }, `the reload took down ${W} alone`);
  t.notOk(netnsExists(W), `${W}'s namespace is gone`);
  t.ok(olds.every(netnsExists), `the ${K} others are still there`);
  const seen = received().length;
  const atRemoval = translations();
  t.equal(ask('gone'), null, 'no answer on the port');
  t.equal(received().length, seen, 'and the datagram never arrived');
  t.equal(translations(), atRemoval, 'berth translated nothing for it');
});
