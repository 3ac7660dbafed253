// berth spawns no `ip` (issue 13): `berth up` (with a run: command),
// `berth run` for a few seconds and `berth down` with PATH starting with a
// directory whose `ip` appends its arguments to a log and exits 1. The log
// stays empty, and the topology works all the same: the run: command (a
// busybox httpd started under nsenter) answers a wget from the other
// container, pings cross the bridge, and berth's counters saw the redirects.
// Names start with bnl, subnet 10.71.2.0/24, pin root /sys/fs/bpf/berth-nl-test-<pid>.
// Needs root, busybox, ping, nsenter.
import t from 'tap';
import { ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { parseConfig } from '../../src/domain/config';
import { hostVethName } from '../../src/domain/names';
import { Dataplane } from '../../src/platform/dataplane';
import { readCounters } from '../../src/observe/stats';
import { forceDown, linkExists, netnsExists } from '../lib/topo';
import { waitListening } from '../lib/listen';

const pexec = promisify(execFile);
const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'berth');
const tag = String(process.pid % 10000);
const X = `bnlx${tag}`;
const Y = `bnly${tag}`;
const BR = `bnlbr${tag}`;
const pinRoot = `/sys/fs/bpf/berth-nl-test-${process.pid}`;
const PORT = 18071;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-nl-noip-'));
const trap = path.join(dir, 'bin');
const log = path.join(dir, 'ip.log');
fs.mkdirSync(trap);
fs.writeFileSync(path.join(trap, 'ip'), `#!/bin/sh\necho "ip $*" >> ${log}\nexit 1\n`, { mode: 0o755 });
fs.writeFileSync(log, '');
const www = path.join(dir, 'www');
fs.mkdirSync(www);
fs.writeFileSync(path.join(www, 'index.html'), 'no ip here\n');

const text = `networks:
  - name: bnl${tag}
    subnet: 10.71.2.0/24
    bridge: ${BR}
uplinks: []
interfaces: []
containers:
  - name: ${X}
    network: bnl${tag}
    ip: 10.71.2.10
    run: ["/bin/busybox", "httpd", "-f", "-p", "${PORT}", "-h", ${JSON.stringify(www)}]
  - name: ${Y}
    network: bnl${tag}
    ip: 10.71.2.11
`;
const cfgPath = path.join(dir, 'topology.yaml');
fs.writeFileSync(cfgPath, text);
const cfg = parseConfig(text, cfgPath);

// berth's own environment: the trap first on PATH
const env = { ...process.env, PATH: `${trap}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` };
const berth = (...args: string[]) => pexec(BIN, ['--bpffs', pinRoot, ...args], { timeout: 60000, env });
/** A probe of the test's own, inside a namespace (the test may use any tool; berth may not use ip). */
const inNs = (ns: string, args: string[]) => spawnSync('nsenter', [`--net=/run/netns/${ns}`, '--', ...args], { encoding: 'utf8', timeout: 20000 });

async function redirected(veth: string): Promise<bigint> {
  const dp = Dataplane.openPinned(pinRoot);
  try {
    return (await readCounters(dp)).filter((r) => r.interface === veth).reduce((a, r) => a + r.redirect.packets, 0n);
  } finally {
    dp.close();
  }
}

t.teardown(async () => {
  await forceDown(cfg, pinRoot, { netns: [X, Y], links: [hostVethName(X), hostVethName(Y), BR] });
  fs.rmSync(dir, { recursive: true, force: true });
});

t.test('up, run and down without an ip process', async (t) => {
  const up = await berth('up', '-f', cfgPath);
  t.match(up.stdout, /2 container\(s\) on 1 network\(s\)/);
  t.ok(netnsExists(X) && netnsExists(Y) && linkExists(BR), 'namespaces and bridge exist');

  // the run: command started under nsenter serves the other container
  await waitListening(X, PORT);
  const get = inNs(Y, ['/bin/busybox', 'wget', '-q', '-O', '-', `http://10.71.2.10:${PORT}/`]);
  t.equal(get.stdout, "no ip here\n", `wget from ${Y} to the httpd in ${X} (status ${get.status}, ${get.error?.message ?? ""} ${get.stderr.trim()})`);

  // berth run for a few seconds: reconciles and serves, still no ip
  const proc: ChildProcess = spawn(BIN, ['--bpffs', pinRoot, 'run', '-f', cfgPath, '--metrics', '127.0.0.1:0', '--interval', '300'], { stdio: ['ignore', 'pipe', 'pipe'], env });
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`berth run did not start: ${out}${err}`)), 30000);
    proc.stderr!.on('data', (d) => (err += d));
    proc.stdout!.on('data', (d) => {
      out += d;
      const m = /metrics at (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`berth run exited ${code}: ${out}${err}`));
    });
  });
  const before = await redirected(hostVethName(Y));
  const ping = inNs(X, ['ping', '-c', '3', '-i', '0.2', '-W', '5', '10.71.2.11']);
  t.equal(ping.status, 0, `ping ${X} -> ${Y} under berth run: ${ping.stdout.trim().split('\n').pop()}`);
  t.ok((await redirected(hostVethName(Y))) - before >= 3n, "berth's redirect counter saw the pings into the other container");
  // later reconcile rounds (interval 300 ms), each a chance to call ip: wait until the metrics show a newer one
  const metric = async (name: string): Promise<number> => {
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(url)).text());
    return m ? Number(m[1]) : NaN;
  };
  const first = await metric('berth_last_reconcile_timestamp_seconds');
  let later = first;
  const deadline = Date.now() + 10000;
  for (let i = 0; i < 100 && Date.now() < deadline && !(later > first); i++) {
    await new Promise((r) => setTimeout(r, 100));
    later = await metric('berth_last_reconcile_timestamp_seconds');
  }
  t.ok(first > 0 && later > first, `berth run reconciled again (${first} -> ${later})`);
  t.equal(await metric('berth_last_error_timestamp_seconds'), 0, 'without a reconcile error');
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  proc.kill('SIGTERM');
  t.equal(await exited, 0, 'berth run stops cleanly on SIGTERM');

  const down = await berth('down', '-f', cfgPath);
  t.match(down.stdout, /removed/);
  t.notOk(netnsExists(X) || netnsExists(Y) || linkExists(BR), 'down removed namespaces and bridge');
  t.equal(fs.readFileSync(log, 'utf8'), '', 'berth never ran ip');
});
