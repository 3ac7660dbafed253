// `berth trace`, `berth monitor` and `berth stats --watch` over a small
// topology (no traffic needed: trace feeds packets with BPF_PROG_TEST_RUN).
import t from 'tap';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import * as standalone from '../../src/sources/standalone';
import { runTrace, formatTrace } from '../../src/observe/trace';
import { runWatch } from '../../src/observe/watch';
import { Dataplane } from '../../src/platform/dataplane';
import { MapName, monitorCfgCodec } from '../../src/platform/contract';
import { native } from '../../src/platform/native';
import { fixture } from '../lib/topo';

const CLI = path.resolve(__dirname, '..', '..', 'src', 'cli', 'main.js');

t.test('trace, monitor and stats --watch', async (t) => {
  const fx = fixture(t, 'obt', 31, [
    { key: 'a', containers: ['a1', 'a2'] },
    { key: 'b', containers: ['b1'] },
  ]);
  await standalone.up(fx.cfg, { pinRoot: fx.pinRoot, startCommands: false });
  const ctCount = () => {
    const dp = Dataplane.openPinned(fx.pinRoot);
    try {
      return dp.maps.ct.keys().length;
    } finally {
      dp.close();
    }
  };

  t.test('same network: redirected into the other container', async (t) => {
    const r = await runTrace({ pinRoot: fx.pinRoot, from: fx.c('a1'), to: `${fx.ip('a2')}:80`, proto: 'tcp' });
    t.equal(r.program, 'berth_veth_ingress');
    t.match(r.verdict, /^redirect/);
    t.equal(r.input.src, fx.ip('a1'));
    t.ok(r.output, 'output headers');
    t.ok(r.counters.some((c) => c.container === fx.c('a1') && c.direction === 'from_container' && c.what === 'redirect' && c.packets === 1), 'counted as redirected from a1');
    t.match(formatTrace(r), /verdict\s+redirect/);
  });

  t.test('another network: dropped, reason isolation', async (t) => {
    const r = await runTrace({ pinRoot: fx.pinRoot, from: fx.c('a1'), to: `${fx.ip('b1')}:80`, proto: 'udp' });
    t.match(r.verdict, /^drop/);
    t.equal(r.output, null);
    t.ok(r.counters.some((c) => c.what === 'drop: isolation' && c.packets === 1), 'isolation drop counted');
    t.ok(r.lookups.some((l) => /another network/.test(l)));
  });

  t.test('conntrack entries a trace creates are deleted afterwards', async (t) => {
    const before = ctCount();
    // to an outside address: masquerade would track it; without an uplink it may drop (no_uplink) instead
    const r = await runTrace({ pinRoot: fx.pinRoot, from: fx.c('a1'), to: '198.51.100.7:443', proto: 'tcp' });
    t.comment(formatTrace(r));
    t.equal(ctCount(), before, 'live table as before');
    if (r.conntrack.length) t.equal(r.conntrackDeleted, r.conntrack.length);
  });

  t.test('monitor: drop events streamed, monitor disabled on exit', async (t) => {
    const child = spawn(process.execPath, [CLI, '--bpffs', fx.pinRoot, 'monitor', '--json', '--count', '2', '--duration', '30', '--rate', '50'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    // wait until the monitor is enabled, then cause drops
    const cfg = native().openPinnedMap(path.join(fx.pinRoot, MapName.MONITOR));
    t.teardown(() => cfg.close());
    const enabled = () => monitorCfgCodec.decode(cfg.lookup(Buffer.alloc(4))!).enabled === 1;
    const deadline = Date.now() + 10000;
    while (!enabled() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    t.ok(enabled(), 'enabled while listening');
    for (let i = 0; i < 3; i++) await runTrace({ pinRoot: fx.pinRoot, from: fx.c('a1'), to: `${fx.ip('b1')}:${8000 + i}`, proto: 'udp', sport: 5000 + i });
    const code = await exited;
    t.equal(code, 0, `monitor exits by itself after --count (stderr: ${err})`);
    const events = out.trim().split('\n').map((l) => JSON.parse(l));
    t.equal(events.length, 2);
    t.match(events[0], { reason: 'isolation', container: fx.c('a1'), src: fx.ip('a1'), dst: fx.ip('b1'), proto: 'udp', sport: 5000, dport: 8000, direction: 'from_container' });
    t.equal(enabled(), false, 'disabled again on exit');
  });

  t.test('monitor: SIGINT disables it too', async (t) => {
    const child = spawn(process.execPath, [CLI, '--bpffs', fx.pinRoot, 'monitor', '--duration', '30'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    const cfg = native().openPinnedMap(path.join(fx.pinRoot, MapName.MONITOR));
    t.teardown(() => cfg.close());
    const enabled = () => monitorCfgCodec.decode(cfg.lookup(Buffer.alloc(4))!).enabled === 1;
    const deadline = Date.now() + 10000;
    while (!enabled() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    t.ok(enabled());
    child.kill('SIGINT');
    t.equal(await exited, 0);
    t.equal(enabled(), false, 'disabled after Ctrl-C');
  });

  t.test('stats --watch: bounded frames with rates', async (t) => {
    const frames: string[] = [];
    const n = await runWatch({ pinRoot: fx.pinRoot, intervalMs: 200, count: 3, write: (s) => frames.push(s), clear: false });
    t.equal(n, 3);
    t.match(frames[2], /PKT\/S/);
    t.match(frames[2], new RegExp(fx.c('a1')));
  });
});
