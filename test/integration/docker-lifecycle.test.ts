// Docker mode lifecycle (issue 13 item 3): a private dockerd (--iptables=false, live-restore) and
// `berth run --docker`.
//   live-restore: dockerd is killed and started again while new connections from outside go to
//     three published ports without pause (one transaction at a time per port, no retry): 0 failed
//     transactions, and berth removes nothing while the API is away (its endpoints and published
//     ports are the same when dockerd is gone and after it is back).
//   reboot: berth killed, its pin root emptied (what a reboot leaves), berth started again with
//     dockerd running: every container's entries come back and every published port answers.
// Names blc*, subnets 10.77.0.0/16, pin root /sys/fs/bpf/berth-lc-test*, ports 33500-33999.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Dataplane } from '../../src/platform/dataplane';
import { readCurrent } from '../../src/engine/reconcile';
import { BerthProc, Dockerd, Outside, dockerSkipReason, serverCmd, waitFor } from '../lib/dockerd';
import { TxLoad } from '../lib/txload';

const pid = process.pid;
const id = pid % 1000;
const tag = `blcd${id % 100}`;
const pinRoot = `/sys/fs/bpf/berth-lc-testd${id}`;
const k = 240 + (pid % 7) * 2;
const PORTS = [0, 1, 2].map((i) => 33800 + (pid % 60) * 3 + i);
const NAMES = ['blc-a', 'blc-b', 'blc-c'];
t.setTimeout(15 * 60 * 1000);

const workdir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));
const outside = new Outside(tag, `10.77.${k}`, workdir, 7000);
const d = new Dockerd({ tag: `${tag}r`, iptables: false, bridge: `${tag}d0`, bridgeCidr: `10.77.${k + 1}.1/24`, liveRestore: true });
const load = new TxLoad(workdir, { durationS: 600, maxTx: 100000, gapS: 0.01, timeoutS: 1 });
let berth: BerthProc | undefined;
const newBerth = (): BerthProc => new BerthProc(pinRoot, d.sock, [outside.hostIf], workdir);

t.teardown(async () => {
  load.kill();
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

async function state(): Promise<{ endpoints: string[]; publish: number }> {
  const dp = Dataplane.openPinned(pinRoot);
  try {
    const cur = await readCurrent(dp);
    return { endpoints: [...cur.endpoints.values()].map((e) => e.meta?.container ?? '?').sort(), publish: cur.publish?.size ?? 0 };
  } finally {
    dp.close();
  }
}

const answers = async (): Promise<boolean> => {
  for (const p of PORTS) if (!load.probe(outside.ns, 'http', outside.hostAddr, p)) return false;
  return true;
};

t.test('docker mode: dockerd live-restore under load, and a reboot rebuilds from dockerd', { skip: dockerSkipReason() ?? false }, async (t) => {
  await Dockerd.sweepStale();
  d.own({ netns: outside.ns, link: outside.hostIf });
  await d.start();
  await outside.up([]);
  berth = newBerth();
  await berth.start(180000);
  await d.buildImage();
  for (const [i, name] of NAMES.entries()) await d.dockerOk(['run', '-d', '--name', name, '-p', `${PORTS[i]}:80`, d.image, ...serverCmd(name)]);
  t.ok(await waitFor(answers, 30000, 200), 'every published port answers through berth');
  const programmed = await state();
  t.same(programmed.endpoints, NAMES, 'every container programmed');

  await t.test('dockerd killed and started again (live-restore) under load: 0 failed, nothing removed', async (t) => {
    for (const [i, p] of PORTS.entries()) load.start(`in-${NAMES[i]}`, outside.ns, 'http', outside.hostAddr, p);
    await load.more(50);
    d.kill9();
    // berth follows the API's absence: it must keep what it programmed
    t.ok(await waitFor(async () => /berth_docker_connected 0/.test(await berth!.metrics()), 30000, 100), 'berth saw dockerd go');
    await load.more(50);
    t.same(await state(), programmed, 'nothing removed while dockerd is away');
    await d.start(); // the same roots: live-restore finds the containers running
    t.ok(await waitFor(async () => /berth_docker_connected 1/.test(await berth!.metrics()), 30000, 100), 'berth follows the restarted dockerd');
    await load.more(50);
    t.same(await state(), programmed, 'the same state after the re-sync');
    const results = await load.finish();
    for (const [i, r] of results.entries()) {
      t.ok(r.ok >= 150, `${load.loaders[i]!.name}: ${r.ok} transactions answered`);
      t.same(r.failed, [], `${load.loaders[i]!.name}: 0 failed transactions`);
    }
    const summary = results.map((r, i) => `${load.loaders[i]!.name} ok=${r.ok} failed=${r.failed.length}`).join(', ');
    t.comment(`live-restore: ${summary}`);
    fs.writeFileSync(path.join(os.tmpdir(), `berth-docker-lifecycle-${pid}.txt`), `live-restore: ${summary}\n`);
  });

  await t.test('a reboot: an empty pin root and a running dockerd, berth rebuilds every container', async (t) => {
    berth!.kill9();
    Dataplane.reset(pinRoot);
    t.notOk(Dataplane.isPinned(pinRoot), 'the pin root is empty');
    berth = newBerth();
    await berth.start(180000);
    t.ok(await waitFor(async () => Dataplane.isPinned(pinRoot) && (await state()).endpoints.length === NAMES.length, 30000, 100), 'every container programmed again');
    t.same(await state(), programmed, 'the same endpoints and published ports as before');
    const again = await waitFor(answers, 30000, 200);
    t.ok(again, 'every published port answers again');
    if (!again) {
      const dp = Dataplane.openPinned(pinRoot);
      t.comment(`hooks: veth ${JSON.stringify(dp.attachments().map((a) => [a.ifindex, a.direction, a.live]))} uplink ${JSON.stringify(dp.uplinkAttachments().map((a) => [a.ifindex, a.kind, a.live]))} bridge ${JSON.stringify(dp.bridgeAttachments().map((a) => [a.ifindex, a.direction]))}`);
      dp.close();
      for (const p of PORTS) t.comment(`${p}: ${await outside.fromOutside('tcp', outside.hostAddr, p)}`);
      t.comment(berth!.logText().slice(-4000));
    }
    t.ok(Dataplane.pinnedVersion(pinRoot), 'the new dataplane has its version');
  });
});
