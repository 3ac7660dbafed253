// Fail closed, in real namespaces: the bridge choke points and source
// validation with `berth up` alone (no daemon: what is pinned holds).
//
// Topology: network A (web publishes PUB -> 80/udp 80; spoof is a programmed
// container that lies about its source), network B (icc=false); an external
// "up" behind the uplink and a host "side" behind another host interface
// that is not an uplink (a second NIC); a namespace "fb" behind a bridge that is
// not berth's (a libvirt-like virbr); and "ghost", a namespace plugged into
// berth's bridge A that berth was never told about (a container started while
// the daemon is down). Each drop is asserted as a datagram that never reached
// its listener, and on berth's counters.
import t from 'tap';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../../src/domain/config';
import { Dataplane } from '../../src/platform/dataplane';
import { run } from '../../src/platform/exec';
import { externalVethName, hostVethName } from '../../src/domain/names';
import { readCounters } from '../../src/observe/stats';
import * as standalone from '../../src/sources/standalone';
import { forceDown } from '../lib/topo';
import { waitFor } from '../lib/dockerd';

const tag = `ck${process.pid % 100000}`;
const pinRoot = `/sys/fs/bpf/berth-test-${tag}`;
const o = 130 + (process.pid % 20); // 10.130-149.231-235: no other test file uses these
const SUB = { A: `10.${o}.231`, B: `10.${o}.232`, UP: `10.${o}.233`, SIDE: `10.${o}.234`, FB: `10.${o}.235` };
const N = {
  web: `${tag}-web`,
  spoof: `${tag}-spoof`,
  b1: `${tag}-b1`,
  up: `${tag}-up`,
  side: `${tag}-side`,
  fb: `${tag}-fb`,
  ghost: `${tag}-ghost`,
};
const BR = { A: `${tag}ba`, B: `${tag}bb`, FB: `${tag}vbr` };
const PUB = 20000 + (process.pid % 20000);
const UDP_PORT = 7070;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));
const LISTEN = `import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', int(sys.argv[1])))
while True:
    d, a = s.recvfrom(2048)
    print(d.decode() + ' from ' + a[0], flush=True)
`;
// a datagram with any source address (IP_HDRINCL), as a spoofer would send it
const SEND_RAW = `import socket, struct, sys
src, dst, port, msg = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
def csum(b):
    if len(b) % 2: b += b'\\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
udp = struct.pack('!HHHH', 40404, port, 8 + len(msg), 0) + msg
ph = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, 17, len(udp))
udp = udp[:6] + struct.pack('!H', csum(ph + udp) or 0xffff) + udp[8:]
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 1, 0x4000, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.sendto(ip + udp, (dst, 0))
`;
const SEND = `import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))
`;
fs.writeFileSync(path.join(dir, 'listen.py'), LISTEN);
fs.writeFileSync(path.join(dir, 'send_raw.py'), SEND_RAW);
fs.writeFileSync(path.join(dir, 'send.py'), SEND);

const text = `
networks:
  - name: ${tag}-a
    subnet: ${SUB.A}.0/24
    bridge: ${BR.A}
  - name: ${tag}-b
    subnet: ${SUB.B}.0/24
    bridge: ${BR.B}
    icc: false
containers:
  - name: ${N.web}
    network: ${tag}-a
    ip: ${SUB.A}.10
    run: [/bin/busybox, httpd, -f, -p, "80", -h, ${dir}]
    publish: ["${PUB}:80"]
  - name: ${N.spoof}
    network: ${tag}-a
    ip: ${SUB.A}.11
  - name: ${N.b1}
    network: ${tag}-b
    ip: ${SUB.B}.10
externals:
  - name: ${N.up}
    address: ${SUB.UP}.2/24
uplinks: [${externalVethName(N.up)}]
# "side" stays unserved: what the bridges' choke points do with an interface berth is not on
interfaces: []
`;
const cfg = parseConfig(text);
const listeners: ChildProcess[] = [];

async function cleanup(): Promise<void> {
  for (const l of listeners) l.kill('SIGKILL');
  await forceDown(cfg, pinRoot, {
    netns: Object.values(N),
    links: [BR.A, BR.B, BR.FB, `${tag}g0`, `${tag}f0`, `${tag}s0`, hostVethName(N.web), hostVethName(N.spoof), hostVethName(N.b1), externalVethName(N.up)],
  });
  fs.rmSync(dir, { recursive: true, force: true });
}
t.teardown(cleanup);

const ns = (name: string, ...args: string[]): Promise<unknown> => run('ip', ['netns', 'exec', name, ...args]);

/** A UDP listener in a namespace; resolves the lines it printed so far. */
function listen(name: string): () => string[] {
  const got: string[] = [];
  const p = spawn('ip', ['netns', 'exec', name, 'python3', '-u', path.join(dir, 'listen.py'), String(UDP_PORT)], { stdio: ['ignore', 'pipe', 'ignore'] });
  p.stdout!.on('data', (b: Buffer) => got.push(...b.toString().split('\n').filter(Boolean)));
  listeners.push(p);
  return () => [...got];
}

async function ready(seen: () => string[], from: string, to: string): Promise<void> {
  // the listener is up once a datagram from inside its own namespace arrives
  const ok = await waitFor(async () => {
    await ns(from, 'python3', path.join(dir, 'send.py'), to, String(UDP_PORT), 'ready').catch(() => undefined);
    return seen().some((l) => l.startsWith('ready'));
  }, 10000, 100);
  if (!ok) throw new Error(`listener in ${from} does not answer`);
}

async function dropCount(ifindex: number, reason: string): Promise<bigint> {
  const dp = Dataplane.openPinned(pinRoot);
  try {
    const rows = await readCounters(dp);
    let n = 0n;
    for (const r of rows) if (r.ifindex === ifindex) n += r.drop[reason]?.packets ?? 0n;
    return n;
  } finally {
    dp.close();
  }
}
const ifindexOf = (name: string): number => Number(fs.readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8').trim());

t.test('what Docker 29 drops stays dropped on every path', async (t) => {
  await standalone.up(cfg, { pinRoot });
  const brA = ifindexOf(BR.A);

  // a second host interface that is not an uplink, with a host behind it
  await run('ip', ['netns', 'add', N.side]);
  await run('ip', ['link', 'add', `${tag}s0`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', N.side]);
  await run('ip', ['addr', 'add', `${SUB.SIDE}.1/24`, 'dev', `${tag}s0`]);
  await run('ip', ['link', 'set', `${tag}s0`, 'up']);
  await run('ip', ['-n', N.side, 'addr', 'add', `${SUB.SIDE}.2/24`, 'dev', 'eth0']);
  await run('ip', ['-n', N.side, 'link', 'set', 'eth0', 'up']);
  await run('ip', ['-n', N.side, 'link', 'set', 'lo', 'up']);
  // a bridge that is not berth's, with a host behind it (like libvirt's virbr0)
  await run('ip', ['link', 'add', BR.FB, 'type', 'bridge']);
  await run('ip', ['addr', 'add', `${SUB.FB}.1/24`, 'dev', BR.FB]);
  await run('ip', ['link', 'set', BR.FB, 'up']);
  await run('ip', ['netns', 'add', N.fb]);
  await run('ip', ['link', 'add', `${tag}f0`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', N.fb]);
  await run('ip', ['link', 'set', `${tag}f0`, 'master', BR.FB, 'up']);
  await run('ip', ['-n', N.fb, 'addr', 'add', `${SUB.FB}.2/24`, 'dev', 'eth0']);
  await run('ip', ['-n', N.fb, 'link', 'set', 'eth0', 'up']);
  await run('ip', ['-n', N.fb, 'link', 'set', 'lo', 'up']);
  await run('ip', ['-n', N.fb, 'route', 'add', 'default', 'via', `${SUB.FB}.1`]);
  // a namespace on berth's bridge A that berth does not know
  await run('ip', ['netns', 'add', N.ghost]);
  await run('ip', ['link', 'add', `${tag}g0`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', N.ghost]);
  await run('ip', ['link', 'set', `${tag}g0`, 'master', BR.A, 'up']);
  await run('ip', ['-n', N.ghost, 'addr', 'add', `${SUB.A}.99/24`, 'dev', 'eth0']);
  await run('ip', ['-n', N.ghost, 'link', 'set', 'eth0', 'up']);
  await run('ip', ['-n', N.ghost, 'link', 'set', 'lo', 'up']);
  await run('ip', ['-n', N.ghost, 'route', 'add', 'default', 'via', `${SUB.A}.1`]);
  // the outside hosts route the networks' subnets through the host, as a LAN router would
  for (const x of [N.up, N.side]) for (const s of [SUB.A, SUB.B]) await run('ip', ['-n', x, 'route', 'replace', `${s}.0/24`, 'via', `${x === N.up ? SUB.UP : SUB.SIDE}.1`]);
  for (const i of [BR.FB, `${tag}s0`, externalVethName(N.up), BR.A, BR.B]) fs.writeFileSync(`/proc/sys/net/ipv4/conf/${i}/forwarding`, '1');

  const atWeb = listen(N.web);
  const atGhost = listen(N.ghost);
  const atUp = listen(N.up);
  await ready(atWeb, N.web, '127.0.0.1');
  await ready(atGhost, N.ghost, '127.0.0.1');
  await ready(atUp, N.up, '127.0.0.1');

  /** A datagram from `from` to `to`; whether it reached `seen` (waited for, bounded). */
  const deliver = async (from: string, to: string, seen: () => string[], msg: string): Promise<boolean> => {
    await ns(from, 'python3', path.join(dir, 'send.py'), to, String(UDP_PORT), msg).catch(() => undefined);
    return Boolean(await waitFor(() => seen().some((l) => l.startsWith(msg)), 1500, 50));
  };

  t.test('controls: the paths that must work still work', async (t) => {
    t.ok(await deliver(N.ghost, `${SUB.A}.10`, atWeb, 'ghost-to-web'), 'an unknown container reaches a neighbour on its network (icc)');
    t.ok(await deliver(N.web, `${SUB.UP}.2`, atUp, 'web-out'), 'a programmed container goes out (masquerade)');
    t.ok(atUp().some((l) => l.startsWith('web-out') && l.endsWith(`from ${SUB.UP}.1`)), 'masqueraded to the uplink address');
    t.ok(await run('ip', ['netns', 'exec', N.ghost, '/bin/busybox', 'ping', '-c1', '-W2', `${SUB.A}.1`]).then(() => true, () => false), 'the unknown container reaches its gateway');
    const body = await run('ip', ['netns', 'exec', N.up, '/bin/busybox', 'wget', '-q', '-O', '-', `http://${SUB.UP}.1:${PUB}/send.py`]).then((r) => r.stdout, () => '');
    t.match(body, /sendto/, 'a published port answers on the uplink');
  });

  t.test('another host interface reaches no container', async (t) => {
    const before = await dropCount(brA, 'not_published');
    t.notOk(await deliver(N.side, `${SUB.A}.10`, atWeb, 'side-to-web'), 'datagram to a programmed container never arrives');
    t.notOk(await deliver(N.side, `${SUB.A}.99`, atGhost, 'side-to-ghost'), 'datagram to the unknown container never arrives');
    const after = await dropCount(brA, 'not_published');
    t.ok(after >= before + 2n, `counted not_published on the bridge (${before} -> ${after})`);
  });

  t.test('a foreign bridge reaches no container', async (t) => {
    const before = await dropCount(brA, 'not_published');
    t.notOk(await deliver(N.fb, `${SUB.A}.10`, atWeb, 'fb-to-web'), 'datagram from behind virbr never arrives');
    t.ok((await dropCount(brA, 'not_published')) > before, 'counted not_published');
  });

  t.test('the listed uplink does not reach the unknown container either', async (t) => {
    const before = await dropCount(brA, 'not_published');
    t.notOk(await deliver(N.up, `${SUB.A}.99`, atGhost, 'up-to-ghost'), 'datagram never arrives');
    t.ok((await dropCount(brA, 'not_published')) > before, 'counted not_published');
  });

  t.test('the unknown container cannot leave the host untranslated', async (t) => {
    const before = await dropCount(brA, 'unknown_source');
    t.notOk(await deliver(N.ghost, `${SUB.UP}.2`, atUp, 'ghost-out'), 'datagram never reaches the outside host');
    t.ok((await dropCount(brA, 'unknown_source')) > before, 'counted unknown_source');
  });

  t.test('a container cannot send with a neighbour\'s address', async (t) => {
    const spoofVeth = ifindexOf(hostVethName(N.spoof));
    const before = await dropCount(spoofVeth, 'spoofed');
    await ns(N.spoof, 'python3', path.join(dir, 'send_raw.py'), `${SUB.A}.10`, `${SUB.UP}.2`, String(UDP_PORT), 'spoofed-out');
    await ns(N.spoof, 'python3', path.join(dir, 'send_raw.py'), '203.0.113.9', `${SUB.UP}.2`, String(UDP_PORT), 'spoofed-any');
    t.notOk(await waitFor(() => atUp().some((l) => l.startsWith('spoofed')), 1500, 50), 'neither datagram reaches the outside host');
    t.equal(await dropCount(spoofVeth, 'spoofed'), before + 2n, 'both counted spoofed on its veth');
    await ns(N.spoof, 'python3', path.join(dir, 'send_raw.py'), `${SUB.A}.11`, `${SUB.UP}.2`, String(UDP_PORT), 'honest-out');
    t.ok(await waitFor(() => atUp().some((l) => l.startsWith('honest-out')), 3000, 50), 'with its own address the same datagram goes out');
  });
});
