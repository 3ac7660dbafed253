/**
 * docker-proxy, the userland proxy Docker runs per published port. Found where
 * Debian's docker.io installs it; when docker.io is not installed, the binary is
 * taken from Debian's docker.io package (`apt-get download` + `dpkg-deb -x`) into
 * build/bench/, so that no dockerd is installed or started on the machine (a
 * started dockerd would rewrite the host's iptables and FORWARD policy).
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { run } from '../../src/platform/exec';

const LOCAL = path.resolve(__dirname, '..', '..', '..', 'build', 'bench', 'docker-proxy');
const CANDIDATES = ['/usr/sbin/docker-proxy', '/usr/libexec/docker/docker-proxy', '/usr/bin/docker-proxy', LOCAL];

export interface ProxyBinary {
  path: string;
  /** how it was found, for the report */
  how: string;
}

export async function findDockerProxy(): Promise<ProxyBinary> {
  for (const c of CANDIDATES) if (fs.existsSync(c)) return { path: c, how: c === LOCAL ? `extracted earlier from Debian's docker.io package into ${c}` : `installed (${c})` };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-bench-dpx-'));
  try {
    const dl = async () => run('apt-get', ['download', 'docker.io'], { timeoutMs: 300000 }).then(() => undefined);
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      await dl().catch(async () => {
        await run('apt-get', ['update', '-qq'], { timeoutMs: 300000 });
        await dl();
      });
    } finally {
      process.chdir(cwd);
    }
    const deb = fs.readdirSync(dir).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error('apt-get download docker.io produced no .deb');
    await run('dpkg-deb', ['-x', path.join(dir, deb), path.join(dir, 'x')], { timeoutMs: 120000 });
    const bin = path.join(dir, 'x', 'usr', 'sbin', 'docker-proxy');
    if (!fs.existsSync(bin)) throw new Error(`no usr/sbin/docker-proxy in ${deb}`);
    fs.mkdirSync(path.dirname(LOCAL), { recursive: true });
    fs.copyFileSync(bin, LOCAL);
    fs.chmodSync(LOCAL, 0o755);
    return { path: LOCAL, how: `docker.io was not installed: docker-proxy extracted from Debian's ${deb} into ${LOCAL} (dockerd not installed)` };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const procs = new Set<ChildProcess>();

export function killProxies(): void {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
}

export interface Proxy {
  pid: number;
  setCpu(cpus: string): Promise<void>;
  stop(): Promise<void>;
}

/** `docker-proxy -proto tcp -host-ip H -host-port P -container-ip C -container-port CP`, as dockerd runs it. */
export async function startProxy(bin: string, o: { hostIp: string; hostPort: number; containerIp: string; containerPort: number }): Promise<Proxy> {
  const p = spawn(bin, ['-proto', 'tcp', '-host-ip', o.hostIp, '-host-port', String(o.hostPort), '-container-ip', o.containerIp, '-container-port', String(o.containerPort)], {
    // fd 3: dockerd's "signal-parent" pipe; the proxy writes "0\n" (or "1\n<error>") there and
    // closes it. Without it, the proxy's close of fd 3 closes its own listening socket.
    stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
  });
  procs.add(p);
  let err = '';
  p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  p.once('exit', () => procs.delete(p));
  let status = '';
  (p.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => (status += d.toString()));
  const stop = async () => {
    if (p.exitCode !== null || p.signalCode !== null) return;
    p.kill('SIGKILL');
    await new Promise((r) => p.once('exit', r));
  };
  const end = Date.now() + 5000;
  for (;;) {
    if (p.exitCode !== null) throw new Error(`docker-proxy exited (${p.exitCode}): ${status.trim()} ${err.trim()}`);
    if (status.startsWith('1')) {
      await stop();
      throw new Error(`docker-proxy: ${status.slice(1).trim()}`);
    }
    const { stdout } = await run('ss', ['-Hltn', `sport = :${o.hostPort}`]).catch(() => ({ stdout: '' }));
    if (stdout.trim()) break;
    if (Date.now() > end) {
      await stop();
      throw new Error(`docker-proxy does not listen on ${o.hostIp}:${o.hostPort}: ${err.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 30));
  }
  return {
    pid: p.pid!,
    setCpu: async (cpus: string) => void (await run('taskset', ['-a', '-p', '-c', cpus, String(p.pid)])),
    stop,
  };
}
