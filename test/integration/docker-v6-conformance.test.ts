// Docker conformance in IPv6 (issue 12): the IPv4 suite's scenarios
// (docker-conformance.test.ts) over IPv6 on a real dual-stack dockerd
// (Debian's 20.10), twice: once with Docker's own ip6tables rules (dockerd
// --experimental --ip6tables: 20.10 takes --ip6tables only as an
// experimental feature, and only with --iptables, so this run holds the
// lock test/lib/dockerd.ts takes for a dockerd with iptables, as the IPv4
// suite's run does), once with --iptables=false --ip6tables=false and
// `berth run --docker`. Networks are
// made with `docker network create --ipv6 --subnet`, the default bridge has
// --fixed-cidr-v6. The reachability matrices are compared outcome for outcome.
//
// Every drop is also a datagram: the target's UDP listener (udpecho6, which
// logs what it receives) must not have it, and in berth's run the drop
// reason's counter must have grown by it. The datagrams are sent and the
// logs read inside the containers with Dockerd.inside (nsenter with the
// container's own root), not `docker exec`: with dockerd in a chroot (CI's
// fresh-debian root) `docker exec` runs the host's programs on the host's
// files, so no datagram was ever seen there. Its own names: dockerd dirs
// /tmp/v6conf-*, bridges bv6f0..bv6f4, subnets 10.82.0.0/16 and fd82::/16,
// host ports 31000-31499, pin root /sys/fs/bpf/berth-v6conf. Needs root,
// docker.io, busybox-static, python3, a C compiler, and Linux 6.17+ for the
// ip6tables run (IPv6 forwarding per interface: force_forwarding; Docker
// would set net.ipv6.conf.all.forwarding, which other tests must not see).
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { Dataplane } from '../../src/platform/dataplane';
import { BerthProc, Dockerd, Outside, dockerSkipReason, exec, forceForward6On, forward6On, fromContainer, pool, serverCmd6, waitFor } from '../lib/dockerd';

const pinRoot = '/sys/fs/bpf/berth-v6conf';
const PORT = { pub: 31000, udp: 31001, a1: 31002, noicc: 31003, none: 31004, lo6: 31005, range: 31006, src: 31490, sink: 31491 };
const BR = { d0: 'bv6f0', n1: 'bv6f1', n2: 'bv6f2', ni: 'bv6f3', in: 'bv6f4', nm: 'bv6f5' };
const V4 = { d0: '10.82.0', n1: '10.82.1', n2: '10.82.2', ni: '10.82.3', in: '10.82.4', nm: '10.82.5', out: '10.82.250' };
const V6 = { d0: 'fd82:f0::/64', n1: 'fd82:1::/64', n2: 'fd82:2::/64', ni: 'fd82:3::/64', in: 'fd82:4::/64', nm: 'fd82:5::/64', out: 'fd82:fa::' };
const UDP6 = 5006; // udpecho6 in every container (serverCmd6)

/** Scenarios where berth (Docker 29) may differ from dockerd 20.10's ip6tables rules, with berth's outcome and the reason. */
const ALLOWED: Record<string, { berth: string; reason: string }> = {
  'host -> [::1]:pub': {
    berth: 'answer d1',
    reason:
      "berth answers where Docker's rules cannot: with the userland proxy off, nat OUTPUT DNATs ::1 to the container, but IPv6 has no route_localnet, so the un-NATed answer to ::1 is never routed from the bridge; berth's connect6 hook rewrites the socket's address instead (as docker-proxy would serve it)",
  },
  'host -> [::1]:lo6-port': { berth: 'answer d1', reason: 'as above: a [::1]-only publish, served by the connect6 hook' },
  'outside -> d1 v6 address, unpublished port (direct routing)': {
    berth: 'blocked',
    reason: 'Docker 28+ drops direct access to container addresses from outside in ip6tables too (raw PREROUTING -d C ! -i br -j DROP); 20.10 forwards it',
  },
  'outside -> c1 (icc=false net) v6 address, unpublished port (direct routing)': {
    berth: 'blocked',
    reason: 'as above (Docker 28+ raw PREROUTING drop per endpoint)',
  },
  'datagram: outside -> d1 v6 address (direct routing)': { berth: 'blocked', reason: 'as for TCP above (Docker 28+ raw PREROUTING drop)' },
  'datagram: outside -> c1 v6 address (direct routing)': { berth: 'blocked', reason: 'as for TCP above (Docker 28+ raw PREROUTING drop)' },
  'i2 -> i1 (internal network)': {
    berth: 'answer i1',
    reason:
      "NOT stricter: 20.10's ip6tables rules for an internal network (`-i br ! -d S6 -j DROP`, see the rules and i2's neighbour entry printed below) also match the neighbour solicitation one container sends to the other's solicited-node multicast address, bridged through FORWARD by br_netfilter, so two containers of an internal network never reach each other over IPv6. Docker 29's rules carry `! -o br` / `! -i br` (DOCKER-INTERNAL) and accept `-i br -o br`: berth follows Docker 29",
  },
  'datagram: i2 -> i1 (internal network)': { berth: 'answer arrived', reason: 'as for TCP above (20.10 drops the neighbour solicitation inside an internal network)' },
  'm1 -> outside (enable_ip_masquerade=false)': {
    berth: 'blocked',
    reason:
      'as in IPv4: the reply comes back addressed to the container itself, which Docker 28+ drops in raw PREROUTING (-d C6 ! -i br -j DROP) for nat-mode networks whether or not they masquerade; 20.10 forwards it',
  },
  'a2 -> [uplink6]:pub (other network via published port)': {
    berth: 'answer d1',
    reason:
      'NOT stricter: Docker 29 accepts it (isolation is in raw PREROUTING -d C ! -i br, which a packet to a host address does not match; DOCKER then accepts the DNATed flow), while 20.10 drops it in DOCKER-ISOLATION-STAGE-2. berth follows Docker 29',
  },
};

type Mode = 'ip6tables' | 'berth';
type Outcomes = Map<string, string>;
const started = Date.now();
const step = (msg: string): void => void process.stderr.write(`# [${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
t.setTimeout(10 * 60 * 1000);
const cls = (o: string): string => (o.startsWith('answer') ? o : 'blocked');

const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'v6conf-work-'));
const outside = new Outside('v6c', V4.out, workdir, PORT.src);
const sinkLog = path.join(workdir, 'sink6.log');
const results: Record<Mode, Outcomes> = { ip6tables: new Map(), berth: new Map() };
/** berth's run: for each datagram that did not arrive, the drop reasons whose counters grew by it */
const dropReasons = new Map<string, Record<string, number>>();
/** the ip6tables rules 20.10 wrote for the internal network (shown with the table) */
let internalRules6 = '';
/** i2's neighbour entry for i1 after the checks, under 20.10's ip6tables rules (FAILED: no neighbour advertisement came back) */
let internalNeigh6 = '';
let berth: BerthProc | undefined;
let dockerd: Dockerd | undefined;
let sink: ReturnType<typeof spawn> | undefined;

t.teardown(async () => {
  berth?.kill9();
  if (sink?.pid)
    try {
      process.kill(-sink.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  await dockerd?.cleanup().catch(() => undefined);
  try {
    Dataplane.reset(pinRoot);
  } catch {
    /* nothing pinned */
  }
  await outside.down();
  fs.rmSync(workdir, { recursive: true, force: true });
});

/** A UDP sink in the outside namespace on [::]:PORT.sink: logs every datagram ("<payload> from <peer>"), answers nothing. */
const SINK_PY = `
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind(('::', int(sys.argv[1])))
while True:
    d, a = s.recvfrom(4096)
    with open(sys.argv[2], 'a') as f:
        f.write('%s from %s\\n' % (d.decode(errors='replace'), a[0]))
`;

/** berth_drops_total summed by reason. */
function dropsByReason(metrics: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of metrics.matchAll(/^berth_drops_total\{[^}]*reason="([a-z0-9_]+)"[^}]*\} (\d+)/gm)) out[m[1]!] = (out[m[1]!] ?? 0) + Number(m[2]);
  return out;
}
const grown = (before: Record<string, number>, after: Record<string, number>): Record<string, number> =>
  Object.fromEntries(Object.entries(after).filter(([k, v]) => v > (before[k] ?? 0)).map(([k, v]) => [k, v - (before[k] ?? 0)]));

async function world(mode: Mode): Promise<Outcomes> {
  const out: Outcomes = new Map();
  const d = new Dockerd({
    tag: `v6cf${mode[0]}`,
    dirPrefix: `v6conf-${mode}-`,
    // 20.10 refuses --ip6tables without --iptables ("cannot create new chains, EnableIPTable is disabled")
    iptables: mode === 'ip6tables',
    bridge: BR.d0,
    bridgeCidr: `${V4.d0}.1/24`,
    liveRestore: true,
    ipv6: { fixedCidr6: V6.d0, ip6tables: mode === 'ip6tables' },
  });
  dockerd = d;
  try {
    d.own({ netns: outside.ns, link: outside.hostIf });
    await d.start();
    step(`${mode}: dockerd up`);
    if (mode === 'berth') {
      berth = new BerthProc(pinRoot, d.sock, [outside.hostIf], workdir);
      await berth.start();
    }
    await d.buildImage();
    const v6net = (sub: string): string[] => ['--ipv6', '--subnet', sub];
    await d.networkCreate('v6c-n1', BR.n1, `${V4.n1}.0/24`, v6net(V6.n1));
    await d.networkCreate('v6c-n2', BR.n2, `${V4.n2}.0/24`, v6net(V6.n2));
    await d.networkCreate('v6c-ni', BR.ni, `${V4.ni}.0/24`, [...v6net(V6.ni), '-o', 'com.docker.network.bridge.enable_icc=false']);
    await d.networkCreate('v6c-in', BR.in, `${V4.in}.0/24`, [...v6net(V6.in), '--internal']);
    await d.networkCreate('v6c-nm', BR.nm, `${V4.nm}.0/24`, [...v6net(V6.nm), '-o', 'com.docker.network.bridge.enable_ip_masquerade=false']);
    if (mode === 'ip6tables') internalRules6 = (await exec('ip6tables', ['-w', '-S'], 20000)).stdout.split('\n').filter((l) => l.includes(BR.in)).join('\n');
    const run = (name: string, netw: string | undefined, ports: string[] = []): Promise<string> =>
      d.dockerOk(['run', '-d', '--name', name, ...(netw ? ['--network', netw] : []), ...ports.flatMap((p) => ['-p', p]), d.image, ...serverCmd6(name)]);
    await run('d1', undefined, [`${PORT.pub}:80`, `${PORT.udp}:${UDP6}/udp`, `[::1]:${PORT.lo6}:80`]);
    await run('d2', undefined);
    await run('a1', 'v6c-n1', [`${PORT.a1}:80`, `${PORT.range}-${PORT.range + 2}:80-82`]);
    await run('a2', 'v6c-n1');
    await run('b1', 'v6c-n2');
    await run('c1', 'v6c-ni', [`${PORT.noicc}:80`]);
    await run('c2', 'v6c-ni');
    await run('i1', 'v6c-in');
    await run('i2', 'v6c-in');
    await run('m1', 'v6c-nm');
    await run('dual', 'v6c-n1');
    await d.dockerOk(['network', 'connect', 'v6c-n2', 'dual']);
    // Docker's rules forward with the kernel: IPv6 forwarding from our interfaces only
    // (other tests may rewrite the machine's switches: set again before each batch)
    const reforward = (): void => {
      if (mode !== 'ip6tables') return;
      for (const b of [...Object.values(BR), outside.hostIf]) {
        forward6On(b);
        if (!forceForward6On(b)) throw new Error(`${b}: no net.ipv6.conf.${b}.force_forwarding (Linux 6.17+): the kernel would not forward IPv6 for Docker's rules without the machine-wide switch`);
      }
    };
    reforward();
    const ip6 = async (c: string, n: string): Promise<string> => d.dockerOk(['inspect', '--format', `{{(index .NetworkSettings.Networks "${n}").GlobalIPv6Address}}`, c]);
    const IP = {
      d1: await ip6('d1', 'bridge'),
      d2: await ip6('d2', 'bridge'),
      a1: await ip6('a1', 'v6c-n1'),
      a2: await ip6('a2', 'v6c-n1'),
      b1: await ip6('b1', 'v6c-n2'),
      c1: await ip6('c1', 'v6c-ni'),
      c2: await ip6('c2', 'v6c-ni'),
      i1: await ip6('i1', 'v6c-in'),
      i2: await ip6('i2', 'v6c-in'),
      m1: await ip6('m1', 'v6c-nm'),
      dualN1: await ip6('dual', 'v6c-n1'),
      dualN2: await ip6('dual', 'v6c-n2'),
    };
    for (const [c, a] of Object.entries(IP)) if (!a.includes(':')) throw new Error(`${c} has no IPv6 address from dockerd (${JSON.stringify(a)})`);
    step(`${mode}: containers created: ${JSON.stringify(IP)}`);
    // every server up on its own v6 address (DAD done), and the v6 publish answering from outside: bounded waits
    for (const [k, a] of Object.entries(IP)) {
      const c = k.startsWith('dual') ? 'dual' : k;
      if (!(await waitFor(async () => (await d.inside(c, ['/bin/timeout', '2', '/bin/wget', '-qO-', `http://[${a}]/`], 10000)).code === 0, 20000, 200)))
        throw new Error(`${c} does not answer on [${a}]:80 inside its own namespace`);
    }
    const H6 = outside.hostAddr6;
    const O6 = outside.addr6;
    await waitFor(async () => (await outside.fromOutside('tcp', H6, PORT.pub)).startsWith('answer'), 20000, 200);
    reforward();
    step(`${mode}: ready`);

    const checks: Array<[string, () => Promise<string>]> = [
      ['outside -> [uplink6]:pub (default bridge, tcp)', () => outside.fromOutside('tcp', H6, PORT.pub)],
      ['outside -> [uplink6]:pub/udp (the container sees the client v6 address)', () => outside.fromOutside('udp', H6, PORT.udp)],
      ['outside -> [uplink6]:a1-pub (user network)', () => outside.fromOutside('tcp', H6, PORT.a1)],
      ['outside -> [uplink6]:range+0', () => outside.fromOutside('tcp', H6, PORT.range)],
      ['outside -> [uplink6]:range+1', () => outside.fromOutside('tcp', H6, PORT.range + 1)],
      ['outside -> [uplink6]:range+2', () => outside.fromOutside('tcp', H6, PORT.range + 2)],
      ['outside -> [uplink6]:noicc-pub (icc=false net)', () => outside.fromOutside('tcp', H6, PORT.noicc)],
      ['outside -> [uplink6]:unpublished port', () => outside.fromOutside('tcp', H6, PORT.none)],
      ['outside -> [uplink6]:lo6-port (published on [::1] only)', () => outside.fromOutside('tcp', H6, PORT.lo6)],
      ['outside -> d1 v6 address, unpublished port (direct routing)', () => outside.fromOutside('tcp', IP.d1, 81)],
      ['outside -> c1 (icc=false net) v6 address, unpublished port (direct routing)', () => outside.fromOutside('tcp', IP.c1, 81)],
      ['outside -> i1 internal v6 address', () => outside.fromOutside('tcp', IP.i1, 80)],
      ['host -> [uplink6]:pub', () => outside.fromHost('tcp', H6, PORT.pub)],
      ['host -> [::1]:pub', () => outside.fromHost('tcp', '::1', PORT.pub)],
      ['host -> [::1]:lo6-port', () => outside.fromHost('tcp', '::1', PORT.lo6)],
      ['host -> d1 v6 address', () => outside.fromHost('tcp', IP.d1, 80)],
      ['d2 -> d1 (default bridge)', () => fromContainer(d, 'd2', IP.d1, 80)],
      ['a2 -> a1 (same user network)', () => fromContainer(d, 'a2', IP.a1, 80)],
      ['a2 -> b1 (other network: isolated)', () => fromContainer(d, 'a2', IP.b1, 80)],
      ['d2 -> a1 (default bridge to user network)', () => fromContainer(d, 'd2', IP.a1, 80)],
      ['c2 -> c1 (icc=false)', () => fromContainer(d, 'c2', IP.c1, 80)],
      ['i2 -> i1 (internal network)', () => fromContainer(d, 'i2', IP.i1, 80)],
      ['d2 -> outside (default bridge, masqueraded to the uplink v6 address)', () => fromContainer(d, 'd2', O6, PORT.src)],
      ['a2 -> outside (user network, masqueraded)', () => fromContainer(d, 'a2', O6, PORT.src)],
      ['c2 -> outside (icc=false net, masqueraded)', () => fromContainer(d, 'c2', O6, PORT.src)],
      ['i1 -> outside (internal network)', () => fromContainer(d, 'i1', O6, PORT.src)],
      ['d2 -> [uplink6]:pub (hairpin, same bridge)', () => fromContainer(d, 'd2', H6, PORT.pub)],
      ['d1 -> [uplink6]:pub (hairpin to itself)', () => fromContainer(d, 'd1', H6, PORT.pub)],
      ['a2 -> [uplink6]:pub (other network via published port)', () => fromContainer(d, 'a2', H6, PORT.pub)],
      ['m1 -> outside (enable_ip_masquerade=false)', () => fromContainer(d, 'm1', O6, PORT.src)],
      ['dual -> a1 (n1)', () => fromContainer(d, 'dual', IP.a1, 80)],
      ['dual -> b1 (n2)', () => fromContainer(d, 'dual', IP.b1, 80)],
      ['a2 -> dual (n1 address)', () => fromContainer(d, 'a2', IP.dualN1, 80)],
      ['b1 -> dual (n2 address)', () => fromContainer(d, 'b1', IP.dualN2, 80)],
      ['b1 -> dual (n1 address: other network)', () => fromContainer(d, 'b1', IP.dualN1, 80)],
    ];
    const got = await pool(checks.map(([, f]) => f), 4);
    checks.forEach(([name], i) => out.set(name, got[i]!));
    step(`${mode}: ${checks.length} checks done`);
    if (mode === 'ip6tables') {
      const sandbox = await d.dockerOk(['inspect', '--format', '{{.NetworkSettings.SandboxKey}}', 'i2']);
      internalNeigh6 = (await exec('nsenter', [`--net=${sandbox}`, 'ip', '-6', 'neigh', 'show', IP.i1], 10000)).stdout.trim() || '(none)';
    }

    // Datagrams, one at a time (berth's counters are read around each): did it reach the listener?
    // Sent and read inside the containers with Dockerd.inside, not `docker exec` (which, with
    // dockerd in a chroot as in CI's fresh root, runs the host's programs on the host's /tmp).
    const inLog = async (c: string, marker: string): Promise<boolean> => (await d.inside(c, ['/bin/cat', '/tmp/udp6.log'], 10000)).stdout.includes(marker);
    const inSink = (marker: string): boolean => fs.existsSync(sinkLog) && fs.readFileSync(sinkLog, 'utf8').includes(marker);
    let seq = 0;
    const dgram = async (name: string, send: (marker: string) => Promise<string>, arrived: (marker: string) => Promise<boolean> | boolean): Promise<void> => {
      const marker = `v6conf-${mode}-${seq++}`;
      const before = berth ? dropsByReason(await berth.metrics()) : {};
      await send(marker);
      // arrival is awaited (bounded); a datagram that did not arrive in 3 s is taken as dropped
      const ok = Boolean(await waitFor(() => arrived(marker), 3000, 100));
      out.set(`datagram: ${name}`, ok ? 'answer arrived' : 'blocked (never reached the listener)');
      if (berth && !ok) dropReasons.set(name, grown(before, dropsByReason(await berth.metrics())));
    };
    const fromC = (c: string, addr: string, port: number) => (m: string) => d.inside(c, ['/bin/udpecho6', 'send', addr, String(port), m], 10000).then((r) => r.stdout);
    const fromO = (addr: string, port: number) => (m: string) => outside.fromOutside('udp', addr, port, 1, m);
    await dgram('outside -> [uplink6]:pub/udp -> d1', fromO(H6, PORT.udp), (m) => inLog('d1', `${m} from ${O6}`));
    await dgram('outside -> d1 v6 address (direct routing)', fromO(IP.d1, UDP6), (m) => inLog('d1', m));
    await dgram('outside -> c1 v6 address (direct routing)', fromO(IP.c1, UDP6), (m) => inLog('c1', m));
    await dgram('outside -> i1 internal v6 address', fromO(IP.i1, UDP6), (m) => inLog('i1', m));
    await dgram('a2 -> a1 (same user network)', fromC('a2', IP.a1, UDP6), (m) => inLog('a1', `${m} from ${IP.a2}`));
    await dgram('a2 -> b1 (other network: isolated)', fromC('a2', IP.b1, UDP6), (m) => inLog('b1', m));
    await dgram('c2 -> c1 (icc=false)', fromC('c2', IP.c1, UDP6), (m) => inLog('c1', m));
    await dgram('i2 -> i1 (internal network)', fromC('i2', IP.i1, UDP6), (m) => inLog('i1', m));
    await dgram('d2 -> outside (masqueraded)', fromC('d2', O6, PORT.sink), (m) => inSink(`${m} from ${H6}`));
    await dgram('i1 -> outside (internal network)', fromC('i1', O6, PORT.sink), (m) => inSink(m));
    step(`${mode}: datagrams done`);

    // connect / disconnect while running: a2's v6 reachability of n2 follows
    await d.dockerOk(['network', 'connect', 'v6c-n2', 'a2']);
    reforward();
    const a2n2 = await ip6('a2', 'v6c-n2');
    out.set('a2 has a v6 address on n2 after `network connect`', a2n2.includes(':') ? 'answer yes' : `blocked (${a2n2})`);
    out.set('a2 -> b1 after `network connect n2 a2`', await waitFor(() => fromContainer(d, 'a2', IP.b1, 80).then((o) => (o.startsWith('answer') ? o : '')), 10000, 200).then((o) => o || 'blocked'));
    await dgram('a2 -> b1 after connect', fromC('a2', IP.b1, UDP6), (m) => inLog('b1', m));
    await d.dockerOk(['network', 'disconnect', 'v6c-n2', 'a2']);
    // the n2 address is gone from a2 once disconnect returns; wait (bounded) until b1 no longer answers
    const after = await waitFor(() => fromContainer(d, 'a2', IP.b1, 80).then((o) => (o.startsWith('answer') ? '' : o)), 10000, 200);
    out.set('a2 -> b1 after `network disconnect n2 a2`', after || 'answer (still)');
    await dgram('a2 -> b1 after disconnect', fromC('a2', IP.b1, UDP6), (m) => inLog('b1', m));
    out.set('a2 -> a1 after disconnect (n1 kept)', await fromContainer(d, 'a2', IP.a1, 80));
    step(`${mode}: connect/disconnect done`);

    // restart with the same ports: the v6 publish answers again (bounded wait)
    await d.dockerOk(['restart', '-t', '1', 'd1'], 60000);
    reforward();
    const again = async (proto: 'tcp' | 'udp', port: number): Promise<string> =>
      (await waitFor(async () => {
        const o = await outside.fromOutside(proto, H6, port);
        return o.startsWith('answer') ? o : '';
      }, 15000, 100)) || 'blocked';
    out.set('outside -> [uplink6]:pub after `docker restart d1`', await again('tcp', PORT.pub));
    out.set('outside -> [uplink6]:pub/udp after restart', await again('udp', PORT.udp));
    step(`${mode}: restart done`);
    return out;
  } finally {
    berth?.kill9();
    berth = undefined;
    await d.cleanup();
    dockerd = undefined;
    try {
      Dataplane.reset(pinRoot);
    } catch {
      /* nothing pinned */
    }
  }
}

/** The drop reason berth counts for each datagram that must not arrive. */
const REASON: Record<string, string[]> = {
  'outside -> d1 v6 address (direct routing)': ['not_published'],
  'outside -> c1 v6 address (direct routing)': ['not_published'],
  'outside -> i1 internal v6 address': ['not_published', 'internal'],
  'a2 -> b1 (other network: isolated)': ['isolation'],
  'c2 -> c1 (icc=false)': ['icc'],
  'i1 -> outside (internal network)': ['internal'],
  'a2 -> b1 after disconnect': ['isolation'],
};

const ipv6Off = fs.existsSync('/proc/sys/net/ipv6/conf/all/disable_ipv6') ? fs.readFileSync('/proc/sys/net/ipv6/conf/all/disable_ipv6', 'utf8').trim() === '1' : true;
const skip = dockerSkipReason() ?? (ipv6Off ? 'IPv6 is disabled on this machine' : undefined);

t.test('docker conformance in IPv6: dockerd+ip6tables vs dockerd+berth', { skip: skip ?? false }, async (t) => {
  const swept = await Dockerd.sweepStale(['berth-dk-', 'v6conf-']);
  if (swept) t.comment(`cleaned up after ${swept} earlier run(s) that died without teardown`);
  await outside.up([]);
  await outside.up6(V6.out, [V6.d0, V6.n1, V6.n2, V6.ni, V6.in, V6.nm]);
  const sinkErr = path.join(workdir, 'sink6.err');
  const errFd = fs.openSync(sinkErr, 'a');
  sink = spawn('ip', ['netns', 'exec', outside.ns, 'python3', '-c', SINK_PY, String(PORT.sink), sinkLog], { stdio: ['ignore', 'ignore', errFd], detached: true });
  fs.closeSync(errFd);
  sink.unref();
  results.ip6tables = await world('ip6tables');
  results.berth = await world('berth');
  // The datagram rows read the listeners' logs: the published UDP datagram from outside is their
  // control and must be in d1's log in both runs, or "blocked" would only mean "not read".
  const control = 'datagram: outside -> [uplink6]:pub/udp -> d1';
  for (const mode of ['ip6tables', 'berth'] as const) t.equal(results[mode].get(control), 'answer arrived', `${mode}: the control datagram is in d1's listener log (the datagram rows can be judged)`);
  const rows: string[] = [];
  for (const [name, ref] of results.ip6tables) {
    const got = results.berth.get(name) ?? 'missing';
    const allowed = ALLOWED[name];
    rows.push(`| ${name} | ${ref} | ${got} | ${cls(ref) === cls(got) ? 'same' : allowed ? `allowed: ${allowed.reason}` : 'DIFFERENT'} |`);
    if (allowed) t.equal(cls(got), allowed.berth, `${name}: berth gives Docker 29's answer (${allowed.reason})`);
    else t.equal(cls(got), cls(ref), `${name}: same as Docker's own ip6tables rules`);
  }
  t.comment(`20.10's ip6tables filter rules for the internal network ${BR.in}:\n${internalRules6}\ni2's neighbour entry for i1 under them: ${internalNeigh6}`);
  t.comment(`\n${['| scenario | dockerd 20.10 + ip6tables | dockerd + berth | |', '| --- | --- | --- | --- |', ...rows].join('\n')}`);
  // what must hold in IPv6 whatever 20.10 does
  const b = results.berth;
  t.equal(b.get('outside -> [uplink6]:pub/udp (the container sees the client v6 address)'), `answer udp6-d1 from ${outside.addr6}`, 'the published v6 port keeps the client v6 address');
  t.equal(b.get('d2 -> outside (default bridge, masqueraded to the uplink v6 address)'), `answer from ${outside.hostAddr6}`, 'masquerade: the outside sees the uplink v6 address');
  t.equal(b.get('a2 -> outside (user network, masqueraded)'), `answer from ${outside.hostAddr6}`, 'masquerade from a user network too');
  const sinkState = (): string => `the sink ${sink!.exitCode === null && sink!.signalCode === null ? 'is running' : `exited (${sink!.exitCode ?? sink!.signalCode})`}; its stderr: ${JSON.stringify(fs.readFileSync(sinkErr, 'utf8').trim())}`;
  t.equal(b.get('datagram: d2 -> outside (masqueraded)'), 'answer arrived', 'the masqueraded datagram reached the outside listener with the uplink v6 address as its source', { sink: sinkState() });
  for (const [name, want] of Object.entries(REASON)) {
    t.equal(cls(b.get(`datagram: ${name}`) ?? 'missing'), 'blocked', `${name}: the datagram never reached the listener`);
    const g = dropReasons.get(name) ?? {};
    t.ok(want.some((r) => (g[r] ?? 0) > 0), `${name}: berth counted it (${want.join(' or ')}; grown: ${JSON.stringify(g)})`);
  }
});
