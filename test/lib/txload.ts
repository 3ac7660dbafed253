// Transactions under load for the lifecycle tests: a loader in a namespace does one transaction
// at a time with no retry (a transaction without its answer within the timeout fails), rewrites
// its progress file (ok failed) after each, and stops at the stop file, its duration or its count.
//   udp   a datagram with a sequence number; the answer must echo it (a connected socket: the
//         answer must come from the address and port asked)
//   tcp   a NEW connection per transaction: send, the echo must come back, close
//   http  a NEW connection per transaction: GET /, the answer must be an HTTP 200
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { waitFor } from './dockerd';

const LOADER_PY = `
import json, os, socket, sys, time
proto, host, port, dur, maxn, gap, tmo, prog, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]), sys.argv[8], sys.argv[9]
ok = 0; failed = []; end = time.time() + dur; seq = 0
u = None
if proto == 'udp':
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(tmo); u.connect((host, port))
while time.time() < end and seq < maxn and not os.path.exists(stop):
    seq += 1
    msg = ('%s-%d' % (proto, seq)).encode()
    try:
        if u is not None:
            u.send(msg)
            while True:
                d = u.recv(2048)
                if d == msg: break
        elif proto == 'tcp':
            c = socket.create_connection((host, port), timeout=tmo); c.settimeout(tmo)
            c.sendall(msg); d = c.recv(2048); c.close()
            if d != msg: raise OSError('wrong answer %r' % d)
        else:
            c = socket.create_connection((host, port), timeout=tmo); c.settimeout(tmo)
            c.sendall(b'GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n'); d = b''
            while True:
                x = c.recv(4096)
                if not x: break
                d += x
            c.close()
            if not d.startswith(b'HTTP/1.') or b' 200 ' not in d.split(b'\\r\\n', 1)[0]: raise OSError('wrong answer %r' % d[:60])
        ok += 1
    except Exception as e:
        failed.append([seq, str(e)])
    with open(prog + '.tmp', 'w') as f: f.write('%d %d' % (ok, len(failed)))
    os.rename(prog + '.tmp', prog)
    time.sleep(gap)
print(json.dumps({'ok': ok, 'failed': failed}))
`;

export interface LoadResult {
  ok: number;
  failed: Array<[number, string]>;
}

export interface Loader {
  name: string;
  proc: ChildProcess;
  progress: string;
  result: Promise<LoadResult>;
}

export interface LoadOptions {
  /** seconds at most (a loader stops earlier at the stop file) */
  durationS: number;
  maxTx: number;
  gapS: number;
  timeoutS: number;
}

/** The loaders of one test: their script and stop file in `dir`. */
export class TxLoad {
  readonly script: string;
  readonly stopFile: string;
  readonly loaders: Loader[] = [];

  constructor(readonly dir: string, readonly opts: LoadOptions) {
    this.script = path.join(dir, 'loader.py');
    this.stopFile = path.join(dir, 'stop-load');
    fs.writeFileSync(this.script, LOADER_PY);
  }

  /** True when one transaction from `ns` is answered (for readiness before the load; the caller retries). */
  probe(ns: string, proto: 'udp' | 'tcp' | 'http', host: string, port: number): boolean {
    const progress = path.join(this.dir, 'probe.progress');
    fs.rmSync(progress, { force: true });
    // its own stop file, never made: a probe after finish() still runs
    spawnSync('ip', ['netns', 'exec', ns, 'python3', this.script, proto, host, String(port), '5', '1', '0', '0.5', progress, path.join(this.dir, 'probe.never')], { timeout: 10000, stdio: 'ignore' });
    try {
      return fs.readFileSync(progress, 'utf8') === '1 0';
    } catch {
      return false;
    }
  }

  start(name: string, ns: string, proto: 'udp' | 'tcp' | 'http', host: string, port: number): Loader {
    const progress = path.join(this.dir, `${name}.progress`);
    const o = this.opts;
    const proc = spawn('ip', ['netns', 'exec', ns, 'python3', this.script, proto, host, String(port), String(o.durationS), String(o.maxTx), String(o.gapS), String(o.timeoutS), progress, this.stopFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    proc.stdout!.on('data', (d) => (out += d));
    const result = new Promise<LoadResult>((resolve, reject) =>
      proc.on('exit', (code) => {
        try {
          resolve(JSON.parse(out.trim().split('\n').pop() ?? ''));
        } catch {
          reject(new Error(`loader ${name} exited ${code} without a result: ${out}`));
        }
      }),
    );
    const l = { name, proc, progress, result };
    this.loaders.push(l);
    return l;
  }

  static done(l: Loader): number {
    try {
      const [ok, failed] = fs.readFileSync(l.progress, 'utf8').split(' ').map(Number);
      return ok! + failed!;
    } catch {
      return 0;
    }
  }

  /** Wait until every loader has finished `n` more transactions (the traffic crossed the step). */
  async more(n: number, timeoutMs = 60000): Promise<void> {
    const from = this.loaders.map(TxLoad.done);
    if (!(await waitFor(() => this.loaders.every((l, i) => TxLoad.done(l) >= from[i]! + n), timeoutMs, 50)))
      throw new Error(`the loaders did not get ${n} more transactions done in ${timeoutMs} ms: ${this.loaders.map((l, i) => `${l.name} ${from[i]} -> ${TxLoad.done(l)}`).join(', ')}`);
  }

  /** Stop every loader and collect the results. */
  async finish(): Promise<LoadResult[]> {
    fs.writeFileSync(this.stopFile, '');
    return Promise.all(this.loaders.map((l) => l.result));
  }

  /** For teardowns: kill whatever still runs. */
  kill(): void {
    fs.writeFileSync(this.stopFile, '');
    for (const l of this.loaders)
      if (l.proc.pid && l.proc.exitCode === null)
        try {
          process.kill(-l.proc.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
  }
}
