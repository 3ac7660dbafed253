// The daemon follows the host through netlink events (issue 13: "an uplink or
// address that appears is used at once"), not its timer: a standalone daemon
// with a one-hour interval, a file naming an uplink that does not exist yet.
// Created after the start, the uplink is programmed (its berth_uplink entry,
// its hook pinned, its address in berth_host_addr) within a bounded wait, and
// a container's datagram masquerades out through it and its answer comes
// back (the answer names the source the outside saw: the uplink's address;
// berth's counters on the uplink moved). Bringing a programmed link up is
// seen and filtered. An address added to and removed from
// the bridge, and the uplink deleted, are followed the same way.
import t from 'tap';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../../src/domain/config';
import { Dataplane } from '../../src/platform/dataplane';
import { ifindexKeyCodec, ipKeyCodec, uplinkCodec } from '../../src/platform/contract';
import { hostVethName } from '../../src/domain/names';
import { startDaemon } from '../../src/engine/daemon';
import { readCounters } from '../../src/observe/stats';
import { forceDown, removeNetns, sh } from '../lib/topo';

const tag = `bnv${process.pid % 10000}`;
const pinRoot = `/sys/fs/bpf/berth-nv-test-nl${process.pid % 100000}`;
const work = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));
const NET = `${tag}n`;
const BR = `${tag}b`;
const C = `${tag}c`;
const UP = `${tag}u`;
const OUT = `${tag}o`;
const PORT = 31500 + (process.pid % 250);
const UP_ADDR = '10.62.200.1';
const OUT_ADDR = '10.62.200.2';
const BR_EXTRA = '10.62.9.1';

const text = [
  'networks:',
  `  - name: ${NET}`,
  '    subnet: 10.62.1.0/24',
  `    bridge: ${BR}`,
  'containers:',
  `  - name: ${C}`,
  `    network: ${NET}`,
  '    ip: 10.62.1.10',
  `uplinks: [${UP}]`,
  'interfaces: []',
  '',
].join('\n');
const cfgPath = path.join(work, 'nl.yaml');
fs.writeFileSync(cfgPath, text);
const cfg = parseConfig(text, cfgPath);

t.teardown(async () => {
  removeNetns([OUT]);
  sh('ip', ['link', 'del', UP]);
  await forceDown(cfg, pinRoot, { netns: [C], links: [hostVethName(C), BR] });
  fs.rmSync(work, { recursive: true, force: true });
});

/** Bounded: polls cond every 20 ms for at most 20 s (1000 tries; the machine is shared and loaded), far below the 1-hour timer. */
async function waitUntil(what: string, cond: () => boolean | Promise<boolean>): Promise<number> {
  const started = Date.now();
  for (let i = 0; i < 1000 && Date.now() - started < 20000; i++) {
    if (await cond()) return Date.now() - started;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`not within 20 s: ${what}`);
}

const ifindexOf = (ifname: string): number => Number(fs.readFileSync(`/sys/class/net/${ifname}/ifindex`, 'utf8'));
const uplinkPinned = (ifindex: number): boolean => fs.existsSync(path.join(pinRoot, 'links', `up-${ifindex}-tc`));

function withDp<T>(fn: (dp: Dataplane) => T): T {
  const dp = Dataplane.openPinned(pinRoot);
  try {
    return fn(dp);
  } finally {
    dp.close();
  }
}
const hostAddrHas = (addr: string): boolean => withDp((dp) => dp.maps.hostAddr.lookup(ipKeyCodec.encode({ addr })) !== null);
const uplinkEntry = (ifindex: number): { addr: string } | undefined =>
  withDp((dp) => {
    const v = dp.maps.uplink.lookup(ifindexKeyCodec.encode({ ifindex }));
    return v ? uplinkCodec.decode(v) : undefined;
  });

/** A UDP echo in OUT that answers each datagram with the source address it arrived from. */
function startEcho(): ChildProcess {
  const py = `import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',${PORT}))\nprint('ready',flush=True)\nwhile True:\n  d,a=s.recvfrom(2048)\n  s.sendto(a[0].encode(),a)\n`;
  return spawn('ip', ['netns', 'exec', OUT, 'python3', '-c', py], { stdio: ['ignore', 'pipe', 'inherit'] });
}

/** One datagram from the container to OUT: the source address OUT saw, or null when no answer came within 1 s. */
function askFromContainer(): string | null {
  const py = `import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(1)\ns.sendto(b'x',('${OUT_ADDR}',${PORT}))\ntry:\n  print(s.recvfrom(2048)[0].decode())\nexcept socket.timeout:\n  print('')\n`;
  const out = execFileSync('ip', ['netns', 'exec', C, 'python3', '-c', py], { encoding: 'utf8', timeout: 10000 }).trim();
  return out || null;
}

t.test('host changes reach the dataplane as netlink events, not on the timer', async (t) => {
  const d = await startDaemon({ configPath: cfgPath, pinRoot, metrics: '127.0.0.1:0', intervalMs: 3600000, sweepMs: 3600000 });
  t.teardown(() => d.stop());
  t.notOk(fs.readdirSync(path.join(pinRoot, 'links')).some((f) => f.startsWith('up-')), 'no uplink yet: the one named does not exist');

  // the uplink appears (down), with its address, and an outside namespace behind it
  execFileSync('ip', ['netns', 'add', OUT]);
  execFileSync('ip', ['link', 'add', UP, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', OUT]);
  execFileSync('ip', ['addr', 'add', `${UP_ADDR}/24`, 'dev', UP]);
  const up = ifindexOf(UP);
  const ms = await waitUntil(`uplink ${UP} programmed`, () => uplinkPinned(up) && uplinkEntry(up)?.addr === UP_ADDR && hostAddrHas(UP_ADDR));
  t.pass(`uplink ${UP} programmed ${ms} ms after its address was added: hook pinned, berth_uplink ${UP_ADDR}, berth_host_addr ${UP_ADDR}`);
  t.ok(d.hostEvents.changes >= 1, `the events asked for ${d.hostEvents.changes} sync(s)`);

  // bringing it up changes nothing berth programs: its events are seen and filtered (which ones: test/unit/hostwatch.test.ts;
  // other engineers' links come and go in this namespace too, so no count of relevant ones is asserted here)
  const ignored = d.hostEvents.ignored;
  execFileSync('ip', ['link', 'set', UP, 'up']);
  await waitUntil('the link-up event', () => d.hostEvents.ignored > ignored);
  t.pass(`link up of ${UP}: event(s) seen and ignored`);

  // masquerade out through the new uplink and back, with real traffic
  execFileSync('ip', ['netns', 'exec', OUT, 'ip', 'addr', 'add', `${OUT_ADDR}/24`, 'dev', 'eth0']);
  execFileSync('ip', ['netns', 'exec', OUT, 'ip', 'link', 'set', 'eth0', 'up']);
  execFileSync('ip', ['netns', 'exec', OUT, 'ip', 'link', 'set', 'lo', 'up']);
  execFileSync('sysctl', ['-qw', `net.ipv4.conf.${UP}.forwarding=1`]);
  const echo = startEcho();
  t.teardown(() => {
    echo.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    echo.stdout!.once('data', () => resolve());
    echo.once('exit', (c) => reject(new Error(`echo exited ${c}`)));
  });
  const counted = async (): Promise<bigint> => {
    const dp = Dataplane.openPinned(pinRoot);
    try {
      return (await readCounters(dp)).filter((r) => r.ifindex === up).reduce((s, r) => s + r.pass.packets + r.redirect.packets, 0n);
    } finally {
      dp.close();
    }
  };
  const seen = await counted();
  let answer: string | null = null;
  for (let i = 0; i < 10 && answer === null; i++) answer = askFromContainer();
  t.equal(answer, UP_ADDR, `the container's datagram left masqueraded to ${UP_ADDR} and the answer came back`);
  t.ok((await counted()) > seen, "the answer went through berth's hook on the uplink");

  // an address added to a host interface berth already knows, then removed
  execFileSync('ip', ['addr', 'add', `${BR_EXTRA}/32`, 'dev', BR]);
  await waitUntil(`berth_host_addr ${BR_EXTRA}`, () => hostAddrHas(BR_EXTRA));
  t.pass(`${BR_EXTRA} added to ${BR}: in berth_host_addr`);
  execFileSync('ip', ['addr', 'del', `${BR_EXTRA}/32`, 'dev', BR]);
  await waitUntil(`berth_host_addr without ${BR_EXTRA}`, () => !hostAddrHas(BR_EXTRA));
  t.pass(`${BR_EXTRA} removed: gone from berth_host_addr`);

  // the uplink goes
  execFileSync('ip', ['link', 'del', UP]);
  await waitUntil(`uplink ${UP} unprogrammed`, () => !uplinkPinned(up) && uplinkEntry(up) === undefined && !hostAddrHas(UP_ADDR));
  t.pass(`uplink deleted: its hook, berth_uplink entry and host address are gone`);
  t.equal(d.hostEvents.overruns, 0, 'no overrun');
});
