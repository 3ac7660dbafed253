/**
 * What the control-plane suite reads about the daemon from outside: CPU time
 * and RSS from /proc, the event-loop delay and scrape time from /metrics, and
 * the processes it spawns (a PATH directory of small C wrappers that log each
 * call with one O_APPEND write, then exec the real program).
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { must, waitFor } from '../../test/lib/dockerd';

const CLK_TCK = 100; // sysconf(_SC_CLK_TCK) on Linux

/** User+system CPU seconds of the process itself and of its waited-for children. */
export function cpuSeconds(pid: number): { self: number; children: number } {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  // fields 14..17 (utime stime cutime cstime) are 11..14 after the state field (3)
  const n = (i: number) => Number(f[i - 3]);
  return { self: (n(14) + n(15)) / CLK_TCK, children: (n(16) + n(17)) / CLK_TCK };
}

export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** A gauge of the exposition text (first series of that name). */
export function gauge(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+|NaN)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

export interface Scrape {
  ms: number;
  bytes: number;
  text: string;
}

export async function scrape(url: string): Promise<Scrape> {
  const t0 = process.hrtime.bigint();
  const r = await fetch(url, { signal: AbortSignal.timeout(60000) });
  const text = await r.text();
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, bytes: text.length, text };
}

/**
 * The event-loop delay the daemon saw since the previous scrape: prom-client's
 * default metrics (berth_nodejs_eventloop_lag_*, perf_hooks.monitorEventLoopDelay
 * at 10 ms resolution) reset their histogram at every collect, so a scrape
 * before and one after a window give that window's p99 and max.
 */
export function eventLoop(text: string): { p99Ms: number; maxMs: number } {
  return { p99Ms: (gauge(text, 'berth_nodejs_eventloop_lag_p99_seconds') ?? NaN) * 1000, maxMs: (gauge(text, 'berth_nodejs_eventloop_lag_max_seconds') ?? NaN) * 1000 };
}

const WRAP_C = `
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
  int fd = open(LOG, O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd >= 0) {
    char b[600];
    int n = snprintf(b, 500, "%s", NAME);
    for (int i = 1; i < argc && n < 480; i++) n += snprintf(b + n, 500 - n, " %s", argv[i]);
    if (n > 498) n = 498;
    b[n++] = '\\n';
    if (write(fd, b, n) < 0) { /* the count is lost, the call goes on */ }
    close(fd);
  }
  argv[0] = (char *)REAL;
  execv(REAL, argv);
  perror(REAL);
  return 127;
}
`;

/** The programs berth runs (src/exec.ts, topology's spawn, the follower's nsenter). */
export const WRAPPED = ['ip', 'nsenter', 'sysctl', 'tc', 'bpftool', 'iptables', 'ip6tables', 'mount'];

export class SpawnLog {
  readonly bin: string;
  readonly log: string;
  private constructor(readonly dir: string) {
    this.bin = path.join(dir, 'bin');
    this.log = path.join(dir, 'spawns.log');
  }

  /** One wrapper per program of WRAPPED found on this machine. */
  static async make(dir: string): Promise<SpawnLog> {
    const s = new SpawnLog(dir);
    fs.mkdirSync(s.bin, { recursive: true });
    const src = path.join(dir, 'wrap.c');
    fs.writeFileSync(src, WRAP_C);
    for (const name of WRAPPED) {
      const real = (await must('sh', ['-c', `command -v ${name} || true`])).trim();
      if (!real || !real.startsWith('/')) continue;
      await must('cc', ['-O2', `-DLOG="${s.log}"`, `-DREAL="${real}"`, `-DNAME="${name}"`, '-o', path.join(s.bin, name), src], 60000);
    }
    s.reset();
    return s;
  }

  /** PATH with the wrappers first. */
  env(): NodeJS.ProcessEnv {
    return { ...process.env, PATH: `${this.bin}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` };
  }

  reset(): void {
    fs.writeFileSync(this.log, '');
  }

  lines(): string[] {
    return fs.readFileSync(this.log, 'utf8').split('\n').filter(Boolean);
  }

  /** Calls per program since the last reset. */
  counts(): Record<string, number> {
    const c: Record<string, number> = {};
    for (const l of this.lines()) {
      const p = l.split(' ')[0]!;
      c[p] = (c[p] ?? 0) + 1;
    }
    return c;
  }

  /** Wait until no call was logged for quietMs (bounded by timeoutMs). */
  async quiet(quietMs: number, timeoutMs: number): Promise<boolean> {
    let n = -1;
    let since = Date.now();
    return !!(await waitFor(() => {
      const m = this.lines().length;
      if (m !== n) {
        n = m;
        since = Date.now();
      }
      return Date.now() - since >= quietMs;
    }, timeoutMs, 100));
  }
}

/** A `berth` daemon as a child: waits for its "metrics at URL" line. */
export class Daemon {
  proc?: ChildProcess;
  url = '';
  /** seconds from spawn to serving /metrics (the initial reconcile is done by then) */
  startSeconds = NaN;
  private err = '';

  constructor(readonly bin: string, readonly args: readonly string[], readonly logFile: string) {}

  get pid(): number {
    return this.proc!.pid!;
  }

  async start(env: NodeJS.ProcessEnv = process.env, timeoutMs = 600000): Promise<void> {
    const t0 = process.hrtime.bigint();
    // bin/berth is `#!/usr/bin/env node`: the child is node itself (its /proc is the daemon's)
    const proc = spawn(this.bin, [...this.args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    this.proc = proc;
    const log = fs.createWriteStream(this.logFile, { flags: 'a' });
    proc.stderr!.on('data', (d: Buffer) => {
      log.write(d);
      this.err = (this.err + d.toString()).slice(-3000);
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        proc.kill('SIGKILL');
        reject(new Error(`berth did not serve /metrics within ${timeoutMs / 1000} s: ${this.err.trim().slice(-600)}`));
      }, timeoutMs);
      createInterface({ input: proc.stdout! }).on('line', (l) => {
        const m = /metrics at (http:\/\/\S+)/.exec(l);
        if (m) {
          clearTimeout(timer);
          this.url = m[1]!;
          this.startSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
          resolve();
        }
      });
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`berth exited (${code}): ${this.err.trim().slice(-600)}`));
      });
    });
  }

  signal(sig: NodeJS.Signals): void {
    this.proc?.kill(sig);
  }

  /** SIGINT, then SIGKILL after timeoutMs. */
  async stop(timeoutMs = 60000): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const done = new Promise((r) => p.once('exit', r));
    p.kill('SIGINT');
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    await done;
    clearTimeout(t);
  }

  kill9(): void {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
    this.proc = undefined;
  }
}

/** Percentile (nearest rank) of the finite values. */
export function percentile(xs: number[], p: number): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
