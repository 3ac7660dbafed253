// The security matrix, part of the differential suite: every source × every
// target × TCP connect, UDP datagram arrival and ICMP echo, first through
// Docker 29's rules (test/lib/reference.ts, berth absent), then through berth
// (no iptables rule of ours); the outcomes must match cell for cell, except
// where berth is deliberately stricter (DIFFERENCES below, each with its
// reason), and then berth's outcome must be the stricter one.
//
// Sources: the listed uplink (an external), another host interface that is
// not an uplink ("side", a second NIC: served by default, as Docker's DNAT
// serves every interface), a foreign bridge with a host behind it ("vbr",
// like libvirt's virbr0), an L3 device (a tun with a namespace behind it,
// through a relay; skipped with the reason where the kernel has no tun), the
// host itself, a container on the same network, one on another network.
// Targets: the published port on each host address (every interface's, both
// gateways, 127.0.0.1), the container's address on a published and on an
// unpublished port, a container berth does not know ("ghost": a namespace
// plugged into berth's bridge, not in the config), and a 127.0.0.1-only
// publish (outside sources route 127.0.0.1 through the host, moby #45610).
//
// Every source runs its cells at once (the harness and agents of
// test/lib/matrix.ts, which matrix6.test.ts shares in IPv6);
// expected drops cost one bounded wait each, on the listener, never a sleep.
// Traffic only ever goes between this file's namespaces and the host's
// addresses on this file's interfaces. Needs root, iproute2, iptables
// (nf_tables), conntrack and python3.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseConfig } from '../../src/domain/config';
import { run } from '../../src/platform/exec';
import { autoUplinks, hostInterfaces } from '../../src/platform/hostnet';
import * as standalone from '../../src/sources/standalone';
import { Listed, Matrix, keyOf, matrixNames, pool, reached } from '../lib/matrix';
import { BIN } from '../lib/dockerd';

const pid = process.pid;
const tag = `mx${pid % 100000}`;
const pinRoot = `/sys/fs/bpf/berth-test-${tag}`;
// second octets 240..250 belong to this file; six /24s from a pid-chosen third octet
const S = 240 + (pid % 11);
const T = (pid % 40) * 6;
const net = (i: number): string => `10.${S}.${T + i}`;
const SUB = { A: net(0), B: net(1), UP: net(2), SIDE: net(3), VBR: net(4), L3: net(5) };
// host ports: clear of the other suites' (20000.., 40000..), of 9469 and of the NAT range
const PUB = 5000 + (pid % 2000);
const LOPUB = PUB + 2000;
const TCP = { pub: 80, unpub: 8000 };
const UDP = { pub: 7070, unpub: 7071 };
const { N, IF } = matrixNames(tag);

const cfgText = (interfaces: string[]): string => `
networks:
  - name: ${tag}a
    subnet: ${SUB.A}.0/24
    bridge: ${IF.brA}
  - name: ${tag}b
    subnet: ${SUB.B}.0/24
    bridge: ${IF.brB}
containers:
  - name: ${N.web}
    network: ${tag}a
    ip: ${SUB.A}.10
    publish: ["${PUB}:${TCP.pub}", "${PUB}:${UDP.pub}/udp", "127.0.0.1:${LOPUB}:${TCP.pub}", "127.0.0.1:${LOPUB}:${UDP.pub}/udp"]
  - name: ${N.peer}
    network: ${tag}a
    ip: ${SUB.A}.11
  - name: ${N.b1}
    network: ${tag}b
    ip: ${SUB.B}.10
externals:
  - name: ${N.up}
    address: ${SUB.UP}.2/24
uplinks: [${IF.up}]
# served besides the uplink: this file's own interfaces only
interfaces: [${interfaces.join(', ')}]
`;
// what auto-detection would serve among this file's interfaces (checked below): the second NIC
const cfg = parseConfig(cfgText([IF.side]));

const m = new Matrix({
  family: 4,
  tag,
  pinRoot,
  chainSuffix: `M${pid % 100000}`,
  cfg,
  SUB,
  PUB,
  LOPUB,
  TCP,
  UDP,
  flushNets: [{ family: [], net: `10.${S}.0.0/16` }],
  flushPortFamilies: [[]],
});

/** The sources that are outside the host (the rest: the host itself and its containers). */
const OUTSIDE = ['uplink', 'side NIC', 'foreign bridge', 'L3 (tun)'];

/**
 * Cells where berth is deliberately stricter than Docker, with the reason;
 * the first that matches a cell is its reason. (Docker 29 is not stricter
 * than the reference anywhere here: the reference already has its raw-table
 * drops and the per-bridge DROP of unpublished ports, and nothing in this
 * matrix needed more.)
 */
const DIFFERENCES: readonly Listed[] = [
  {
    match: (c) => OUTSIDE.includes(c.source) && c.kind === 'loopback-any' && c.proto !== 'icmp',
    reason:
      'a packet to 127.0.0.0/8 from outside is a martian: berth drops it on every served interface whatever the port (loopback_only), and the kernel drops it elsewhere; Docker\'s nat PREROUTING DNATs it before the kernel\'s martian check when the port is published on every address, and its reply leaves with source 127.0.0.1. The port stays reachable on the host\'s own addresses',
  },
  {
    match: (c) => c.source === 'foreign bridge' && c.kind === 'host-address' && c.proto !== 'icmp',
    reason:
      'a foreign bridge is not served unless named: auto-detection leaves every bridge out (it may be a network of Docker or of another berth, whose own traffic must never meet berth_up_in); `interfaces: [virbr0]` serves it (checked below)',
  },
  {
    match: (c) => c.source === 'L3 (tun)' && c.kind === 'host-address' && c.proto !== 'icmp',
    reason: 'an L3 device is never served: berth_up_in needs an Ethernet header (auto-detection leaves it out, naming it is refused)',
  },
];

/** Reasons this matrix has no cause to see (no fragments, no spoofing, no policy, nothing full): a bug if they grow. */
const NEVER = ['malformed', 'no_endpoint', 'ct_full', 'nat_no_port', 'fragment', 'spoofed', 'policy', 'internal', 'icc'];

t.teardown(() => m.cleanup());

t.test("security matrix: every source × every target × TCP/UDP/ICMP, Docker 29's rules and berth", async (t) => {
  // what berth serves by default among this file's interfaces: the uplink and the second NIC
  const { noL3, sources, ts, cells } = await m.setup(t, async () => {
    const ours = new Set<string>(Object.values(IF));
    t.same(
      autoUplinks(await hostInterfaces()).map((i) => i.ifname).filter((n) => ours.has(n)).sort(),
      [IF.up, IF.side].sort(),
      'auto-detection would serve the uplink and the second NIC, not the foreign bridge, the L3 device or any bridge port: the matrix config says the same',
    );
  });

  // ---- phase A: Docker 29's rules, berth absent
  const hostIfs = [
    { ifname: IF.side, addr: `${SUB.SIDE}.1` },
    { ifname: IF.vbr, addr: `${SUB.VBR}.1` },
    ...(noL3 ? [] : [{ ifname: IF.tun, addr: `${SUB.L3}.1` }]),
  ];
  const a = await m.phaseA(t, sources, cells, hostIfs);
  const ref = a.ref;

  // ---- phase B: berth, no iptables rule of ours
  const ifindex = (n: string): number => Number(fs.readFileSync(`/sys/class/net/${n}/ifindex`, 'utf8'));
  const { dp, b, ms } = await m.phaseB(t, sources, cells, async (dp) => {
    t.same(
      dp.uplinkAttachments().filter((a) => a.kind === 'tc' && a.live).map((a) => a.ifindex).sort(),
      [ifindex(IF.up), ifindex(IF.side)].sort(),
      'berth_up_in is on the uplink and the served second NIC, nowhere else',
    );
  });

  // ---- compare, cell for cell, and the table
  m.compare(t, { sources, ts, cells, ref, b, msA: a.ms, msB: ms }, { stricter: DIFFERENCES, never: NEVER });
  const dir = m.dir;
  const probe = m.probe.bind(m);

  // ---- a foreign bridge named in `interfaces` is served as Docker serves it
  await standalone.up(parseConfig(cfgText([IF.side, IF.vbr])), { pinRoot, startCommands: false });
  const fbSource = sources.find((s) => s.name === 'foreign bridge')!;
  const fbCells = cells.filter((c) => c.source === 'foreign bridge' && c.proto !== 'icmp' && (c.kind === 'host-address' || c.kind === 'loopback-any'));
  const fbOut = await pool(64, fbCells.map((c, i) => () => probe(fbSource.agent, c, 'c', i)));
  fbCells.forEach((c, i) => {
    // what stays listed once the bridge is served: 127.0.0.0/8 from outside
    const other = DIFFERENCES.find((d) => d.match(c) && !d.reason.startsWith('a foreign bridge'));
    if (other) t.ok(!reached(fbOut[i]!), `vbr served: ${keyOf(c)}: ${fbOut[i]} (still listed: 127.0.0.0/8 from outside)`);
    else t.equal(fbOut[i], ref.get(keyOf(c)), `vbr served: ${keyOf(c)} as with Docker`);
  });
  await standalone.up(cfg, { pinRoot, startCommands: false });

  // ---- an L3 device named as served, or as an uplink, is refused before anything changes
  if (!noL3) {
    const before = dp.uplinkAttachments().map((a) => a.pin).sort();
    await t.rejects(standalone.up(parseConfig(cfgText([IF.side, IF.tun])), { pinRoot, startCommands: false }), new RegExp(`interfaces: ${IF.tun} is an L3 device \\(link type none, tun\\): its packets carry no Ethernet header`), 'berth up refuses an L3 device in interfaces');
    await t.rejects(
      standalone.up(parseConfig(cfgText([IF.side]).replace(`uplinks: [${IF.up}]`, `uplinks: [${IF.tun}]`)), { pinRoot, startCommands: false }),
      new RegExp(`uplinks: ${IF.tun} is an L3 device`),
      'and as an uplink',
    );
    t.same(dp.uplinkAttachments().map((a) => a.pin).sort(), before, 'nothing attached or detached by the refused runs');
    // Docker mode: --interfaces, refused before dockerd is even asked (there is none at this socket)
    const otherRoot = `${pinRoot}-docker`;
    const r = await run(BIN, ['--bpffs', otherRoot, 'run', '--docker', '--docker-socket', path.join(dir, 'no-dockerd.sock'), '--uplinks', '', '--interfaces', IF.tun, '--metrics', '127.0.0.1:0'], { timeoutMs: 30000 }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code?: unknown; stderr?: string }) => ({ code: e.code, stderr: e.stderr ?? '' }),
    );
    t.equal(r.code, 1, 'berth run --docker --interfaces TUN exits 1');
    t.match(r.stderr, new RegExp(`^berth: interfaces: ${IF.tun} is an L3 device \\(link type none, tun\\)`), 'naming the interface and why');
    t.notOk(fs.existsSync(otherRoot), 'nothing pinned');
  }
});
