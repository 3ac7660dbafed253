/**
 * The machinery of the security matrices (test/integration/matrix.test.ts,
 * IPv4, and matrix6.test.ts, IPv6): the harness of both (class Matrix, at
 * the end), and one long-lived Python agent per namespace that serves the target ports and
 * runs probes on command, and a tun relay that puts a namespace behind an L3
 * device of the host.
 *
 * An agent started as `agent.py NAME TCP_PORTS UDP_PORTS` serves each TCP
 * port with a one-line banner ("NAME:PORT sees CLIENT"), records every UDP
 * datagram on its UDP ports (printed as "ARRIVED TOKEN NAME:PORT FROM"), and
 * takes probe commands on stdin, one per line, each run on its own thread:
 *   ID tcp HOST PORT TIMEOUT   connect; the banner, or why not
 *   ID udp HOST PORT TOKEN     one datagram carrying TOKEN (its arrival is
 *                              what the target's agent reports)
 *   ID icmp HOST IDENT TIMEOUT one echo request (ICMPv6 for a v6 HOST)
 * A fourth argument `6` serves the ports on IPv6 too; a probe's family is
 * its HOST's (a v6 address has a colon).
 * and answers "RESULT ID OUTCOME". So a drop is a connect that timed out, a
 * datagram that never arrived, an echo without a reply: never a sleep.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import type { Test } from 'tap';
import type { BerthConfig } from '../../src/domain/config';
import { Dataplane } from '../../src/platform/dataplane';
import { run } from '../../src/platform/exec';
import { externalVethName, hostVethName } from '../../src/domain/names';
import * as standalone from '../../src/sources/standalone';
import { readCounters } from '../../src/observe/stats';
import * as topology from '../../src/platform/topology';
import { applyReference, ReferenceOptions } from './reference';
import { removeNetns, sh } from './topo';

export const AGENT_PY = `import errno, socket, struct, sys, threading, time
name = sys.argv[1]
tcp_ports = [int(p) for p in sys.argv[2].split(',') if p]
udp_ports = [int(p) for p in sys.argv[3].split(',') if p]
lock = threading.Lock()
def emit(line):
    with lock:
        sys.stdout.write(line + '\\n')
        sys.stdout.flush()
def ename(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else str(e)
def serve_tcp(s, port):
    while True:
        c, a = s.accept()
        try:
            c.sendall(('%s:%d sees %s\\n' % (name, port, a[0])).encode())
        except OSError:
            pass
        c.close()
def serve_udp(s, port):
    while True:
        d, a = s.recvfrom(2048)
        emit('ARRIVED %s %s:%d %s' % (d.decode(errors='replace').split()[0], name, port, a[0]))
families = [(socket.AF_INET, '0.0.0.0')] + ([(socket.AF_INET6, '::')] if len(sys.argv) > 4 and sys.argv[4] == '6' else [])
def fam(host):
    return socket.AF_INET6 if ':' in host else socket.AF_INET
socks = []
for af, any_ in families:
    for p in tcp_ports:
        s = socket.socket(af, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if af == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((any_, p))
        s.listen(256)
        socks.append((serve_tcp, s, p))
    for p in udp_ports:
        s = socket.socket(af, socket.SOCK_DGRAM)
        if af == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((any_, p))
        socks.append((serve_udp, s, p))
for fn, s, p in socks:
    threading.Thread(target=fn, args=(s, p), daemon=True).start()
def tcp(host, port, timeout):
    s = socket.socket(fam(host), socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
    except (socket.timeout, TimeoutError):
        return 'timeout'
    except ConnectionRefusedError:
        return 'refused'
    except OSError as e:
        return 'error ' + ename(e)
    try:
        b = s.recv(256).decode(errors='replace').strip()
        return ('connected: ' + b) if b else 'connected, closed without a word'
    except (socket.timeout, TimeoutError):
        return 'connected, no banner'
    except OSError as e:
        return 'connected, then ' + ename(e)
    finally:
        s.close()
def udp(host, port, token):
    s = socket.socket(fam(host), socket.SOCK_DGRAM)
    try:
        s.sendto(token.encode(), (host, port))
        return 'sent'
    except OSError as e:
        return 'send failed: ' + ename(e)
    finally:
        s.close()
def csum(b):
    if len(b) % 2:
        b += b'\\0'
    t = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xffff)
    t += t >> 16
    return ~t & 0xffff
def icmp6(host, ident, timeout):
    # the kernel fills in an ICMPv6 raw socket's checksum, and hands back no IPv6 header
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    want = socket.inet_pton(socket.AF_INET6, host)
    try:
        body = struct.pack('!HH', ident, 1) + b'berth-matrix'
        s.sendto(struct.pack('!BBH', 128, 0, 0) + body, (host, 0))
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return 'no reply'
            s.settimeout(left)
            try:
                d, a = s.recvfrom(2048)
            except (socket.timeout, TimeoutError):
                return 'no reply'
            if len(d) < 8:
                continue
            t, c, _, i, q = struct.unpack('!BBHHH', d[:8])
            src = socket.inet_pton(socket.AF_INET6, a[0].split('%')[0])
            if t == 129 and i == ident and q == 1 and src == want:
                return 'echo reply'
            if t in (1, 3) and len(d) >= 8 + 40 + 8:
                inner = d[8 + 40:]
                it, _, _, ii, _ = struct.unpack('!BBHHH', inner[:8])
                if it == 128 and ii == ident:
                    return 'icmp error %d/%d from %s' % (t, c, a[0])
    except OSError as e:
        return 'error ' + ename(e)
    finally:
        s.close()
def icmp(host, ident, timeout):
    if ':' in host:
        return icmp6(host, ident, timeout)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
        body = struct.pack('!HH', ident, 1) + b'berth-matrix'
        s.sendto(struct.pack('!BBH', 8, 0, csum(b'\\x08\\x00\\x00\\x00' + body)) + body, (host, 0))
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return 'no reply'
            s.settimeout(left)
            try:
                d, a = s.recvfrom(2048)
            except (socket.timeout, TimeoutError):
                return 'no reply'
            h = (d[0] & 15) * 4
            if len(d) < h + 8:
                continue
            t, c, _, i, q = struct.unpack('!BBHHH', d[h:h + 8])
            if t == 0 and i == ident and q == 1 and a[0] == host:
                return 'echo reply'
            if t in (3, 11) and len(d) >= h + 8 + 28:
                inner = d[h + 8:]
                ih = (inner[0] & 15) * 4
                if len(inner) >= ih + 8:
                    it, _, _, ii, _ = struct.unpack('!BBHHH', inner[ih:ih + 8])
                    if it == 8 and ii == ident:
                        return 'icmp error %d/%d from %s' % (t, c, a[0])
    except OSError as e:
        return 'error ' + ename(e)
    finally:
        s.close()
def run(line):
    parts = line.split()
    pid, op = parts[0], parts[1]
    try:
        if op == 'tcp':
            out = tcp(parts[2], int(parts[3]), float(parts[4]))
        elif op == 'udp':
            out = udp(parts[2], int(parts[3]), parts[4])
        elif op == 'icmp':
            out = icmp(parts[2], int(parts[3]), float(parts[4]))
        else:
            out = 'bad op ' + op
    except Exception as e:
        out = 'agent error %r' % e
    emit('RESULT %s %s' % (pid, out))
emit('READY')
for line in sys.stdin:
    if line.strip():
        threading.Thread(target=run, args=(line.strip(),), daemon=True).start()
`;

/**
 * `relay.py HOST_TUN NETNS_PATH NS_TUN`: attaches to the host's persistent
 * tun device, enters the namespace (setns), attaches to the namespace's tun,
 * and copies every packet between the two: a point-to-point wire between the
 * host's L3 device and a namespace, as a VPN would be.
 */
export const RELAY_PY = `import ctypes, fcntl, os, select, struct, sys
TUNSETIFF = 0x400454ca
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
CLONE_NEWNET = 0x40000000
def tun(n):
    fd = os.open('/dev/net/tun', os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack('16sH', n.encode(), IFF_TUN | IFF_NO_PI))
    return fd
host_if, ns_path, ns_if = sys.argv[1:4]
a = tun(host_if)
libc = ctypes.CDLL(None, use_errno=True)
nsfd = os.open(ns_path, os.O_RDONLY)
if libc.setns(nsfd, CLONE_NEWNET) != 0:
    raise OSError(ctypes.get_errno(), 'setns')
b = tun(ns_if)
print('READY', flush=True)
peer = {a: b, b: a}
while True:
    r, _, _ = select.select([a, b], [], [])
    for fd in r:
        try:
            os.write(peer[fd], os.read(fd, 65535))
        except OSError:
            pass
`;

/** Where UDP datagrams arrived, by token, from every agent; waited on with a bound. */
export class Arrivals {
  private readonly seen = new Map<string, string>();
  private readonly waiters = new Map<string, (where: string) => void>();

  add(token: string, where: string): void {
    if (!this.seen.has(token)) this.seen.set(token, where);
    const w = this.waiters.get(token);
    if (w) {
      this.waiters.delete(token);
      w(where);
    }
  }

  /** The first arrival of `token` ("at NAME:PORT from ADDR"), or undefined after `ms`. */
  wait(token: string, ms: number): Promise<string | undefined> {
    const got = this.seen.get(token);
    if (got !== undefined) return Promise.resolve(got);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.delete(token);
        resolve(undefined);
      }, ms);
      this.waiters.set(token, (where) => {
        clearTimeout(timer);
        resolve(where);
      });
    });
  }

  /** Every arrival of a token, for a late look (a datagram that came after its wait). */
  get(token: string): string | undefined {
    return this.seen.get(token);
  }
}

/** One agent: a namespace (null: the host itself), its served ports, its probes. */
export class Agent {
  private proc?: ChildProcess;
  private next = 0;
  private readonly pending = new Map<string, (out: string) => void>();
  private stderr = '';

  constructor(
    readonly name: string,
    readonly ns: string | null,
    private readonly script: string,
    private readonly ports: { tcp: readonly number[]; udp: readonly number[] },
    private readonly arrivals: Arrivals,
    /** serve the ports on IPv6 too (a second, v6-only socket per port) */
    private readonly v6 = false,
  ) {}

  /** Starts the agent; resolves once its servers are bound. */
  start(): Promise<void> {
    const argv = ['python3', '-u', this.script, this.name, this.ports.tcp.join(','), this.ports.udp.join(','), ...(this.v6 ? ['6'] : [])];
    const [cmd, args] = this.ns === null ? [argv[0]!, argv.slice(1)] : ['ip', ['netns', 'exec', this.ns, ...argv]];
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc = p;
    p.stderr!.on('data', (b: Buffer) => (this.stderr = (this.stderr + b.toString()).slice(-2000)));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`agent ${this.name} not ready in 10 s: ${this.stderr}`)), 10000);
      p.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`agent ${this.name} exited ${code}: ${this.stderr}`));
        for (const w of this.pending.values()) w(`agent exited ${code}`);
        this.pending.clear();
      });
      readline.createInterface({ input: p.stdout! }).on('line', (line) => {
        const [kind, a, ...rest] = line.split(' ');
        if (kind === 'READY') {
          clearTimeout(timer);
          resolve();
        } else if (kind === 'RESULT' && a) {
          const w = this.pending.get(a);
          this.pending.delete(a);
          w?.(rest.join(' '));
        } else if (kind === 'ARRIVED' && a) {
          this.arrivals.add(a, `at ${rest[0]} from ${rest[1]}`);
        }
      });
    });
  }

  /** One probe command; its outcome line. */
  command(op: 'tcp' | 'udp' | 'icmp', host: string, arg: string | number, last: string | number): Promise<string> {
    const id = `${this.name}.${this.next++}`;
    return new Promise((resolve) => {
      if (!this.proc || this.proc.exitCode !== null) {
        resolve(`agent ${this.name} not running`);
        return;
      }
      this.pending.set(id, resolve);
      this.proc.stdin!.write(`${id} ${op} ${host} ${arg} ${last}\n`);
    });
  }

  stop(): void {
    if (this.proc && this.proc.exitCode === null) this.proc.kill('SIGKILL');
    this.proc = undefined;
  }
}

/** Runs fns with at most `limit` at a time; results in order. */
export async function pool<T>(limit: number, fns: ReadonlyArray<() => Promise<T>>): Promise<T[]> {
  const out: T[] = new Array(fns.length);
  let i = 0;
  const worker = async (): Promise<void> => {
    while (i < fns.length) {
      const k = i++;
      out[k] = await fns[k]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, fns.length) }, worker));
  return out;
}

// ---------------------------------------------------------------------------
// The harness of both security matrices (matrix.test.ts for IPv4,
// matrix6.test.ts for IPv6): one topology, one way of probing, running a
// phase, comparing and printing, in either family. What a test file keeps:
// its names, subnets and ports, its config, its listed differences, and the
// checks only its family has.

export type Family = 4 | 6;
export type Proto = 'tcp' | 'udp' | 'icmp';
export type TargetKind = 'host-address' | 'loopback-any' | 'container' | 'ghost' | 'loopback-only';
export interface Target {
  name: string;
  kind: TargetKind;
  host: string;
  tcp: number;
  udp: number;
  /** ping this address too (not for 127.0.0.1 / ::1, nor twice for one address) */
  icmp: boolean;
}
export interface Cell {
  source: string;
  target: string;
  kind: TargetKind;
  proto: Proto;
  host: string;
  port: number;
}
export interface Source {
  name: string;
  agent: Agent;
}
/** A listed difference between Docker's rules and berth, with its reason. */
export interface Listed {
  match: (c: Cell) => boolean;
  reason: string;
}
export interface PhaseResult {
  out: Map<string, string>;
  drops: Map<string, string[]>;
}

/** The six /24s (IPv4: "10.x.y"; IPv6: a /64 written so that `${sub}:N` is canonical) of one matrix. */
export interface Subnets {
  A: string;
  B: string;
  UP: string;
  SIDE: string;
  VBR: string;
  L3: string;
}

export interface MatrixSpec {
  family: Family;
  /** this file's name prefix (namespaces, interfaces, temporary directory) */
  tag: string;
  pinRoot: string;
  cfg: BerthConfig;
  /** applyReference's chainSuffix: this file's own chain names */
  chainSuffix: string;
  /** the IPv4 subnets (both families: every network has IPv4) */
  SUB: Subnets;
  /** the IPv6 subnets (family 6) */
  SUB6?: Subnets;
  PUB: number;
  LOPUB: number;
  TCP: { pub: number; unpub: number };
  UDP: { pub: number; unpub: number };
  /** what flushConntrack deletes by address: `conntrack -D` argument lists before the -s/-d/--reply-* option */
  flushNets: ReadonlyArray<{ family: string[]; net: string }>;
  /** conntrack families whose entries to PUB/LOPUB are flushed */
  flushPortFamilies: ReadonlyArray<string[]>;
}

export interface MatrixNames {
  /** namespaces: the config's containers and external, the hosts on the other interfaces */
  N: Record<'web' | 'peer' | 'b1' | 'up' | 'side' | 'fb' | 'l3' | 'ghost', string>;
  /** interfaces: berth's bridges, the host's second NIC, foreign bridge and its port, tun, the ghost's veth, the uplink */
  IF: Record<'brA' | 'brB' | 'side' | 'vbr' | 'fb' | 'tun' | 'ghost' | 'up', string>;
}

/** A matrix's namespace and interface names, from its file's tag (the config names them too). */
export function matrixNames(tag: string): MatrixNames {
  const N = { web: `${tag}-web`, peer: `${tag}-peer`, b1: `${tag}-b1`, up: `${tag}-up`, side: `${tag}-side`, fb: `${tag}-fb`, l3: `${tag}-l3`, ghost: `${tag}-ghost` };
  const IF = { brA: `${tag}ba`, brB: `${tag}bb`, side: `${tag}s0`, vbr: `${tag}vbr`, fb: `${tag}f0`, tun: `${tag}t0`, ghost: `${tag}g0`, up: externalVethName(N.up) };
  return { N, IF };
}

/** The bound on every wait: an expected drop costs this once per cell (all cells of a source run at once). */
export const WAIT_S = 1.5;

/** An outcome that reached its target (anything else is a drop, a refusal or an error). */
export const reached = (o: string): boolean => /^(connected|arrived|echo reply)/.test(o);

export const keyOf = (c: Cell): string => `${c.source} -> ${c.target} ${c.proto}`;

export class Matrix {
  readonly family: Family;
  readonly pid = process.pid;
  readonly N: MatrixNames['N'];
  readonly IF: MatrixNames['IF'];
  readonly dir: string;
  readonly AGENT: string;
  readonly RELAY: string;
  readonly arrivals = new Arrivals();
  readonly agents: Agent[] = [];
  relay: ChildProcess | undefined;
  undo: (() => Promise<void>) | null = null;
  private icmpIdent: number;

  constructor(readonly spec: MatrixSpec) {
    const { tag } = spec;
    this.family = spec.family;
    ({ N: this.N, IF: this.IF } = matrixNames(tag));
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${tag}-`));
    this.AGENT = path.join(this.dir, 'agent.py');
    this.RELAY = path.join(this.dir, 'relay.py');
    this.writeScripts();
    this.icmpIdent = (this.pid * 131) % 60000;
  }

  private writeScripts(): void {
    fs.mkdirSync(this.dir, { recursive: true });
    fs.writeFileSync(this.AGENT, AGENT_PY);
    fs.writeFileSync(this.RELAY, RELAY_PY);
  }

  /** The v6 subnets (family 6 only). */
  private get sub6(): Subnets {
    if (!this.spec.SUB6) throw new Error('matrix: family 6 needs SUB6');
    return this.spec.SUB6;
  }

  /** Everything this file made, gone (also after a failure). */
  async cleanup(): Promise<void> {
    const { cfg, pinRoot } = this.spec;
    for (const a of this.agents) a.stop();
    if (this.relay && this.relay.exitCode === null) this.relay.kill('SIGKILL');
    if (this.undo) await this.undo().catch((e: Error) => console.error(e.message));
    await standalone.down(cfg, { pinRoot }).catch(() => undefined);
    try {
      Dataplane.reset(pinRoot);
    } catch {
      /* nothing pinned */
    }
    await topology.down(cfg).catch(() => undefined);
    removeNetns(Object.values(this.N));
    const IF = this.IF;
    for (const l of [IF.side, IF.fb, IF.vbr, IF.tun, IF.ghost, IF.brA, IF.brB, IF.up, ...cfg.containers.map((c) => hostVethName(c.name))]) sh('ip', ['link', 'del', l]);
    await this.flushConntrack();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** The kernel's conntrack entries of this file's addresses and ports (between the phases, and at the end). */
  async flushConntrack(): Promise<void> {
    const { flushNets, flushPortFamilies, PUB, LOPUB } = this.spec;
    const jobs: string[][] = [];
    for (const opt of ['-s', '-d', '--reply-src', '--reply-dst']) for (const { family, net } of flushNets) jobs.push(['-D', ...family, opt, net]);
    for (const f of flushPortFamilies) for (const proto of ['tcp', 'udp']) for (const port of [PUB, LOPUB]) jobs.push(['-D', ...f, '-p', proto, '--orig-port-dst', String(port)]);
    await Promise.all(jobs.map((j) => run('conntrack', j, { timeoutMs: 10000 }).catch(() => undefined)));
  }

  /** Docker's forwarding is machine-wide: this file's interfaces forward in both phases (IPv6: force_forwarding, Linux 6.17+). */
  private forwarding(i: string): void {
    if (this.family === 4) fs.writeFileSync(`/proc/sys/net/ipv4/conf/${i}/forwarding`, '1');
    else fs.writeFileSync(`/proc/sys/net/ipv6/conf/${i}/force_forwarding`, '1');
  }

  /** A namespace behind a veth whose host side is `hostIf` (or a port of `master`). */
  private async vethHost(ns: string, hostIf: string, sub: string, master?: string): Promise<void> {
    await ip('netns', 'add', ns);
    await ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    if (master) await ip('link', 'set', hostIf, 'master', master, 'up');
    else {
      await ip('addr', 'add', `${sub}.1/24`, 'dev', hostIf);
      await ip('link', 'set', hostIf, 'up');
    }
    await ip('-n', ns, 'addr', 'add', `${sub}.${master === this.IF.brA ? 99 : 2}/24`, 'dev', 'eth0');
    await ip('-n', ns, 'link', 'set', 'eth0', 'up');
    await ip('-n', ns, 'link', 'set', 'lo', 'up');
    await ip('-n', ns, 'route', 'add', 'default', 'via', `${sub}.1`);
  }

  /** The same namespace's IPv6 side: `sub6` its /64 (host end ::1 unless on a bridge), itself ::2 (::99 on brA). */
  private async vethHost6(ns: string, hostIf: string, sub6: string, master?: string): Promise<void> {
    if (!master) {
      v6on(hostIf);
      await ip('-6', 'addr', 'add', `${sub6}:1/64`, 'dev', hostIf, 'nodad');
    }
    await nsV6on(ns, 'eth0');
    await ip('-n', ns, '-6', 'addr', 'add', `${sub6}:${master === this.IF.brA ? 99 : 2}/64`, 'dev', 'eth0', 'nodad');
    await ip('-n', ns, '-6', 'route', 'add', 'default', 'via', `${sub6}:1`, 'dev', 'eth0');
  }

  /** Both families' sides of a veth host (IPv6 in family 6). */
  private async host(ns: string, hostIf: string, sub: keyof Subnets, master?: string): Promise<void> {
    await this.vethHost(ns, hostIf, this.spec.SUB[sub], master);
    if (this.family === 6) await this.vethHost6(ns, hostIf, this.sub6[sub], master);
  }

  /** Can this kernel make an L3 device here, without loadable modules? The reason when not. */
  private async l3Available(): Promise<string | null> {
    if (!fs.existsSync('/dev/net/tun')) {
      const probe = `${this.spec.tag}-probe`;
      const tried: string[] = ['tun: no /dev/net/tun'];
      await ip('netns', 'add', probe).catch(() => undefined);
      for (const kind of ['ipip', 'gre']) {
        const err = await run('ip', ['-n', probe, 'link', 'add', `${this.spec.tag}x`, 'type', kind, 'local', '192.0.2.1', 'remote', '192.0.2.2']).then(
          () => null,
          (e: Error) => e.message.split('\n')[0],
        );
        tried.push(err ? `${kind}: ${err}` : `${kind}: available, but this suite drives its L3 host through tun only`);
      }
      sh('ip', ['netns', 'del', probe]);
      return tried.join('; ');
    }
    return null;
  }

  /**
   * Outside sources (and containers) send to the loopback address through
   * the host, for the published ports only (their own loopback keeps
   * working): policy rules ahead of the local table. IPv4: and
   * route_localnet on the way out. IPv6 has no route_localnet: whether the
   * packet leaves at all is the namespace kernel's business, and both phases
   * see the same.
   */
  private async loopbackViaHost(ns: string, dev: string, gw: string | null): Promise<void> {
    const { PUB, LOPUB } = this.spec;
    const fam = this.family === 6 ? ['-6'] : [];
    const lo = this.family === 6 ? '::1/128' : '127.0.0.1/32';
    await ip('-n', ns, ...fam, 'rule', 'add', 'pref', '100', 'lookup', 'local');
    await ip('-n', ns, ...fam, 'rule', 'del', 'pref', '0');
    await ip('-n', ns, ...fam, 'route', 'add', 'default', ...(gw ? ['via', gw] : []), 'dev', dev, 'table', '200');
    for (const proto of ['tcp', 'udp']) for (const port of [PUB, LOPUB]) await ip('-n', ns, ...fam, 'rule', 'add', 'pref', '50', 'to', lo, 'ipproto', proto, 'dport', String(port), 'lookup', '200');
    if (this.family === 4) await run('ip', ['netns', 'exec', ns, 'sh', '-c', `echo 1 > /proc/sys/net/ipv4/conf/${dev}/route_localnet`]);
  }

  /** The address `n` of subnet `s` in this file's family (IPv4 "10.x.y.n", IPv6 "fd..::n"). */
  addr(s: keyof Subnets, n: number): string {
    return this.family === 6 ? `${this.sub6[s]}:${n}` : `${this.spec.SUB[s]}.${n}`;
  }

  targets(haveL3: boolean): Target[] {
    const { PUB, LOPUB, TCP, UDP } = this.spec;
    const v6 = this.family === 6;
    const gw = v6 ? 'gateway6' : 'gateway';
    const hostAddrs: Array<[string, string]> = [
      ['uplink', this.addr('UP', 1)],
      ['side NIC', this.addr('SIDE', 1)],
      ['foreign bridge', this.addr('VBR', 1)],
      ...(haveL3 ? ([['tun', this.addr('L3', 1)]] as Array<[string, string]>) : []),
      [`${gw} A`, this.addr('A', 1)],
      [`${gw} B`, this.addr('B', 1)],
    ];
    const lo = v6 ? '::1' : '127.0.0.1';
    const loName = v6 ? '[::1]' : '127.0.0.1';
    const web = v6 ? 'web6' : 'web';
    const ghost = v6 ? 'ghost6' : 'ghost';
    return [
      ...hostAddrs.map(([n, a]): Target => ({ name: v6 ? `${n} [${a}]:PUB` : `${n} ${a}:PUB`, kind: 'host-address', host: a, tcp: PUB, udp: PUB, icmp: true })),
      { name: `${loName}:PUB (published on every address)`, kind: 'loopback-any', host: lo, tcp: PUB, udp: PUB, icmp: false },
      { name: `${web}, published port`, kind: 'container', host: this.addr('A', 10), tcp: TCP.pub, udp: UDP.pub, icmp: true },
      { name: `${web}, unpublished port`, kind: 'container', host: this.addr('A', 10), tcp: TCP.unpub, udp: UDP.unpub, icmp: false },
      { name: `${ghost} (unknown container)`, kind: 'ghost', host: this.addr('A', 99), tcp: TCP.pub, udp: UDP.pub, icmp: true },
      { name: `${loName}:LOPUB (loopback-only publish)`, kind: 'loopback-only', host: lo, tcp: LOPUB, udp: LOPUB, icmp: false },
    ];
  }

  static cellsOf(sources: readonly Source[], ts: readonly Target[]): Cell[] {
    const out: Cell[] = [];
    for (const s of sources)
      for (const tg of ts) {
        const base = { source: s.name, target: tg.name, kind: tg.kind, host: tg.host };
        out.push({ ...base, proto: 'tcp', port: tg.tcp });
        out.push({ ...base, proto: 'udp', port: tg.udp });
        if (tg.icmp) out.push({ ...base, proto: 'icmp', port: 0 });
      }
    return out;
  }

  private token(phase: string, i: number): string {
    return `${this.family === 6 ? '6' : ''}${phase}${i}x${this.pid}`;
  }

  /** One cell through a source's agent: its outcome. */
  async probe(agent: Agent, c: Cell, phase: string, i: number): Promise<string> {
    if (c.proto === 'tcp') return agent.command('tcp', c.host, c.port, WAIT_S);
    if (c.proto === 'icmp') return agent.command('icmp', c.host, 1 + (this.icmpIdent++ % 65000), WAIT_S);
    const token = this.token(phase, i);
    const sent = await agent.command('udp', c.host, c.port, token);
    if (sent !== 'sent') return sent;
    const where = await this.arrivals.wait(token, WAIT_S * 1000);
    return where ? `arrived ${where}` : 'never arrived';
  }

  /** Every cell, one source at a time, that source's cells all at once; with berth's drop counters per source. */
  async runPhase(phase: string, sources: readonly Source[], cells: readonly Cell[], dp?: Dataplane): Promise<PhaseResult> {
    const out = new Map<string, string>();
    const drops = new Map<string, string[]>();
    for (const s of sources) {
      const mine = cells.map((c, i) => ({ c, i })).filter(({ c }) => c.source === s.name);
      const before = dp ? await dropRows(dp) : undefined;
      const got = await pool(64, mine.map(({ c, i }) => () => this.probe(s.agent, c, phase, i)));
      mine.forEach(({ c }, k) => out.set(keyOf(c), got[k]!));
      if (dp && before) drops.set(s.name, grown(before, await dropRows(dp)));
    }
    // a datagram that came after its wait is no drop: say so (it would show as a difference)
    cells.forEach((c, i) => {
      const late = this.arrivals.get(this.token(phase, i));
      if (c.proto === 'udp' && late && out.get(keyOf(c)) === 'never arrived') out.set(keyOf(c), `arrived late ${late}`);
    });
    return { out, drops };
  }

  /** An outcome with addresses by the name of who has them, for a readable table. */
  pretty(o: string): string {
    const v6 = this.family === 6;
    const gw = v6 ? 'gateway6' : 'gateway';
    const names: Array<[string, string]> = [
      [this.addr('UP', 2), 'uplink host'],
      [this.addr('SIDE', 2), 'side host'],
      [this.addr('VBR', 2), 'vbr host'],
      [this.addr('L3', 2), 'tun host'],
      [this.addr('A', 11), 'peer'],
      [this.addr('B', 10), 'b1'],
      [this.addr('A', 1), `${gw} A`],
      [this.addr('B', 1), `${gw} B`],
    ];
    const named = v6
      ? names.reduce((s, [a, n]) => s.split(` ${a}`).join(` ${n}`), o)
      : names.reduce((s, [a, n]) => s.replace(new RegExp(`\\b${a.replace(/\./g, '\\.')}\\b`, 'g'), n), o);
    return named.replace(/^connected: (\S+) sees (.+)$/, '$1 sees $2').replace(/^arrived at (\S+) from (.+)$/, '$1 from $2');
  }

  /**
   * The topology, once: berth's namespaces (topology.up, which gives them
   * their v6 side in family 6), the host's other interfaces (second NIC,
   * foreign bridge and its host, the ghost on berth's bridge, the tun host
   * where the kernel has tun), forwarding, the loopback routes; then the
   * agents: servers in web and ghost, probers in every source. `beforeAgents`
   * runs between the two (a family's own checks of the topology).
   */
  async setup(t: Test, beforeAgents?: () => Promise<void>): Promise<{ noL3: string | null; sources: Source[]; ts: Target[]; cells: Cell[] }> {
    const { cfg, SUB } = this.spec;
    const { N, IF } = this;
    const v6 = this.family === 6;
    await this.cleanup().catch(() => undefined);
    this.writeScripts();
    const noL3 = await this.l3Available();

    await topology.up(cfg, { startCommands: false });
    await this.host(N.side, IF.side, 'SIDE');
    await ip('link', 'add', IF.vbr, 'type', 'bridge');
    if (v6) v6on(IF.vbr);
    await ip('addr', 'add', `${SUB.VBR}.1/24`, 'dev', IF.vbr);
    if (v6) await ip('-6', 'addr', 'add', `${this.sub6.VBR}:1/64`, 'dev', IF.vbr, 'nodad');
    await ip('link', 'set', IF.vbr, 'up');
    await this.host(N.fb, IF.fb, 'VBR', IF.vbr);
    await this.host(N.ghost, IF.ghost, 'A', IF.brA);
    if (!noL3) {
      // the tun host speaks this file's family only
      const fam = v6 ? ['-6'] : [];
      const len = v6 ? 64 : 24;
      await ip('netns', 'add', N.l3);
      await ip('tuntap', 'add', 'dev', IF.tun, 'mode', 'tun');
      await ip('-n', N.l3, 'tuntap', 'add', 'dev', 'tun0', 'mode', 'tun');
      if (v6) {
        v6on(IF.tun);
        await nsV6on(N.l3, 'tun0');
      }
      await ip(...fam, 'addr', 'add', `${this.addr('L3', 1)}/${len}`, 'dev', IF.tun, ...(v6 ? ['nodad'] : []));
      await ip('link', 'set', IF.tun, 'up');
      await ip('-n', N.l3, ...fam, 'addr', 'add', `${this.addr('L3', 2)}/${len}`, 'dev', 'tun0', ...(v6 ? ['nodad'] : []));
      await ip('-n', N.l3, 'link', 'set', 'tun0', 'up');
      await ip('-n', N.l3, 'link', 'set', 'lo', 'up');
      await ip('-n', N.l3, ...fam, 'route', 'add', 'default', 'dev', 'tun0');
      const relay = spawn('python3', ['-u', this.RELAY, IF.tun, `/run/netns/${N.l3}`, 'tun0'], { stdio: ['ignore', 'pipe', 'pipe'] });
      this.relay = relay;
      await new Promise<void>((resolve, reject) => {
        relay.stdout!.once('data', () => resolve());
        relay.once('exit', (code) => reject(new Error(`tun relay exited ${code}`)));
      });
    } else t.comment(`L3 source skipped: ${noL3}`);
    for (const i of [IF.side, IF.vbr, IF.brA, IF.brB, IF.up, ...(noL3 ? [] : [IF.tun])]) this.forwarding(i);
    // the outside hosts and the containers send to the loopback address's PUB/LOPUB through the host
    await this.loopbackViaHost(N.up, 'eth0', this.addr('UP', 1));
    await this.loopbackViaHost(N.side, 'eth0', this.addr('SIDE', 1));
    await this.loopbackViaHost(N.fb, 'eth0', this.addr('VBR', 1));
    if (!noL3) await this.loopbackViaHost(N.l3, 'tun0', null);
    await this.loopbackViaHost(N.peer, 'eth0', this.addr('A', 1));
    await this.loopbackViaHost(N.b1, 'eth0', this.addr('B', 1));
    if (beforeAgents) await beforeAgents();

    const { TCP, UDP } = this.spec;
    const mk = (name: string, ns: string | null, ports = { tcp: [] as number[], udp: [] as number[] }): Agent => {
      const a = new Agent(name, ns, this.AGENT, ports, this.arrivals, v6);
      this.agents.push(a);
      return a;
    };
    const web = mk('web', N.web, { tcp: [TCP.pub, TCP.unpub], udp: [UDP.pub, UDP.unpub] });
    const ghost = mk('ghost', N.ghost, { tcp: [TCP.pub], udp: [UDP.pub] });
    const sources: Source[] = [
      { name: 'uplink', agent: mk('uplink', N.up) },
      { name: 'side NIC', agent: mk('side', N.side) },
      { name: 'foreign bridge', agent: mk('vbr', N.fb) },
      ...(noL3 ? [] : [{ name: 'L3 (tun)', agent: mk('tun', N.l3) }]),
      { name: 'host', agent: mk('host', null) },
      { name: 'same network', agent: mk('peer', N.peer) },
      { name: 'other network', agent: mk('b1', N.b1) },
    ];
    await Promise.all(this.agents.map((a) => a.start()));
    const ts = this.targets(!noL3);
    const cells = Matrix.cellsOf(sources, ts);
    t.same(cells.map(keyOf).filter((k, i, a) => a.indexOf(k) !== i), [], 'cell names are unique');
    // the servers answer from inside their own namespaces before anything is compared
    const lo = v6 ? '::1' : '127.0.0.1';
    for (const [a, port] of [[web, TCP.pub], [web, TCP.unpub], [ghost, TCP.pub]] as const)
      t.match(await a.command('tcp', lo, port, 5), /^connected: /, `${a.name} serves ${port}${v6 ? ' on [::1]' : ''} (from inside)`);
    return { noL3, sources, ts, cells };
  }

  /** Phase A: Docker 29's rules (test/lib/reference.ts, both families' from the config), berth absent; `check` runs while they are in place. */
  async phaseA(t: Test, sources: readonly Source[], cells: readonly Cell[], hostInterfaces: NonNullable<ReferenceOptions['hostInterfaces']>, check?: () => Promise<void>): Promise<{ ref: Map<string, string>; ms: number }> {
    const { cfg, pinRoot } = this.spec;
    t.notOk(Dataplane.isPinned(pinRoot), 'phase A: berth not loaded');
    this.undo = await applyReference(cfg, { uplinks: [this.IF.up], chainSuffix: this.spec.chainSuffix, hostInterfaces });
    if (check) await check();
    const start = Date.now();
    const ref = (await this.runPhase('a', sources, cells)).out;
    const ms = Date.now() - start;
    const u = this.undo;
    this.undo = null;
    await u();
    await this.flushConntrack();
    return { ref, ms };
  }

  /** Phase B: berth, no iptables rule of ours; `check` runs once berth is up. */
  async phaseB(t: Test, sources: readonly Source[], cells: readonly Cell[], check?: (dp: Dataplane) => Promise<void>): Promise<{ dp: Dataplane; b: PhaseResult; ms: number }> {
    const { cfg, pinRoot } = this.spec;
    await standalone.up(cfg, { pinRoot, startCommands: false });
    const dp = Dataplane.openPinned(pinRoot);
    t.teardown(() => dp.close());
    if (check) await check(dp);
    const start = Date.now();
    const b = await this.runPhase('b', sources, cells, dp);
    return { dp, b, ms: Date.now() - start };
  }

  /**
   * Cell for cell: alike, or listed (berth the stricter: Docker reached, berth
   * did not; berth answers: the other way round), every listed difference
   * still showing, and no drop reason of `never` grown; then the table.
   */
  compare(
    t: Test,
    run: { sources: readonly Source[]; ts: readonly Target[]; cells: readonly Cell[]; ref: Map<string, string>; b: PhaseResult; msA: number; msB: number },
    lists: { stricter: readonly Listed[]; answers?: readonly Listed[]; never: readonly string[] },
  ): void {
    const { sources, ts, cells, ref, b, msA, msB } = run;
    const out = b.out;
    const answersList = lists.answers ?? [];
    const stricter = (c: Cell): string | undefined => lists.stricter.find((d) => d.match(c))?.reason;
    const answers = (c: Cell): string | undefined => answersList.find((d) => d.match(c))?.reason;
    let same = 0;
    let nStricter = 0;
    let nAnswers = 0;
    for (const c of cells) {
      const a = ref.get(keyOf(c))!;
      const o = out.get(keyOf(c))!;
      if (a === o) {
        same++;
        t.pass(`${keyOf(c)}: ${a}`);
      } else if (stricter(c)) {
        nStricter++;
        t.ok(reached(a) && !reached(o), `${keyOf(c)}: Docker ${a}, berth ${o} — listed difference, berth is the stricter (${stricter(c)})`);
      } else if (answers(c)) {
        nAnswers++;
        t.ok(!reached(a) && reached(o), `${keyOf(c)}: Docker ${a}, berth ${o} — listed, berth answers as docker-proxy would (${answers(c)})`);
      } else {
        t.equal(o, a, `${keyOf(c)}: berth matches the reference`);
      }
    }
    const listed = [...lists.stricter, ...answersList];
    for (const d of listed) t.ok(cells.some((c) => d.match(c) && ref.get(keyOf(c)) !== out.get(keyOf(c))), `listed difference still shows: ${d.reason.slice(0, 60)}...`);
    for (const [s, grew] of b.drops) {
      const bad = grew.filter((g) => lists.never.includes(g.split('@')[0]!));
      t.same(bad, [], `berth drops from ${s}: ${grew.join(', ') || 'none'}`);
    }

    // ---- the table
    const v6 = this.family === 6;
    const protos: Proto[] = ['tcp', 'udp', 'icmp'];
    const cellText = (c: Cell | undefined): string => {
      if (!c) return '-';
      const a = this.pretty(ref.get(keyOf(c))!);
      const o = this.pretty(out.get(keyOf(c))!);
      return a === o ? a : `Docker: ${a} / berth: ${o}${stricter(c) || answers(c) ? ' (listed)' : ' <-- DIFFERS'}`;
    };
    const rows = sources.flatMap((s) => ts.map((tg) => [s.name, tg.name, ...protos.map((p) => cellText(cells.find((c) => c.source === s.name && c.target === tg.name && c.proto === p)))]));
    const icmp = v6 ? 'ICMPv6' : 'ICMP';
    const head = ['source', 'target', 'TCP connect', 'UDP arrival', `${icmp} echo`];
    const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    t.comment(`${v6 ? 'v6 matrix' : 'matrix'}: ${cells.length} cells (${sources.length} sources × ${ts.length} targets × TCP/UDP, ${icmp} where the target has an address of its own), PUB=${this.spec.PUB} LOPUB=${this.spec.LOPUB}`);
    t.comment(`${same} cells alike, ${nStricter + nAnswers} listed differences (${nStricter} berth stricter, ${nAnswers} berth answers); Docker's rules ${(msA / 1000).toFixed(1)} s, berth ${(msB / 1000).toFixed(1)} s`);
    t.comment(head.map((h, i) => h.padEnd(w[i]!)).join(' | '));
    for (const r of rows) t.comment(r.map((x, i) => x.padEnd(w[i]!)).join(' | '));
    for (const d of listed) t.comment(`listed: ${d.reason}`);
    for (const [s, grew] of b.drops) t.comment(`berth drops from ${s}: ${grew.join(', ') || 'none'}`);
  }
}

const ip = (...args: string[]): Promise<unknown> => run('ip', args);
const v6on = (i: string): void => fs.writeFileSync(`/proc/sys/net/ipv6/conf/${i}/disable_ipv6`, '0');
const nsV6on = (ns: string, dev: string): Promise<unknown> =>
  run('ip', ['netns', 'exec', ns, 'sh', '-c', `for c in all default ${dev}; do echo 0 > /proc/sys/net/ipv6/conf/$c/disable_ipv6; done`]);

async function dropRows(dp: Dataplane): Promise<Map<string, bigint>> {
  const m = new Map<string, bigint>();
  for (const row of await readCounters(dp))
    for (const [r, pb] of Object.entries(row.drop)) if (pb.packets > 0n) m.set(`${r}@${row.container || row.interface}`, (m.get(`${r}@${row.container || row.interface}`) ?? 0n) + pb.packets);
  return m;
}

function grown(before: Map<string, bigint>, after: Map<string, bigint>): string[] {
  return [...after].filter(([k, v]) => v > (before.get(k) ?? 0n)).map(([k, v]) => `${k}+${v - (before.get(k) ?? 0n)}`);
}
