// Docker mode handles an event by what it names (issue 13 item 2): a private dockerd
// (--iptables=false) and the follower in this process (its status counts the inspections),
// on a dataplane of the test's own.
//   With K=20 containers running, one more started with -p answers on its port from an outside
//   namespace, and its start inspected a few containers, not K.
//   `docker rm -f` of one removes its entries alone: the others still answer, its port does not.
//   A network connect/disconnect of a running container is followed.
//   A container started while the follower is down is picked up by the resync at (re)connect.
// Reported, never asserted: from `docker run -d -p` returning to the port's first answer from
// outside (median of 10, polled every 5 ms inside the outside namespace), handled by event and
// through the full resync of every event (fullEveryEvent), with the event-loop delay p99 of this
// process (the follower's) during the starts, and the ms per phase of one event's handling.
// Names bev*, subnets 10.61.0.0/16, pin root /sys/fs/bpf/berth-ev-test*, ports 31000-31499.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Dataplane } from '../../src/platform/dataplane';
import { readCurrent } from '../../src/engine/reconcile';
import { DockerClient } from '../../src/sources/docker/client';
import { DEFAULT_DOCKER_SETTINGS } from '../../src/sources/docker/desired';
import { DockerFollower } from '../../src/sources/docker/follower';
import { Direction, counterKeyCodec, publishKeyCodec, sumPerCpuCounters } from '../../src/platform/contract';
import { Dockerd, Outside, dockerSkipReason, exec, pool, serverCmd, waitFor } from '../lib/dockerd';

const pid = process.pid;
const id = pid % 100;
const tag = `bev${id}`;
const pinRoot = `/sys/fs/bpf/berth-ev-test${pid % 1000}`;
const k = 10 + (pid % 20) * 8; // 10.61.k.0/24 outside, k+1 dockerd's default bridge, k+2 and k+3 the networks
const BASE = 31000 + (pid % 10) * 48;
const K = 20;
const RUNS = 10;
t.setTimeout(20 * 60 * 1000);

const workdir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-dk-${tag}-`));
const outside = new Outside(tag, `10.61.${k}`, workdir, 7000);
const d = new Dockerd({ tag: `${tag}d`, iptables: false, bridge: `${tag}d0`, bridgeCidr: `10.61.${k + 1}.1/24` });
const NET = `bev-n${id}`;
const NET2 = `bev-m${id}`;
let dp: Dataplane | undefined;
let client: DockerClient | undefined;
let follower: DockerFollower | undefined;

// the lines the follower logs (its debug line gives the ms per phase of each run)
const lines: Array<Record<string, unknown>> = [];
const write = process.stderr.write.bind(process.stderr);
process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
  const s = String(chunk);
  if (s.startsWith('{')) {
    try {
      lines.push(JSON.parse(s) as Record<string, unknown>);
    } catch {
      /* not a log line */
    }
  }
  if (!/"level":"debug"/.test(s)) return (write as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
  return true;
}) as typeof process.stderr.write;

t.teardown(async () => {
  await follower?.stop().catch(() => undefined);
  await client?.destroy().catch(() => undefined);
  dp?.close();
  await d.cleanup().catch(() => undefined);
  try {
    Dataplane.reset(pinRoot);
  } catch {
    /* nothing pinned */
  }
  await outside.down();
  fs.rmSync(workdir, { recursive: true, force: true });
  process.stderr.write = write;
});

// polls ip:port every 5 ms from inside the outside namespace; prints the wall-clock time of the first answer
const POLL_PY = `
import socket, sys, time
host, port, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
end = time.time() + limit
while time.time() < end:
    try:
        s = socket.create_connection((host, port), timeout=0.2)
        s.settimeout(0.5)
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        if s.recv(64):
            print("%.6f" % time.time(), flush=True)
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.005)
print("none", flush=True)
`;
const pollPy = path.join(workdir, 'poll.py');
fs.writeFileSync(pollPy, POLL_PY);

const follow = (): DockerFollower =>
  new DockerFollower({ client: client!, dp: dp!, settings: { ...DEFAULT_DOCKER_SETTINGS, uplinks: [outside.hostIf], interfaces: [] }, intervalMs: 600000 });

async function answers(port: number): Promise<boolean> {
  return (await outside.fromOutside('tcp', outside.hostAddr, port, 1)).startsWith('answer');
}

async function programmed(): Promise<{ endpoints: Map<string, string[]>; ports: Set<number> }> {
  const cur = await readCurrent(dp!);
  const nets = new Map([...cur.networks].map(([i, m]) => [i, m.name]));
  const endpoints = new Map<string, string[]>();
  for (const e of cur.endpoints.values()) {
    const c = e.meta?.container ?? '?';
    endpoints.set(c, [...(endpoints.get(c) ?? []), nets.get(e.ep.network_id) ?? '?'].sort());
  }
  const ports = new Set([...(cur.publish?.values() ?? [])].map((p) => publishKeyCodec.decode(p.key).host_port));
  return { endpoints, ports };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
};

/** `docker run -d -p` of one container while polling its port from outside: ms from the run returning to the first answer. */
async function startTimed(name: string, port: number): Promise<{ ms: number; inspects: number; full: number }> {
  const poll = exec('ip', ['netns', 'exec', outside.ns, 'python3', pollPy, outside.hostAddr, String(port), '60'], 90000);
  await new Promise((r) => setTimeout(r, 150)); // the poller is running (a refused connect every 5 ms)
  const before = follower!.status.inspects ?? 0;
  const fullBefore = follower!.status.fullResyncs ?? 0;
  await d.dockerOk(['run', '-d', '--name', name, '--network', NET, '-p', `${port}:80`, d.image, ...serverCmd(name)]);
  const returned = Date.now() / 1000;
  const r = await poll;
  const at = Number(r.stdout.trim());
  await follower!.caughtUp();
  return { ms: Number.isFinite(at) ? (at - returned) * 1000 : NaN, inspects: (follower!.status.inspects ?? 0) - before, full: (follower!.status.fullResyncs ?? 0) - fullBefore };
}

t.test('docker mode by event: one container start inspects one container; rm, connect, disconnect, down', { skip: dockerSkipReason() ?? false }, async (t) => {
  await Dockerd.sweepStale([`berth-dk-bev`]);
  d.own({ netns: outside.ns, link: outside.hostIf });
  await d.start();
  await outside.up([]);
  await d.buildImage();
  await d.networkCreate(NET, `${tag}n1`, `10.61.${k + 2}.0/24`);
  await d.networkCreate(NET2, `${tag}m1`, `10.61.${k + 3}.0/24`);
  Dataplane.reset(pinRoot);
  dp = await Dataplane.openOrLoad({ pinRoot, fastPath: true, natPortMin: 61000, natPortMax: 65535 });
  client = new DockerClient({ socketPath: d.sock });
  follower = follow();
  await follower.start();
  t.ok(follower.status.connected, 'the follower follows the private dockerd');

  const names = Array.from({ length: K }, (_, i) => `bevk${i}`);
  for (const [i, n] of names.entries()) await d.dockerOk(['run', '-d', '--name', n, '--network', NET, '-p', `${BASE + i}:80`, d.image, ...serverCmd(n)]);
  await follower.caughtUp();
  t.ok(await waitFor(async () => (await programmed()).endpoints.size === K, 30000, 100), `${K} containers programmed`);
  const all = await pool(names.map((_, i) => () => waitFor(() => answers(BASE + i), 20000, 100).catch(() => false)), 6);
  t.same(all.filter((x) => !x).length, 0, `every one of the ${K} published ports answers from outside`);

  await t.test(`one more container with -p among ${K}: answers from outside, a few inspects (not ${K})`, async (t) => {
    const port = BASE + K;
    const { ms, inspects, full } = await startTimed('bevnew', port);
    t.ok(Number.isFinite(ms), `its port answered from outside (${ms.toFixed(1)} ms after docker run returned)`);
    t.ok(inspects >= 1 && (inspects <= 4 || full > 0), `its start inspected ${inspects} container(s), not ${K}${full ? ` (${full} full resync(s) after a failed run)` : ''}`);
    const cur = await readCurrent(dp!);
    const ep = [...cur.endpoints.values()].find((e) => e.meta?.container === 'bevnew');
    t.ok(ep, 'its endpoint is programmed');
    const c = ep && dp!.maps.counters.lookup(counterKeyCodec.encode({ ifindex: ep.ep.ifindex, direction: Direction.TO_CONTAINER }));
    t.ok(c && sumPerCpuCounters(c, dp!.cpus).pass.packets + sumPerCpuCounters(c, dp!.cpus).redirect.packets > 0n, "berth's counters saw the answer's request go to it");
    // a full resync follows only a failed run (this machine's netlink dumps are sometimes interrupted by other tests' links): said, not failed
    if (full) t.comment(`${full} full resync(s) during the start, after a failed run: ${JSON.stringify(lines.filter((l) => l.level === 'error').slice(-2))}`);
    await d.dockerOk(['rm', '-f', 'bevnew']);
    await follower!.caughtUp();
  });

  await t.test('measured: docker run -d -p to the first answer from outside, by event and with a full resync per event', async (t) => {
    const h = monitorEventLoopDelay({ resolution: 1 });
    const report: string[] = [];
    for (const mode of ['by event', 'full resync per event'] as const) {
      follower!.fullEveryEvent = mode !== 'by event';
      const times: number[] = [];
      const inspects: number[] = [];
      const from = lines.length;
      h.reset();
      h.enable();
      for (let i = 0; i < RUNS; i++) {
        const name = `bevt${i}`;
        const r = await startTimed(name, BASE + K + 1 + i);
        times.push(r.ms);
        inspects.push(r.inspects);
        await d.dockerOk(['rm', '-f', name]);
        await follower!.caughtUp();
      }
      h.disable();
      const runs = lines.slice(from).filter((l) => l.msg === 'docker sync' && (l.steps as number) > 0);
      const phases: Record<string, number> = {};
      for (const p of ['docker', 'host', 'resolve', 'desired', 'view', 'apply', 'policy', 'total']) phases[p] = median(runs.map((l) => (l.ms as Record<string, number>)[p] ?? NaN));
      const line = `K=${K}, ${mode}: run->answer median ${median(times).toFixed(1)} ms (all: ${times.map((x) => x.toFixed(0)).join(' ')}), inspects per start median ${median(inspects)}, event-loop delay p99 ${(h.percentile(99) / 1e6).toFixed(1)} ms max ${(h.max / 1e6).toFixed(1)} ms; ms per phase of a run with steps (median of ${runs.length}): ${JSON.stringify(phases)}`;
      report.push(line);
      t.comment(line);
      t.ok(times.filter((x) => Number.isFinite(x)).length === RUNS, `${mode}: every start answered from outside`);
    }
    follower!.fullEveryEvent = false;
    // every run's phases, for whoever reads the figures
    fs.writeFileSync(path.join(os.tmpdir(), `berth-docker-events-${pid}.log`), lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    fs.writeFileSync(path.join(os.tmpdir(), `berth-docker-events-${pid}.txt`), report.join('\n') + '\n');
  });

  await t.test('docker rm -f of one: its entries go, the others still answer, its port gives no answer', async (t) => {
    const gone = names[3]!;
    const before = follower!.status.inspects ?? 0;
    await d.dockerOk(['rm', '-f', gone]);
    t.ok(await waitFor(async () => !(await programmed()).endpoints.has(gone), 20000, 50), `${gone}'s endpoint is gone`);
    await follower!.caughtUp();
    t.ok((follower!.status.inspects ?? 0) - before <= 4, `the removal inspected ${(follower!.status.inspects ?? 0) - before} container(s)`);
    const p = await programmed();
    t.notOk(p.ports.has(BASE + 3), 'its published port is gone from berth_publish');
    t.equal(p.endpoints.size, K - 1, 'every other endpoint is kept');
    t.ok([...Array(K).keys()].filter((i) => i !== 3).every((i) => p.ports.has(BASE + i)), "every other container's published port is kept");
    const rest = await pool(names.map((_, i) => async () => (i === 3 ? true : answers(BASE + i))), 6);
    t.same(rest.filter((x) => !x).length, 0, 'the others still answer from outside');
    t.notOk(await answers(BASE + 3), 'the removed one gives no answer');
  });

  await t.test('network connect and disconnect of a running container are followed', async (t) => {
    const c = names[0]!;
    const before = follower!.status.inspects ?? 0;
    await d.dockerOk(['network', 'connect', NET2, c]);
    t.ok(await waitFor(async () => ((await programmed()).endpoints.get(c) ?? []).length === 2, 20000, 50), `${c} has an endpoint on ${NET2} too`);
    t.same((await programmed()).endpoints.get(c), [`docker:${NET}`, `docker:${NET2}`].sort());
    await d.dockerOk(['network', 'disconnect', NET2, c]);
    t.ok(await waitFor(async () => ((await programmed()).endpoints.get(c) ?? []).length === 1, 20000, 50), `${c} is back to one endpoint`);
    await follower!.caughtUp();
    t.ok((follower!.status.inspects ?? 0) - before <= 6, `connect and disconnect inspected ${(follower!.status.inspects ?? 0) - before} container(s)`);
    t.ok(await answers(BASE), `${c} still answers on its port`);
  });

  await t.test('a container started while the follower is down is picked up at (re)connect', async (t) => {
    await follower!.stop();
    const port = BASE + K + RUNS + 2;
    await d.dockerOk(['run', '-d', '--name', 'bevlate', '--network', NET, '-p', `${port}:80`, d.image, ...serverCmd('bevlate')]);
    t.notOk((await programmed()).endpoints.has('bevlate'), 'nothing programs it while the follower is down');
    follower = follow();
    await follower.start();
    t.ok(await waitFor(async () => (await programmed()).endpoints.has('bevlate'), 20000, 50), 'programmed by the resync at connect');
    t.ok(await waitFor(() => answers(port), 20000, 100), 'its port answers from outside');
    t.equal((await programmed()).endpoints.size, K, 'the others are all kept');
  });
});
