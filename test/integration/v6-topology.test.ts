// Real-kernel test of the dual-stack standalone topology (issue 12): `up` on
// a file with subnet6 networks and an external with address6 builds the IPv6
// world (bridge gateway6, container ip6, default IPv6 routes, the external's
// link), real `ping -6` crosses it, a second `up` accepts what the first
// built, and `down` removes everything. The IPv6 packets take the kernel's
// bridge path (the IPv6 datapath is another part of issue 12); the publish
// entries are read back from berth's maps. Needs root, iproute2, ping.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { parseConfig } from '../../src/domain/config';
import { Dataplane } from '../../src/platform/dataplane';
import { hostVethName } from '../../src/domain/names';
import { readPorts } from '../../src/observe/ports';
import { readStatus } from '../../src/observe/status';
import * as standalone from '../../src/sources/standalone';
import { describeAll, up as topologyUp } from '../../src/platform/topology';
import { forceDown, linkExists, netnsExists, nsOk } from '../lib/topo';

const pinRoot = '/sys/fs/bpf/berth-v6cfg';
const A1 = 'v6c-a1';
const A2 = 'v6c-a2';
const B1 = 'v6c-b1';
const X = 'v6c-x';
// '[::]:...' only when the maps hold IPv6: before that, up refuses a binding only IPv6 would serve
const cfg = parseConfig(`
networks:
  - name: v6c-a
    subnet: 10.88.0.0/24
    subnet6: fd88:a::/64
    bridge: bv6c0
  - name: v6c-b
    subnet: 10.88.1.0/24
    subnet6: fd88:b::/64
    bridge: bv6c1
    internal: true
containers:
  - name: ${A1}
    network: v6c-a
    publish: ["18080:80", "[::]:18081:81"]
  - name: ${A2}
    network: v6c-a
    ip6: fd88:a::a2
  - name: ${B1}
    network: v6c-b
externals:
  - name: ${X}
    address: 10.88.255.2/24
    address6: fd88:ff::2/64
uplinks: []
interfaces: []
`);
const LINKS = ['bv6c0', 'bv6c1', ...[A1, A2, B1].map(hostVethName), cfg.externals[0]!.hostIfname];
const NETNS = [A1, A2, B1, X];

/** ip -j output of a command run in a namespace ('' = the host). */
function ipJson<T>(ns: string, args: string[]): T {
  const argv = ns ? ['-n', ns, '-j', ...args] : ['-j', ...args];
  return JSON.parse(execFileSync('ip', argv, { encoding: 'utf8', timeout: 10000 }) || '[]') as T;
}
type AddrLink = { addr_info?: { family: string; local: string; prefixlen: number; scope?: string }[] }[];
const addrs6 = (ns: string, dev: string): string[] =>
  (ipJson<AddrLink>(ns, ['-6', 'addr', 'show', 'dev', dev, 'scope', 'global'])[0]?.addr_info ?? []).filter((a) => a.local).map((a) => `${a.local}/${a.prefixlen}`);
const defaultVia6 = (ns: string): string[] => ipJson<{ gateway?: string }[]>(ns, ['-6', 'route', 'show', 'default']).map((r) => r.gateway ?? '');

/** ping -6 answered within a few bounded tries (neighbour discovery may take the first). */
function ping6(ns: string, dst: string): boolean {
  for (let i = 0; i < 5; i++) if (nsOk(ns, ['ping', '-6', '-n', '-c', '1', '-W', '2', dst], 10000)) return true;
  return false;
}

const cleanup = () => forceDown(cfg, pinRoot, { netns: NETNS, links: LINKS });

t.before(cleanup);
t.teardown(cleanup);

t.test('up builds the dual-stack world', async (t) => {
  const res = await standalone.up(cfg, { pinRoot, startCommands: false });
  t.equal(res.endpoints.length, 3);

  t.same(addrs6('', 'bv6c0'), ['fd88:a::1/64'], 'bridge of v6c-a holds gateway6');
  t.same(addrs6('', 'bv6c1'), ['fd88:b::1/64'], 'bridge of v6c-b holds gateway6');
  t.same(addrs6(A1, 'eth0'), ['fd88:a::2/64'], 'automatic ip6: the first after the gateway6');
  t.same(addrs6(A2, 'eth0'), ['fd88:a::a2/64'], 'explicit ip6');
  t.same(addrs6(B1, 'eth0'), ['fd88:b::2/64']);
  t.same(defaultVia6(A1), ['fd88:a::1'], 'default IPv6 route via gateway6');
  t.same(defaultVia6(B1), [], 'internal network: no default IPv6 route');
  t.same(addrs6('', cfg.externals[0]!.hostIfname), ['fd88:ff::1/64'], "the external's host side: the first address");
  t.same(addrs6(X, 'eth0'), ['fd88:ff::2/64']);
  t.same(defaultVia6(X), ['fd88:ff::1']);
  t.equal(fs.readFileSync('/proc/sys/net/ipv6/conf/bv6c0/forwarding', 'utf8').trim(), '1', 'IPv6 forwarding on the non-internal bridge');

  const { endpoints, externals } = await describeAll(cfg);
  t.same(
    endpoints.map((e) => [e.container, e.ip, e.ip6, e.gateway6]).sort(),
    [
      [A1, '10.88.0.2', 'fd88:a::2', 'fd88:a::1'],
      [A2, '10.88.0.3', 'fd88:a::a2', 'fd88:a::1'],
      [B1, '10.88.1.2', 'fd88:b::2', 'fd88:b::1'],
    ],
    'describe reports the IPv6 side',
  );
  t.match(externals[0], { address6: 'fd88:ff::2', hostAddress6: 'fd88:ff::1', prefixLen6: 64 });
});

t.test('real IPv6 traffic: gateway6 and a peer on the same network', async (t) => {
  t.ok(ping6(A1, 'fd88:a::1'), `${A1} reaches its gateway6`);
  t.ok(ping6(A1, 'fd88:a::a2'), `${A1} reaches its peer ${A2} over IPv6`);
  t.ok(ping6(B1, 'fd88:b::1'), `${B1} (internal) reaches its gateway6`);
  t.ok(ping6(X, 'fd88:ff::1'), 'the external reaches the host side');
  t.ok(nsOk(A1, ['ping', '-4', '-n', '-c', '1', '-W', '2', '10.88.0.3']), 'IPv4 still works beside it');
  // an IPv6 datagram that arrives: A2 answers ping on its v6 address, and the neighbour entry in A1 is A2's MAC
  const a2mac = ipJson<{ address?: string }[]>(A2, ['link', 'show', 'dev', 'eth0'])[0]!.address;
  const neigh = ipJson<{ dst: string; lladdr?: string }[]>(A1, ['-6', 'neigh', 'show', 'dev', 'eth0']).find((n) => n.dst === 'fd88:a::a2');
  t.equal(neigh?.lladdr, a2mac, "A1 learned A2's MAC by neighbour discovery across the bridge");
});

t.test('the publish entries per family, read back from the maps', async (t) => {
  const dp = Dataplane.openPinned(pinRoot);
  try {
    const rows = (await readPorts(dp)).filter((r) => r.container === A1);
    const want = [['0.0.0.0', 18080, '10.88.0.2'], ['::', 18080, 'fd88:a::2'], ['::', 18081, 'fd88:a::2']];
    t.same(rows.map((r) => [r.hostIp, r.hostPort, r.containerIp]).sort(), want.sort(), 'one entry per family the maps hold');
  } finally {
    dp.close();
  }
});

t.test('berth status shows the IPv6 side', async (t) => {
  const st = await readStatus(pinRoot);
  t.same(
    st.networks.filter((n) => n.name.startsWith('v6c-')).map((n) => [n.name, n.subnet6, n.gateway6]).sort(),
    [
      ['v6c-a', 'fd88:a::/64', 'fd88:a::1'],
      ['v6c-b', 'fd88:b::/64', 'fd88:b::1'],
    ],
  );
  t.same(
    st.endpoints.filter((e) => e.container.startsWith('v6c-')).map((e) => [e.container, e.address, e.address6]).sort(),
    [
      [A1, '10.88.0.2', 'fd88:a::2'],
      [A2, '10.88.0.3', 'fd88:a::a2'],
      [B1, '10.88.1.2', 'fd88:b::2'],
    ],
  );
});

t.test('a second up accepts the IPv6 world it built; down removes it', async (t) => {
  await t.resolves(topologyUp(cfg, { startCommands: false }), 'the pre-check matches the IPv6 addresses and routes');
  const res = await standalone.down(cfg, { pinRoot });
  t.ok(res.unpinned, 'unpinned');
  for (const ns of NETNS) t.notOk(netnsExists(ns), `netns ${ns} gone`);
  for (const l of LINKS) t.notOk(linkExists(l), `link ${l} gone`);
  t.notOk(Dataplane.isPinned(pinRoot));
});
