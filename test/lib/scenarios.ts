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
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BerthConfig, parseConfig } from '../../src/config';
import { CommandError, run } from '../../src/exec';
import { externalVethName, hostVethName } from '../../src/names';

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
  /** every address of the topology (containers, gateways, host side, external) */
  addresses: string[];
}

const CGI_IP = '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "$REMOTE_ADDR"\n';
const UDP_ECHO = `import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', int(sys.argv[1])))
while True:
    d, a = s.recvfrom(2048)
    s.sendto(b'seen ' + a[0].encode(), a)
`;
const UDP_CLIENT = `import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[3]))
try:
    s.sendto(b'ping', (sys.argv[1], int(sys.argv[2])))
    d, a = s.recvfrom(2048)
    print("answer '%s' from %s:%d" % (d.decode(), a[0], a[1]))
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
  const subA = `10.${octets.a}.${third}`;
  const subB = `10.${octets.b}.${third}`;
  const subI = `10.${octets.i}.${third}`;
  const subE = `10.${octets.e}.${third}`;
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
    ip: ${subA}.12
    run: [/bin/sh, -c, "${httpd('r8000', 8000, false)} && ${httpd('r8001', 8001, false)} && exec ${httpd('r8002', 8002)}"]
    publish: ["${extras.rangePub}-${extras.rangePub + 2}:8000-8002"]
  - name: ${udp}
    network: ${nA}
    ip: ${subA}.13
    run: [${PY}, ${path.join(root, 'udp-echo.py')}, "${UDP_PORT}"]
    publish: ["${extras.udpPub}:${UDP_PORT}/udp"]`
    : '';
  const text = `
networks:
  - name: ${nA}
    subnet: ${subA}.0/24
    bridge: ${brA}
  - name: ${nB}
    subnet: ${subB}.0/24
    bridge: ${brB}
    icc: false
  - name: ${nI}
    subnet: ${subI}.0/24
    bridge: ${brI}
    internal: true
containers:
  - name: ${web}
    network: ${nA}
    ip: ${subA}.10
    # port 8000 is served but not published
    run: [/bin/sh, -c, "${httpd('web', 8000, false)} && exec ${httpd('web', 80)}"]
    publish: ["${pub}:80", "127.0.0.1:${loPub}:80"]
  - name: ${peer}
    network: ${nA}
    ip: ${subA}.11
  - name: ${b1}
    network: ${nB}
    ip: ${subB}.10
  - name: ${b2}
    network: ${nB}
    ip: ${subB}.11
    run: [/bin/sh, -c, "exec ${httpd('web', 80)}"]
  - name: ${i1}
    network: ${nI}
    ip: ${subI}.10${extraContainers}
externals:
  - name: ${ext}
    address: ${extAddr}/24
    run: [/bin/sh, -c, "${extRun}"]
uplinks: [${externalVethName(ext)}]
# served: the uplink alone (never the machine's own interfaces)
interfaces: []
`;
  const cfg = parseConfig(text);
  const containers = [web, peer, b1, b2, i1, ...(extras ? [rng, udp] : [])];
  const addresses = [
    ...cfg.containers.map((c) => c.ip),
    ...cfg.networks.map((n) => n.gateway),
    hostAddr,
    extAddr,
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
  };
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
    // busybox httpd listens dual-stack: REMOTE_ADDR is "[::ffff:a.b.c.d]"
    const body = r.stdout.trim().replace(/^\[::ffff:([0-9.]+)\]$/, '$1');
    return { body, outcome: /^[0-9.]+$/.test(body) ? `reached, source ${body}` : `answer '${body}'` };
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
export async function waitUdp(topo: Topo, ns: string, port: number): Promise<void> {
  for (let i = 0; i < 20; i++) {
    if ((await udpOutcome(topo, ns, '127.0.0.1', port, 0.5)).startsWith('answer')) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`UDP ${port} does not answer in ${ns}`);
}

export async function pingOutcome(ns: string, addr: string): Promise<string> {
  return (await ok('ip', ['netns', 'exec', ns, '/bin/busybox', 'ping', '-c1', '-W1', addr], 5000)) ? 'echo reply' : 'no reply';
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
    for (const opt of ['-s', '-d', '--reply-src', '--reply-dst']) await ok('conntrack', ['-D', opt, a], 10000);
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
 * What the scenarios need beyond the topology: the loopback route in the
 * external, and a default route in the internal container (see
 * internalDefaultRoute).
 */
export async function prepareScenarios(topo: Topo): Promise<void> {
  await routeLoopbackViaHost(topo);
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
}
