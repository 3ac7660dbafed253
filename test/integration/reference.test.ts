// The iptables reference (test/lib/reference.ts) on a real topology: Docker
// 29's rules, installed in uniquely named chains, checked with real traffic
// between this test's own namespaces only. Needs root, iproute2, iptables
// (nf_tables) and /bin/busybox.
import t from 'tap';
import * as fs from 'node:fs';
import { parseConfig } from '../../src/domain/config';
import { run } from '../../src/platform/exec';
import { externalVethName, hostVethName } from '../../src/domain/names';
import { describeAll, down, up } from '../../src/platform/topology';
import { applyReference, chainsOf, dockerRules } from '../lib/reference';
import { buildTopo, cleanupTopo, get, ok, removeRoot, routeLoopbackViaHost, waitReady } from '../lib/scenarios';

const pid = process.pid;
const sfx = `T${pid}`;
const PUB = 20000 + (pid % 10000); // published on every address -> web:80
const LOPUB = PUB + 10000; // published on 127.0.0.1 -> web:80
// second octets 160..163 belong to this file
const topo = buildTopo({ tag: `rf${pid}`, octets: { a: 160, b: 161, i: 162, e: 163 }, third: pid % 250, pub: PUB, loPub: LOPUB });
const { cfg, web, peer, b1, i1, ext, hostAddr, extAddr } = topo;
const { A: brA } = topo.bridges;
const { A: subA, B: subB } = topo.sub;
const cleanup = (): Promise<void> => cleanupTopo(topo);

/** Lines of iptables-save mentioning one of our chains. */
async function ourRules(): Promise<string[]> {
  const { stdout } = await run('iptables-save', []);
  return stdout.split('\n').filter((l) => l.includes(`-${sfx}`));
}

/** Packet counter of the one raw rule whose text contains `needle`. */
async function rawCounter(needle: string): Promise<number> {
  const { stdout } = await run('iptables-save', ['-c', '-t', 'raw']);
  const line = stdout.split('\n').find((l) => l.includes(needle) && l.includes(`-${sfx}`));
  if (!line) throw new Error(`no raw rule with ${needle}`);
  return Number(/^\[(\d+):/.exec(line)![1]);
}

const readSysctl = (p: string): string => fs.readFileSync(`/proc/sys/net/ipv4/${p}`, 'utf8').trim();
const readSysctlOr = (p: string): string | null => (fs.existsSync(p) ? fs.readFileSync(p, 'utf8').trim() : null);

t.test('dockerRules without a suffix: exactly Docker 29\'s rules', async (t) => {
  const small = parseConfig(`
networks:
  - name: n1
    subnet: 192.0.2.0/24
    bridge: bridge1
  - name: n2
    subnet: 198.51.100.0/24
    bridge: bridge2
    icc: false
    masquerade: false
  - name: n3
    subnet: 203.0.113.0/24
    bridge: bridge3
    internal: true
containers:
  - name: c1
    network: n1
    ip: 192.0.2.2
    publish: ["8080:80", "127.0.0.1:8081:80", "5353:53/udp"]
  - name: c2
    network: n2
  - name: c3
    network: n3
`);
  const r = dockerRules(small, { uplinks: ['eth0'] });
  t.same(r.filter, [
    ':DOCKER - [0:0]',
    ':DOCKER-BRIDGE - [0:0]',
    ':DOCKER-CT - [0:0]',
    ':DOCKER-FORWARD - [0:0]',
    ':DOCKER-INTERNAL - [0:0]',
    ':DOCKER-USER - [0:0]',
    '-A FORWARD -j DOCKER-USER',
    '-A FORWARD -j DOCKER-FORWARD',
    '-A DOCKER -d 192.0.2.2/32 ! -i bridge1 -o bridge1 -p tcp -m tcp --dport 80 -j ACCEPT',
    '-A DOCKER -d 192.0.2.2/32 ! -i bridge1 -o bridge1 -p udp -m udp --dport 53 -j ACCEPT',
    '-A DOCKER ! -i bridge1 -o bridge1 -j DROP',
    '-A DOCKER ! -i bridge2 -o bridge2 -j DROP',
    '-A DOCKER-BRIDGE -o bridge1 -j DOCKER',
    '-A DOCKER-BRIDGE -o bridge2 -j DOCKER',
    '-A DOCKER-CT -o bridge1 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    '-A DOCKER-CT -o bridge2 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    '-A DOCKER-FORWARD -j DOCKER-CT',
    '-A DOCKER-FORWARD -j DOCKER-INTERNAL',
    '-A DOCKER-FORWARD -j DOCKER-BRIDGE',
    '-A DOCKER-FORWARD -i bridge1 -j ACCEPT',
    '-A DOCKER-FORWARD -i bridge2 -o bridge2 -j DROP',
    '-A DOCKER-FORWARD -i bridge2 ! -o bridge2 -j ACCEPT',
    '-A DOCKER-FORWARD -i bridge3 -o bridge3 -j ACCEPT',
    '-A DOCKER-INTERNAL ! -s 203.0.113.0/24 -o bridge3 -j DROP',
    '-A DOCKER-INTERNAL ! -d 203.0.113.0/24 -i bridge3 -j DROP',
  ]);
  t.same(r.nat, [
    ':DOCKER - [0:0]',
    '-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER',
    '-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER',
    '-A POSTROUTING -o bridge1 -m addrtype --src-type LOCAL -j MASQUERADE',
    '-A POSTROUTING -s 192.0.2.0/24 ! -o bridge1 -j MASQUERADE',
    '-A POSTROUTING -o bridge2 -m addrtype --src-type LOCAL -j MASQUERADE',
    '-A POSTROUTING -s 192.0.2.2/32 -d 192.0.2.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE',
    '-A POSTROUTING -s 192.0.2.2/32 -d 192.0.2.2/32 -p udp -m udp --dport 53 -j MASQUERADE',
    '-A DOCKER -p tcp -m tcp --dport 8080 -j DNAT --to-destination 192.0.2.2:80',
    '-A DOCKER -d 127.0.0.1/32 -p tcp -m tcp --dport 8081 -j DNAT --to-destination 192.0.2.2:80',
    '-A DOCKER -p udp -m udp --dport 5353 -j DNAT --to-destination 192.0.2.2:53',
  ]);
  t.same(r.raw, [
    '-A PREROUTING -d 192.0.2.2/32 ! -i bridge1 -j DROP',
    '-A PREROUTING -d 198.51.100.2/32 ! -i bridge2 -j DROP',
    '-A PREROUTING -d 127.0.0.1/32 ! -i lo -p tcp -m tcp --dport 8081 -j DROP',
  ]);
  const s = dockerRules(small, { uplinks: ['eth0'], chainSuffix: 'x1' });
  t.ok(s.filter.includes('-A FORWARD -i eth0 -g FORWARD-x1'), 'scoped entry from FORWARD');
  t.ok(s.nat.includes('-A OUTPUT -d 127.0.0.1/32 -p tcp -m tcp --dport 8081 -j OUTPUT-x1'), 'scoped entry for the loopback publish');
  t.notOk([...s.filter, ...s.nat, ...s.raw].some((l) => /^-A (FORWARD|PREROUTING|OUTPUT|POSTROUTING) /.test(l) && !/ -[jg] \S+-x1$/.test(l)), 'builtin chains only get jumps to our chains');
  t.throws(() => dockerRules(small, { uplinks: [], chainSuffix: 'much-too-long-suffix' }));
});

t.test('dockerRules for a routed network: Docker 29\'s gwm=routed rules (moby iptabler golden files)', async (t) => {
  const rt = parseConfig(`
networks:
  - name: r1
    subnet: 192.0.2.0/24
    bridge: bridge1
    gatewayMode: routed
  - name: n1
    subnet: 198.51.100.0/24
    bridge: bridge2
containers:
  - name: c1
    network: r1
    ip: 192.0.2.2
    publish: ["8080:80", "127.0.0.1:8081:81", "5353:53/udp"]
  - name: c2
    network: n1
    ip: 198.51.100.2
    publish: ["8080:80"]
`);
  const r = dockerRules(rt, { uplinks: ['eth0'] });
  t.same(r.filter.filter((l) => l.startsWith('-A DOCKER ')), [
    '-A DOCKER -d 192.0.2.2/32 ! -i bridge1 -o bridge1 -p tcp -m tcp --dport 80 -j ACCEPT',
    '-A DOCKER -d 192.0.2.2/32 ! -i bridge1 -o bridge1 -p tcp -m tcp --dport 81 -j ACCEPT',
    '-A DOCKER -d 192.0.2.2/32 ! -i bridge1 -o bridge1 -p udp -m udp --dport 53 -j ACCEPT',
    '-A DOCKER -d 198.51.100.2/32 ! -i bridge2 -o bridge2 -p tcp -m tcp --dport 80 -j ACCEPT',
    '-A DOCKER -o bridge1 -p icmp -j ACCEPT',
    '-A DOCKER ! -i bridge1 -o bridge1 -j DROP',
    '-A DOCKER ! -i bridge2 -o bridge2 -j DROP',
  ], 'the container ports open (127.0.0.1: too), ICMP accepted on the routed bridge alone');
  t.same(r.nat, [
    ':DOCKER - [0:0]',
    '-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER',
    '-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER',
    '-A POSTROUTING -o bridge1 -m addrtype --src-type LOCAL -j MASQUERADE',
    '-A POSTROUTING -o bridge2 -m addrtype --src-type LOCAL -j MASQUERADE',
    '-A POSTROUTING -s 198.51.100.0/24 ! -o bridge2 -j MASQUERADE',
    '-A POSTROUTING -s 198.51.100.2/32 -d 198.51.100.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE',
    '-A DOCKER -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.51.100.2:80',
  ], 'no NAT for the routed network: no MASQUERADE of its subnet, no DNAT of its host ports');
  t.same(r.raw, ['-A PREROUTING -d 198.51.100.2/32 ! -i bridge2 -j DROP'], 'no direct-access DROP for the routed endpoint, no loopback DROP for its publish');
});

t.test('real traffic through the reference rules', async (t) => {
  await cleanup();
  t.teardown(async () => {
    await down(cfg).catch(() => undefined);
    await cleanup();
    removeRoot(topo);
  });
  await up(cfg);
  const before = { fwd: readSysctl(`conf/${brA}/forwarding`) };
  const { endpoints, externals } = await describeAll(cfg);
  t.equal(endpoints.length, 5);
  t.same(externals.map((e) => [e.name, e.address, e.hostAddress, e.hostIfname]), [[ext, extAddr, hostAddr, externalVethName(ext)]]);
  await up(cfg);
  t.same(await describeAll(cfg), { endpoints, externals }, 'up again is a no-op (externals too)');
  const routesI = (await run('ip', ['-n', i1, '-j', 'route', 'show', 'default'])).stdout.trim();
  t.same(routesI === '' ? [] : JSON.parse(routesI), [], 'no default route on the internal network');
  await waitReady(topo);

  const undo = await applyReference(cfg, { uplinks: [externalVethName(ext)], chainSuffix: sfx });
  let undone = false;
  t.teardown(async () => {
    if (!undone) await undo();
  });

  // Every rule is installed exactly as written (iptables-save syntax).
  const saved = (await run('iptables-save', [])).stdout.split('\n');
  const rules = dockerRules(cfg, { uplinks: [externalVethName(ext)], chainSuffix: sfx });
  for (const tbl of ['filter', 'nat', 'raw'] as const) {
    const missing = rules[tbl].filter((l) => l.startsWith('-A') && !saved.includes(l));
    t.same(missing, [], `${tbl}: every rule is in iptables-save`);
  }
  t.equal(readSysctl(`conf/${brA}/forwarding`), '1', 'forwarding on for the bridge');
  t.equal(readSysctl(`conf/${brA}/route_localnet`), '1', 'route_localnet on the bridge with a 127.0.0.1 publish');
  t.equal(readSysctlOr(`/sys/class/net/${hostVethName(web)}/brport/hairpin_mode`), '1', 'hairpin on for endpoints (userland proxy off)');
  t.equal(readSysctlOr(`/sys/class/net/${hostVethName(i1)}/brport/hairpin_mode`), '0', 'but not on the internal network');

  t.equal(await get(ext, `http://${hostAddr}:${PUB}/cgi-bin/ip`), extAddr, 'outside -> published port reaches web, client address preserved');
  t.equal(await get(ext, `http://${hostAddr}:${PUB}/`), 'hello from web');
  t.equal(await get(ext, `http://${subA}.10/`), null, 'outside -> container address directly: dropped');
  t.equal(await get(ext, `http://${subA}.10:8000/`), null, 'outside -> unpublished port by container address: dropped');
  t.equal(await get(ext, `http://${hostAddr}:8000/`), null, 'outside -> unpublished port on the host address: not forwarded');
  t.equal(await get(peer, `http://${extAddr}/cgi-bin/ip`), hostAddr, 'container -> outside: masqueraded to the uplink address');
  t.equal(await get(b1, `http://${extAddr}/cgi-bin/ip`), hostAddr, 'icc=false network -> outside: masqueraded too');
  t.equal(await get(i1, `http://${extAddr}/`, 1), null, 'internal network -> outside: no way out');

  t.equal(await get(peer, `http://${subA}.10/`), 'hello from web', 'same network, icc=true: reachable');
  t.equal(await get(b1, `http://${subA}.10/`), null, 'other network -> container address: isolated');
  t.equal(await get(web, `http://${subB}.11/`), null, 'and the other way: isolated');
  t.equal(await get(b1, `http://${subB}.11/`), null, 'icc=false: b1 -> b2 dropped');
  t.ok(await ok('ip', ['netns', 'exec', b1, '/bin/busybox', 'ping', '-c1', '-W1', `${subB}.1`]), 'icc=false: the gateway still answers');

  t.equal(await get(web, `http://${hostAddr}:${PUB}/cgi-bin/ip`), `${subA}.1`, 'hairpin: web -> host address:published port -> itself, masqueraded to the gateway');
  const bridged = readSysctlOr('/proc/sys/net/bridge/bridge-nf-call-iptables') === '1';
  if (bridged) {
    // Only with br_netfilter (as on Docker hosts): the reply from web to peer is bridged and must be un-NATed.
    t.equal(await get(peer, `http://${hostAddr}:${PUB}/cgi-bin/ip`), `${subA}.11`, 'hairpin: peer -> host address:published port -> web (br_netfilter)');
  } else t.comment('br_netfilter not loaded: same-network hairpin via the host address not checked');
  t.equal(await get(b1, `http://${hostAddr}:${PUB}/cgi-bin/ip`), `${subA}.1`, 'other network -> host address:published port: reaches web, masqueraded');
  t.equal(await get(null, `http://127.0.0.1:${LOPUB}/`), 'hello from web', 'the host itself -> 127.0.0.1:loopback publish (route_localnet)');

  // An outside host that sends to 127.0.0.1 through the host (the attack of
  // moby #45610): route 127.0.0.1 via the uplink inside the external.
  await routeLoopbackViaHost(topo);
  const dropsBefore = await rawCounter(`--dport ${LOPUB} -j DROP`);
  t.equal(await get(ext, `http://127.0.0.1:${LOPUB}/`), null, 'outside -> 127.0.0.1:loopback publish: unreachable');
  t.ok((await rawCounter(`--dport ${LOPUB} -j DROP`)) > dropsBefore, 'dropped by the raw loopback rule');

  undone = true;
  await undo();
  t.same(await ourRules(), [], 'undo: no chain or rule of ours left in iptables-save');
  const all = chainsOf([...rules.filter, ...rules.nat, ...rules.raw]);
  t.ok(all.length >= 10, `checked ${all.length} chains`);
  t.equal(readSysctl(`conf/${brA}/forwarding`), before.fwd, 'forwarding restored');
  t.equal(readSysctl(`conf/${brA}/route_localnet`), '0', 'route_localnet restored');
  t.equal(readSysctlOr(`/sys/class/net/${hostVethName(web)}/brport/hairpin_mode`), '0', 'hairpin restored');
  await undo(); // idempotent

  const res = await down(cfg);
  t.same(res.skipped, []);
  t.ok(res.removed.includes(`netns ${ext} (killed 1 process)`), 'down removes the external and its process');
  t.ok(res.removed.includes(`link ${externalVethName(ext)}`) || !(await ok('ip', ['link', 'show', 'dev', externalVethName(ext)])), 'external host veth gone');
  t.same(await describeAll(cfg), { endpoints: [], externals: [] });
});
