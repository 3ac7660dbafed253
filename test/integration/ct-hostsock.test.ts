// A masqueraded flow never takes the tuple of a host socket.
//
// Topology (standalone, `berth up`): a container C behind berth's bridge, an
// outside host R behind its own uplink (the host side's address U is the
// masquerade address). R runs a UDP and a TCP server on one port that answer
// with the address and port they saw. The host itself talks to R from U with
// a UDP socket and a TCP connection bound to one port; C sends from that
// same port number to the same R:P. The kernel's NAT would see the host
// socket's conntrack entry and choose another port for C; berth must too:
//   1. the port X is outside berth's masquerade range (34xxx, the host's own
//      ephemeral range): C's flows leave with another port (the range's);
//   2. the port H is INSIDE berth's masquerade range (a host socket bound
//      there explicitly): berth's allocator sees the host socket
//      (lib/hostsock.h) and takes the other port of the range;
//   3. with both ports of the (two-port) range taken, one by the host socket
//      and one by C's flow, a third flow to R:P gets none: it is dropped
//      (NAT_NO_PORT) and never reaches R;
//   4. the other order: C's flow holds H for R:P first; a host socket bound
//      to H is then refused (EPERM) by berth's cgroup hooks when it connects
//      or sends to that R:P (lib/sockguard.h), and allowed to anywhere else.
// Each time: R sees C's traffic from U and another port than the host's, the
// host's sockets keep getting their own answers, and C gets its own.
import t from 'tap';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../../src/domain/config';
import { Dataplane } from '../../src/platform/dataplane';
import { sumGlobalStats } from '../../src/platform/contract';
import { externalVethName, hostVethName } from '../../src/domain/names';
import { readCounters } from '../../src/observe/stats';
import * as standalone from '../../src/sources/standalone';
import { forceDown } from '../lib/topo';
import { waitFor } from '../lib/dockerd';

const pid = process.pid;
const tag = `clh${pid % 100000}`;
const pinRoot = `/sys/fs/bpf/berth-test-${tag}`;
const o = 240 + (pid % 8) * 2;
const SUB = { A: `10.94.${o}`, EXT: `10.94.${o + 1}` };
const N = { c: `${tag}-c`, r: `${tag}-r` };
const BR = `${tag}ba`;
const U = `${SUB.EXT}.1`;
const R = `${SUB.EXT}.2`;
const P = 34500 + (pid % 100) * 5; // R's servers (in R's own namespace): P, P + 3 and P + 4 for the cases, P + 2 one no flow goes to
const X = P + 1; // outside the masquerade range
// the masquerade range of this test: two ports, above the host's ephemeral range as the
// check requires (so outside this suite's 34xxx block, which lies inside that range)
const H = 64900 + (pid % 40) * 2;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));
// R: answers "<proto> <peer address>:<peer port> <payload>"; logs every datagram and line it gets
const SERVER = `import socket, sys, threading
port, log = int(sys.argv[1]), open(sys.argv[2], 'a', buffering=1)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0', port))
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', port)); s.listen(16)
def udp():
    while True:
        d, a = u.recvfrom(256)
        m = 'udp %s:%d %s' % (a[0], a[1], d.decode().strip())
        log.write(m + '\\n'); u.sendto(m.encode(), a)
def conn(c, a):
    f = c.makefile('rwb', buffering=0)
    for line in f:
        m = 'tcp %s:%d %s' % (a[0], a[1], line.decode().strip())
        log.write(m + '\\n'); c.sendall(m.encode() + b'\\n')
threading.Thread(target=udp, daemon=True).start()
print('ready', flush=True)
while True:
    c, a = s.accept()
    threading.Thread(target=conn, args=(c, a), daemon=True).start()
`;
// one side's sockets, bound to (addr, port): a UDP socket and a TCP connection to R:P;
// each line on stdin is a label: both sockets send it and print the answers as JSON
const PEER = `import json, socket, sys
addr, port, rhost, rport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((addr, port)); u.settimeout(3)
c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); c.bind((addr, port)); c.settimeout(3)
try:
    c.connect((rhost, rport)); f = c.makefile('rwb', buffering=0); tcp_ok = True
except OSError as e:
    tcp_ok = str(e)
print(json.dumps({'open': tcp_ok}), flush=True)
for label in sys.stdin:
    label = label.strip()
    out = {'label': label}
    try:
        u.sendto(label.encode(), (rhost, rport)); out['udp'] = u.recvfrom(256)[0].decode()
    except OSError as e:
        out['udp'] = 'error %s' % e
    if tcp_ok is True:
        try:
            f.write(label.encode() + b'\\n'); out['tcp'] = f.readline().decode().strip() or 'closed'
        except OSError as e:
            out['tcp'] = 'error %s' % e
    else:
        out['tcp'] = 'error %s' % tcp_ok
    print(json.dumps(out), flush=True)
`;
fs.writeFileSync(path.join(dir, 'server.py'), SERVER);
fs.writeFileSync(path.join(dir, 'peer.py'), PEER);
const rlog = path.join(dir, 'r.log');

const text = `
networks:
  - name: ${tag}-a
    subnet: ${SUB.A}.0/24
    bridge: ${BR}
containers:
  - name: ${N.c}
    network: ${tag}-a
    ip: ${SUB.A}.10
    # a published port: in standalone mode the host socket hooks (and their guard, case 4) are attached when one is
    publish: ["${P + 2}:9/udp"]
externals:
  - name: ${N.r}
    address: ${R}/24
uplinks: [${externalVethName(N.r)}]
interfaces: []
settings:
  nat:
    portMin: ${H}
    portMax: ${H + 1}
`;
const cfgPath = path.join(dir, 'topology.yaml');
fs.writeFileSync(cfgPath, text);
const cfg = parseConfig(text, cfgPath);
const procs: ChildProcess[] = [];

t.teardown(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await forceDown(cfg, pinRoot, { netns: Object.values(N), links: [BR, hostVethName(N.c), externalVethName(N.r)] });
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Answer {
  label: string;
  udp: string;
  tcp: string;
}

/** peer.py on the host (ns undefined) or in a namespace; ask(label) sends on both sockets. */
async function peer(ns: string | undefined, addr: string, port: number, rport: number) {
  const argv = ['python3', '-u', path.join(dir, 'peer.py'), addr, String(port), R, String(rport)];
  const p = ns ? spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['pipe', 'pipe', 'pipe'] }) : spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  procs.push(p);
  const lines: string[] = [];
  let buf = '';
  let err = '';
  p.stdout!.on('data', (b: Buffer) => {
    buf += b.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts.filter(Boolean));
  });
  p.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const opened = await waitFor(() => lines.find((l) => l.includes('"open"')), 10000, 20);
  if (!opened) throw new Error(`peer ${ns ?? 'host'} ${addr}:${port} did not start: ${err}`);
  const open = (JSON.parse(opened) as { open: true | string }).open;
  return {
    open,
    exited: () => p.exitCode !== null || p.signalCode !== null,
    async ask(label: string): Promise<Answer> {
      p.stdin!.write(label + '\n');
      const l = await waitFor(() => lines.find((x) => x.includes(`"label": "${label}"`)), 10000, 20);
      if (!l) throw new Error(`no answer to ${label}: ${err}`);
      return JSON.parse(l) as Answer;
    },
    close() {
      p.stdin!.end();
      p.kill('SIGTERM');
    },
  };
}

const rLines = (): string[] => (fs.existsSync(rlog) ? fs.readFileSync(rlog, 'utf8').split('\n').filter(Boolean) : []);

function stats() {
  const dp = Dataplane.openPinned(pinRoot);
  try {
    return sumGlobalStats(dp.maps.stats.lookup(Buffer.alloc(4))!, dp.cpus);
  } finally {
    dp.close();
  }
}

t.test("a host socket's tuple is never taken by a masqueraded flow", async (t) => {
  await standalone.up(cfg, { pinRoot });
  for (const port of [P, P + 2, P + 3, P + 4]) {
    const srv = spawn('ip', ['netns', 'exec', N.r, 'python3', '-u', path.join(dir, 'server.py'), String(port), rlog], { stdio: ['ignore', 'pipe', 'inherit'] });
    procs.push(srv);
    t.ok(await new Promise<boolean>((r) => srv.stdout!.once('data', () => r(true))), `R's servers on ${port} are up`);
  }
  const s0 = stats();

  for (const [what, port, rport, expectPort] of [
    ['outside the masquerade range (the host\'s own ports)', X, P, (p: number) => p >= H && p <= H + 1],
    ['inside the masquerade range (bound there explicitly)', H, P + 3, (p: number) => p === H + 1],
  ] as const) {
    await t.test(`a host socket on a port ${what}`, async (t) => {
      const host = await peer(undefined, U, port, rport);
      t.equal(host.open, true, `the host connects from ${U}:${port}`);
      const h1 = await host.ask(`host-a-${port}`);
      t.equal(h1.udp, `udp ${U}:${port} host-a-${port}`, 'the host socket (UDP) talks to R from its own port');
      t.equal(h1.tcp, `tcp ${U}:${port} host-a-${port}`, 'the host connection (TCP) too');

      const c = await peer(N.c, '0.0.0.0', port, rport);
      t.equal(c.open, true, `the container connects from its port ${port}`);
      const a = await c.ask(`cont-${port}`);
      const um = /^udp (\S+):(\d+) cont-/.exec(a.udp);
      const tm = /^tcp (\S+):(\d+) cont-/.exec(a.tcp);
      t.ok(um && tm, `the container gets its own answers (${a.udp} | ${a.tcp})`);
      t.equal(um?.[1], U, 'R sees its UDP from the uplink address');
      t.equal(tm?.[1], U, '... and its TCP');
      t.not(Number(um?.[2]), port, "not from the host socket's port (UDP)");
      t.not(Number(tm?.[2]), port, '... nor TCP');
      t.ok(expectPort(Number(um?.[2])) && expectPort(Number(tm?.[2])), `from a port of the range, the free one (${um?.[2]}, ${tm?.[2]})`);

      const h2 = await host.ask(`host-b-${port}`);
      t.equal(h2.udp, `udp ${U}:${port} host-b-${port}`, 'the host socket still gets its own answers (UDP)');
      t.equal(h2.tcp, `tcp ${U}:${port} host-b-${port}`, '... and the host connection (TCP)');
      const a2 = await c.ask(`cont2-${port}`);
      t.match(a2.udp, new RegExp(`^udp ${U.replace(/\./g, '\\.')}:${um?.[2]} cont2-`), 'and the container its own, on the same translation');
      t.match(a2.tcp, new RegExp(`^tcp ${U.replace(/\./g, '\\.')}:${tm?.[2]} cont2-`));

      if (port === H) {
        // both ports of the range are taken for R:P now: the host's, and the container's flow
        const before = rLines().length;
        const dp = Dataplane.openPinned(pinRoot);
        const noPort = async () =>
          (await readCounters(dp)).filter((r) => r.interface === hostVethName(N.c) && r.direction === 'from_container').reduce((n, r) => n + (r.drop.nat_no_port?.packets ?? 0n), 0n);
        const drops0 = await noPort();
        const third = await peer(N.c, '0.0.0.0', X + 2, rport);
        t.match(String(third.open), /timed out|error|refused/i, 'a third TCP flow to R:P finds no port: it never connects');
        const b = await third.ask('third');
        t.match(b.udp, /^error/, 'a third UDP flow gets no answer');
        t.notOk(rLines().slice(before).some((l) => l.includes('third') || l.includes(`:${X + 2} `)), 'and nothing of it reached R');
        t.ok((await noPort()) > drops0, `dropped as nat_no_port on the container's veth (${(await noPort()) - drops0})`);
        third.close();
        dp.close();
      }
      c.close();
      host.close();
    });
  }
  await t.test('the other order: a host socket bound to a port a flow holds is refused for that destination', async (t) => {
    const c = await peer(N.c, '0.0.0.0', H, P + 4);
    t.equal(c.open, true, 'the container connects from its port H');
    const a = await c.ask('first');
    t.equal(a.udp, `udp ${U}:${H} first`, 'its flow keeps H (free then), UDP');
    t.equal(a.tcp, `tcp ${U}:${H} first`, '... and TCP');
    const host = await peer(undefined, U, H, P + 4);
    t.match(String(host.open), /Operation not permitted/, `the host's connect from ${U}:${H} to the same destination is refused (EPERM)`);
    const h = await host.ask('refusedhost');
    t.match(h.udp, /^error .*Operation not permitted/, "the host's sendto to it too");
    const b = await c.ask('second');
    t.equal(b.udp, `udp ${U}:${H} second`, 'the container keeps its answers (UDP)');
    t.equal(b.tcp, `tcp ${U}:${H} second`, '(TCP)');
    t.notOk(rLines().some((l) => l.includes('refusedhost')), 'nothing of the refused socket reached R');
    host.close();
    await waitFor(() => host.exited(), 5000, 20);
    const other = await peer(undefined, U, H, P + 2);
    t.equal(other.open, true, 'a host socket on H to a destination no flow holds H for is allowed');
    t.equal((await other.ask('elsewhere')).udp, `udp ${U}:${H} elsewhere`, '... and answered');
    other.close();
    c.close();
  });
  const s1 = stats();
  t.ok(s1.nat_port_retries > s0.nat_port_retries, `port retries counted (${s1.nat_port_retries - s0.nat_port_retries})`);
  t.ok(s1.nat_port_exhausted > s0.nat_port_exhausted, 'and the exhausted allocations');
});
