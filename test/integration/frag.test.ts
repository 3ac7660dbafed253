// Fragments of translated flows, TTL and MTU, in real namespaces with
// `berth up` alone (no daemon: what is pinned holds).
//
// Topology: network A (container "c" publishes PUB/udp -> 7070/udp), an
// external "up" behind the uplink. Every container and external MTU is 1500,
// so a 4000-byte UDP datagram leaves its sender in three fragments; it must
// arrive whole, with its exact content, through masquerade and through the
// published port, and so must its echo. Then the kernel's answers on the
// paths that only translate the source (time exceeded, frag needed), and a
// TTL-1 packet to the published port, which never arrives and is counted.
import t from 'tap';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../../src/domain/config';
import { fragKeyCodec } from '../../src/platform/contract';
import { Dataplane } from '../../src/platform/dataplane';
import { run } from '../../src/platform/exec';
import { externalVethName, hostVethName } from '../../src/domain/names';
import { readCounters } from '../../src/observe/stats';
import * as standalone from '../../src/sources/standalone';
import { forceDown } from '../lib/topo';
import { waitFor } from '../lib/dockerd';

const tag = `fg${process.pid % 100000}`;
const pinRoot = `/sys/fs/bpf/berth-test-${tag}`;
const o = 1 + (process.pid % 110); // 10.91.1-110 and 10.91.121-230: inside 10.91.0.0/16, this file's own
const SUB = { A: `10.91.${o}`, UP: `10.91.${o + 120}` };
const N = { c: `${tag}-c`, up: `${tag}-up` };
const BR = `${tag}ba`;
const PUB = 31000 + (process.pid % 1000);
const PORT = 7070;
const UPLINK = externalVethName(N.up);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));

// prints "<tag> <length> <sha256/16> from <addr>" for every datagram, and echoes it back
const ECHO = `import socket, sys, hashlib
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', int(sys.argv[1])))
while True:
    d, a = s.recvfrom(65535)
    print('%s %d %s from %s' % (d.split(b' ')[0].decode(errors='replace'), len(d), hashlib.sha256(d).hexdigest()[:16], a[0]), flush=True)
    s.sendto(d, a)
`;
// sends one datagram of exactly <size> bytes (its tag, then a pattern) and waits for its echo: "ok <length> <sha>" when it came back byte for byte
const BIG = `import socket, sys, hashlib
dst, port, tag, size = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), int(sys.argv[4])
body = tag + b' ' + bytes((i * 131 + 7) % 251 for i in range(size))
d = body[:size]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for attempt in range(5):
    s.sendto(d, (dst, port))
    try:
        r, a = s.recvfrom(65535)
    except socket.timeout:
        continue
    print(('ok' if r == d else 'mismatch') + ' %d %s' % (len(r), hashlib.sha256(r).hexdigest()[:16]), flush=True)
    sys.exit(0)
print('timeout', flush=True)
`;
// one datagram with TTL <ttl> from an already used flow (the first goes with the default TTL),
// then the ICMP error the kernel queued for it: "err type=<t> code=<c> from=<addr>"
const TTL1 = `import socket, sys, struct, select, time
dst, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', int(sys.argv[3])))
s.setsockopt(socket.IPPROTO_IP, 11, 1)  # IP_RECVERR
s.sendto(b'first', (dst, port))
time.sleep(0.2)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
s.sendto(b'ttl1', (dst, port))
end = time.time() + 5
while time.time() < end:
    try:
        _, anc, _, _ = s.recvmsg(2048, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
    except (BlockingIOError, socket.timeout):
        select.select([s], [], [], 0.2)
        continue
    except OSError:
        continue
    for lvl, typ, data in anc:
        if lvl == socket.IPPROTO_IP and typ == 11:
            errno, origin, t, c = struct.unpack('=IBBB', data[:7])
            print('err type=%d code=%d from=%s' % (t, c, socket.inet_ntoa(data[20:24])), flush=True)
            sys.exit(0)
print('no error', flush=True)
`;
const SEND_TTL = `import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, int(sys.argv[4]))
s.sendto(sys.argv[3].encode(), (sys.argv[1], int(sys.argv[2])))
`;
fs.writeFileSync(path.join(dir, 'echo.py'), ECHO);
fs.writeFileSync(path.join(dir, 'big.py'), BIG);
fs.writeFileSync(path.join(dir, 'ttl1.py'), TTL1);
fs.writeFileSync(path.join(dir, 'send_ttl.py'), SEND_TTL);

const text = `
networks:
  - name: ${tag}-a
    subnet: ${SUB.A}.0/24
    bridge: ${BR}
containers:
  - name: ${N.c}
    network: ${tag}-a
    ip: ${SUB.A}.10
    publish: ["${PUB}:${PORT}/udp"]
externals:
  - name: ${N.up}
    address: ${SUB.UP}.2/24
uplinks: [${UPLINK}]
interfaces: []
`;
const cfg = parseConfig(text);
const procs: ChildProcess[] = [];

async function cleanup(): Promise<void> {
  for (const p of procs) p.kill('SIGKILL');
  await forceDown(cfg, pinRoot, { netns: Object.values(N), links: [BR, hostVethName(N.c), UPLINK] });
  fs.rmSync(dir, { recursive: true, force: true });
}
t.teardown(cleanup);

const ns = (name: string, ...args: string[]) => run('ip', ['netns', 'exec', name, ...args]);
const nsOut = (name: string, ...args: string[]): Promise<string> => ns(name, ...args).then((r) => r.stdout, (e) => String(e?.stdout ?? '') + String(e?.stderr ?? e));
const ifindexOf = (name: string): number => Number(fs.readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8').trim());

/** The echo server in a namespace; returns the lines it printed so far. */
function echo(name: string): () => string[] {
  const got: string[] = [];
  const p = spawn('ip', ['netns', 'exec', name, 'python3', '-u', path.join(dir, 'echo.py'), String(PORT)], { stdio: ['ignore', 'pipe', 'ignore'] });
  p.stdout!.on('data', (b: Buffer) => got.push(...b.toString().split('\n').filter(Boolean)));
  procs.push(p);
  return () => [...got];
}

async function ready(seen: () => string[], name: string): Promise<void> {
  const ok = await waitFor(async () => {
    await ns(name, 'python3', path.join(dir, 'send_ttl.py'), '127.0.0.1', String(PORT), 'ready', '64').catch(() => undefined);
    return seen().some((l) => l.startsWith('ready '));
  }, 10000, 100);
  if (!ok) throw new Error(`echo server in ${name} does not answer`);
}

async function counter(ifindex: number, f: (r: Awaited<ReturnType<typeof readCounters>>[number]) => bigint): Promise<bigint> {
  const dp = Dataplane.openPinned(pinRoot);
  try {
    let n = 0n;
    for (const r of await readCounters(dp)) if (r.ifindex === ifindex) n += f(r);
    return n;
  } finally {
    dp.close();
  }
}
const drops = (ifindex: number, reason: string) => counter(ifindex, (r) => r.drop[reason]?.packets ?? 0n);

t.test('fragments, TTL and MTU through berth', async (t) => {
  await standalone.up(cfg, { pinRoot });
  const cVeth = ifindexOf(hostVethName(N.c));
  const upIf = ifindexOf(UPLINK);
  await run('ip', ['netns', 'exec', N.c, 'ip', 'link', 'set', 'lo', 'up']);
  await run('ip', ['netns', 'exec', N.up, 'ip', 'link', 'set', 'lo', 'up']);
  const atC = echo(N.c);
  const atUp = echo(N.up);
  await ready(atC, N.c);
  await ready(atUp, N.up);

  t.test('a 4000-byte UDP datagram through masquerade, and its echo', async (t) => {
    const before = await drops(cVeth, 'frag_orphan');
    const out = await nsOut(N.c, 'python3', path.join(dir, 'big.py'), `${SUB.UP}.2`, String(PORT), 'masq', '4000');
    const m = /^ok 4000 ([0-9a-f]{16})/m.exec(out);
    t.ok(m, `the echo came back whole, byte for byte (${out.trim()})`);
    const seen = atUp().find((l) => l.startsWith('masq '));
    t.equal(seen, `masq 4000 ${m?.[1]} from ${SUB.UP}.1`, 'the outside host got it whole, from the uplink address');
    const dp = Dataplane.openPinned(pinRoot);
    try {
      const recs = (await dp.maps.frag.dump()).map(([k]) => fragKeyCodec.decode(k));
      t.ok(recs.some((k) => k.saddr === `${SUB.A}.10` && k.daddr === `${SUB.UP}.2` && k.proto === 17), 'its first fragment was recorded on the container side');
      t.ok(recs.some((k) => k.saddr === `${SUB.UP}.2` && k.daddr === `${SUB.UP}.1` && k.proto === 17), "the echo's first fragment was recorded on the uplink");
    } finally {
      dp.close();
    }
    t.ok((await counter(cVeth, (r) => (r.direction === 'from_container' ? r.redirect.packets : 0n))) >= 3n, 'its fragments were redirected by berth');
    t.equal(await drops(cVeth, 'frag_orphan'), before, 'no orphan fragments');
  });

  t.test('a 4000-byte UDP datagram from outside through the published port, and its echo', async (t) => {
    const out = await nsOut(N.up, 'python3', path.join(dir, 'big.py'), `${SUB.UP}.1`, String(PUB), 'pub', '4000');
    const m = /^ok 4000 ([0-9a-f]{16})/m.exec(out);
    t.ok(m, `the echo came back whole, byte for byte (${out.trim()})`);
    t.equal(atC().find((l) => l.startsWith('pub ')), `pub 4000 ${m?.[1]} from ${SUB.UP}.2`, 'the container got it whole, from the client address');
  });

  t.test('a 4000-byte ICMP echo through masquerade (its identifier translated in the first fragment), and its reply', async (t) => {
    const out = await nsOut(N.c, 'ping', '-n', '-c', '1', '-W', '3', '-s', '4000', `${SUB.UP}.2`);
    t.match(out, /4008 bytes from .*\n[\s\S]*1 received/, `answered whole (${out.trim().split('\n')[1] ?? out})`);
  });

  t.test('ping -t 1 from the container: time exceeded from the gateway', async (t) => {
    const out = await nsOut(N.c, 'ping', '-n', '-c', '1', '-W', '3', '-t', '1', `${SUB.UP}.2`);
    t.match(out, new RegExp(`From ${SUB.A.replace(/\./g, '\\.')}\\.1 .*Time to live exceeded`), `the host answers (${out.trim().split('\n')[1] ?? out})`);
  });

  t.test('TTL 1 on a tracked masqueraded UDP flow: the kernel answers, the datagram does not leave', async (t) => {
    const sport = String(61500 + (process.pid % 1000));
    const out = await nsOut(N.c, 'python3', path.join(dir, 'ttl1.py'), `${SUB.UP}.2`, String(PORT), sport);
    t.match(out, new RegExp(`err type=11 code=0 from=${SUB.A.replace(/\./g, '\\.')}\\.1`), `time exceeded from the gateway (${out.trim()})`);
    t.ok(atUp().some((l) => l.startsWith('first ') && l.endsWith(`from ${SUB.UP}.1`)), 'the first datagram went out masqueraded');
    // the same path, in order: once a later datagram arrived, the TTL-1 one never will
    await ns(N.c, 'python3', path.join(dir, 'send_ttl.py'), `${SUB.UP}.2`, String(PORT), 'after-ttl', '64');
    t.ok(await waitFor(() => atUp().some((l) => l.startsWith('after-ttl ')), 5000, 50), 'a datagram sent after it arrives');
    t.notOk(atUp().some((l) => l.startsWith('ttl1 ')), 'the TTL-1 datagram never reached the outside host');
  });

  t.test('uplink MTU 1400: ping -M do -s 1450 from the container gets frag needed', async (t) => {
    await run('ip', ['link', 'set', UPLINK, 'mtu', '1400']);
    t.teardown(() => run('ip', ['link', 'set', UPLINK, 'mtu', '1500']).then(() => undefined, () => undefined));
    const out = await nsOut(N.c, 'ping', '-n', '-c', '1', '-W', '3', '-M', 'do', '-s', '1450', `${SUB.UP}.2`);
    t.match(out, /Frag needed and DF set \(mtu = 1400\)|mtu ?= ?1400/, `the host answers frag needed (${out.trim().split('\n')[1] ?? out})`);
    const small = await nsOut(N.c, 'ping', '-n', '-c', '1', '-W', '3', '-M', 'do', '-s', '1300', `${SUB.UP}.2`);
    t.match(small, /1 received/, 'a ping that fits still goes through');
  });

  t.test('TTL 1 to the published port: never delivered, counted', async (t) => {
    const before = await drops(upIf, 'ttl_exceeded');
    await ns(N.up, 'python3', path.join(dir, 'send_ttl.py'), `${SUB.UP}.1`, String(PUB), 'pub-ttl1', '1');
    await ns(N.up, 'python3', path.join(dir, 'send_ttl.py'), `${SUB.UP}.1`, String(PUB), 'pub-after', '64');
    t.ok(await waitFor(() => atC().some((l) => l.startsWith('pub-after ')), 5000, 50), 'a datagram sent after it arrives');
    t.notOk(atC().some((l) => l.startsWith('pub-ttl1 ')), 'the TTL-1 datagram never reached the container');
    t.equal(await drops(upIf, 'ttl_exceeded'), before + 1n, 'counted ttl_exceeded on the uplink');
  });
});
