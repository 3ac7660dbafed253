// The CLI as a user runs it: up, status/stats (text and --json), reset, down.
import t from 'tap';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { fixture, linkExists, netnsExists, ownChanges } from '../lib/topo';

const pexec = promisify(execFile);
const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'berth');
const fx = fixture(t, 'cl', 3, [
  { key: 'a', containers: ['x', 'y'] },
  { key: 'b', icc: false, containers: ['z'] },
]);
const berth = (...args: string[]) => pexec(BIN, ['--bpffs', fx.pinRoot, ...args], { timeout: 60000 });

t.test('cli', async (t) => {
  const up = await berth('up', '-f', fx.cfgPath);
  t.match(up.stdout, /3 container\(s\) on 2 network\(s\)/);
  const again = await berth('up', '-f', fx.cfgPath);
  t.same(ownChanges(again.stdout), [], 'up twice changes nothing of the file');
  t.match(again.stdout, /berth up: 3 container\(s\) on 2 network\(s\), \d+ dataplane change\(s\)/);

  const st = JSON.parse((await berth('status', '--json')).stdout);
  t.equal(st.loaded, true);
  t.same(st.networks.map((n: { name: string; icc: boolean }) => [n.name, n.icc]).sort(), [[`${fx.tag}-a`, true], [`${fx.tag}-b`, false]]);
  const x = st.endpoints.find((e: { container: string }) => e.container === fx.c('x'));
  t.equal(x.address, fx.ip('x'));
  t.same(x.hooks.sort(), ['egress', 'ingress']);
  t.same(
    [st.conntrack.capacity, st.conntrack.unassuredCapacity],
    [262144, 65536],
    'conntrack sizes: the default table, a quarter of its entries as unassured flows',
  );
  t.match((await berth('ct')).stdout, /0 flow\(s\) shown, 0 unassured\nconntrack: 262144 entries, at most 65536 unassured flows; since load: \d+ created/);
  t.match((await berth('status')).stdout, new RegExp(`${fx.c('y')}\\s+${fx.tag}-a\\s+${fx.ip('y').replace(/\./g, '\\.')}`));

  await pexec('ip', ['netns', 'exec', fx.c('x'), 'ping', '-c', '2', '-i', '0.2', fx.ip('y')]);
  const stats = JSON.parse((await berth('stats', '--json')).stdout);
  const yIn = stats.find((r: { container: string; direction: string }) => r.container === fx.c('y') && r.direction === 'to_container');
  t.ok(yIn.redirect.packets >= 2, 'redirected pings counted in stats --json');
  t.match((await berth('stats')).stdout, /REDIR PKTS/);

  // bad input: clear error, nothing changed
  const bad = path.join(path.dirname(fx.cfgPath), 'bad.yaml');
  fs.writeFileSync(bad, 'networks:\n  - name: n\n    subnet: 10.0.0.1/24\n');
  const err = await berth('up', '-f', bad).then(
    () => null,
    (e) => e,
  );
  t.ok(err, 'bad file fails');
  t.match(err.stderr, /networks\[0\]\.subnet/, 'error names the field');
  t.equal(JSON.parse((await berth('status', '--json')).stdout).endpoints.length, 3, 'nothing changed');

  const reset = await berth('reset');
  // two per container veth (3) and two per bridge, the networks' choke points (2)
  t.match(reset.stdout, /detached 10 hook/);
  t.notOk(fs.existsSync(fx.pinRoot));
  t.equal(JSON.parse((await berth('status', '--json')).stdout).loaded, false);
  await pexec('ip', ['netns', 'exec', fx.c('x'), 'ping', '-c', '1', '-W', '2', fx.ip('y')]);
  t.pass('kernel path still forwards after reset');

  const down = await berth('down', '-f', fx.cfgPath);
  t.match(down.stdout, /removed/);
  t.notOk(netnsExists(fx.c('x')) || linkExists(fx.bridge('a')) || linkExists(fx.bridge('b')));
});
