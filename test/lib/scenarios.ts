/**
 * The topology the reference and differential tests build (networks,
 * containers, an external "outside host"), the helpers that drive traffic
 * through it, and the scenario matrix that nat-diff.test.ts runs twice: once
 * through Docker 29's rules (test/lib/reference.ts) and once through berth.
 *
 * Every scenario's run() returns an outcome string ("reached, source
 * 10.x.y.z", "answer 'hello from web'", "unreachable (timeout)", ...) so the
 * two runs can be compared scenario by scenario. Traffic only ever goes
 * between the topology's own namespaces and the host.
 *
 * IPv6 (issue 12): with `v6`, the topology is dual stack (a /64 per
 * network and for the external, an IPv6 address per container, Docker 29's
 * publish semantics: `PUB:80`, the UDP and the range publish serve both
 * families, `[::1]:LOPUB:80` is the v6 loopback twin of `127.0.0.1:LOPUB:80`)
 * and scenarioMatrix6 is the IPv6 variant of every IPv4 scenario that has a
 * meaning in IPv6, with the same outcome strings (v6 sources written
 * without brackets, UDP peers as [addr]:port). addV6 puts the IPv6 side into
 * the namespaces (idempotent: `replace`, `nodad`), whether or not
 * src/platform/topology.ts does it itself.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BerthConfig, parseConfig } from '../../src/domain/config';
import { CommandError, run } from '../../src/platform/exec';
import { externalVethName, hostVethName } from '../../src/domain/names';
import { Side6, canon6 } from './reference6';

export interface TopoOptions {
  /** unique name prefix (file + pid): namespaces, bridges and networks start with it */
  tag: string;
  /** second octets of the four /24s: networks A (icc), B (icc=false), I (internal), and the external's */
  octets: { a: number; b: number; i: number; e: number };
  /** third octet of every /24 */
  third: number;
  /** host ports: published on every address (-> web:80) and on 127.0.0.1 (-> web:80) */
  pub: number;
  loPub: number;
  /**
   * With extras: a UDP echo container (udp:5000 published on `udpPub`), a
   * range publish (`rangePub`..+2 -> rng:8000-8002) and a UDP echo on the
   * external (port EXT_UDP_PORT).
   */
  extras?: { udpPub: number; rangePub: number };
  /**
   * The four /24s as "a.b.c" (overrides octets/third), for files whose IPv4
   * block is not a /8 of second octets (e.g. 10.87.0.0/16).
   */
  sub4?: { A: string; B: string; I: string; E: string };
  /**
   * The IPv6 side: `prefix` is the first three groups ("fd87:1:2a"); the
   * networks get prefix:a::/64 (A), :b:: (B), :c:: (internal I) and the
   * external :e::; the last group of every address mirrors its IPv4 last
   * octet (gateways ::1, web ::10, ...). inConfig: the config file carries
   * the v6 fields too (subnet6, ip6, address6, `[::1]:` publish), which needs
   * the dual-stack config parser (issue 12); without it only the reference
   * (and addV6) know the IPv6 side.
   */
  v6?: { prefix: string; inConfig?: boolean };
}

/** The IPv6 side of a topology (TopoOptions.v6). */
export interface Topo6 {
  /** the /64s without "::/64": "fd87:1:2a:a" */
  sub: { A: string; B: string; I: string; E: string };
  hostAddr: string;
  extAddr: string;
  /** what the ip6tables reference is generated from */
  side: Side6;
  inConfig: boolean;
  /** every v6 address of the topology (containers, gateways, host side, external) */
  addresses: string[];
}

export const EXT_UDP_PORT = 5353;
export const UDP_PORT = 5000;
const PY = '/usr/bin/python3';

export interface Topo {
  opts: TopoOptions;
  cfg: BerthConfig;
  /** the config file's text */
  text: string;
  /** temporary directory with the document roots and scripts */
  root: string;
  nets: { A: string; B: string; I: string };
  bridges: { A: string; B: string; I: string };
  /** container / external (namespace) names */
  web: string;
  peer: string;
  b1: string;
  b2: string;
  i1: string;
  ext: string;
  rng: string;
  udp: string;
  /** "10.a.x" etc: the /24s without the last octet */
  sub: { A: string; B: string; I: string; E: string };
  hostAddr: string;
  extAddr: string;
  /** the external's host-side veth: the only uplink */
  uplink: string;
  allNs: string[];
  allLinks: string[];
  /** every address of the topology (containers, gateways, host side, external; IPv6 ones too) */
  addresses: string[];
  /** the IPv6 side, when built with opts.v6 */
  v6?: Topo6;
}

const CGI_IP = '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "$REMOTE_ADDR"\n';
// dual stack: IPv4 peers are seen as ::ffff:a.b.c.d and written as a.b.c.d
const UDP_ECHO = `import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(('::', int(sys.argv[1])))
while True:
    d, a = s.recvfrom(2048)
    h = a[0][7:] if a[0].startswith('::ffff:') else a[0]
    s.sendto(b'seen ' + h.encode(), a)
`;
const UDP_CLIENT = `import socket, sys
v6 = ':' in sys.argv[1]
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[3]))
try:
    s.sendto(b'ping', (sys.argv[1], int(sys.argv[2])))
    d, a = s.recvfrom(2048)
    print(("answer '%s' from [%s]:%d" if v6 else "answer '%s' from %s:%d") % (d.decode(), a[0], a[1]))
except socket.timeout:
    print('unreachable (timeout)')
except OSError as e:
    print('unreachable (%s)' % e.strerror)
`;

/** busybox httpd serving one of the topology's document roots. */
export function httpdCmd(root: string, site: string, port: number, fg = true): string {
  return `/bin/busybox httpd ${fg ? '-f ' : ''}-p ${port} -h ${path.join(root, site)}`;
}

/** Creates the document roots and returns the topology (nothing is built yet). */
export function buildTopo(opts: TopoOptions): Topo {
  const { tag, octets, third, pub, loPub, extras } = opts;
  const nA = `${tag}a`;
  const nB = `${tag}b`;
  const nI = `${tag}i`;
  const brA = `${tag}ba`;
  const brB = `${tag}bb`;
  const brI = `${tag}bi`;
  const web = `${tag}-web`;
  const peer = `${tag}-peer`;
  const b1 = `${tag}-b1`;
  const b2 = `${tag}-b2`;
  const i1 = `${tag}-i1`;
  const ext = `${tag}-ext`;
  const rng = `${tag}-rng`;
  const udp = `${tag}-udp`;
  const subA = opts.sub4?.A ?? `10.${octets.a}.${third}`;
  const subB = opts.sub4?.B ?? `10.${octets.b}.${third}`;
  const subI = opts.sub4?.I ?? `10.${octets.i}.${third}`;
  const subE = opts.sub4?.E ?? `10.${octets.e}.${third}`;
  const v6 = opts.v6 ? { A: `${opts.v6.prefix}:a`, B: `${opts.v6.prefix}:b`, I: `${opts.v6.prefix}:c`, E: `${opts.v6.prefix}:e` } : null;
  if (v6) canon6(`${v6.A}::1`); // a bad prefix: an error now, not half a topology
  const inCfg = !!opts.v6?.inConfig;
  /** the YAML lines of a v6 field, when the config carries them */
  const y6 = (line: string): string => (v6 && inCfg ? line : '');
  const hostAddr = `${subE}.1`;
  const extAddr = `${subE}.2`;

  // Document roots with a CGI script that prints the client's address.
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));
  const sites = ['web', 'ext', ...(extras ? ['r8000', 'r8001', 'r8002'] : [])];
  for (const site of sites) {
    fs.mkdirSync(path.join(root, site, 'cgi-bin'), { recursive: true });
    fs.writeFileSync(path.join(root, site, 'index.html'), site.startsWith('r') ? `port ${site.slice(1)}\n` : `hello from ${site}\n`);
    fs.writeFileSync(path.join(root, site, 'cgi-bin', 'ip'), CGI_IP, { mode: 0o755 });
  }
  fs.writeFileSync(path.join(root, 'udp-echo.py'), UDP_ECHO);
  fs.writeFileSync(path.join(root, 'udp-client.py'), UDP_CLIENT);
  const httpd = (site: string, port: number, fg = true): string => httpdCmd(root, site, port, fg);

  const extRun = extras ? `${PY} ${path.join(root, 'udp-echo.py')} ${EXT_UDP_PORT} & exec ${httpd('ext', 80)}` : `exec ${httpd('ext', 80)}`;
  const extraContainers = extras
    ? `
  - name: ${rng}
    network: ${nA}
    ip: ${subA}.12${y6(`\n    ip6: ${v6?.A}::12`)}
    run: [/bin/sh, -c, "${httpd('r8000', 8000, false)} && ${httpd('r8001', 8001, false)} && exec ${httpd('r8002', 8002)}"]
    publish: ["${extras.rangePub}-${extras.rangePub + 2}:8000-8002"]
  - name: ${udp}
    network: ${nA}
    ip: ${subA}.13${y6(`\n    ip6: ${v6?.A}::13`)}
    run: [${PY}, ${path.join(root, 'udp-echo.py')}, "${UDP_PORT}"]
    publish: ["${extras.udpPub}:${UDP_PORT}/udp"]`
    : '';
  const text = `
networks:
  - name: ${nA}
    subnet: ${subA}.0/24
    bridge: ${brA}${y6(`\n    subnet6: ${v6?.A}::/64`)}
  - name: ${nB}
    subnet: ${subB}.0/24
    bridge: ${brB}
    icc: false${y6(`\n    subnet6: ${v6?.B}::/64`)}
  - name: ${nI}
    subnet: ${subI}.0/24
    bridge: ${brI}
    internal: true${y6(`\n    subnet6: ${v6?.I}::/64`)}
containers:
  - name: ${web}
    network: ${nA}
    ip: ${subA}.10${y6(`\n    ip6: ${v6?.A}::10`)}
    # port 8000 is served but not published
    run: [/bin/sh, -c, "${httpd('web', 8000, false)} && exec ${httpd('web', 80)}"]
    publish: ["${pub}:80", "127.0.0.1:${loPub}:80"${y6(`, "[::1]:${loPub}:80"`)}]
  - name: ${peer}
    network: ${nA}
    ip: ${subA}.11${y6(`\n    ip6: ${v6?.A}::11`)}
  - name: ${b1}
    network: ${nB}
    ip: ${subB}.10${y6(`\n    ip6: ${v6?.B}::10`)}
  - name: ${b2}
    network: ${nB}
    ip: ${subB}.11${y6(`\n    ip6: ${v6?.B}::11`)}
    run: [/bin/sh, -c, "exec ${httpd('web', 80)}"]
  - name: ${i1}
    network: ${nI}
    ip: ${subI}.10${y6(`\n    ip6: ${v6?.I}::10`)}${extraContainers}
externals:
  - name: ${ext}
    address: ${extAddr}/24${y6(`\n    address6: ${v6?.E}::2/64`)}
    run: [/bin/sh, -c, "${extRun}"]
uplinks: [${externalVethName(ext)}]
# served: the uplink alone (never the machine's own interfaces)
interfaces: []
`;
  const cfg = parseConfig(text);
  const containers = [web, peer, b1, b2, i1, ...(extras ? [rng, udp] : [])];
  const topo6 = v6 ? buildTopo6(opts, v6, { nA, nB, nI, brA, brB, brI, web, peer, b1, b2, i1, rng, udp, ext }) : undefined;
  const addresses = [
    ...cfg.containers.map((c) => c.ip),
    ...cfg.networks.map((n) => n.gateway),
    hostAddr,
    extAddr,
    ...(topo6?.addresses ?? []),
  ];
  return {
    opts,
    cfg,
    text,
    root,
    nets: { A: nA, B: nB, I: nI },
    bridges: { A: brA, B: brB, I: brI },
    web,
    peer,
    b1,
    b2,
    i1,
    ext,
    rng,
    udp,
    sub: { A: subA, B: subB, I: subI, E: subE },
    hostAddr,
    extAddr,
    uplink: externalVethName(ext),
    allNs: [...containers, ext],
    allLinks: [brA, brB, brI, ...containers.map(hostVethName), externalVethName(ext)],
    addresses,
    ...(topo6 ? { v6: topo6 } : {}),
  };
}

/** The IPv6 side of buildTopo's topology: addresses and the Side6 of Docker 29's publish semantics. */
function buildTopo6(
  opts: TopoOptions,
  sub: Topo6['sub'],
  n: { nA: string; nB: string; nI: string; brA: string; brB: string; brI: string; web: string; peer: string; b1: string; b2: string; i1: string; rng: string; udp: string; ext: string },
): Topo6 {
  const x = opts.extras;
  const net = (name: string, bridge: string, s: string, more: { icc?: boolean; internal?: boolean }) => ({
    name, bridge, subnet6: canon6(`${s}::`) + '/64', gateway6: canon6(`${s}::1`), internal: !!more.internal, icc: more.icc ?? true, masquerade: !more.internal, routed: false,
  });
  const any = (hostPort: number, containerPort: number, proto: 'tcp' | 'udp' = 'tcp') => ({ hostIp: '::', hostPort, containerPort, proto });
  const ctr = (name: string, network: string, s: string, last: number, publish: Side6['containers'][number]['publish'] = []) => ({ name, network, ip6: canon6(`${s}::${last}`), publish });
  const side: Side6 = {
    networks: [net(n.nA, n.brA, sub.A, {}), net(n.nB, n.brB, sub.B, { icc: false }), net(n.nI, n.brI, sub.I, { internal: true })],
    containers: [
      ctr(n.web, n.nA, sub.A, 10, [any(opts.pub, 80), { hostIp: '::1', hostPort: opts.loPub, containerPort: 80, proto: 'tcp' }]),
      ctr(n.peer, n.nA, sub.A, 11),
      ctr(n.b1, n.nB, sub.B, 10),
      ctr(n.b2, n.nB, sub.B, 11),
      ctr(n.i1, n.nI, sub.I, 10),
      ...(x ? [ctr(n.rng, n.nA, sub.A, 12, [0, 1, 2].map((i) => any(x.rangePub + i, 8000 + i))), ctr(n.udp, n.nA, sub.A, 13, [any(x.udpPub, UDP_PORT, 'udp')])] : []),
    ],
    externals: [{ name: n.ext, hostIfname: externalVethName(n.ext), address6: canon6(`${sub.E}::2`), prefixLen6: 64, hostAddress6: canon6(`${sub.E}::1`) }],
  };
  const hostAddr = side.externals[0]!.hostAddress6;
  const extAddr = side.externals[0]!.address6;
  return {
    sub,
    hostAddr,
    extAddr,
    side,
    inConfig: !!opts.v6?.inConfig,
    addresses: [...side.containers.map((c) => c.ip6), ...side.networks.map((x) => x.gateway6), hostAddr, extAddr],
  };
}

/**
 * Puts the IPv6 side into the namespaces: the bridges' and the host side's
 * addresses, the containers' and the external's, and default routes (none
 * on the internal network). `nodad`, so that every address is usable at
 * once; `replace`, so that it is a no-op where src/platform/topology.ts did it.
 */
export async function addV6(topo: Topo): Promise<void> {
  const v6 = topo.v6;
  if (!v6) throw new Error('addV6: the topology was built without opts.v6');
  const netOf = new Map(v6.side.networks.map((n) => [n.name, n]));
  for (const n of v6.side.networks) await run('ip', ['-6', 'addr', 'replace', `${n.gateway6}/64`, 'dev', n.bridge, 'nodad']);
  for (const c of v6.side.containers) {
    const n = netOf.get(c.network)!;
    await run('ip', ['-n', c.name, '-6', 'addr', 'replace', `${c.ip6}/64`, 'dev', 'eth0', 'nodad']);
    if (!n.internal) await run('ip', ['-n', c.name, '-6', 'route', 'replace', 'default', 'via', n.gateway6, 'dev', 'eth0']);
  }
  for (const e of v6.side.externals) {
    await run('ip', ['-6', 'addr', 'replace', `${e.hostAddress6}/${e.prefixLen6}`, 'dev', e.hostIfname, 'nodad']);
    await run('ip', ['-n', e.name, '-6', 'addr', 'replace', `${e.address6}/${e.prefixLen6}`, 'dev', 'eth0', 'nodad']);
    await run('ip', ['-n', e.name, '-6', 'route', 'replace', 'default', 'via', e.hostAddress6, 'dev', 'eth0']);
  }
}

export async function ok(cmd: string, args: string[], timeoutMs?: number): Promise<boolean> {
  try {
    await run(cmd, args, timeoutMs === undefined ? {} : { timeoutMs });
    return true;
  } catch {
    return false;
  }
}

const inNs = (ns: string | null, cmd: string, args: string[]): [string, string[]] => (ns === null ? [cmd, args] : ['ip', ['netns', 'exec', ns, cmd, ...args]]);

/** Why a wget failed, in a few words that are the same for the same network behaviour. */
function failure(err: unknown): string {
  if (err instanceof CommandError) {
    if (String(err.code).startsWith('timeout')) return 'unreachable (timeout)';
    const s = err.stderr;
    if (/Connection refused/i.test(s)) return 'unreachable (refused)';
    if (/No route to host/i.test(s)) return 'unreachable (no route to host)';
    if (/Network is unreachable/i.test(s)) return 'unreachable (network unreachable)';
    if (/Connection reset/i.test(s)) return 'unreachable (reset)';
    return `failed: ${s.trim().split('\n')[0] ?? ''}`;
  }
  return `failed: ${(err as Error).message}`;
}

/** HTTP GET from a namespace (or the host when ns is null): the outcome and the body (null on failure). */
export async function fetchHttp(ns: string | null, url: string, timeoutSec = 2): Promise<{ body: string | null; outcome: string }> {
  // (busybox wget's own -T segfaults in Debian 12's busybox-static: kill it instead)
  const [cmd, args] = inNs(ns, '/bin/busybox', ['wget', '-q', '-O', '-', url]);
  try {
    const r = await run(cmd, args, { timeoutMs: timeoutSec * 1000 });
    // busybox httpd listens dual-stack: REMOTE_ADDR is "[::ffff:a.b.c.d]" for
    // an IPv4 client, "[v6 address]" for an IPv6 one
    const body = r.stdout.trim().replace(/^\[::ffff:([0-9.]+)\]$/, '$1').replace(/^\[([0-9a-f:]+)\]$/, '$1');
    return { body, outcome: /^[0-9.]+$/.test(body) || /^[0-9a-f]*:[0-9a-f:]+$/.test(body) ? `reached, source ${body}` : `answer '${body}'` };
  } catch (err) {
    return { body: null, outcome: failure(err) };
  }
}

/** HTTP GET from a namespace (or the host when ns is null); the body, or null on failure. */
export async function get(ns: string | null, url: string, timeoutSec = 2): Promise<string | null> {
  return (await fetchHttp(ns, url, timeoutSec)).body;
}

/** Waits (bounded) for an httpd to answer (they start detached). */
export async function waitHttp(ns: string, url: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    if ((await get(ns, url, 1)) !== null) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} does not answer from ${ns}`);
}

/** One UDP datagram from a namespace (or the host), unconnected socket: the answer and where it came from. */
export async function udpOutcome(topo: Topo, ns: string | null, host: string, port: number, timeoutSec = 2): Promise<string> {
  const [cmd, args] = inNs(ns, PY, [path.join(topo.root, 'udp-client.py'), host, String(port), String(timeoutSec)]);
  try {
    return (await run(cmd, args, { timeoutMs: timeoutSec * 1000 + 5000 })).stdout.trim();
  } catch (err) {
    return failure(err);
  }
}

/** Waits (bounded) for a UDP echo to answer. */
export async function waitUdp(topo: Topo, ns: string, port: number, addr = '127.0.0.1'): Promise<void> {
  for (let i = 0; i < 20; i++) {
    if ((await udpOutcome(topo, ns, addr, port, 0.5)).startsWith('answer')) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`UDP ${port} does not answer in ${ns}`);
}

/** One ICMP echo (ICMPv6 for a v6 address, with iputils' ping -6) from a namespace. */
export async function pingOutcome(ns: string, addr: string): Promise<string> {
  const argv = addr.includes(':') ? ['/usr/bin/ping', '-6', '-n', '-c1', '-W1', addr] : ['/bin/busybox', 'ping', '-c1', '-W1', addr];
  return (await ok('ip', ['netns', 'exec', ns, ...argv], 5000)) ? 'echo reply' : 'no reply';
}

/** Waits for every server of the topology. */
export async function waitReady(topo: Topo): Promise<void> {
  await waitHttp(topo.ext, 'http://127.0.0.1/');
  await waitHttp(topo.web, 'http://127.0.0.1/');
  await waitHttp(topo.web, 'http://127.0.0.1:8000/');
  await waitHttp(topo.b2, 'http://127.0.0.1/');
  if (topo.opts.extras) {
    for (const p of [8000, 8001, 8002]) await waitHttp(topo.rng, `http://127.0.0.1:${p}/`);
    await waitUdp(topo, topo.udp, UDP_PORT);
    await waitUdp(topo, topo.ext, EXT_UDP_PORT);
  }
  if (topo.v6) {
    // the same servers over IPv6 (dual-stack sockets)
    await waitHttp(topo.ext, 'http://[::1]/');
    await waitHttp(topo.web, 'http://[::1]/');
    await waitHttp(topo.b2, 'http://[::1]/');
    if (topo.opts.extras) {
      await waitUdp(topo, topo.udp, UDP_PORT, '::1');
      await waitUdp(topo, topo.ext, EXT_UDP_PORT, '::1');
    }
  }
}

/**
 * An outside host that sends to 127.0.0.1 through the host (the attack of
 * moby #45610): route 127.0.0.1 via the uplink inside the external. The
 * external's own servers must have been checked before (its loopback is gone).
 */
export async function routeLoopbackViaHost(topo: Topo): Promise<void> {
  const ns = topo.ext;
  await run('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv4.conf.eth0.route_localnet=1']);
  await run('ip', ['-n', ns, 'route', 'del', 'local', '127.0.0.1', 'dev', 'lo', 'table', 'local']);
  await run('ip', ['-n', ns, 'route', 'del', 'local', '127.0.0.0/8', 'dev', 'lo', 'table', 'local']);
  await run('ip', ['-n', ns, 'route', 'add', '127.0.0.1/32', 'via', topo.hostAddr, 'dev', 'eth0']);
}

/**
 * The same attack over IPv6: the external routes ::1 via the host. The
 * packet leaves (source: the external's link-local address) and the host's
 * kernel drops it in ip6_rcv_core (a loopback destination on a
 * non-loopback interface: Ip6InHdrErrors), before any netfilter hook.
 */
export async function routeLoopbackViaHost6(topo: Topo): Promise<void> {
  const ns = topo.ext;
  const v6 = topo.v6!;
  await ok('ip', ['-n', ns, '-6', 'route', 'del', 'local', '::1', 'dev', 'lo', 'table', 'local']);
  await run('ip', ['-n', ns, '-6', 'route', 'replace', '::1/128', 'via', v6.hostAddr, 'dev', 'eth0']);
}

/** Kills every process in the topology's namespaces and deletes them and its links (by name). */
export async function cleanupTopo(topo: Topo): Promise<void> {
  for (const ns of topo.allNs) {
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
  for (const l of topo.allLinks) await ok('ip', ['link', 'del', 'dev', l]);
}

export function removeRoot(topo: Topo): void {
  fs.rmSync(topo.root, { recursive: true, force: true });
}

/** Deletes the kernel's conntrack entries of the topology's addresses (either direction). */
export async function flushKernelConntrack(topo: Topo): Promise<void> {
  for (const a of topo.addresses) {
    const fam = a.includes(':') ? ['-f', 'ipv6'] : [];
    for (const opt of ['-s', '-d', '--reply-src', '--reply-dst']) await ok('conntrack', ['-D', ...fam, opt, a], 10000);
  }
}

// ---- the scenario matrix ---------------------------------------------------

export interface Scenario {
  name: string;
  run(): Promise<string>;
  /** berth drop reasons (readCounters names) that must grow during the scenario; none: no berth drop at all */
  berthDrops?: string[];
}

/**
 * The scenarios, in the order they run. Needs a topology built with extras,
 * its servers ready, routeLoopbackViaHost() done and a default route in the
 * internal container (see prepareScenarios).
 */
export function scenarioMatrix(topo: Topo): Scenario[] {
  const x = topo.opts.extras;
  if (!x) throw new Error('scenarioMatrix needs a topology built with extras');
  const { web, peer, b1, i1, ext, hostAddr, extAddr, sub } = topo;
  const { pub, loPub } = topo.opts;
  const http = (ns: string | null, url: string) => async () => (await fetchHttp(ns, url)).outcome;
  return [
    // published ports from outside
    { name: 'TCP publish: outside -> host:PUB, client source kept', run: http(ext, `http://${hostAddr}:${pub}/cgi-bin/ip`) },
    { name: 'TCP publish: outside -> host:PUB, content', run: http(ext, `http://${hostAddr}:${pub}/`) },
    { name: 'UDP publish: outside -> host:UPUB', run: () => udpOutcome(topo, ext, hostAddr, x.udpPub) },
    {
      name: 'range publish: outside -> host:R..R+2',
      run: async () => {
        const out: string[] = [];
        for (let i = 0; i < 3; i++) out.push((await fetchHttp(ext, `http://${hostAddr}:${x.rangePub + i}/`)).outcome);
        return out.join('; ');
      },
    },
    // containers going out
    { name: 'masquerade TCP: container -> outside', run: http(peer, `http://${extAddr}/cgi-bin/ip`) },
    { name: 'masquerade TCP: icc=false network -> outside', run: http(b1, `http://${extAddr}/cgi-bin/ip`) },
    { name: 'masquerade UDP: container -> outside', run: () => udpOutcome(topo, peer, extAddr, EXT_UDP_PORT) },
    { name: 'ICMP echo: container -> outside', run: () => pingOutcome(peer, extAddr) },
    // hairpin
    { name: 'hairpin: container -> host:PUB -> other container', run: http(peer, `http://${hostAddr}:${pub}/cgi-bin/ip`) },
    { name: 'hairpin: container -> gateway:PUB -> other container', run: http(peer, `http://${sub.A}.1:${pub}/cgi-bin/ip`) },
    { name: 'hairpin: container -> host:PUB -> itself', run: http(web, `http://${hostAddr}:${pub}/cgi-bin/ip`) },
    { name: 'hairpin: other network -> host:PUB', run: http(b1, `http://${hostAddr}:${pub}/cgi-bin/ip`) },
    { name: 'hairpin UDP: container -> host:UPUB', run: () => udpOutcome(topo, peer, hostAddr, x.udpPub) },
    // the host itself
    { name: 'host -> 127.0.0.1:LOPUB (loopback publish)', run: http(null, `http://127.0.0.1:${loPub}/cgi-bin/ip`) },
    { name: 'host -> 127.0.0.1:PUB (publish on any)', run: http(null, `http://127.0.0.1:${pub}/cgi-bin/ip`) },
    { name: 'host -> own uplink address:PUB', run: http(null, `http://${hostAddr}:${pub}/cgi-bin/ip`) },
    { name: 'host -> 127.0.0.1:UPUB (UDP)', run: () => udpOutcome(topo, null, '127.0.0.1', x.udpPub) },
    // what must stay unreachable
    { name: 'outside -> 127.0.0.1:LOPUB via the host', run: http(ext, `http://127.0.0.1:${loPub}/`), berthDrops: ['loopback_only'] },
    { name: 'outside -> 127.0.0.1:PUB via the host', run: http(ext, `http://127.0.0.1:${pub}/`), berthDrops: ['loopback_only'] },
    { name: 'outside -> host:8000 (unpublished, nothing on the host)', run: http(ext, `http://${hostAddr}:8000/`) },
    { name: 'outside -> container address:80 (published port)', run: http(ext, `http://${sub.A}.10/`), berthDrops: ['not_published'] },
    { name: 'outside -> container address:8000 (unpublished)', run: http(ext, `http://${sub.A}.10:8000/`), berthDrops: ['not_published'] },
    { name: 'outside -> internal container address', run: http(ext, `http://${sub.I}.10/`), berthDrops: ['not_published'] },
    // between containers
    { name: 'same network, icc: container -> container', run: http(peer, `http://${sub.A}.10/`) },
    { name: 'isolation: network B -> container on A', run: http(b1, `http://${sub.A}.10/`), berthDrops: ['isolation'] },
    { name: 'isolation: network A -> container on B', run: http(web, `http://${sub.B}.11/`), berthDrops: ['isolation'] },
    { name: 'icc=false: container -> container on the same network', run: http(b1, `http://${sub.B}.11/`), berthDrops: ['icc'] },
    { name: 'icc=false: container -> its gateway (ICMP)', run: () => pingOutcome(b1, `${sub.B}.1`) },
    // internal
    { name: 'internal: container -> outside (TCP)', run: http(i1, `http://${extAddr}/`), berthDrops: ['internal'] },
    { name: 'internal: container -> outside (ICMP)', run: () => pingOutcome(i1, extAddr), berthDrops: ['internal'] },
  ];
}

/**
 * The IPv6 variant of every scenario of scenarioMatrix that has a meaning in
 * IPv6, in the same order and with the same outcome strings; names start
 * with "v6 ". Where IPv4 has 127.0.0.1, IPv6 has ::1 (the `[::1]:LOPUB`
 * publish); the range publish, the UDP publish and `PUB:80` serve both
 * families (Docker 29). Needs a topology built with extras and v6, addV6
 * done, its servers ready and prepareScenarios done.
 */
export function scenarioMatrix6(topo: Topo): Scenario[] {
  const x = topo.opts.extras;
  const v6 = topo.v6;
  if (!x || !v6) throw new Error('scenarioMatrix6 needs a topology built with extras and v6');
  const { web, peer, b1, i1, ext } = topo;
  const { pub, loPub } = topo.opts;
  const H = v6.hostAddr;
  const X = v6.extAddr;
  const S = v6.sub;
  const u = (a: string, port?: number, p = '/'): string => `http://[${a}]${port === undefined ? '' : `:${port}`}${p}`;
  const http = (ns: string | null, url: string) => async () => (await fetchHttp(ns, url)).outcome;
  return [
    // published ports from outside
    { name: 'v6 TCP publish: outside -> [host]:PUB, client source kept', run: http(ext, u(H, pub, '/cgi-bin/ip')) },
    { name: 'v6 TCP publish: outside -> [host]:PUB, content', run: http(ext, u(H, pub)) },
    { name: 'v6 UDP publish: outside -> [host]:UPUB', run: () => udpOutcome(topo, ext, H, x.udpPub) },
    {
      name: 'v6 range publish: outside -> [host]:R..R+2',
      run: async () => {
        const out: string[] = [];
        for (let i = 0; i < 3; i++) out.push((await fetchHttp(ext, u(H, x.rangePub + i))).outcome);
        return out.join('; ');
      },
    },
    // containers going out: NAT66 to the uplink's v6 address
    { name: 'v6 masquerade TCP: container -> outside', run: http(peer, u(X, undefined, '/cgi-bin/ip')) },
    { name: 'v6 masquerade TCP: icc=false network -> outside', run: http(b1, u(X, undefined, '/cgi-bin/ip')) },
    { name: 'v6 masquerade UDP: container -> outside', run: () => udpOutcome(topo, peer, X, EXT_UDP_PORT) },
    { name: 'v6 ICMPv6 echo: container -> outside', run: () => pingOutcome(peer, X) },
    // hairpin
    { name: 'v6 hairpin: container -> [host]:PUB -> other container', run: http(peer, u(H, pub, '/cgi-bin/ip')) },
    { name: 'v6 hairpin: container -> [gateway]:PUB -> other container', run: http(peer, u(`${S.A}::1`, pub, '/cgi-bin/ip')) },
    { name: 'v6 hairpin: container -> [host]:PUB -> itself', run: http(web, u(H, pub, '/cgi-bin/ip')) },
    { name: 'v6 hairpin: other network -> [host]:PUB', run: http(b1, u(H, pub, '/cgi-bin/ip')) },
    { name: 'v6 hairpin UDP: container -> [host]:UPUB', run: () => udpOutcome(topo, peer, H, x.udpPub) },
    // the host itself
    { name: 'v6 host -> [::1]:LOPUB (loopback publish)', run: http(null, u('::1', loPub, '/cgi-bin/ip')) },
    { name: 'v6 host -> [::1]:PUB (publish on any)', run: http(null, u('::1', pub, '/cgi-bin/ip')) },
    { name: 'v6 host -> own uplink address:PUB', run: http(null, u(H, pub, '/cgi-bin/ip')) },
    { name: 'v6 host -> [::1]:UPUB (UDP)', run: () => udpOutcome(topo, null, '::1', x.udpPub) },
    // what must stay unreachable
    { name: 'v6 outside -> [::1]:LOPUB via the host', run: http(ext, u('::1', loPub)), berthDrops: ['loopback_only'] },
    { name: 'v6 outside -> [::1]:PUB via the host', run: http(ext, u('::1', pub)), berthDrops: ['loopback_only'] },
    { name: 'v6 outside -> [host]:8000 (unpublished, nothing on the host)', run: http(ext, u(H, 8000)) },
    { name: 'v6 outside -> container address:80 (published port)', run: http(ext, u(`${S.A}::10`)), berthDrops: ['not_published'] },
    { name: 'v6 outside -> container address:8000 (unpublished)', run: http(ext, u(`${S.A}::10`, 8000)), berthDrops: ['not_published'] },
    { name: 'v6 outside -> internal container address', run: http(ext, u(`${S.I}::10`)), berthDrops: ['not_published'] },
    // between containers
    { name: 'v6 same network, icc: container -> container', run: http(peer, u(`${S.A}::10`)) },
    { name: 'v6 isolation: network B -> container on A', run: http(b1, u(`${S.A}::10`)), berthDrops: ['isolation'] },
    { name: 'v6 isolation: network A -> container on B', run: http(web, u(`${S.B}::11`)), berthDrops: ['isolation'] },
    { name: 'v6 icc=false: container -> container on the same network', run: http(b1, u(`${S.B}::11`)), berthDrops: ['icc'] },
    { name: 'v6 icc=false: container -> its gateway (ICMPv6)', run: () => pingOutcome(b1, `${S.B}::1`) },
    // internal
    { name: 'v6 internal: container -> outside (TCP)', run: http(i1, u(X)), berthDrops: ['internal'] },
    { name: 'v6 internal: container -> outside (ICMPv6)', run: () => pingOutcome(i1, X), berthDrops: ['internal'] },
  ];
}

/**
 * What the scenarios need beyond the topology: the loopback route in the
 * external, and a default route in the internal container (see
 * internalDefaultRoute).
 */
export async function prepareScenarios(topo: Topo): Promise<void> {
  await routeLoopbackViaHost(topo);
  if (topo.v6) await routeLoopbackViaHost6(topo);
  await internalDefaultRoute(topo, true);
}

/**
 * Docker gives a container on an internal network no default route; one
 * that adds one itself must still find no way out. (berth's `up` refuses a
 * topology where the internal container has one: take it away around `up`.)
 */
export async function internalDefaultRoute(topo: Topo, on: boolean): Promise<void> {
  if (on) await run('ip', ['-n', topo.i1, 'route', 'replace', 'default', 'via', `${topo.sub.I}.1`]);
  else await ok('ip', ['-n', topo.i1, 'route', 'del', 'default']);
  if (topo.v6) {
    // the same in IPv6 (addV6 gives the internal container none)
    if (on) await run('ip', ['-n', topo.i1, '-6', 'route', 'replace', 'default', 'via', `${topo.v6.sub.I}::1`, 'dev', 'eth0']);
    else await ok('ip', ['-n', topo.i1, '-6', 'route', 'del', 'default']);
  }
}
