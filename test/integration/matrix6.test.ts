// The security matrix in IPv6 (issue 12): every cell of matrix.test.ts that
// has a meaning in IPv6, first through Docker 29's ip6tables rules
// (test/lib/reference6.ts via applyReference, berth absent), then through
// berth; outcome for outcome, berth's drops shown by its counters, a drop
// asserted by the datagram never reaching the listener.
// The harness is matrix.test.ts's (test/lib/matrix.ts, family 6): this file
// holds its names, config, listed differences and the v6-only checks.
//
// Sources: the uplink, a second NIC ("side"), a foreign bridge ("vbr", not
// served), an L3 device (tun, through a relay), the host itself, a container
// on the same network, one on another network. Targets: the published port
// on every host v6 address (each interface's, both gateway6s), [::1] of a
// port published on every address, the container's v6 address on a
// published and an unpublished port, a container berth has not programmed
// ("ghost": a namespace on berth's bridge with a v6 address, not in the
// config), and a [::1]-only publish. Outside sources try to send to [::1]
// through the host (policy routing, as the IPv4 matrix does for 127.0.0.1);
// the kernel drops ::1 arriving on any interface but lo (ip6_rcv_core), and
// berth drops it before that on a served interface (loopback_only).
//
// What IPv4 has that IPv6 lacks, so no cell: route_localnet (a 127.0.0.1
// publish reached from outside), the raw-table loopback rule.
// Names: prefix v6m, subnets 10.83.0.0/16 and fd83::/16, pin root
// /sys/fs/bpf/berth-v6matrix, host ports 32500-32999. Needs root, iproute2,
// ip6tables (nf_tables), conntrack and python3.
import t from 'tap';
import { parseConfig } from '../../src/domain/config';
import { run } from '../../src/platform/exec';
import { Listed, Matrix, keyOf, matrixNames, reached } from '../lib/matrix';

const pid = process.pid;
const tag = `v6m${pid % 1000}`;
const net = (i: number): string => `10.83.${i}`;
/** fd83:I::/64, written so that `${net6(i)}:N` is canonical text (fd83::N for network A) */
const net6 = (i: number): string => (i === 0 ? 'fd83:' : `fd83:${i}:`);
const SUB = { A: net(0), B: net(1), UP: net(2), SIDE: net(3), VBR: net(4), L3: net(5) };
const SUB6 = { A: net6(0), B: net6(1), UP: net6(2), SIDE: net6(3), VBR: net6(4), L3: net6(5) };
// host ports 32500..32999 are this file's
const PUB = 32500 + (pid % 250);
const LOPUB = PUB + 250;
const TCP = { pub: 80, unpub: 8000 };
const UDP = { pub: 7070, unpub: 7071 };
const { N, IF } = matrixNames(tag);

const cfgText = `
networks:
  - name: ${tag}a
    subnet: ${SUB.A}.0/24
    subnet6: ${SUB6.A}:/64
    bridge: ${IF.brA}
  - name: ${tag}b
    subnet: ${SUB.B}.0/24
    subnet6: ${SUB6.B}:/64
    bridge: ${IF.brB}
containers:
  - name: ${N.web}
    network: ${tag}a
    ip: ${SUB.A}.10
    ip6: ${SUB6.A}:10
    publish: ["${PUB}:${TCP.pub}", "${PUB}:${UDP.pub}/udp", "[::1]:${LOPUB}:${TCP.pub}", "[::1]:${LOPUB}:${UDP.pub}/udp"]
  - name: ${N.peer}
    network: ${tag}a
    ip: ${SUB.A}.11
    ip6: ${SUB6.A}:11
  - name: ${N.b1}
    network: ${tag}b
    ip: ${SUB.B}.10
    ip6: ${SUB6.B}:10
externals:
  - name: ${N.up}
    address: ${SUB.UP}.2/24
    address6: ${SUB6.UP}:2/64
uplinks: [${IF.up}]
# served besides the uplink: this file's own second NIC only
interfaces: [${IF.side}]
`;
const cfg = parseConfig(cfgText);

const m = new Matrix({
  family: 6,
  tag,
  pinRoot: '/sys/fs/bpf/berth-v6matrix',
  chainSuffix: `V6M${pid % 1000}`,
  cfg,
  SUB,
  SUB6,
  PUB,
  LOPUB,
  TCP,
  UDP,
  flushNets: [
    { family: [], net: '10.83.0.0/16' },
    { family: ['-f', 'ipv6'], net: 'fd83::/16' },
  ],
  flushPortFamilies: [['-f', 'ipv4'], ['-f', 'ipv6']],
});

/**
 * Cells where berth is deliberately stricter than Docker 29 (berth drops
 * what Docker's rules pass), with the reason; the first that matches a cell
 * is its reason.
 */
const DIFFERENCES: readonly Listed[] = [
  {
    match: (c) => c.source === 'foreign bridge' && c.kind === 'host-address' && c.proto !== 'icmp',
    reason:
      'a foreign bridge is not served unless named (as in IPv4): auto-detection leaves every bridge out, so its DNAT-less traffic to a published port finds no listener; Docker\'s nat PREROUTING DNATs it on every interface',
  },
  {
    match: (c) => c.source === 'L3 (tun)' && c.kind === 'host-address' && c.proto !== 'icmp',
    reason: 'an L3 device is never served (as in IPv4): berth_up_in needs an Ethernet header',
  },
];

/**
 * Cells where berth answers and Docker 29's rules (userland proxy off) do
 * not: the host to [::1] of a published port. reference6.ts explains why
 * Docker's DNAT to [::1] never completes with the proxy off; with the
 * default proxy on, docker-proxy answers there, and berth's connect6 and
 * sendmsg6 hooks do the same (issue 12 item 3). Only the host itself.
 */
const ANSWERS: readonly Listed[] = [
  {
    match: (c) => c.source === 'host' && (c.kind === 'loopback-any' || c.kind === 'loopback-only') && c.proto !== 'icmp',
    reason: 'the host to [::1]:PUB/LOPUB: berth\'s socket hooks answer as docker-proxy does; Docker\'s DNAT with the proxy off never completes (reference6.ts)',
  },
];

/** Reasons this matrix has no cause to see: a bug if they grow (every network here has IPv6). */
const NEVER = ['malformed', 'no_endpoint', 'ct_full', 'nat_no_port', 'fragment', 'spoofed', 'policy', 'internal', 'icc', 'no_ipv6', 'frag_orphan', 'too_big', 'ttl_exceeded'];

t.teardown(() => m.cleanup());

t.test("security matrix in IPv6: every source × every v6 target × TCP/UDP/ICMPv6, Docker 29's ip6tables rules and berth", async (t) => {
  const { noL3, sources, ts, cells } = await m.setup(t);

  // ---- phase A: Docker 29's rules (both families; the v6 side from the config), berth absent
  const hostIfs = [
    { ifname: IF.side, addr: `${SUB.SIDE}.1`, addr6: `${SUB6.SIDE}:1` },
    { ifname: IF.vbr, addr: `${SUB.VBR}.1`, addr6: `${SUB6.VBR}:1` },
    ...(noL3 ? [] : [{ ifname: IF.tun, addr6: `${SUB6.L3}:1` }]),
  ];
  const a = await m.phaseA(t, sources, cells, hostIfs, async () => {
    t.match((await run('ip6tables-save', ['-t', 'nat'])).stdout, new RegExp(`DNAT --to-destination \\[${SUB6.A}:10\\]:${TCP.pub}`), 'phase A: the ip6tables reference DNATs the v6 publish');
  });

  // ---- phase B: berth, no ip6tables rule of ours
  const { b, ms } = await m.phaseB(t, sources, cells);

  // ---- compare, cell for cell, and the table
  m.compare(t, { sources, ts, cells, ref: a.ref, b, msA: a.ms, msB: ms }, { stricter: DIFFERENCES, answers: ANSWERS, never: NEVER });
  // every cell to [::1] from outside or from a container is a drop in both phases, berth's counted where
  // it serves the interface (uplink, second NIC) and on the container's veth (LOOPBACK_ONLY, lib/guard6.h)
  for (const s of ['uplink', 'side NIC', 'same network', 'other network']) {
    for (const c of cells.filter((c) => c.source === s && (c.kind === 'loopback-any' || c.kind === 'loopback-only'))) t.notOk(reached(b.out.get(keyOf(c))!), `${keyOf(c)}: dropped`);
    t.ok((b.drops.get(s) ?? []).some((g) => g.startsWith('loopback_only@')), `${s} -> [::1]: berth counts loopback_only`);
  }
});
