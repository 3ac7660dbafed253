// Real-kernel test of the namespace topology (needs root, iproute2 and
// /bin/busybox). Names and subnets are derived from the pid so that parallel
// test runs do not collide.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig, type BerthConfig } from '../../src/domain/config';
import { run } from '../../src/platform/exec';
import { hostVethName } from '../../src/domain/names';
import { describe, down, up } from '../../src/platform/topology';

const pid = process.pid;
const A = 200 + (pid % 50);
const B = (pid >> 3) % 250;
const netA = `tp${pid}a`;
const netB = `tp${pid}b`;
const brA = `tpb${pid}a`;
const brB = `tpb${pid}b`;
const c1 = `tpc${pid}1`;
const c2 = `tpc${pid}2`;
const c3 = `tpc${pid}3`;
const subA = `10.${A}.${B}`;
const subB = `10.${A}.${B + 1}`;
const httpPort = '8080';
const marker = `7${pid}`; // unique argument to find our sleep process in /proc

const www = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-www-'));
fs.writeFileSync(path.join(www, 'index.html'), `hello from ${c1}\n`);

const ALL_NS = [c1, c2, c3];
const ALL_LINKS = [brA, brB, ...ALL_NS.map(hostVethName)];

function config(extra: { c2run?: string[] } = {}): BerthConfig {
  const c2run = extra.c2run ? `    run: ${JSON.stringify(extra.c2run)}\n` : '';
  return parseConfig(`
networks:
  - name: ${netA}
    subnet: ${subA}.0/24
    bridge: ${brA}
  - name: ${netB}
    subnet: ${subB}.0/24
    bridge: ${brB}
    icc: false
containers:
  - name: ${c1}
    network: ${netA}
    ip: ${subA}.10
    run: ["/bin/busybox", "httpd", "-f", "-p", "${httpPort}", "-h", ${JSON.stringify(www)}]
  - name: ${c2}
    network: ${netA}
${c2run}  - name: ${c3}
    network: ${netB}
    run: ["/bin/busybox", "sleep", "${marker}"]
`);
}

async function ok(cmd: string, args: string[]): Promise<boolean> {
  try {
    await run(cmd, args);
    return true;
  } catch {
    return false;
  }
}

async function cleanup(): Promise<void> {
  for (const ns of ALL_NS) {
    try {
      const { stdout } = await run('ip', ['netns', 'pids', ns]);
      for (const p of stdout.split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(p), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    } catch {
      /* no such netns */
    }
    await ok('ip', ['netns', 'del', ns]);
  }
  for (const l of ALL_LINKS) await ok('ip', ['link', 'del', 'dev', l]);
}

async function netnsNames(): Promise<string[]> {
  const { stdout } = await run('ip', ['-j', 'netns', 'list']);
  return stdout.trim() ? (JSON.parse(stdout) as { name: string }[]).map((n) => n.name) : [];
}

/** Everything of ours that exists now: namespaces, links by name, links by alias. */
async function leftovers(): Promise<string[]> {
  const out: string[] = [];
  const ns = await netnsNames();
  for (const n of ALL_NS) if (ns.includes(n)) out.push(`netns ${n}`);
  const links = JSON.parse((await run('ip', ['-j', 'link', 'show'])).stdout) as { ifname: string; ifalias?: string }[];
  for (const l of links) {
    if (ALL_LINKS.includes(l.ifname)) out.push(`link ${l.ifname}`);
    else if (l.ifalias && [netA, netB, ...ALL_NS].some((n) => l.ifalias!.endsWith(`:${n}`))) out.push(`alias ${l.ifalias}`);
  }
  return out;
}

function markerProcesses(): number[] {
  const found: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      if (argv.includes(marker) && !/\) Z /.test(stat)) found.push(Number(d));
    } catch {
      /* raced with exit */
    }
  }
  return found;
}

async function snapshot(): Promise<string> {
  const parts: string[] = [];
  for (const n of ALL_NS) {
    parts.push(n, (await run('ip', ['-n', n, '-4', '-j', 'addr', 'show'])).stdout, (await run('ip', ['-n', n, '-j', 'route', 'show'])).stdout);
    parts.push((await run('ip', ['netns', 'pids', n])).stdout);
  }
  for (const l of ALL_LINKS) parts.push((await run('ip', ['-4', '-j', 'addr', 'show', 'dev', l])).stdout);
  return parts.join('\n');
}

t.before(cleanup);
t.teardown(async () => {
  await cleanup();
  fs.rmSync(www, { recursive: true, force: true });
});

t.test('up builds a working topology', async (t) => {
  const cfg = config();
  const eps = await up(cfg);
  t.equal(eps.length, 3);
  t.same(
    eps.map((e) => [e.container, e.network, e.ip, e.prefixLen, e.gateway, e.bridge, e.netns, e.hostIfname]),
    [
      [c1, netA, `${subA}.10`, 24, `${subA}.1`, brA, c1, hostVethName(c1)],
      [c2, netA, `${subA}.2`, 24, `${subA}.1`, brA, c2, hostVethName(c2)],
      [c3, netB, `${subB}.2`, 24, `${subB}.1`, brB, c3, hostVethName(c3)],
    ],
  );
  for (const e of eps) {
    t.match(e.mac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/, `${e.container} mac`);
    t.ok(e.hostIfindex > 0 && e.bridgeIfindex > 0, `${e.container} ifindexes`);
    const eth0 = JSON.parse((await run('ip', ['-n', e.netns, '-j', 'link', 'show', 'dev', 'eth0'])).stdout)[0];
    t.equal(eth0.address, e.mac, `${e.container} mac matches eth0`);
    t.equal(eth0.ifalias, `berth:eth0:${e.container}`, 'eth0 marked');
    const host = JSON.parse((await run('ip', ['-j', 'link', 'show', 'dev', e.hostIfname])).stdout)[0];
    t.equal(host.ifindex, e.hostIfindex);
    t.equal(host.master, e.bridge);
    t.equal(host.ifalias, `berth:veth:${e.container}`, 'host veth marked');
  }
  const br = JSON.parse((await run('ip', ['-j', 'link', 'show', 'dev', brA])).stdout)[0];
  t.equal(br.ifalias, `berth:bridge:${netA}`, 'bridge marked');
  t.equal(br.ifindex, eps[0]!.bridgeIfindex);

  t.ok(await ok('ip', ['netns', 'exec', c1, '/bin/busybox', 'ping', '-c1', '-W2', `${subA}.2`]), 'c1 pings c2');
  t.ok(await ok('ip', ['netns', 'exec', c2, '/bin/busybox', 'ping', '-c1', '-W2', `${subA}.10`]), 'c2 pings c1');
  t.ok(await ok('ip', ['netns', 'exec', c1, '/bin/busybox', 'ping', '-c1', '-W2', `${subA}.1`]), 'c1 pings its gateway');
  t.ok(await ok('ip', ['netns', 'exec', c3, '/bin/busybox', 'ping', '-c1', '-W2', `${subB}.1`]), 'c3 pings its gateway');

  // The run command of c1 (httpd) is serving; c3 runs our marker sleep.
  let body = '';
  for (let i = 0; i < 20 && !body; i++) {
    try {
      body = (await run('ip', ['netns', 'exec', c2, '/bin/busybox', 'wget', '-q', '-O', '-', `http://${subA}.10:${httpPort}/`])).stdout;
    } catch (err) {
      t.comment(String(err));
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  t.equal(body, `hello from ${c1}\n`, 'httpd started by run answers from c2');
  t.equal(markerProcesses().length, 1, 'run command of c3 is running');

  t.same(await describe(cfg), eps, 'describe reads the same state');
});

t.test('up again is a no-op', async (t) => {
  const cfg = config();
  const before = await snapshot();
  const pidsBefore = markerProcesses();
  const eps1 = await describe(cfg);
  const eps2 = await up(cfg);
  t.same(eps2, eps1, 'same endpoints (same ifindexes and MACs)');
  t.equal(await snapshot(), before, 'addresses, routes and processes unchanged');
  t.same(markerProcesses(), pidsBefore, 'run command not started twice');
});

t.test('down removes everything and kills run processes', async (t) => {
  const cfg = config();
  const res = await down(cfg);
  t.same(res.skipped, []);
  t.same(
    [...res.removed].sort(),
    [
      `bridge ${brA}`,
      `bridge ${brB}`,
      `netns ${c1} (killed 1 process)`,
      `netns ${c2}`,
      `netns ${c3} (killed 1 process)`,
    ].sort(),
  );
  t.same(await leftovers(), [], 'no namespaces, links or aliases left');
  t.same(markerProcesses(), [], 'run process killed');
  t.same(await describe(cfg), [], 'describe sees nothing');
  const again = await down(cfg);
  t.same(again, { removed: [], skipped: [] }, 'down is idempotent');
});

t.test('a foreign bridge with a wanted name: up fails and creates nothing', async (t) => {
  await run('ip', ['link', 'add', 'name', brB, 'type', 'bridge']);
  t.teardown(() => ok('ip', ['link', 'del', 'dev', brB]));
  const cfg = config();
  await t.rejects(up(cfg), { name: 'TopologyError', message: new RegExp(`bridge ${brB} .*not berth's`) });
  t.same(await leftovers(), [`link ${brB}`], 'only the foreign bridge exists');
  const res = await down(cfg);
  t.same(res.removed, []);
  t.same(res.skipped, [`bridge ${brB}: not berth's (no alias)`], 'down leaves it alone');
  t.ok(await ok('ip', ['link', 'show', 'dev', brB]), 'foreign bridge still there');
});

t.test('a foreign namespace with a container name: up fails and creates nothing', async (t) => {
  await run('ip', ['netns', 'add', c2]);
  t.teardown(() => ok('ip', ['netns', 'del', c2]));
  const cfg = config();
  await t.rejects(up(cfg), { message: new RegExp(`network namespace ${c2} already exists and is not berth's`) });
  t.same(await leftovers(), [`netns ${c2}`]);
  const res = await down(cfg);
  t.same(res.removed, []);
  t.match(res.skipped, [new RegExp(`netns ${c2}: not berth's`)]);
});

t.test('a failure midway rolls back everything this call created', async (t) => {
  // c2's command exits non-zero right away: this is detected after all
  // bridges, namespaces and veths were made and c1/c3's commands started.
  const cfg = config({ c2run: ['/bin/busybox', 'false'] });
  await t.rejects(up(cfg), {
    name: 'TopologyError',
    step: `start command in ${c2}: /bin/busybox false`,
    message: /exited with code 1.*rolled back/s,
  });
  t.same(await leftovers(), [], 'nothing left');
  t.same(markerProcesses(), [], 'started commands were killed');

  // A kernel failure in the middle of the plumbing: a hand-made config
  // (bypassing parseConfig's validation) puts c3 outside its gateway's
  // subnet, so its last step (default route) fails after both bridges, all
  // namespaces and veths were made.
  const good = config();
  const bad: BerthConfig = {
    ...good,
    containers: good.containers.map((c) => (c.name === c3 ? { ...c, ip: `10.${A}.${B + 2}.5` } : c)),
  };
  await t.rejects(up(bad, { startCommands: false }), {
    name: 'TopologyError',
    step: `add default route via ${subB}.1 in ${c3}`,
    message: /netlink\.addRoute route default .*: .*unreachable \(ENETUNREACH\).*rolled back/is,
  });
  t.same(await leftovers(), [], 'plumbing rolled back');

  // Rollback only undoes what this call created: with the topology in
  // place, a call that fails (c2's command does not exist) leaves it as is.
  await up(config());
  const before = await describe(config());
  const httpd = (await run('ip', ['netns', 'pids', c1])).stdout;
  await t.rejects(up(config({ c2run: ['/nonexistent/berth-cmd'] })), {
    step: `start command in ${c2}: /nonexistent/berth-cmd`,
    message: /exited with code [1-9]/,
  });
  t.same(await describe(config()), before, 'existing topology untouched');
  t.equal((await run('ip', ['netns', 'pids', c1])).stdout, httpd, 'existing processes untouched');
  t.same(await run('ip', ['netns', 'pids', c2]).then((r) => r.stdout), '', 'failed command gone');
  await down(config());
  t.same(await leftovers(), []);
});
