/**
 * The machinery of the security matrix (test/integration/matrix.test.ts):
 * one long-lived Python agent per namespace that serves the target ports and
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
import * as readline from 'node:readline';

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
