// Docker mode under stress: dockerd and berth killed (-9) and restarted during
// a transfer through a published port (the transfer survives); changes made
// while berth is down are reconciled when it comes back; container churn
// leaves no map entries, hooks or metric series behind. A private dockerd
// (--iptables=false, --live-restore) and this process's own names only.
import t from 'tap';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Dataplane } from '../../src/platform/dataplane';
import { readCurrent } from '../../src/engine/reconcile';
import { BerthProc, Dockerd, Outside, dockerSkipReason, pool, serverCmd, sleep, waitFor } from '../lib/dockerd';

const pid = process.pid;
const T = (pid + 97) % 250;
const tag = `dr${pid % 10000}`;
const pinRoot = `/sys/fs/bpf/berth-test-${tag}`;
const base = 21000 + (pid % 800) * 10;
const PORT = { big: base, late: base + 1, churn: 30000 + (pid % 300) * 100 };
const CHURN = Number(process.env.BERTH_DOCKER_CHURN ?? 60);
const SIZE = 24 << 20;
t.setTimeout(20 * 60 * 1000);

const workdir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));
const outside = new Outside(tag, `10.248.${T}`, workdir, 7000);
const d = new Dockerd({ tag: `${tag}r`, iptables: false, bridge: `${tag}d0`, bridgeCidr: `10.249.${T}.1/24`, liveRestore: true });
let berth: BerthProc | undefined;
const policyFile = path.join(workdir, 'policy.yaml');
fs.writeFileSync(policyFile, '[]\n');
const newBerth = (): BerthProc => new BerthProc(pinRoot, d.sock, [outside.hostIf], workdir, ['--policy', policyFile]);

t.teardown(async () => {
  berth?.kill9();
  await d.cleanup().catch(() => undefined);
  try {
    Dataplane.reset(pinRoot);
  } catch {
    /* nothing pinned */
  }
  await outside.down();
  fs.rmSync(workdir, { recursive: true, force: true });
});

const SLOW_CLIENT = `
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
s.settimeout(20)
s.sendall(b'GET /big HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n')
n = 0
while True:
    d = s.recv(65536)
    if not d:
        break
    n += len(d)
    time.sleep(0.012)
print(n)
`;

async function state(): Promise<{ endpoints: string[]; publish: number; links: number[]; counters: number }> {
  const dp = Dataplane.openPinned(pinRoot);
  try {
    const cur = await readCurrent(dp);
    return {
      endpoints: [...cur.endpoints.values()].map((e) => e.meta?.container ?? '?').sort(),
      publish: cur.publish?.size ?? 0,
      links: [...new Set(dp.attachments().map((a) => a.ifindex))],
      counters: cur.counters.size,
    };
  } finally {
    dp.close();
  }
}

t.test('docker mode survives dockerd and berth restarts, and churn leaves nothing behind', { skip: dockerSkipReason() ?? false }, async (t) => {
  await Dockerd.sweepStale();
  d.own({ netns: outside.ns, link: outside.hostIf });
  await d.start();
  await outside.up([]);
  berth = newBerth();
  await berth.start();
  await d.buildImage();
  await d.dockerOk(['run', '-d', '--name', 'big', '-p', `${PORT.big}:80`, d.image, 'sh', '-c', `dd if=/dev/zero of=/www/big bs=1M count=${SIZE >> 20} 2>/dev/null; ${serverCmd('big')[2]}`]);
  t.ok(await waitFor(async () => (await outside.fromOutside('tcp', outside.hostAddr, PORT.big)).startsWith('answer'), 15000, 100), 'published port answers through berth');

  await t.test('a transfer survives kill -9 of dockerd and of berth', async (t) => {
    const script = path.join(workdir, 'slow.py');
    fs.writeFileSync(script, SLOW_CLIENT);
    const client = spawn('ip', ['netns', 'exec', outside.ns, '/usr/bin/python3', script, outside.hostAddr, String(PORT.big)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    client.stdout.on('data', (x) => (out += x));
    client.stderr.on('data', (x) => (err += x));
    const done = new Promise<number | null>((r) => client.on('exit', (c) => r(c)));
    await sleep(800);
    d.kill9();
    await sleep(1000);
    await d.start(); // same roots: live-restore finds the containers
    await sleep(500);
    berth!.kill9();
    await sleep(700);
    berth = newBerth();
    await berth.start();
    const code = await Promise.race([done, sleep(60000).then(() => 'timeout' as const)]);
    if (code === 'timeout') client.kill('SIGKILL');
    t.equal(code, 0, `client finished (${err.trim()})`);
    t.ok(Number(out.trim()) > SIZE, `every byte arrived (${out.trim()} > ${SIZE})`);
    const m = await berth.metrics();
    t.match(m, /berth_docker_connected 1/, 'berth follows the restarted dockerd');
  });

  await t.test('changes made while berth is down are reconciled when it comes back', async (t) => {
    await d.dockerOk(['run', '-d', '--name', 'old', d.image, ...serverCmd('old')]);
    t.ok(await waitFor(async () => (await state()).endpoints.includes('old'), 10000, 100), 'old programmed');
    berth!.kill9();
    await d.dockerOk(['rm', '-f', 'old']);
    await d.dockerOk(['run', '-d', '--name', 'late', '-p', `${PORT.late}:80`, d.image, ...serverCmd('late')]);
    berth = newBerth();
    await berth.start();
    t.ok(await waitFor(async () => (await outside.fromOutside('tcp', outside.hostAddr, PORT.late)).startsWith('answer'), 10000, 100), 'the container started while berth was down is published');
    const st = await state();
    t.notOk(st.endpoints.includes('old'), 'the container removed while berth was down is gone from the maps');
    t.same(st.endpoints, ['big', 'late']);
  });

  await t.test('the policy (DOCKER-USER): deny, hits, a bad reload keeps it, allow again', async (t) => {
    const H = outside.hostAddr;
    t.match(await outside.fromOutside('tcp', H, PORT.late), /^answer late/);
    fs.writeFileSync(policyFile, `- action: allow\n  source: 192.0.2.0/24\n- action: deny\n  source: ${outside.addr}/32\n  container: late\n  proto: tcp\n`);
    berth!.signal('SIGHUP');
    t.ok(await waitFor(async () => (await outside.fromOutside('tcp', H, PORT.late)).startsWith('blocked'), 10000, 200), 'denied after SIGHUP');
    t.match(await outside.fromOutside('tcp', H, PORT.big), /^answer big/, 'another container is not affected');
    const m = await berth!.metrics();
    const hits = /berth_policy_hits_total\{rule="1",action="deny"\} (\d+)/.exec(m);
    t.ok(hits && Number(hits[1]) > 0, `rule 1 counted (${hits?.[1]})`);
    t.match(m, /berth_policy_hits_total\{rule="0",action="allow"\} 0/, 'rule 0 matched nothing');
    fs.writeFileSync(policyFile, '- action: maybe\n');
    berth!.signal('SIGHUP');
    await sleep(1500);
    t.match(berth!.logText(), /policy reload failed; keeping the previous one.*\[0\]\.action/, 'the bad file is reported with its field');
    t.match(await outside.fromOutside('tcp', H, PORT.late), /^blocked/, 'the old policy stays');
    fs.writeFileSync(policyFile, '[]\n');
    berth!.signal('SIGHUP');
    t.ok(await waitFor(async () => (await outside.fromOutside('tcp', H, PORT.late)).startsWith('answer'), 10000, 200), 'allowed again');
  });

  await t.test(`churn: ${CHURN} containers started and removed`, async (t) => {
    const before = await state();
    const t0 = Date.now();
    await pool(
      Array.from({ length: CHURN }, (_, i) => async () => {
        const name = `churn${i}`;
        await d.dockerOk(['run', '-d', '--name', name, '-p', `${PORT.churn + i}:80`, d.image, ...serverCmd(name)]);
        await d.dockerOk(['rm', '-f', name]);
      }),
      4,
    );
    const secs = (Date.now() - t0) / 1000;
    t.comment(`${CHURN} containers started and removed in ${secs.toFixed(1)} s`);
    const settled = await waitFor(async () => {
      const s = await state();
      return s.endpoints.join() === before.endpoints.join() && s.publish === before.publish && s.counters === before.counters ? s : undefined;
    }, 15000, 200);
    t.ok(settled, 'map entries back to what they were');
    const after = await state();
    t.same(after.endpoints, before.endpoints, 'endpoints');
    t.equal(after.publish, before.publish, 'published ports');
    t.equal(after.counters, before.counters, 'counter entries');
    t.same(after.links.sort(), before.links.sort(), 'attached hooks');
    const m = await berth!.metrics();
    t.notMatch(m, /container="churn\d+"/, 'no metric series of removed containers');
  });
});
