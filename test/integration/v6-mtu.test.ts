// IPv6 next hops in real namespaces (issue 12): the egress MTU on the NAT66
// paths (IPv6 is never fragmented on the way: too big is refused and its
// sender gets an ICMPv6 Packet Too Big) and IPv6 headers past the linear
// data on an uplink (lib/pull6.h).
//
// Topology (`berth up` for the namespaces, veths and the IPv4 state, then the
// desired state's IPv6 fields written directly and reconciled, as
// v6-nat.test.ts): network v6r-net on bridge bv6r0 (10.81.1.0/24,
// fd81:1::/64), containers v6r-c1 (a masquerade client) and v6r-web
// (publishes [::]:PUB -> 8080 udp), an outside host v6r-out on the uplink's
// link fd81:ff::/64 (host side fd81:ff::1). MTUs are set per case with
// `ip link set mtu` on both ends of a veth.
//
// How a Packet Too Big is seen: the kernel that receives a valid one (its
// checksum right, its quote matching a socket's flow) records the MTU as a
// route exception, which `ip -6 route get` shows as "mtu 1280".
import t from 'tap';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../../src/domain/config';
import { Dataplane } from '../../src/platform/dataplane';
import { run } from '../../src/platform/exec';
import { externalVethName, hostVethName } from '../../src/domain/names';
import * as standalone from '../../src/sources/standalone';
import { reconcile, DesiredState } from '../../src/engine/reconcile';
import { forceDown } from '../lib/topo';
import { waitFor } from '../lib/dockerd';
import { packetCount } from '../lib/v6fixture';

const pinRoot = '/sys/fs/bpf/berth-v6routed-mtu';
const N = { net: 'v6r-net', c1: 'v6r-c1', web: 'v6r-web', out: 'v6r-out' };
const BR = 'bv6r0';
const PUB = 32500 + (process.pid % 400);
const WEB_PORT = 8080;
const OUT_PORT = 9090;
const V6 = { gw: 'fd81:1::1', c1: 'fd81:1::10', web: 'fd81:1::20', up: 'fd81:ff::1', out: 'fd81:ff::2' };
const BIG = 1400; // bigger than 1280, smaller than 1500
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-v6r-'));

// UDP server: prints "udp <first word> <length> from <address>"; answers
// "ack <word>", padded to the number the message asks for ("word:1400")
const SERVER = `import socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(('::', port))
while True:
    d, a = s.recvfrom(65535)
    w = d.split(b' ')[0].decode(errors='replace')
    print('udp ' + w + ' ' + str(len(d)) + ' from ' + a[0], flush=True)
    name, _, pad = w.partition(':')
    r = b'ack ' + name.encode()
    if pad:
        r = r.ljust(int(pad), b'.')
    s.sendto(r, a)
`;
// UDP client: addr port message size; sends message padded to size (never
// fragmented by its own stack: IPV6_DONTFRAG), prints the answer or "timeout"
const CLIENT = `import socket, sys
addr, port, msg, size = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), int(sys.argv[4])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, 62, 1)  # IPV6_DONTFRAG
s.settimeout(1)
try:
    s.sendto((msg + b' ').ljust(size, b'x'), (addr, port))
    print(s.recv(65535).split(b'.')[0].decode())
except (socket.timeout, OSError) as e:
    print('timeout ' + str(e))
`;
// a UDP datagram of about 5000 bytes with a destination-options chain
// (a hop-by-hop and a destination options header of about 1000 bytes each), sent on an AF_PACKET socket: a frame of a
// page or more keeps only its Ethernet header in the skb's linear data
const DEEP = `import sys
from scapy.all import Ether, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, HBHOptUnknown, UDP, Raw, sendp
dmac, src, dst, port, word = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
pkt = (Ether(dst=dmac) / IPv6(src=src, dst=dst, hlim=64)
       / IPv6ExtHdrHopByHop(options=[HBHOptUnknown(otype=0x1e, optdata=b'\\x00' * 250) for _ in range(4)])
       / IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=0x1e, optdata=b'\\x00' * 250) for _ in range(4)])
       / UDP(sport=40123, dport=port) / Raw((word + ' ').encode().ljust(3000, b'y')))
sendp(pkt, iface='eth0', verbose=False)
print(len(pkt))
`;
fs.writeFileSync(path.join(dir, 'server.py'), SERVER);
fs.writeFileSync(path.join(dir, 'client.py'), CLIENT);
fs.writeFileSync(path.join(dir, 'deep.py'), DEEP);

const cfg = parseConfig(`
networks:
  - name: ${N.net}
    subnet: 10.81.1.0/24
    bridge: ${BR}
containers:
  - name: ${N.c1}
    network: ${N.net}
    ip: 10.81.1.10
  - name: ${N.web}
    network: ${N.net}
    ip: 10.81.1.20
externals:
  - name: ${N.out}
    address: 10.81.250.2/24
uplinks: [${externalVethName(N.out)}]
interfaces: []
`);
const servers: ChildProcess[] = [];

t.teardown(async () => {
  for (const s of servers) s.kill('SIGKILL');
  await forceDown(cfg, pinRoot, {
    netns: Object.values(N).filter((n) => n !== N.net),
    links: [BR, hostVethName(N.c1), hostVethName(N.web), externalVethName(N.out)],
  });
  fs.rmSync(dir, { recursive: true, force: true });
});

const ns = (name: string, ...args: string[]): Promise<{ stdout: string }> => run('ip', ['netns', 'exec', name, ...args]);
const ifindexOf = (name: string): number => Number(fs.readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8').trim());
const macOf = (name: string): string => fs.readFileSync(`/sys/class/net/${name}/address`, 'utf8').trim();

function serve(name: string, port: number): () => string[] {
  const got: string[] = [];
  const p = spawn('ip', ['netns', 'exec', name, 'python3', '-u', path.join(dir, 'server.py'), String(port)], { stdio: ['ignore', 'pipe', 'ignore'] });
  p.stdout!.on('data', (b: Buffer) => got.push(...b.toString().split('\n').filter(Boolean)));
  servers.push(p);
  return () => [...got];
}

async function client(from: string, addr: string, port: number, msg: string, size = 0): Promise<string> {
  return ns(from, 'python3', path.join(dir, 'client.py'), addr, String(port), msg, String(size)).then((r) => r.stdout.trim(), () => 'error');
}

/** Retried until the answer comes (ND settles; bounded), then the answer. */
async function ask(from: string, addr: string, port: number, msg: string, size = 0): Promise<string> {
  let last = '';
  await waitFor(async () => (last = await client(from, addr, port, msg, size)) === `ack ${msg.split(':')[0]}`, 15000, 200);
  return last;
}

const counter = (ifindex: number, direction: string, what: 'redirect' | 'pass' | string): Promise<bigint> => packetCount(pinRoot, ifindex, direction, what);

/** The path MTU a namespace's kernel has learned towards addr ("mtu N" of its route exception), 0 for none. */
async function pmtu(name: string, addr: string): Promise<number> {
  const r = await run('ip', ['-n', name, '-6', 'route', 'get', addr]);
  const m = /\bmtu (\d+)/.exec(r.stdout);
  return m ? Number(m[1]) : 0;
}

/**
 * The kernel answers a too-big packet it forwards only with IPv6 forwarding on
 * for all interfaces (ip6_forward drops it first otherwise, uncounted by
 * berth). Docker turns it on; this test does not change a host-wide setting,
 * so where it is off the kernel's answer is not asserted, only that nothing
 * left.
 */
const forwardingAll = (): boolean => fs.readFileSync('/proc/sys/net/ipv6/conf/all/forwarding', 'utf8').trim() === '1';

async function setMtu(hostSide: string, peerNs: string, mtu: number): Promise<void> {
  await run('ip', ['link', 'set', 'dev', hostSide, 'mtu', String(mtu)]);
  await run('ip', ['-n', peerNs, 'link', 'set', 'dev', 'eth0', 'mtu', String(mtu)]);
}

t.test('IPv6 MTU and non-linear headers', async (t) => {
  const res = await standalone.up(cfg, { pinRoot, startCommands: false });
  const upIf = externalVethName(N.out);
  await run('ip', ['-6', 'addr', 'add', `${V6.gw}/64`, 'dev', BR, 'nodad']);
  for (const [c, a] of [[N.c1, V6.c1], [N.web, V6.web]] as const) {
    await run('ip', ['-n', c, '-6', 'addr', 'add', `${a}/64`, 'dev', 'eth0', 'nodad']);
    await run('ip', ['-n', c, '-6', 'route', 'replace', 'default', 'via', V6.gw]);
  }
  await run('ip', ['-6', 'addr', 'add', `${V6.up}/64`, 'dev', upIf, 'nodad']);
  await run('ip', ['-n', N.out, '-6', 'addr', 'add', `${V6.out}/64`, 'dev', 'eth0', 'nodad']);
  fs.writeFileSync(`/proc/sys/net/ipv6/conf/${BR}/forwarding`, '1');
  fs.writeFileSync(`/proc/sys/net/ipv6/conf/${upIf}/forwarding`, '1');

  const host = await standalone.readHostFacts();
  const base = standalone.desiredFrom(cfg, res.endpoints, host);
  const ep = new Map(res.endpoints.map((e) => [e.container, e]));
  const web = ep.get(N.web)!;
  const desired: DesiredState = {
    ...base,
    networks: base.networks.map((n) => ({ ...n, subnet6: 'fd81:1::', prefixLen6: 64, gateway6: V6.gw })),
    endpoints: base.endpoints.map((e) => ({ ...e, ip6: e.container === N.c1 ? V6.c1 : V6.web })),
    publish: [
      ...(base.publish ?? []),
      { hostIp: '::', hostPort: PUB, proto: 'udp' as const, container: N.web, network: N.net, ip: V6.web, port: WEB_PORT, ifindex: web.hostIfindex, mac: web.mac },
    ],
    hostAddrs: [...(base.hostAddrs ?? []), { addr: V6.up, ifindex: ifindexOf(upIf) }],
    uplinks: (base.uplinks ?? []).map((u) => (u.ifname === upIf ? { ...u, addr6: V6.up } : u)),
  };
  const dp = Dataplane.openPinned(pinRoot);
  try {
    await reconcile(dp, desired, standalone.scopeOf(cfg));
  } finally {
    dp.close();
  }
  const c1If = ifindexOf(hostVethName(N.c1));
  const webHost = hostVethName(N.web);
  const upIdx = ifindexOf(upIf);
  const atOut = serve(N.out, OUT_PORT);
  const atWeb = serve(N.web, WEB_PORT);
  t.equal(await ask(N.out, '::1', OUT_PORT, 'self'), 'ack self', 'outside server answers locally');
  t.equal(await ask(N.web, '::1', WEB_PORT, 'self'), 'ack self', 'web server answers locally');
  t.equal(await ask(N.out, V6.up, PUB, 'warm'), 'ack warm', 'the published port answers a small datagram');

  t.test('headers past the linear data: pulled, translated, delivered to the published port', async (t) => {
    await setMtu(upIf, N.out, 9000);
    await setMtu(webHost, N.web, 9000);
    const before = await counter(upIdx, '', 'redirect');
    let sent = '';
    const ok = await waitFor(async () => {
      sent = (await ns(N.out, '/usr/bin/python3', path.join(dir, 'deep.py'), macOf(upIf), V6.out, V6.up, String(PUB), 'deep').then((r) => r.stdout.trim(), (e) => String(e)));
      return waitFor(async () => atWeb().some((l) => l.startsWith('udp deep ')), 1000, 100);
    }, 15000, 0);
    t.ok(Number(sent) > 4096, `the frame was a page or more (${sent} bytes): its headers were past the linear data`);
    if (!ok) t.comment('container counters: ' + (await ns(N.web, 'nstat', '-az')).stdout.split('\n').filter((l) => /^(Udp6|Ip6In|Ip6Reasm)\S*\s+[1-9]/.test(l)).join(' | '));
    t.ok(ok, `the container's listener got the datagram (${atWeb().filter((l) => l.startsWith('udp deep')).join('; ')})`);
    t.ok(atWeb().some((l) => l === `udp deep 3000 from ${V6.out}`), 'with the client address and the whole payload');
    t.ok((await counter(upIdx, '', 'redirect')) > before, 'counted as redirected on the uplink');
  });

  t.test('published into a container with a smaller MTU: too_big, and the client gets Packet Too Big', async (t) => {
    await setMtu(upIf, N.out, 9000);
    await setMtu(webHost, N.web, 1280);
    t.equal(await pmtu(N.out, V6.up), 0, 'the client has learned no path MTU yet');
    const before = await counter(upIdx, '', 'too_big');
    const learned = await waitFor(async () => {
      await client(N.out, V6.up, PUB, 'bigpub', BIG);
      return (await pmtu(N.out, V6.up)) === 1280;
    }, 15000, 100);
    t.ok(learned, `the client's kernel took berth's Packet Too Big: path MTU ${await pmtu(N.out, V6.up)} towards ${V6.up}`);
    t.ok((await counter(upIdx, '', 'too_big')) > before, 'counted too_big on the uplink');
    t.notOk(atWeb().some((l) => l.startsWith('udp bigpub')), 'the big datagram never reached the container');
    t.equal(await ask(N.out, V6.up, PUB, 'smallpub', 1200), 'ack smallpub', 'a datagram that fits still goes through');
  });

  t.test('masquerade out of an uplink with a smaller MTU: the kernel answers the container', async (t) => {
    await setMtu(webHost, N.web, 1500);
    await setMtu(upIf, N.out, 1280);
    t.equal(await ask(N.c1, V6.out, OUT_PORT, 'smallmasq', 1200), 'ack smallmasq', 'a datagram that fits is masqueraded');
    const before = await counter(c1If, 'from', 'pass');
    const learned = await waitFor(async () => {
      await client(N.c1, V6.out, OUT_PORT, 'bigmasq', BIG);
      return (await pmtu(N.c1, V6.out)) === 1280;
    }, forwardingAll() ? 15000 : 2000, 100);
    if (forwardingAll()) t.ok(learned, `the container learned path MTU ${await pmtu(N.c1, V6.out)} towards ${V6.out}`);
    else t.comment(`net.ipv6.conf.all.forwarding is 0 here: the kernel drops the packet without a Packet Too Big (path MTU ${await pmtu(N.c1, V6.out)})`);
    t.ok((await counter(c1If, 'from', 'pass')) > before, 'passed to the kernel (counted pass), untranslated');
    t.notOk(atOut().some((l) => l.startsWith('udp bigmasq')), 'the big datagram never left the host');
  });

  t.test("a published flow's reply too big for the uplink: the kernel answers the container", async (t) => {
    await setMtu(webHost, N.web, 1500);
    await setMtu(upIf, N.out, 1280);
    t.equal(await pmtu(N.web, V6.out), 0, 'the container has learned no path MTU yet');
    const learned = await waitFor(async () => {
      await client(N.out, V6.up, PUB, `bigreply:${BIG}`, 100);
      return (await pmtu(N.web, V6.out)) === 1280;
    }, forwardingAll() ? 15000 : 2000, 100);
    if (forwardingAll()) t.ok(learned, `the container learned path MTU ${await pmtu(N.web, V6.out)} towards ${V6.out}`);
    else t.comment(`net.ipv6.conf.all.forwarding is 0 here: the kernel drops the reply without a Packet Too Big (path MTU ${await pmtu(N.web, V6.out)})`);
    t.notOk(await client(N.out, V6.up, PUB, `bigreply3:${BIG}`, 100).then((r) => r.startsWith('ack')), 'the big reply never reached the client (neither translated nor untranslated)');
    t.ok(atWeb().some((l) => l.startsWith('udp bigreply')), 'the request reached the container');
    t.equal(await ask(N.out, V6.up, PUB, 'bigreply2:1200', 100), 'ack bigreply2', 'a reply that fits comes back translated');
  });
});
