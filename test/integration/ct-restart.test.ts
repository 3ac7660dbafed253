// A restarted container gets a fixed-source-port UDP sender back (moby#8795).
//
// An outside host sends one datagram every 20 ms (at most SENDS) from ONE
// fixed source port to a published UDP port. The first datagram opens a
// tracked flow that points at the container's veth. The container is then
// restarted: its namespace and veth are removed and made again, through the
// path the daemon's reconcile and `berth up` take (topology, then the map
// reconcile, which flushes the flows that point at what changed). Once with
// the same address, once with a new one. With Docker's iptables rules the
// old conntrack entry keeps sending the datagrams into the void; here they
// must arrive in the new container within a bounded wait, every datagram
// after the first one there must arrive, none may reach the old container
// after it was gone, and the flush is counted (berth_conntrack_flushed_total)
// with one flow per restart.
//
// Standalone part: the daemon in this process (no periodic reconcile in the
// way: the test reloads it). Docker part: a private dockerd (--iptables=false)
// and `berth run --docker`, `docker restart`; skipped with the reason when
// there is no dockerd here, as the other Docker suites are.
import t from 'tap';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../../src/domain/config';
import { pairFlows, readHalves } from '../../src/engine/conntrack';
import { Daemon, startDaemon } from '../../src/engine/daemon';
import { Dataplane } from '../../src/platform/dataplane';
import { externalVethName, hostVethName } from '../../src/domain/names';
import { readCounters } from '../../src/observe/stats';
import { forceDown, linkExists, sh } from '../lib/topo';
import { BerthProc, Dockerd, Outside, dockerSkipReason, waitFor } from '../lib/dockerd';

const pid = process.pid;
const tag = `clr${pid % 100000}`;
const pinRoot = `/sys/fs/bpf/berth-test-${tag}`;
const o = (pid % 60) * 4;
const SUB = { A: `10.94.${o}`, EXT: `10.94.${o + 1}`, DK: `10.94.${o + 2}`, OUT: `10.94.${o + 3}` };
const N = { srv: `${tag}-srv`, ext: `${tag}-ext` };
const BR = `${tag}ba`;
const PORT = 34000 + (pid % 100) * 5;
const PUB = PORT; // published UDP port
const SPORT = PORT + 1; // the sender's one source port
const DK_PUB = PORT + 2;
const DK_SPORT = PORT + 3;
const SENDS = 2500; // at most 50 s of datagrams every 20 ms
/** how long the new container may take to get the sender back, from the end of the reconcile */
const BACK_MS = 5000;
t.setTimeout(8 * 60 * 1000);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));
// the container: one line per datagram (payload = the sender's sequence number, and the source) in a file of its own
const RECV = `import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', 5000))
f = open(os.path.join(sys.argv[1], 'recv-%s-%d.log' % (sys.argv[2], os.getpid())), 'a', buffering=1)
while True:
    d, a = s.recvfrom(64)
    f.write('%s %s %d\\n' % (d.decode(), a[0], a[1]))
`;
// the outside sender: datagram i every gap seconds from one source port; prints i after each; replies (Docker part) as "r <i> <text>"
const SEND = `import select, socket, sys, time
dst, dport, sport, count, gap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', sport))
s.setblocking(False)
for i in range(count):
    try:
        s.sendto(b'%d' % i, (dst, dport))
    except OSError:
        pass
    print('s %d' % i, flush=True)
    end = time.monotonic() + gap
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([s], [], [], left)
        if r:
            try:
                d, _ = s.recvfrom(256)
                print('r %d %s' % (i, d.decode(errors='replace').strip()), flush=True)
            except OSError:
                pass
`;
fs.writeFileSync(path.join(dir, 'recv.py'), RECV);
fs.writeFileSync(path.join(dir, 'send.py'), SEND);

const configText = (ip: string) => `
networks:
  - name: ${tag}-a
    subnet: ${SUB.A}.0/24
    bridge: ${BR}
containers:
  - name: ${N.srv}
    network: ${tag}-a
    ip: ${ip}
    run: [python3, -u, ${dir}/recv.py, ${dir}, "${ip}"]
    publish: ["${PUB}:5000/udp"]
externals:
  - name: ${N.ext}
    address: ${SUB.EXT}.2/24
uplinks: [${externalVethName(N.ext)}]
interfaces: []
`;
const cfgPath = path.join(dir, 'topology.yaml');
fs.writeFileSync(cfgPath, configText(`${SUB.A}.10`));
const cfg = parseConfig(configText(`${SUB.A}.10`), cfgPath);
const procs: ChildProcess[] = [];
let daemon: Daemon | undefined;

t.teardown(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  try {
    await daemon?.stop();
  } catch {
    /* forced cleanup below */
  }
  await forceDown(cfg, pinRoot, { netns: Object.values(N), links: [BR, hostVethName(N.srv), externalVethName(N.ext)] });
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The sender in a namespace: the last sequence number sent, the replies. */
function sender(ns: string, dst: string, dport: number, sport: number) {
  const st = { sent: -1, replies: [] as Array<{ i: number; text: string }> };
  const p = spawn('ip', ['netns', 'exec', ns, 'python3', '-u', path.join(dir, 'send.py'), dst, String(dport), String(sport), String(SENDS), '0.02'], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(p);
  let buf = '';
  p.stdout!.on('data', (b: Buffer) => {
    buf += b.toString();
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const l of lines) {
      const m = /^s (\d+)$/.exec(l);
      if (m) st.sent = Number(m[1]);
      const r = /^r (\d+) (.*)$/.exec(l);
      if (r) st.replies.push({ i: Number(r[1]), text: r[2]! });
    }
  });
  const exited = new Promise<void>((r) => p.on('exit', () => r()));
  return { st, p, exited };
}

/** Every receiver log of the container: file -> the sequence numbers it got, with their source. */
function received(): Map<string, Array<{ seq: number; src: string }>> {
  const out = new Map<string, Array<{ seq: number; src: string }>>();
  for (const f of fs.readdirSync(dir).filter((x) => x.startsWith('recv-'))) {
    const rows = fs
      .readFileSync(path.join(dir, f), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' '))
      .map(([seq, a, p]) => ({ seq: Number(seq), src: `${a}:${p}` }));
    out.set(f, rows);
  }
  return out;
}

/** Take the container away as a crash or `docker rm` would: its processes, then its namespace (and so its veth). */
async function removeContainer(): Promise<void> {
  let pids = '';
  try {
    pids = execFileSync('ip', ['netns', 'pids', N.srv], { encoding: 'utf8', timeout: 10000 });
  } catch {
    /* no such namespace */
  }
  for (const p of pids.split('\n').filter(Boolean)) {
    try {
      process.kill(Number(p), 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  sh('ip', ['netns', 'del', N.srv]);
  await waitFor(() => !linkExists(hostVethName(N.srv)), 10000, 50);
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(daemon!.metricsUrl)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
}

/** The sender's tracked flows (by its fixed source port): where each one points. */
async function senderFlows(): Promise<Array<{ to: string; ifindex: number }>> {
  const dp = Dataplane.openPinned(pinRoot);
  try {
    return pairFlows(await readHalves(dp.maps.ct))
      .filter((f) => f.proto === 17 && f.orig.key.sport === SPORT && f.orig.key.dport === PUB)
      .map((f) => ({ to: f.orig.entry.rewrite.daddr, ifindex: f.orig.entry.out_ifindex }));
  } finally {
    dp.close();
  }
}

async function toContainerRedirects(ifname: string): Promise<bigint> {
  const dp = Dataplane.openPinned(pinRoot);
  try {
    const row = (await readCounters(dp)).find((r) => r.interface === ifname && r.direction === 'to_container');
    return row?.redirect.packets ?? 0n;
  } finally {
    dp.close();
  }
}

const ifindexOf = (name: string): number => Number(fs.readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8').trim());

t.test('standalone: a restarted container gets the fixed-port UDP sender back, same address and a new one', async (t) => {
  // no periodic reconcile: each restart is reconciled by the host watch (the veth went) and by the reload below
  daemon = await startDaemon({ configPath: cfgPath, pinRoot, metrics: '127.0.0.1:0', intervalMs: 600000, sweepMs: 1000 });
  const s = sender(N.ext, `${SUB.EXT}.1`, PUB, SPORT);
  const logsOf = (ip: string) => [...received().entries()].filter(([f]) => f.startsWith(`recv-${ip}-`));
  t.ok(await waitFor(() => logsOf(`${SUB.A}.10`).some(([, r]) => r.length >= 5), 10000, 50), 'the first container receives the sender');
  const first = logsOf(`${SUB.A}.10`);
  t.equal(first.length, 1, 'one receiver');
  t.match(first[0]![1][0]!.src, `${SUB.EXT}.2:${SPORT}`, "the sender's own address and fixed port (DNAT keeps the source)");
  t.same((await senderFlows()).map((f) => f.to), [`${SUB.A}.10`], 'one tracked flow, to the container');
  const flushed0 = await metric('berth_conntrack_flushed_total');
  t.equal(flushed0, 0, 'nothing flushed yet');

  for (const [what, ip] of [
    ['the same address', `${SUB.A}.10`],
    ['a new address', `${SUB.A}.11`],
  ] as const) {
    await t.test(`restart with ${what}`, async (t) => {
      const before = new Set(received().keys());
      const oldVeth = ifindexOf(hostVethName(N.srv));
      const flushedBefore = await metric('berth_conntrack_flushed_total');
      await removeContainer();
      const goneAt = s.st.sent; // every datagram from here on finds the old container gone
      const oldLogs = [...received().entries()].filter(([f]) => before.has(f));
      // datagrams keep coming while the container is away: with only the stale flow they would all be lost
      t.ok(await waitFor(() => s.st.sent >= goneAt + 10, 5000, 20), 'the sender goes on while the container is away');
      // the veth's removal is an rtnetlink event: the daemon may reconcile (and flush the stale flow) before the reload
      fs.writeFileSync(cfgPath, configText(ip));
      await daemon!.reload(); // the topology made again, then the reconcile
      const reconciledAt = s.st.sent;
      const newVeth = ifindexOf(hostVethName(N.srv));
      t.not(newVeth, oldVeth, 'a new veth');
      t.ok((await metric('berth_conntrack_flushed_total')) >= flushedBefore + 1, 'the stale flow was flushed (when the veth went, or by the reload)');
      const fresh = () => [...received().entries()].filter(([f]) => !before.has(f) && f.startsWith(`recv-${ip}-`));
      const back = await waitFor(() => fresh().some(([, r]) => r.length > 0), BACK_MS, 20);
      t.ok(back, `the new container receives the sender within ${BACK_MS} ms`);
      t.ok(await waitFor(() => fresh().some(([, r]) => r.length >= 20), 5000, 20), '... and keeps receiving');
      const [[, rows]] = fresh();
      const seqs = rows!.map((r) => r.seq);
      t.comment(`${what}: gone after #${goneAt}, reconciled by #${reconciledAt}, first in the new container #${seqs[0]} (${seqs[0]! - reconciledAt} datagram(s) after the reconcile)`);
      t.ok(seqs[0]! <= reconciledAt + BACK_MS / 20, 'the first datagram there was sent right after the reconcile');
      const missing = seqs.slice(1).filter((q, i) => q !== seqs[i]! + 1);
      t.same(missing, [], 'every datagram after the first one arrives, in order');
      t.ok(rows!.every((r) => r.src === `${SUB.EXT}.2:${SPORT}`), 'from the same fixed source port');
      for (const [f, r] of oldLogs) t.ok(r.every((x) => x.seq <= goneAt), `the old container (${f}) got nothing sent after it was gone`);
      const now = received();
      for (const [f] of oldLogs) t.equal(now.get(f)!.length, oldLogs.find(([g]) => g === f)![1].length, `${f}: not one datagram more`);
      const flows = await senderFlows();
      t.same(flows, [{ to: ip, ifindex: newVeth }], 'one tracked flow, to the new container');
      t.ok((await toContainerRedirects(hostVethName(N.srv))) >= BigInt(rows!.length), "counted into the new container's veth");
    });
  }
  s.p.kill('SIGTERM');
  await s.exited;
});

t.test('docker mode: `docker restart` gets the fixed-port UDP sender back', { skip: dockerSkipReason() ?? false }, async (t) => {
  const dtag = `${tag.slice(0, 3)}${pid % 10000}`;
  const outside = new Outside(`${dtag}o`, SUB.OUT, dir, 7000 + (pid % 1000));
  const d = new Dockerd({ tag: `${dtag}d`, iptables: false, bridge: `${dtag}d0`, bridgeCidr: `${SUB.DK}.1/24`, liveRestore: false });
  const dpin = `${pinRoot}-dk`;
  let berth: BerthProc | undefined;
  t.teardown(async () => {
    berth?.kill9();
    await d.cleanup().catch(() => undefined);
    try {
      Dataplane.reset(dpin);
    } catch {
      /* nothing pinned */
    }
    await outside.down();
  });
  await Dockerd.sweepStale();
  d.own({ netns: outside.ns, link: outside.hostIf });
  await d.start();
  await outside.up([]);
  berth = new BerthProc(dpin, d.sock, [outside.hostIf], dir);
  await berth.start();
  await d.buildImage();
  // udpecho answers "<name> from <client>"; the name carries the host's uptime at start: one per start
  await d.dockerOk(['run', '-d', '--name', 'srv', '-p', `${DK_PUB}:5000/udp`, d.image, 'sh', '-c', 'exec udpecho 5000 "g$(cut -d" " -f1 /proc/uptime)"']);
  const s = sender(outside.ns, outside.hostAddr, DK_PUB, DK_SPORT);
  const gens = () => [...new Set(s.st.replies.map((r) => r.text.split(' ')[0]!))];
  t.ok(await waitFor(() => s.st.replies.length >= 5, 15000, 50), 'the container answers the sender through berth');
  const [g1] = gens();
  t.match(s.st.replies[0]!.text, ` from ${outside.addr}`, "it sees the sender's own address");
  const m0 = await berth.metrics();
  const flushed = (m: string) => Number(/^berth_conntrack_flushed_total (\S+)$/m.exec(m)?.[1] ?? NaN);
  t.equal(flushed(m0), 0, 'nothing flushed yet');

  const restartAt = s.st.sent;
  await d.dockerOk(['restart', '-t', '0', 'srv']);
  const restartedAt = s.st.sent;
  const fromNew = () => s.st.replies.filter((r) => !r.text.startsWith(`${g1} `));
  t.ok(await waitFor(() => fromNew().length >= 5, 15000, 20), 'the restarted container answers the same sender');
  const g2 = fromNew()[0]!.text.split(' ')[0];
  t.not(g2, g1, 'a new start');
  t.comment(`docker restart: sent #${restartAt} before, #${restartedAt} when docker restart returned, first answer from the new start to #${fromNew()[0]!.i}`);
  t.ok(fromNew()[0]!.i <= restartedAt + 15000 / 20, 'within a bounded wait');
  const lastOld = Math.max(...s.st.replies.filter((r) => r.text.startsWith(`${g1} `)).map((r) => r.i));
  t.ok(lastOld <= restartedAt, `the old start answered nothing sent after the restart (its last: #${lastOld})`);
  t.ok(await waitFor(async () => flushed(await berth!.metrics()) >= 1, 10000, 100), 'the stale flow was flushed (berth_conntrack_flushed_total)');
  t.match(berth.logText(), /"flushed":[1-9]/, 'and the reconcile logged it');
  // from here on, every datagram is answered (none black-holed)
  const firstNew = fromNew()[0]!.i;
  const sentNow = s.st.sent;
  t.ok(await waitFor(() => s.st.replies.some((r) => r.i >= sentNow + 20), 5000, 20), 'the sender keeps getting answers');
  // (an answer is filed under the datagram last sent when it came: it may be filed one later, never lost)
  const answers = fromNew().filter((r) => r.i >= firstNew && r.i <= sentNow + 20).length;
  t.ok(answers >= sentNow - firstNew + 1, `every datagram after the first answer from the new start is answered (${answers} answers to ${sentNow - firstNew + 1})`);
  s.p.kill('SIGTERM');
  await s.exited;
});
