// Masquerade for every IP protocol, in real namespaces (bpf/lib/generic.h):
// real GRE and SCTP packets from containers to an external host, with
// `berth up` alone (what is pinned does the work).
//
// This kernel has neither GRE tunnels (ip_gre) nor SCTP built in, and loads
// no modules, so the packets are made with raw sockets (IPPROTO_GRE 47,
// IPPROTO_SCTP 132): the kernel builds the IPv4 header with the sender's own
// address, as a tunnel or an SCTP stack would, and a raw socket of the
// protocol receives them on the other side. The external "ext" answers each
// packet to its source; a raw AF_PACKET capture on ext's eth0 records every
// IPv4 packet that reaches it for the whole test, and no source may be a
// container's private address.
//
// Topology: network n (c1, c2; masquerade on), external ext behind the host
// veth that is the uplink. Names gp<pid>, subnets 10.92.200-249.0/24.
//
// The same GRE exchange runs first through Docker 29's own rules (the
// kernel's MASQUERADE and conntrack, test/lib/reference.ts) with berth
// absent, then through berth: on this kernel both translate the first
// container and refuse the second.
import t from 'tap';
import { ChildProcess, execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { parseConfig } from '../../src/domain/config';
import { Dataplane } from '../../src/platform/dataplane';
import { run } from '../../src/platform/exec';
import { externalVethName, hostVethName } from '../../src/domain/names';
import { readCounters } from '../../src/observe/stats';
import * as standalone from '../../src/sources/standalone';
import { formatTrace, runTrace } from '../../src/observe/trace';
import * as topology from '../../src/platform/topology';
import { applyReference } from '../lib/reference';
import { forceDown } from '../lib/topo';
import { waitFor } from '../lib/dockerd';

const pexec = promisify(execFile);
const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'berth');
const tag = `gp${process.pid % 100000}`;
const pinRoot = `/sys/fs/bpf/berth-test-${tag}`;
const base = 200 + (process.pid % 25) * 2;
const NET = `10.92.${base}`;
const EXT = `10.92.${base + 1}`;
const UPLINK = `${EXT}.1`; // the host side of ext's veth: the masquerade address
const N = { c1: `${tag}-c1`, c2: `${tag}-c2`, ext: `${tag}-ext` };
const BR = `${tag}br`;
const GRE = 47;
const SCTP = 132;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));

// A protocol's header before the test's text: GRE version 0 (Transparent
// Ethernet Bridging, no checksum or key); an SCTP common header (the CRC32c is
// not computed: no SCTP stack reads it here, and berth never does).
const COMMON = `import socket, struct, sys
def header(proto):
    if proto == 47: return b'\\x00\\x00\\x65\\x58'
    return struct.pack('!HHII', 5000, 5001, 1, 0)
`;
// listen.py PROTO [echo]: print "src dst text" for each packet; with echo, answer it to its source with "re:" + text
const LISTEN = `${COMMON}
proto = int(sys.argv[1])
echo = len(sys.argv) > 2
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
print('listening', flush=True)
h = len(header(proto))
while True:
    d, a = s.recvfrom(65535)
    ihl = (d[0] & 15) * 4
    text = d[ihl + h:].decode(errors='replace')
    print(socket.inet_ntoa(d[12:16]) + ' ' + socket.inet_ntoa(d[16:20]) + ' ' + text, flush=True)
    if echo and not text.startswith('re:'):
        s.sendto(header(proto) + b're:' + text.encode(), (a[0], 0))
`;
// send.py PROTO DST TEXT: one packet; the kernel fills the IPv4 header with the sender's address
const SEND = `${COMMON}
proto = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
s.sendto(header(proto) + sys.argv[3].encode(), (sys.argv[2], 0))
`;
// capture.py: every IPv4 packet on the namespace's interfaces, both ways: "src dst proto"
const CAPTURE = `import socket
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
print('capturing', flush=True)
while True:
    f = s.recv(65535)
    if len(f) >= 34 and f[12:14] == b'\\x08\\x00':
        print(socket.inet_ntoa(f[26:30]) + ' ' + socket.inet_ntoa(f[30:34]) + ' ' + str(f[23]), flush=True)
`;
fs.writeFileSync(path.join(dir, 'listen.py'), LISTEN);
fs.writeFileSync(path.join(dir, 'send.py'), SEND);
fs.writeFileSync(path.join(dir, 'capture.py'), CAPTURE);

const text = `
networks:
  - name: ${tag}-n
    subnet: ${NET}.0/24
    bridge: ${BR}
containers:
  - name: ${N.c1}
    network: ${tag}-n
    ip: ${NET}.10
  - name: ${N.c2}
    network: ${tag}-n
    ip: ${NET}.11
externals:
  - name: ${N.ext}
    address: ${EXT}.2/24
uplinks: [${externalVethName(N.ext)}]
interfaces: []
`;
const cfg = parseConfig(text);
const IP = { c1: `${NET}.10`, c2: `${NET}.11`, ext: `${EXT}.2` };
const procs: ChildProcess[] = [];

let undoReference: (() => Promise<void>) | null = null;
/** The kernel's insert_failed, summed over its CPUs (conntrack -S). */
async function insertFailed(): Promise<number> {
  const out = (await run('conntrack', ['-S'])).stdout;
  return [...out.matchAll(/insert_failed=(\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
}
/** The kernel's conntrack entries of this file's addresses (the reference phase makes some). */
async function flushKernelConntrack(): Promise<void> {
  for (const a of [...Object.values(IP), UPLINK]) for (const opt of ['-s', '-d']) await run('conntrack', ['-D', opt, a]).catch(() => undefined);
}

t.teardown(async () => {
  for (const p of procs) p.kill('SIGKILL');
  if (undoReference) await undoReference().catch((e: Error) => console.error(e.message));
  await flushKernelConntrack();
  await forceDown(cfg, pinRoot, { netns: Object.values(N), links: [BR, hostVethName(N.c1), hostVethName(N.c2), externalVethName(N.ext)] });
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A long-lived python script in a namespace; returns the lines it printed so far, once it printed `first`. */
async function start(ns: string, script: string, args: string[], first: string): Promise<() => string[]> {
  const got: string[] = [];
  const p = spawn('ip', ['netns', 'exec', ns, 'python3', '-u', path.join(dir, script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let buf = '';
  p.stdout!.on('data', (b: Buffer) => {
    buf += b.toString();
    const lines = buf.split('\n');
    buf = lines.pop()!;
    got.push(...lines);
  });
  procs.push(p);
  if (!(await waitFor(() => got.includes(first), 10000, 50))) throw new Error(`${script} in ${ns} did not start`);
  return () => [...got];
}

const send = (ns: string, proto: number, dst: string, msg: string): Promise<unknown> => run('ip', ['netns', 'exec', ns, 'python3', path.join(dir, 'send.py'), String(proto), dst, msg]);
/** Whether a line ending in `msg` arrived, waited for (bounded). */
const arrived = (seen: () => string[], msg: string, ms: number): Promise<string | undefined> => waitFor(() => seen().find((l) => l.endsWith(` ${msg}`)), ms, 50);

async function counted(ifname: string, reason: string): Promise<bigint> {
  const ifindex = Number(fs.readFileSync(`/sys/class/net/${ifname}/ifindex`, 'utf8').trim());
  const dp = Dataplane.openPinned(pinRoot);
  try {
    let n = 0n;
    for (const r of await readCounters(dp)) if (r.ifindex === ifindex) n += r.drop[reason]?.packets ?? 0n;
    return n;
  } finally {
    dp.close();
  }
}

t.test('GRE and SCTP leave with the uplink address, and their answers come back', async (t) => {
  // the namespaces first, and the listeners and the capture for the whole test
  await topology.up(cfg);
  const capture = await start(N.ext, 'capture.py', [], 'capturing');
  const extGre = await start(N.ext, 'listen.py', [String(GRE), 'echo'], 'listening');
  const extSctp = await start(N.ext, 'listen.py', [String(SCTP), 'echo'], 'listening');
  const c1Gre = await start(N.c1, 'listen.py', [String(GRE)], 'listening');
  const c2Gre = await start(N.c2, 'listen.py', [String(GRE)], 'listening');
  const c2Sctp = await start(N.c2, 'listen.py', [String(SCTP)], 'listening');

  await t.test("Docker 29's rules, berth absent: the kernel's MASQUERADE translates c1's GRE and refuses c2's", async (t) => {
    t.notOk(Dataplane.isPinned(pinRoot), 'berth not loaded');
    undoReference = await applyReference(cfg, { uplinks: [externalVethName(N.ext)], chainSuffix: tag });
    await send(N.c1, GRE, IP.ext, 'ref-c1');
    t.equal(await arrived(extGre, 'ref-c1', 5000), `${UPLINK} ${IP.ext} ref-c1`, 'c1: arrived from the uplink address');
    t.ok(await arrived(c1Gre, 're:ref-c1', 5000), "c1: the external's answer arrived");
    const failed0 = await insertFailed();
    await send(N.c2, GRE, IP.ext, 'ref-c2');
    t.notOk(await arrived(extGre, 'ref-c2', 1500), 'c2, same remote and protocol while c1\'s flow lives: never arrives');
    // nf_nat leaves the portless tuple as it is; the new connection then clashes at confirm
    t.ok((await insertFailed()) > failed0, "the kernel dropped it as a failed conntrack insert (conntrack -S insert_failed grew)");
    await undoReference();
    undoReference = null;
    await flushKernelConntrack();
  });

  await standalone.up(cfg, { pinRoot });
  for (const i of [BR, externalVethName(N.ext)]) fs.writeFileSync(`/proc/sys/net/ipv4/conf/${i}/forwarding`, '1');

  t.test('GRE from c1: the external sees the uplink address, its answer reaches c1', async (t) => {
    await send(N.c1, GRE, IP.ext, 'gre-c1-1');
    const got = await arrived(extGre, 'gre-c1-1', 5000);
    t.equal(got, `${UPLINK} ${IP.ext} gre-c1-1`, 'arrived from the uplink address');
    t.equal(await arrived(c1Gre, 're:gre-c1-1', 5000), `${IP.ext} ${IP.c1} re:gre-c1-1`, "the external's answer arrived in c1, to its own address");
    await send(N.c1, GRE, IP.ext, 'gre-c1-2');
    t.ok(await arrived(c1Gre, 're:gre-c1-2', 5000), 'and again on the established flow');
    const ct = JSON.parse((await pexec(BIN, ['--bpffs', pinRoot, 'ct', '--json', '--proto', 'gre'], { timeout: 60000 })).stdout);
    t.equal(ct.length, 1, 'berth ct --proto gre: one flow');
    t.same(ct[0].original, { src: IP.c1, dst: IP.ext }, 'original: addresses alone');
    t.same(ct[0].translated, { src: UPLINK, dst: IP.ext }, 'translated to the uplink address');
    t.same([ct[0].kind, ct[0].state, ct[0].assured, ct[0].replySeen], ['masquerade', 'established', true, true], 'masquerade, established and assured by the reply');
    t.ok(ct[0].packets >= 4, `${ct[0].packets} packets both ways`);
    const table = (await pexec(BIN, ['--bpffs', pinRoot, 'ct', '--proto', '47'], { timeout: 60000 })).stdout;
    t.match(table, new RegExp(`gre\\s+masquerade\\s+established\\s+yes\\s+${IP.c1.replace(/\./g, '\\.')} -> ${IP.ext.replace(/\./g, '\\.')}\\s+${UPLINK.replace(/\./g, '\\.')} -> `), 'the table shows it without ports');
  });

  t.test('GRE from c2 to the same external while c1 holds it: dropped and counted, never sent', async (t) => {
    const before = await counted(hostVethName(N.c2), 'nat_no_port');
    await send(N.c2, GRE, IP.ext, 'gre-c2-clash');
    t.ok(await waitFor(async () => (await counted(hostVethName(N.c2), 'nat_no_port')) === before + 1n, 5000, 50), 'counted nat_no_port on c2\'s veth');
    // the drop is counted where the packet dies, so anything sent would already be on its way
    t.notOk(await arrived(extGre, 'gre-c2-clash', 1500), 'the external never receives it');
    t.notOk(c1Gre().some((l) => l.includes('gre-c2-clash')), 'nor does c1 get anything of it');
    t.notOk(c2Gre().some((l) => l.includes('gre-c2-clash')), 'and c2 gets no answer');
  });

  t.test('SCTP from c2: its own flow (another protocol), out and back', async (t) => {
    await send(N.c2, SCTP, IP.ext, 'sctp-c2');
    t.equal(await arrived(extSctp, 'sctp-c2', 5000), `${UPLINK} ${IP.ext} sctp-c2`, 'arrived from the uplink address');
    t.equal(await arrived(c2Sctp, 're:sctp-c2', 5000), `${IP.ext} ${IP.c2} re:sctp-c2`, "the external's answer arrived in c2");
  });

  t.test('berth trace: a protocol without ports, its flow and its refusal', async (t) => {
    const esp = await runTrace({ pinRoot, from: N.c1, to: `${EXT}.77`, proto: 'esp' });
    t.match(esp.verdict, /^redirect/, 'ESP from c1 to another remote: redirected');
    t.equal(esp.output?.src, UPLINK, 'out with the uplink address');
    t.same(esp.conntrack.map((c) => c.key), [`esp ${IP.c1} -> ${EXT}.77`, `esp ${EXT}.77 -> ${UPLINK}`], 'the flow it made, shown without ports');
    t.equal(esp.conntrackDeleted, 2, 'and deleted again');
    t.match(formatTrace(esp), new RegExp(`input     esp ${IP.c1.replace(/\./g, '\\.')} -> ${EXT.replace(/\./g, '\\.')}\\.77  ttl 64`), 'the text names no ports');
    const gre = await runTrace({ pinRoot, from: N.c2, to: IP.ext, proto: 'gre' });
    t.match(gre.verdict, /^drop/, "GRE from c2 to ext while c1's flow lives: dropped");
    t.ok(gre.counters.some((c) => c.what === 'drop: nat_no_port'), 'as nat_no_port');
    await t.rejects(runTrace({ pinRoot, from: N.c1, to: `${IP.ext}:80`, proto: 'gre' }), /tracked without ports/, 'a port for GRE: a clear error');
    await t.rejects(runTrace({ pinRoot, from: N.c1, to: IP.ext, proto: 'grease' }), /--proto grease/, 'an unknown protocol: a clear error');
  });

  t.test('the external never saw a private source address', async (t) => {
    // what ext sent last (the SCTP answer) is in the capture: it ran the whole time
    t.ok(await waitFor(() => capture().some((l) => l === `${IP.ext} ${UPLINK} ${SCTP}`), 5000, 50), 'the capture saw the traffic');
    t.ok(capture().some((l) => l === `${UPLINK} ${IP.ext} ${GRE}`), 'GRE from the uplink address among it');
    const priv = capture().filter((l) => l.startsWith(`${NET}.`));
    t.same(priv, [], `no packet from ${NET}.0/24 reached the external`);
  });
});
