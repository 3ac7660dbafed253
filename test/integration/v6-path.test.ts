// The IPv6 datapath in real namespaces (issue 12): topology built by hand
// with `ip`, the desired state written directly (src/engine/reconcile.ts types) and
// reconciled, real UDP datagrams over IPv6. Each drop is asserted as a
// datagram that never reached its listener AND on berth's counters.
//
// Networks (bridges bv6p0..4, subnets 10.86.N.0/24 and fd86:N::/64):
//   A  dual stack, icc:      v6pa1, v6pa2
//   B  dual stack, icc:      v6pb1
//   C  dual stack, icc off:  v6pc1, v6pc2
//   D  dual stack, internal: v6pd1
//   E  IPv4 only:            v6pe1 (gives itself fd86:4::10 all the same)
// v6pout: an outside namespace behind a served interface of the host.
// Host forwarding is left as the machine has it: what crosses the host is
// judged by berth before routing, and asserted on its counters.
import t from 'tap';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Dataplane } from '../../src/platform/dataplane';
import { DesiredEndpoint, DesiredNetwork, DesiredState, reconcile } from '../../src/engine/reconcile';
import { readCounters } from '../../src/observe/stats';
import { waitFor } from '../lib/dockerd';

const pinRoot = '/sys/fs/bpf/berth-v6path';
const PORT = 7086;
const NETS = [
  { key: 'a', n: 0, icc: true, internal: false, v6: true, containers: ['v6pa1', 'v6pa2'] },
  { key: 'b', n: 1, icc: true, internal: false, v6: true, containers: ['v6pb1'] },
  { key: 'c', n: 2, icc: false, internal: false, v6: true, containers: ['v6pc1', 'v6pc2'] },
  { key: 'd', n: 3, icc: true, internal: true, v6: true, containers: ['v6pd1'] },
  { key: 'e', n: 4, icc: true, internal: false, v6: false, containers: ['v6pe1'] },
];
const OUT = { ns: 'v6pout', host: 'v6pouth', peer: 'v6poutc', addr6: 'fd86:ff::2', host6: 'fd86:ff::1', addr: '10.86.255.2', hostAddr: '10.86.255.1' };
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-v6p-'));
const LISTEN = `import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(('::', int(sys.argv[1])))
while True:
    d, a = s.recvfrom(2048)
    print(d.decode() + ' from ' + a[0], flush=True)
`;
const SEND = `import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
if len(sys.argv) > 4: s.bind((sys.argv[4], 0))
s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))
`;
// a UDP datagram with any IPv6 source: IPV6_FREEBIND + IPV6_TRANSPARENT need
// privileges and routes; a raw socket with IPV6_HDRINCL is the simplest
const SEND_RAW = `import socket, struct, sys
src, dst, port, msg = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
s6, d6 = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
def csum(b):
    if len(b) % 2: b += b'\\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s >> 16) + (s & 0xffff)
    return ~s & 0xffff
udp = struct.pack('!HHHH', 40404, port, 8 + len(msg), 0) + msg
ph = s6 + d6 + struct.pack('!IxxxB', len(udp), 17)
udp = udp[:6] + struct.pack('!H', csum(ph + udp) or 0xffff) + udp[8:]
ip = struct.pack('!IHBB', 0x60000000, len(udp), 17, 64) + s6 + d6
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.sendto(ip + udp, (dst, 0))
`;
fs.writeFileSync(path.join(dir, 'listen.py'), LISTEN);
fs.writeFileSync(path.join(dir, 'send.py'), SEND);
fs.writeFileSync(path.join(dir, 'send_raw.py'), SEND_RAW);

const bridge = (n: number): string => `bv6p${n}`;
const hostVeth = (c: string): string => `${c}h`;
const ip4 = (n: number, host: number): string => `10.86.${n}.${host}`;
const ip6 = (n: number, host: number): string => (n === 0 ? `fd86::${host.toString(16)}` : `fd86:${n}::${host.toString(16)}`);
const allContainers = NETS.flatMap((n) => n.containers.map((c, j) => ({ c, net: n, host: 10 + j })));
const listeners: ChildProcess[] = [];

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
const quiet = (cmd: string, args: string[]): void => {
  try {
    sh(cmd, args);
  } catch {
    /* already gone */
  }
};

function cleanup(): void {
  for (const l of listeners) l.kill('SIGKILL');
  for (const { c } of allContainers) quiet('ip', ['netns', 'del', c]);
  quiet('ip', ['netns', 'del', OUT.ns]);
  for (const { c } of allContainers) quiet('ip', ['link', 'del', hostVeth(c)]);
  quiet('ip', ['link', 'del', OUT.host]);
  for (const n of NETS) quiet('ip', ['link', 'del', bridge(n.n)]);
  try {
    Dataplane.reset(pinRoot);
  } catch {
    /* nothing pinned */
  }
  fs.rmSync(dir, { recursive: true, force: true });
}
t.teardown(cleanup);

const ns = (name: string, ...args: string[]): string => sh('ip', ['netns', 'exec', name, ...args]);
const mac = (ifname: string, netns?: string): string =>
  (netns ? ns(netns, 'cat', `/sys/class/net/${ifname}/address`) : fs.readFileSync(`/sys/class/net/${ifname}/address`, 'utf8')).trim();
const ifindex = (ifname: string): number => Number(fs.readFileSync(`/sys/class/net/${ifname}/ifindex`, 'utf8'));

const listening = new Map<string, () => string[]>();
/** one listener per namespace, kept for the whole file */
function listen(name: string): () => string[] {
  const known = listening.get(name);
  if (known) return known;
  const got: string[] = [];
  const p = spawn('ip', ['netns', 'exec', name, 'python3', '-u', path.join(dir, 'listen.py'), String(PORT)], { stdio: ['ignore', 'pipe', 'ignore'] });
  p.stdout!.on('data', (b: Buffer) => got.push(...b.toString().split('\n').filter(Boolean)));
  listeners.push(p);
  const seen = (): string[] => [...got];
  listening.set(name, seen);
  return seen;
}

async function ready(seen: () => string[], name: string, addr: string): Promise<void> {
  const ok = await waitFor(async () => {
    try {
      ns(name, 'python3', path.join(dir, 'send.py'), addr, String(PORT), 'ready');
    } catch {
      /* not yet */
    }
    return seen().some((l) => l.startsWith('ready'));
  }, 10000, 100);
  if (!ok) throw new Error(`listener in ${name} does not answer`);
}

async function drops(ifname: string, reason: string): Promise<bigint> {
  const dp = Dataplane.openPinned(pinRoot);
  try {
    const ifx = ifindex(ifname);
    let n = 0n;
    for (const r of await readCounters(dp)) if (r.ifindex === ifx) n += r.drop[reason]?.packets ?? 0n;
    return n;
  } finally {
    dp.close();
  }
}

async function redirects(ifname: string): Promise<bigint> {
  const dp = Dataplane.openPinned(pinRoot);
  try {
    const ifx = ifindex(ifname);
    let n = 0n;
    for (const r of await readCounters(dp)) if (r.ifindex === ifx) n += r.redirect.packets;
    return n;
  } finally {
    dp.close();
  }
}

/** the counter moved by one, awaited (counters are updated before the packet goes on, but bounded anyway) */
async function counted(what: () => Promise<bigint>, before: bigint): Promise<boolean> {
  return waitFor(async () => (await what()) >= before + 1n, 3000, 50);
}

/** a marker datagram that must arrive after `msg` would have: proves the listener got past the moment */
async function sentinel(seen: () => string[], from: string, to: string, tag: string, src?: string): Promise<void> {
  const ok = await waitFor(async () => {
    ns(from, 'python3', path.join(dir, 'send.py'), to, String(PORT), tag, ...(src ? [src] : []));
    return seen().some((l) => l.startsWith(tag));
  }, 5000, 100);
  if (!ok) throw new Error(`sentinel ${tag} did not arrive`);
}

t.before(async () => {
  cleanup();
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'listen.py'), LISTEN);
  fs.writeFileSync(path.join(dir, 'send.py'), SEND);
  fs.writeFileSync(path.join(dir, 'send_raw.py'), SEND_RAW);
  for (const n of NETS) {
    sh('ip', ['link', 'add', bridge(n.n), 'type', 'bridge']);
    sh('ip', ['addr', 'add', `${ip4(n.n, 1)}/24`, 'dev', bridge(n.n)]);
    if (n.v6) sh('ip', ['-6', 'addr', 'add', `${ip6(n.n, 1)}/64`, 'dev', bridge(n.n), 'nodad']);
    sh('ip', ['link', 'set', bridge(n.n), 'up']);
  }
  // the network without IPv6 still has a route, as a host with a stray route would
  sh('ip', ['-6', 'route', 'add', 'fd86:4::/64', 'dev', bridge(4)]);
  for (const { c, net, host } of allContainers) {
    sh('ip', ['netns', 'add', c]);
    sh('ip', ['link', 'add', hostVeth(c), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', c]);
    sh('ip', ['link', 'set', hostVeth(c), 'master', bridge(net.n), 'up']);
    ns(c, 'ip', 'link', 'set', 'lo', 'up');
    ns(c, 'ip', 'addr', 'add', `${ip4(net.n, host)}/24`, 'dev', 'eth0');
    ns(c, 'ip', '-6', 'addr', 'add', `${ip6(net.n, host)}/64`, 'dev', 'eth0'); // with DAD: NDP through berth
    ns(c, 'ip', 'link', 'set', 'eth0', 'up');
    ns(c, 'ip', 'route', 'add', 'default', 'via', ip4(net.n, 1));
    ns(c, 'ip', '-6', 'route', 'add', 'default', 'via', ip6(net.n, 1));
  }
  sh('ip', ['netns', 'add', OUT.ns]);
  sh('ip', ['link', 'add', OUT.host, 'type', 'veth', 'peer', 'name', OUT.peer, 'netns', OUT.ns]);
  sh('ip', ['addr', 'add', `${OUT.hostAddr}/24`, 'dev', OUT.host]);
  sh('ip', ['-6', 'addr', 'add', `${OUT.host6}/64`, 'dev', OUT.host, 'nodad']);
  sh('ip', ['link', 'set', OUT.host, 'up']);
  ns(OUT.ns, 'ip', 'link', 'set', 'lo', 'up');
  ns(OUT.ns, 'ip', 'addr', 'add', `${OUT.addr}/24`, 'dev', OUT.peer);
  ns(OUT.ns, 'ip', '-6', 'addr', 'add', `${OUT.addr6}/64`, 'dev', OUT.peer, 'nodad');
  ns(OUT.ns, 'ip', 'link', 'set', OUT.peer, 'up');
  ns(OUT.ns, 'ip', '-6', 'route', 'add', 'fd86::/16', 'via', OUT.host6);

  const networks: DesiredNetwork[] = NETS.map((n) => ({
    name: `v6p-${n.key}`,
    bridge: bridge(n.n),
    subnet: ip4(n.n, 0),
    prefixLen: 24,
    gateway: ip4(n.n, 1),
    icc: n.icc,
    masquerade: true,
    internal: n.internal,
    ...(n.v6 ? { subnet6: n.n === 0 ? 'fd86::' : `fd86:${n.n}::`, prefixLen6: 64, gateway6: ip6(n.n, 1) } : {}),
    bridgeIfindex: ifindex(bridge(n.n)),
    bridgeMac: mac(bridge(n.n)),
  }));
  const endpoints: DesiredEndpoint[] = allContainers.map(({ c, net, host }) => ({
    container: c,
    network: `v6p-${net.key}`,
    ip: ip4(net.n, host),
    ...(net.v6 ? { ip6: ip6(net.n, host) } : {}),
    mac: mac('eth0', c),
    ifindex: ifindex(hostVeth(c)),
    ifname: hostVeth(c),
  }));
  const desired: DesiredState = {
    networks,
    endpoints,
    publish: [],
    hostAddrs: [
      { addr: OUT.hostAddr, ifindex: ifindex(OUT.host) },
      { addr: OUT.host6, ifindex: ifindex(OUT.host) },
    ],
    uplinks: [{ ifindex: ifindex(OUT.host), ifname: OUT.host, addr: OUT.hostAddr, mac: mac(OUT.host) }],
    served: [{ ifindex: ifindex(OUT.host), ifname: OUT.host }],
  };
  Dataplane.reset(pinRoot);
  const dp = await Dataplane.openOrLoad({ pinRoot, fastPath: true, natPortMin: 61000, natPortMax: 65535 });
  try {
    await reconcile(dp, desired, new Set(networks.map((n) => n.name)));
  } finally {
    dp.close();
  }
  // every container's address is past DAD (its NS from :: went through berth)
  const settled = await waitFor(async () => allContainers.every(({ c }) => ns(c, 'ip', '-6', 'addr', 'show', 'dev', 'eth0', 'tentative').trim() === ''), 10000, 100);
  if (!settled) throw new Error('IPv6 addresses still tentative');
  const failed = allContainers.filter(({ c }) => ns(c, 'ip', '-6', 'addr', 'show', 'dev', 'eth0', 'dadfailed').trim() !== '');
  if (failed.length) throw new Error(`DAD failed in ${failed.map((f) => f.c).join(', ')}`);
});

t.test('same network: a datagram over IPv6 arrives, redirected by berth', async (t) => {
  const seen = listen('v6pa2');
  await ready(seen, 'v6pa2', ip6(0, 11));
  const r0 = await redirects(hostVeth('v6pa1'));
  ns('v6pa1', 'python3', path.join(dir, 'send.py'), ip6(0, 11), String(PORT), 'c2c');
  t.ok(await waitFor(async () => seen().some((l) => l === `c2c from ${ip6(0, 10)}`), 5000, 50), 'arrived with the sender\'s address');
  t.ok(await counted(() => redirects(hostVeth('v6pa1')), r0), 'counted as a redirect');
  t.doesNotThrow(() => ns('v6pa1', 'ping', '-6', '-c', '1', '-W', '5', ip6(0, 11)), 'ping -6 between neighbours (NDP works)');
});

t.test('across networks: does not arrive, isolation', async (t) => {
  const seen = listen('v6pb1');
  await ready(seen, 'v6pb1', ip6(1, 10));
  const before = await drops(hostVeth('v6pa1'), 'isolation');
  ns('v6pa1', 'python3', path.join(dir, 'send.py'), ip6(1, 10), String(PORT), 'iso');
  t.ok(await counted(() => drops(hostVeth('v6pa1'), 'isolation'), before), 'counted isolation');
  await sentinel(seen, 'v6pb1', ip6(1, 10), 'after-iso');
  t.notOk(seen().some((l) => l.startsWith('iso ')), 'never arrived');
});

t.test('icc off: does not arrive', async (t) => {
  const seen = listen('v6pc2');
  await ready(seen, 'v6pc2', ip6(2, 11));
  const before = await drops(hostVeth('v6pc1'), 'icc');
  ns('v6pc1', 'python3', path.join(dir, 'send.py'), ip6(2, 11), String(PORT), 'icc');
  t.ok(await counted(() => drops(hostVeth('v6pc1'), 'icc'), before), 'counted icc');
  await sentinel(seen, 'v6pc2', ip6(2, 11), 'after-icc');
  t.notOk(seen().some((l) => l.startsWith('icc ')), 'never arrived');
});

t.test('internal: nothing leaves the subnet', async (t) => {
  const seen = listen(OUT.ns);
  await ready(seen, OUT.ns, OUT.addr6);
  const before = await drops(hostVeth('v6pd1'), 'internal');
  ns('v6pd1', 'python3', path.join(dir, 'send.py'), OUT.addr6, String(PORT), 'internal');
  t.ok(await counted(() => drops(hostVeth('v6pd1'), 'internal'), before), 'counted internal');
  await sentinel(seen, OUT.ns, OUT.addr6, 'after-internal');
  t.notOk(seen().some((l) => l.startsWith('internal ')), 'never arrived');
});

t.test('a spoofed IPv6 source does not arrive', async (t) => {
  const seen = listen('v6pa2');
  await ready(seen, 'v6pa2', ip6(0, 11));
  const before = await drops(hostVeth('v6pa1'), 'spoofed');
  ns('v6pa1', 'python3', path.join(dir, 'send_raw.py'), ip6(0, 99), ip6(0, 11), String(PORT), 'spoof');
  t.ok(await counted(() => drops(hostVeth('v6pa1'), 'spoofed'), before), 'counted spoofed');
  await sentinel(seen, 'v6pa2', ip6(0, 11), 'after-spoof');
  t.notOk(seen().some((l) => l.startsWith('spoof ')), 'never arrived');
});

t.test('from outside to a container\'s IPv6 address: not published', async (t) => {
  const seen = listen('v6pb1');
  await ready(seen, 'v6pb1', ip6(1, 10));
  const before = await drops(OUT.host, 'not_published');
  ns(OUT.ns, 'python3', path.join(dir, 'send.py'), ip6(1, 10), String(PORT), 'direct');
  t.ok(await counted(() => drops(OUT.host, 'not_published'), before), 'counted not_published on the served interface');
  await sentinel(seen, 'v6pb1', ip6(1, 10), 'after-direct');
  t.notOk(seen().some((l) => l.startsWith('direct ')), 'never arrived');
});

t.test('a network without IPv6: no IPv6 in, none out', async (t) => {
  const seen = listen('v6pe1');
  await ready(seen, 'v6pe1', ip6(4, 10));
  const inBefore = await drops(bridge(4), 'no_ipv6');
  sh('python3', [path.join(dir, 'send.py'), ip6(4, 10), String(PORT), 'host-in']);
  t.ok(await counted(() => drops(bridge(4), 'no_ipv6'), inBefore), 'from the host: counted no_ipv6 on the bridge');
  await sentinel(seen, 'v6pe1', ip6(4, 10), 'after-in');
  t.notOk(seen().some((l) => l.startsWith('host-in ')), 'never arrived');

  // the gateway it believes in: a static neighbour, so the datagram leaves
  ns('v6pe1', 'ip', '-6', 'neigh', 'replace', ip6(4, 1), 'lladdr', mac(bridge(4)), 'dev', 'eth0', 'nud', 'permanent');
  const outBefore = await drops(hostVeth('v6pe1'), 'no_ipv6');
  try {
    ns('v6pe1', 'python3', path.join(dir, 'send.py'), OUT.host6, String(PORT), 'out');
  } catch {
    /* sendto may fail locally: the drop is what counts */
  }
  t.ok(await counted(() => drops(hostVeth('v6pe1'), 'no_ipv6'), outBefore), 'its own: counted no_ipv6 on its veth');
  const ll = sh('ip', ['-6', '-o', 'addr', 'show', 'dev', bridge(4), 'scope', 'link']).match(/inet6 (fe80::[0-9a-f:]+)/)?.[1];
  t.ok(ll, 'the bridge has a link-local address');
  const pinged = await waitFor(async () => {
    try {
      ns('v6pe1', 'ping', '-6', '-c', '1', '-W', '2', `${ll}%eth0`);
      return true;
    } catch {
      return false;
    }
  }, 10000, 200);
  t.ok(pinged, 'link-local traffic (and its NDP) still works');
});
