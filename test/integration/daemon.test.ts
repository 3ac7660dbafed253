// The daemon as users run it (bin/berth run): metrics, forwarding that does
// not depend on it (kill -9 during a transfer), and `down` / `reset` leaving
// nothing behind.
import t from 'tap';
import { ChildProcess, execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Dataplane } from '../../src/platform/dataplane';
import { readCounters } from '../../src/observe/stats';
import { fixture, linkExists, netnsExists } from '../lib/topo';
import { waitListening } from '../lib/listen';

const pexec = promisify(execFile);
const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'berth');

const fx = fixture(t, 'dm', 2, [{ key: 'a', containers: ['s', 'c'] }]);

function startDaemon(t: { teardown(fn: () => void): void }): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(BIN, ['--bpffs', fx.pinRoot, 'run', '-f', fx.cfgPath, '--metrics', '127.0.0.1:0', '--interval', '500'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`daemon did not start: ${out}${err}`)), 30000);
    proc.stderr!.on('data', (d) => (err += d));
    proc.stdout!.on('data', (d) => {
      out += d;
      const m = /metrics at (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, url: m[1] });
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited ${code}: ${out}${err}`));
    });
  });
}

async function redirected(veth: string): Promise<bigint> {
  const dp = Dataplane.openPinned(fx.pinRoot);
  try {
    return (await readCounters(dp)).filter((r) => r.interface === veth).reduce((a, r) => a + r.redirect.packets, 0n);
  } finally {
    dp.close();
  }
}

t.test('daemon', async (t) => {
  const d = await startDaemon(t);

  t.test('serves /metrics with per-veth series named by container and network', async (t) => {
    await pexec('ip', ['netns', 'exec', fx.c('c'), 'ping', '-c', '3', '-i', '0.2', fx.ip('s')]);
    const body = await (await fetch(d.url)).text();
    const line = body.split('\n').find((l) => l.startsWith('berth_veth_packets_total{') && l.includes(`container="${fx.c('s')}"`) && l.includes('verdict="redirect"') && l.includes('direction="to_container"'));
    t.ok(line, 'a redirect series for the server container');
    t.ok(Number(line!.split(' ').pop()) >= 3, `value counts the pings: ${line}`);
    t.match(line!, `network="${fx.tag}-a"`);
    t.match(line!, `interface="${fx.veth('s')}"`);
    t.match(body, /# TYPE berth_drops_total counter/, 'drops by reason are exported (series appear with the first drop)');
    t.match(body, /berth_build_info\{version="/);
  });

  t.test('kill -9 during a transfer does not break it', async (t) => {
    const server = spawn('ip', ['netns', 'exec', fx.c('s'), 'iperf3', '-s', '-1', '-p', '5301'], { stdio: 'ignore' });
    t.teardown(() => {
      server.kill('SIGKILL');
    });
    await waitListening(fx.c('s'), 5301);
    const before = await redirected(fx.veth('s'));
    const client = pexec('ip', ['netns', 'exec', fx.c('c'), 'iperf3', '-c', fx.ip('s'), '-p', '5301', '-t', '4', '-J'], { timeout: 30000 });
    // kill it once the transfer is under way through berth (bounded wait)
    const deadline = Date.now() + 10000;
    let clientDone = false;
    void client.then(
      () => (clientDone = true),
      () => (clientDone = true),
    );
    while ((await redirected(fx.veth('s'))) - before < 1000n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    t.notOk(clientDone, 'the transfer is still running when the daemon is killed');
    d.proc.kill('SIGKILL');
    const atKill = await redirected(fx.veth('s'));
    const { stdout } = await client;
    const res = JSON.parse(stdout);
    t.notOk(res.error, 'iperf3 finished without error');
    t.ok(res.end.sum_received.bytes > 1e6, `received ${res.end.sum_received.bytes} bytes`);
    t.equal(d.proc.signalCode, 'SIGKILL', 'the daemon was killed mid-transfer');
    const after = await redirected(fx.veth('s'));
    t.ok(after - before > 1000n, `transfer went through berth's redirect: ${after - before} packets`);
    t.ok(after > atKill, `and kept going through it after the kill: ${after - atKill} more packets`);
  });

  t.test('a restarted daemon resumes from the pinned state without changes', async (t) => {
    const d2 = await startDaemon(t);
    const body = await (await fetch(d2.url)).text();
    t.match(body, new RegExp(`container="${fx.c('s')}"`));
    d2.proc.kill('SIGTERM');
    await new Promise((r) => d2.proc.once('exit', r));
    t.equal(d2.proc.exitCode, 0, 'SIGTERM stops it cleanly');
  });

  t.test('down removes exactly what up made, and the dataplane with it', async (t) => {
    const { stdout } = await pexec(BIN, ['--bpffs', fx.pinRoot, 'down', '-f', fx.cfgPath]);
    t.match(stdout, /dataplane unpinned/);
    t.notOk(fs.existsSync(fx.pinRoot), 'no pins left');
    t.notOk(netnsExists(fx.c('s')) || netnsExists(fx.c('c')), 'no namespaces left');
    t.notOk(linkExists(fx.veth('s')) || linkExists(fx.veth('c')) || linkExists(fx.bridge('a')), 'no links left');
    const { stdout: again } = await pexec(BIN, ['--bpffs', fx.pinRoot, 'down', '-f', fx.cfgPath]);
    t.match(again, /removed 0 object/, 'down again is a no-op');
  });
});
