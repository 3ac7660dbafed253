/**
 * The control-plane suite's prober: one long-lived Python process inside the
 * outside namespace, driven over stdin/stdout (one JSON line each way), so a
 * probe costs no process start. Times are CLOCK_MONOTONIC nanoseconds, the
 * clock of both Python's time.monotonic_ns() and Node's process.hrtime, so the
 * caller subtracts them from its own readings (the moment `docker run`
 * returned).
 *
 * - first: a new HTTP attempt every `everyMs` until one is answered; each
 *   attempt gives up after `attemptMs` (before berth has a port, a connection
 *   lands on dockerd's port reservation: the kernel completes the handshake and
 *   nobody answers, so only a fresh attempt can see the port once programmed).
 *   Returns when the first answer arrived.
 * - all: every port of a list answered once (one attempt per port in flight,
 *   at most 512 at once, each given 200 ms, retried until the deadline: the
 *   figure's resolution is a few hundred ms at 1,000 ports).
 * - gone: attempts until one is refused (the port is no longer published).
 *
 * Every command is bounded by its own deadline; close() kills the process.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';

const PROBER_PY = String.raw`
import errno, json, selectors, socket, struct, sys, time

REQ = b'GET / HTTP/1.0\r\nHost: x\r\n\r\n'
LINGER0 = struct.pack('ii', 1, 0)

def now():
    return time.monotonic_ns()

class Attempt:
    def __init__(self, sel, host, port, key):
        self.key = key
        self.t0 = now()
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.s.setblocking(False)
        # RST on close: thousands of attempts leave no TIME_WAIT behind
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
        self.sent = False
        self.sel = sel
        e = self.s.connect_ex((host, port))
        if e not in (0, errno.EINPROGRESS):
            self.err = e
        else:
            self.err = None
        sel.register(self.s, selectors.EVENT_WRITE, self)

    def close(self):
        try:
            self.sel.unregister(self.s)
        except Exception:
            pass
        self.s.close()

    def step(self):
        """None: still going; 'answer' or an errno name: done."""
        if not self.sent:
            e = self.s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if e:
                return errno.errorcode.get(e, str(e))
            try:
                self.s.send(REQ)
            except OSError as x:
                return errno.errorcode.get(x.errno, str(x.errno))
            self.sent = True
            self.sel.modify(self.s, selectors.EVENT_READ, self)
            return None
        try:
            d = self.s.recv(4096)
        except OSError as x:
            return errno.errorcode.get(x.errno, str(x.errno))
        return 'answer' if d else 'EOF'

def run(cmd):
    host = cmd['host']
    deadline = now() + int(cmd['timeoutMs'] * 1e6)
    attempt_ns = int(cmd.get('attemptMs', 500) * 1e6)
    every_ns = int(cmd.get('everyMs', 10) * 1e6)
    inflight = int(cmd.get('inflight', 64))
    kind = cmd['kind']
    ports = cmd['ports']
    sel = selectors.DefaultSelector()
    live = {}
    todo = list(ports)
    done = {}
    attempts = 0
    outcomes = {}
    last_start = 0
    result = None
    try:
        while now() < deadline and result is None:
            t = now()
            # start attempts
            if kind == 'all':
                while todo and len(live) < inflight:
                    p = todo.pop(0)
                    a = Attempt(sel, host, p, p)
                    attempts += 1
                    live[id(a)] = a
            elif len(live) < inflight and t - last_start >= every_ns:
                a = Attempt(sel, host, ports[0], ports[0])
                attempts += 1
                last_start = t
                live[id(a)] = a
            wait = every_ns / 1e9 if kind != 'all' else 0.02
            for key, _ in sel.select(timeout=wait):
                a = key.data
                r = a.step()
                if r is None:
                    continue
                a.close()
                live.pop(id(a), None)
                outcomes[r] = outcomes.get(r, 0) + 1
                if kind == 'first' and r == 'answer':
                    result = {'ok': True, 't': now(), 'started': a.t0}
                    break
                if kind == 'gone' and r == 'ECONNREFUSED':
                    result = {'ok': True, 't': now()}
                    break
                if kind == 'all':
                    if r == 'answer':
                        done[a.key] = now()
                        if len(done) == len(ports):
                            result = {'ok': True, 't': max(done.values())}
                            break
                    else:
                        todo.append(a.key)
            for a in list(live.values()):
                if now() - a.t0 > attempt_ns or a.err:
                    k = 'timeout' if not a.err else errno.errorcode.get(a.err, str(a.err))
                    outcomes[k] = outcomes.get(k, 0) + 1
                    a.close()
                    live.pop(id(a), None)
                    if kind == 'all':
                        todo.append(a.key)
    finally:
        for a in list(live.values()):
            a.close()
        sel.close()
    if result is None:
        result = {'ok': False}
        if kind == 'all':
            result['answered'] = len(done)
    result['attempts'] = attempts
    result['outcomes'] = outcomes
    return result

for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    try:
        out = run(json.loads(line))
    except Exception as e:
        out = {'ok': False, 'error': repr(e)}
    sys.stdout.write(json.dumps(out) + '\n')
    sys.stdout.flush()
`;

export interface ProbeResult {
  ok: boolean;
  /** CLOCK_MONOTONIC ns of the answer (first), of the last port's answer (all), of the refusal (gone) */
  t?: number;
  /** first: when the answered attempt started */
  started?: number;
  answered?: number;
  attempts: number;
  outcomes: Record<string, number>;
  error?: string;
}

export class Prober {
  private proc: ChildProcess;
  private pending: Array<(r: ProbeResult) => void> = [];
  private err = '';

  private constructor(ns: string, script: string) {
    this.proc = spawn('ip', ['netns', 'exec', ns, 'python3', '-u', script], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stderr!.on('data', (d: Buffer) => (this.err = (this.err + d.toString()).slice(-2000)));
    createInterface({ input: this.proc.stdout! }).on('line', (l) => {
      const cb = this.pending.shift();
      if (cb) cb(JSON.parse(l) as ProbeResult);
    });
    this.proc.on('exit', () => {
      for (const cb of this.pending.splice(0)) cb({ ok: false, attempts: 0, outcomes: {}, error: `prober exited: ${this.err.trim()}` });
    });
  }

  /** The prober in namespace `ns` (its script written into `dir`). */
  static start(ns: string, dir: string): Prober {
    const script = path.join(dir, 'cpprober.py');
    fs.writeFileSync(script, PROBER_PY);
    return new Prober(ns, script);
  }

  private cmd(c: Record<string, unknown>): Promise<ProbeResult> {
    if (this.proc.exitCode !== null) return Promise.resolve({ ok: false, attempts: 0, outcomes: {}, error: `prober exited: ${this.err.trim()}` });
    return new Promise((resolve) => {
      this.pending.push(resolve);
      this.proc.stdin!.write(JSON.stringify(c) + '\n');
    });
  }

  /** The first answer from host:port (an attempt every everyMs, each given attemptMs). */
  first(host: string, port: number, timeoutMs: number, o: { everyMs?: number; attemptMs?: number } = {}): Promise<ProbeResult> {
    return this.cmd({ kind: 'first', host, ports: [port], timeoutMs, everyMs: o.everyMs ?? 10, attemptMs: o.attemptMs ?? 500, inflight: 100 });
  }

  /** Every port answered once. */
  all(host: string, ports: number[], timeoutMs: number): Promise<ProbeResult> {
    if (!ports.length) return Promise.resolve({ ok: true, t: monoNs(), attempts: 0, outcomes: {}, answered: 0 });
    return this.cmd({ kind: 'all', host, ports, timeoutMs, attemptMs: 200, inflight: 512 });
  }

  /** Until a connection to host:port is refused. */
  gone(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
    return this.cmd({ kind: 'gone', host, ports: [port], timeoutMs, everyMs: 20, attemptMs: 300, inflight: 20 });
  }

  close(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
  }
}

/** CLOCK_MONOTONIC now, in ns (the prober's clock). */
export const monoNs = (): number => Number(process.hrtime.bigint());
