// Container to container through the real programs on real veths: what
// arrives, what is counted, and that the bridge is not crossed.
import t from 'tap';
import { Dataplane } from '../../src/platform/dataplane';
import { DropReason } from '../../src/platform/contract';
import { readCounters } from '../../src/observe/stats';
import * as standalone from '../../src/sources/standalone';
import { fixture, linkStat, nsOk } from '../lib/topo';
import { waitListening } from '../lib/listen';

const fx = fixture(t, 'fp', 1, [
  { key: 'a', containers: ['c1', 'c2'] },
  { key: 'b', containers: ['c3'] },
  { key: 'q', icc: false, containers: ['c4', 'c5'] },
]);

async function counterOf(veth: string, direction: string) {
  const dp = Dataplane.openPinned(fx.pinRoot);
  try {
    const row = (await readCounters(dp)).find((r) => r.interface === veth && r.direction === direction);
    if (!row) throw new Error(`no counters for ${veth} ${direction}`);
    return row;
  } finally {
    dp.close();
  }
}

t.test('fast path', async (t) => {
  await standalone.up(fx.cfg, { pinRoot: fx.pinRoot, startCommands: false });

  t.test('same network: traffic arrives, is redirected on both veths and does not cross the bridge', async (t) => {
    t.ok(nsOk(fx.c('c1'), ['ping', '-c', '1', '-W', '2', fx.ip('c2')]), 'first ping (ARP goes through the bridge)');
    const txBefore = linkStat(fx.veth('c2'), 'tx_packets');
    const txBackBefore = linkStat(fx.veth('c1'), 'tx_packets');
    const redirBefore = (await counterOf(fx.veth('c2'), 'to_container')).redirect.packets;
    t.ok(nsOk(fx.c('c1'), ['ping', '-q', '-c', '200', '-i', '0.002', '-W', '2', fx.ip('c2')]), '200 pings answered');
    const txDelta = linkStat(fx.veth('c2'), 'tx_packets') - txBefore;
    const txBackDelta = linkStat(fx.veth('c1'), 'tx_packets') - txBackBefore;
    const redirDelta = (await counterOf(fx.veth('c2'), 'to_container')).redirect.packets - redirBefore;
    t.ok(redirDelta >= 200n, `redirected into c2: ${redirDelta}`);
    t.ok((await counterOf(fx.veth('c1'), 'to_container')).redirect.packets >= 200n, 'replies redirected into c1');
    t.ok((await counterOf(fx.veth('c1'), 'from_container')).redirect.packets >= 200n, 'counted leaving c1');
    t.ok(txDelta < 10, `bridge forwarded ${txDelta} packets to c2's veth (only ARP may)`);
    t.ok(txBackDelta < 10, `bridge forwarded ${txBackDelta} packets to c1's veth`);
  });

  t.test('TCP between containers', async (t) => {
    const srv = fx.c('c2');
    // a one-shot TCP server in c2; the client sends a line and reads the answer
    const { spawn } = await import('node:child_process');
    const server = spawn('ip', ['netns', 'exec', srv, 'busybox', 'nc', '-l', '-p', '7001', '-e', 'busybox', 'echo', 'pong'], { stdio: 'ignore' });
    t.teardown(() => {
      server.kill('SIGKILL');
    });
    await waitListening(srv, 7001);
    const { execFileSync } = await import('node:child_process');
    const out = execFileSync('ip', ['netns', 'exec', fx.c('c1'), 'busybox', 'nc', '-w', '2', fx.ip('c2'), '7001'], { input: 'ping\n', timeout: 10000 }).toString();
    t.match(out, /pong/);
  });

  t.test('two networks cannot reach each other (counted as isolation)', async (t) => {
    const before = (await counterOf(fx.veth('c1'), 'from_container')).drop.isolation.packets;
    t.notOk(nsOk(fx.c('c1'), ['ping', '-c', '2', '-i', '0.2', '-W', '1', fx.ip('c3')]), 'c1 -> c3 fails');
    t.notOk(nsOk(fx.c('c3'), ['ping', '-c', '1', '-W', '1', fx.ip('c1')]), 'c3 -> c1 fails');
    t.ok((await counterOf(fx.veth('c1'), 'from_container')).drop.isolation.packets >= before + 2n, 'isolation drops counted at the sender');
    t.ok((await counterOf(fx.veth('c3'), 'from_container')).drop.isolation.packets >= 1n);
    t.ok(nsOk(fx.c('c1'), ['ping', '-c', '1', '-W', '2', fx.gateway('a')]), 'the gateway still answers');
  });

  t.test('icc false: containers of that network cannot talk (counted as icc)', async (t) => {
    t.notOk(nsOk(fx.c('c4'), ['ping', '-c', '2', '-i', '0.2', '-W', '1', fx.ip('c5')]));
    const row = await counterOf(fx.veth('c4'), 'from_container');
    t.ok(row.drop.icc.packets >= 2n, `icc drops: ${row.drop.icc.packets}`);
    t.equal(DropReason.ICC, 2);
    t.ok(nsOk(fx.c('c4'), ['ping', '-c', '1', '-W', '2', fx.gateway('q')]), 'the gateway still answers');
  });

  t.test('reset leaves the kernel path working as if berth never ran', async (t) => {
    Dataplane.reset(fx.pinRoot);
    t.notOk(Dataplane.isPinned(fx.pinRoot));
    const txBefore = linkStat(fx.veth('c2'), 'tx_packets');
    t.ok(nsOk(fx.c('c1'), ['ping', '-q', '-c', '50', '-i', '0.002', '-W', '2', fx.ip('c2')]));
    t.ok(linkStat(fx.veth('c2'), 'tx_packets') - txBefore >= 50, 'now the bridge carries it');
    // and programming again restores the fast path
    await standalone.up(fx.cfg, { pinRoot: fx.pinRoot, startCommands: false });
    t.ok(nsOk(fx.c('c1'), ['ping', '-c', '1', '-W', '2', fx.ip('c2')]));
    t.ok((await counterOf(fx.veth('c2'), 'to_container')).redirect.packets >= 1n);
  });
});
