/**
 * A private dockerd for tests: its own --data-root, --exec-root, --pidfile,
 * unix socket and default bridge (made here, passed with --bridge), so
 * nothing collides with another dockerd or another test. Docker's global
 * side effects are recorded first and restored by cleanup() even when a test
 * fails half-way: iptables chains and rules Docker made (filter/nat), the
 * FORWARD policy, ip_forward, its bridges, veths and namespaces, the daemon
 * and its containerd.
 *
 * dockerd runs with --ip-forward=false: it would otherwise set the
 * machine-wide net.ipv4.ip_forward (and, with iptables, the FORWARD policy
 * DROP), and restoring ip_forward=0 afterwards would also clear the
 * per-interface forwarding of every other test running on this machine.
 * Instead forwarding is turned on per interface (our bridges and the outside
 * veth) — by the test with Docker's rules, by berth in berth's run.
 *
 * The image: /bin/busybox (busybox-static) and a symlink per applet, made
 * with `docker import` (there is no registry here).
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { which } from '../../src/observe/doctor';

/** The first executable `name` on PATH, then in the folders a root shell has. */
const whichAny = (name: string): string | undefined => which(name, `${process.env.PATH ?? ''}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`);

/**
 * The Docker engine the suites drive: whichever dockerd is installed (Debian's docker.io, or
 * docker-ce's), found on PATH. scripts/ensure.sh installs docker.io only where no other engine is.
 */
export const DOCKERD = whichAny('dockerd') ?? '/usr/sbin/dockerd';
export const DOCKER = whichAny('docker') ?? 'docker';

/** Why the Docker suites cannot run here (undefined: they can). */
export function dockerSkipReason(): string | undefined {
  const missing = [['dockerd', DOCKERD], ['docker', DOCKER], ['containerd', whichAny('containerd')]].filter(([, p]) => !p || !fs.existsSync(p)).map(([n]) => n);
  if (!missing.length) return undefined;
  return `no ${missing.join(', ')} on this machine (scripts/ensure.sh test installs docker.io unless another Docker engine is present)`;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a command; never throws (bounded by timeoutMs). */
export function exec(cmd: string, args: readonly string[], timeoutMs = 30000, input?: string): Promise<ExecResult> {
  return new Promise((resolve) => {
    const p = execFile(cmd, [...args], { timeout: timeoutMs, maxBuffer: 32 << 20, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? Number((err as NodeJS.ErrnoException).code) : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
    if (input !== undefined) p.stdin?.end(input);
  });
}

export async function must(cmd: string, args: readonly string[], timeoutMs = 60000): Promise<string> {
  const r = await exec(cmd, args, timeoutMs);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll until fn() is truthy or the time is up; returns the last value. */
export async function waitFor<T>(fn: () => Promise<T> | T, timeoutMs: number, stepMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  let v = await fn();
  while (!v && Date.now() < end) {
    await sleep(stepMs);
    v = await fn();
  }
  return v;
}

const readSys = (p: string): string | null => {
  try {
    return fs.readFileSync(p, 'utf8').trim();
  } catch {
    return null;
  }
};
const writeSys = (p: string, v: string): void => {
  try {
    fs.writeFileSync(p, v);
  } catch {
    /* gone */
  }
};

export interface DockerdOptions {
  /** unique tag (letters/digits, <= 8): names of bridges, image, dirs */
  tag: string;
  iptables: boolean;
  /** default bridge: name (<= 15) and address "a.b.c.1/24" */
  bridge: string;
  bridgeCidr: string;
  liveRestore?: boolean;
  /**
   * Dual stack: dockerd --ipv6 with the default bridge's IPv6 subnet
   * (--fixed-cidr-v6, "fd89:d::/64"; dockerd gives the bridge its first
   * address), and --ip6tables=false (dockerd 20.10 writes no ip6tables rules
   * then, so cleanup has none to undo). IPv6 forwarding stays off as IPv4's
   * does (--ip-forward=false): turn it on per interface (forward6On).
   * User networks take `--ipv6 --subnet <v6>` (networkCreate's extra).
   *
   * ip6tables: true runs dockerd with Docker's own ip6tables rules
   * (`--experimental --ip6tables`: 20.10 takes --ip6tables only as an
   * experimental feature); cleanup then undoes its ip6tables chains and rules
   * as it does the IPv4 ones.
   */
  ipv6?: { fixedCidr6: string; ip6tables?: boolean };
  /** the prefix of the test's folder under tmp (default `berth-dk-<tag>-`; sweepStale must be given it) */
  dirPrefix?: string;
}

/**
 * Held by a dockerd with --iptables=true from start() to cleanup(): such a daemon removes and
 * remakes Docker's global chains when it starts, so two at once (the IPv4 and the IPv6
 * conformance suites, when tap runs them side by side) would wreck each other's rules. The
 * second waits (bounded); a lock whose owner process is gone is taken over.
 */
const IPTABLES_LOCK = path.join(os.tmpdir(), 'berth-dk-iptables.lock');
const IPTABLES_LOCK_WAIT_MS = 10 * 60 * 1000;

async function takeIptablesLock(): Promise<void> {
  const end = Date.now() + IPTABLES_LOCK_WAIT_MS;
  for (;;) {
    try {
      fs.writeFileSync(IPTABLES_LOCK, String(process.pid), { flag: 'wx' });
      return;
    } catch {
      const owner = Number(readSys(IPTABLES_LOCK) ?? '0');
      if (owner === process.pid) return;
      if (!owner || !fs.existsSync(`/proc/${owner}`)) {
        fs.rmSync(IPTABLES_LOCK, { force: true });
        continue;
      }
    }
    if (Date.now() > end) throw new Error(`another dockerd with --iptables=true (process ${readSys(IPTABLES_LOCK)}) held ${IPTABLES_LOCK} for ${IPTABLES_LOCK_WAIT_MS / 1000} s`);
    await sleep(500);
  }
}

function dropIptablesLock(): void {
  if (readSys(IPTABLES_LOCK) === String(process.pid)) fs.rmSync(IPTABLES_LOCK, { force: true });
}

const DOCKER_CHAINS = ['DOCKER', 'DOCKER-USER', 'DOCKER-ISOLATION-STAGE-1', 'DOCKER-ISOLATION-STAGE-2', 'DOCKER-INGRESS'];

interface Saved {
  forwardPolicy: string;
  ipForward: string | null;
  chains: Record<string, Set<string>>;
  rules: Record<string, Set<string>>;
  /** the same for ip6tables (recorded when dockerd writes ip6tables rules) */
  forwardPolicy6?: string;
  chains6?: Record<string, Set<string>>;
  rules6?: Record<string, Set<string>>;
}

async function iptablesRules(table: string, cmd: 'iptables' | 'ip6tables' = 'iptables'): Promise<string[]> {
  const r = await exec(cmd, ['-w', '-t', table, '-S'], 20000);
  return r.code === 0 ? r.stdout.split('\n').filter(Boolean) : [];
}

/** Chains and rules of filter and nat, and the FORWARD policy, as `-S` prints them. */
async function tablesState(cmd: 'iptables' | 'ip6tables'): Promise<{ chains: Record<string, Set<string>>; rules: Record<string, Set<string>>; forwardPolicy: string }> {
  const chains: Record<string, Set<string>> = {};
  const rules: Record<string, Set<string>> = {};
  for (const t of ['filter', 'nat']) {
    const lines = await iptablesRules(t, cmd);
    rules[t] = new Set(lines.filter((l) => l.startsWith('-A ')));
    chains[t] = new Set(lines.filter((l) => l.startsWith('-N ')).map((l) => l.slice(3)));
  }
  const pol = (await iptablesRules('filter', cmd)).find((l) => l.startsWith('-P FORWARD ')) ?? '-P FORWARD ACCEPT';
  return { chains, rules, forwardPolicy: pol.split(' ')[2]! };
}

const setsOf = (o: Record<string, string[]> | undefined): Record<string, Set<string>> | undefined => (o ? Object.fromEntries(Object.entries(o).map(([k, v]) => [k, new Set(v)])) : undefined);
const listsOf = (o: Record<string, Set<string>> | undefined): Record<string, string[]> | undefined => (o ? Object.fromEntries(Object.entries(o).map(([k, v]) => [k, [...v]])) : undefined);

export class Dockerd {
  readonly dir: string;
  readonly sock: string;
  readonly image: string;
  private proc?: ChildProcess;
  private saved?: Saved;
  readonly bridges = new Set<string>();
  /** subnet prefixes ("10.240.7.") of our networks, for rules left behind */
  readonly subnets: string[] = [];
  /** namespaces and links the test made next to Docker's (removed by cleanup, and by sweepStale after a crash) */
  readonly extraNetns: string[] = [];
  readonly extraLinks: string[] = [];
  logFile: string;

  constructor(readonly opts: DockerdOptions) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), opts.dirPrefix ?? `berth-dk-${opts.tag}-`));
    this.sock = path.join(this.dir, 'docker.sock');
    this.image = `berthtest-${opts.tag.toLowerCase()}:latest`;
    this.logFile = path.join(this.dir, 'dockerd.log');
    this.bridges.add(opts.bridge);
  }

  get host(): string {
    return `unix://${this.sock}`;
  }

  /** `docker -H ... args` */
  docker(args: readonly string[], timeoutMs = 60000): Promise<ExecResult> {
    return exec(DOCKER, ['-H', this.host, ...args], timeoutMs);
  }

  async dockerOk(args: readonly string[], timeoutMs = 60000): Promise<string> {
    const r = await this.docker(args, timeoutMs);
    if (r.code !== 0) throw new Error(`docker ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim()}`);
    return r.stdout.trim();
  }

  /**
   * Run argv (a path in the image, e.g. /bin/wget) inside container c: its namespaces and its own
   * root file system, with the image's environment (PATH=/bin only). Used instead of
   * `docker exec`, which does not always reach the container's files: runc exec only setns()es
   * into the container's mount namespace, and setns lands at that namespace's root, which is the
   * container's only when dockerd itself runs at its namespace's root. Under a chroot (CI's
   * fresh-debian root) the container's pivot_root replaces the chroot's mount, not the
   * namespace's root, so `docker exec c cat /tmp/x` reads the HOST's /tmp and `docker exec c
   * udpecho6` finds no such program. nsenter --root takes the root of the container's init
   * (/proc/PID/root), which is right in both cases.
   */
  async inside(c: string, argv: readonly string[], timeoutMs = 20000): Promise<ExecResult> {
    const pid = (await this.docker(['inspect', '--format', '{{.State.Pid}}', c], timeoutMs)).stdout.trim();
    if (!/^[1-9]\d*$/.test(pid)) return { code: 1, stdout: '', stderr: `${c}: not running (State.Pid ${JSON.stringify(pid)})` };
    return exec('nsenter', [`--target=${pid}`, '--mount', '--uts', '--ipc', '--net', '--pid', '--root', '--wd', '--', '/bin/env', '-i', 'PATH=/bin', ...argv], timeoutMs);
  }

  /** Record the global state Docker may change (before the first start). */
  async snapshot(): Promise<void> {
    if (this.saved) return;
    const { chains, rules, forwardPolicy } = await tablesState('iptables');
    this.saved = { forwardPolicy, ipForward: readSys('/proc/sys/net/ipv4/ip_forward'), chains, rules };
    if (this.opts.ipv6?.ip6tables) {
      const v6 = await tablesState('ip6tables');
      Object.assign(this.saved, { forwardPolicy6: v6.forwardPolicy, chains6: v6.chains, rules6: v6.rules });
    }
    this.persist();
  }

  /** What cleanup needs, on disk: a test killed by a timeout is cleaned by the next run (sweepStale). */
  private persist(): void {
    const s = this.saved!;
    const state = {
      owner: process.pid,
      opts: this.opts,
      bridges: [...this.bridges],
      subnets: this.subnets,
      extraNetns: this.extraNetns,
      extraLinks: this.extraLinks,
      saved: { forwardPolicy: s.forwardPolicy, ipForward: s.ipForward, chains: listsOf(s.chains), rules: listsOf(s.rules), forwardPolicy6: s.forwardPolicy6, chains6: listsOf(s.chains6), rules6: listsOf(s.rules6) },
    };
    fs.writeFileSync(path.join(this.dir, 'state.json'), JSON.stringify(state));
  }

  /** Clean up after test processes that died without their teardown (their dirs under tmp). */
  static async sweepStale(prefixes: readonly string[] = ['berth-dk-']): Promise<number> {
    let n = 0;
    for (const name of fs.readdirSync(os.tmpdir()).filter((x) => prefixes.some((p) => x.startsWith(p)))) {
      const dir = path.join(os.tmpdir(), name);
      const f = path.join(dir, 'state.json');
      if (!fs.existsSync(f)) continue;
      let st: { owner: number; opts: DockerdOptions; bridges: string[]; subnets: string[]; extraNetns?: string[]; extraLinks?: string[]; saved: { forwardPolicy: string; ipForward: string | null; chains: Record<string, string[]>; rules: Record<string, string[]>; forwardPolicy6?: string; chains6?: Record<string, string[]>; rules6?: Record<string, string[]> } };
      try {
        st = JSON.parse(fs.readFileSync(f, 'utf8'));
      } catch {
        continue;
      }
      if (fs.existsSync(`/proc/${st.owner}`)) continue;
      const d = Object.create(Dockerd.prototype) as Dockerd;
      Object.assign(d, {
        opts: st.opts,
        dir,
        sock: path.join(dir, 'docker.sock'),
        image: '',
        logFile: path.join(dir, 'dockerd.log'),
        bridges: new Set(st.bridges),
        subnets: st.subnets,
        extraNetns: st.extraNetns ?? [],
        extraLinks: st.extraLinks ?? [],
        saved: {
          forwardPolicy: st.saved.forwardPolicy,
          ipForward: st.saved.ipForward,
          chains: setsOf(st.saved.chains),
          rules: setsOf(st.saved.rules),
          forwardPolicy6: st.saved.forwardPolicy6,
          chains6: setsOf(st.saved.chains6),
          rules6: setsOf(st.saved.rules6),
        },
      });
      const pidf = path.join(dir, 'dockerd.pid');
      const dpid = fs.existsSync(pidf) ? Number(fs.readFileSync(pidf, 'utf8')) : 0;
      if (dpid && fs.existsSync(`/proc/${dpid}`)) {
        // containers first (live-restore keeps them past dockerd)
        const ids = (await d.docker(['ps', '-aq'], 20000)).stdout.split('\n').filter(Boolean);
        if (ids.length) await d.docker(['rm', '-f', ...ids], 120000);
        try {
          process.kill(dpid, 'SIGTERM');
        } catch {
          /* gone */
        }
        await waitFor(() => !fs.existsSync(`/proc/${dpid}`), 20000, 200);
      }
      await d.cleanup({ extras: true });
      n++;
    }
    return n;
  }

  async start(): Promise<void> {
    if (this.opts.iptables) await takeIptablesLock();
    this.subnets.push(this.opts.bridgeCidr.replace(/\.\d+\/\d+$/, '.'));
    if (this.opts.ipv6) this.subnets.push(this.opts.ipv6.fixedCidr6);
    await this.snapshot();
    if (!fs.existsSync(`/sys/class/net/${this.opts.bridge}`)) {
      await must('ip', ['link', 'add', this.opts.bridge, 'type', 'bridge']);
      await must('ip', ['addr', 'add', this.opts.bridgeCidr, 'dev', this.opts.bridge]);
      await must('ip', ['link', 'set', this.opts.bridge, 'up']);
    }
    await this.startContainerd();
    const args = [
      `--containerd=${this.containerdSock}`,
      `--data-root=${path.join(this.dir, 'data')}`,
      `--exec-root=${path.join(this.dir, 'exec')}`,
      `--pidfile=${path.join(this.dir, 'dockerd.pid')}`,
      `-H`,
      this.host,
      `--bridge=${this.opts.bridge}`,
      `--iptables=${this.opts.iptables}`,
      '--ip-forward=false',
      '--ip-masq=true',
      '--userland-proxy=false',
      '--storage-driver=vfs',
      '--log-level=warn',
      ...(this.opts.liveRestore ? ['--live-restore'] : []),
      ...(this.opts.ipv6 ? ['--ipv6', `--fixed-cidr-v6=${this.opts.ipv6.fixedCidr6}`, ...(this.opts.ipv6.ip6tables ? ['--experimental', '--ip6tables=true'] : ['--ip6tables=false'])] : []),
    ];
    const log = fs.openSync(this.logFile, 'a');
    this.proc = spawn(DOCKERD, args, { stdio: ['ignore', log, log], detached: true });
    fs.closeSync(log);
    const ok = await waitFor(async () => (await this.docker(['version', '--format', '{{.Server.Version}}'], 5000)).code === 0, 60000, 200);
    if (!ok) throw new Error(`dockerd did not come up in 60 s; log: ${this.tail()}`);
  }

  private containerd?: ChildProcess;

  get containerdSock(): string {
    return path.join(this.dir, 'containerd', 'containerd.sock');
  }

  /**
   * containerd as its own process (as with a separate containerd.service), so that
   * dockerd can be killed and restarted while containers and containerd stay.
   */
  private async startContainerd(): Promise<void> {
    if (this.containerd && this.containerd.exitCode === null && this.containerd.signalCode === null) return;
    const root = path.join(this.dir, 'containerd');
    fs.mkdirSync(root, { recursive: true });
    const cfg = path.join(root, 'config.toml');
    fs.writeFileSync(
      cfg,
      [
        'version = 2',
        `root = "${path.join(root, 'root')}"`,
        `state = "${path.join(root, 'state')}"`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]',
        `  address = "${this.containerdSock}"`,
        '[ttrpc]',
        `  address = "${this.containerdSock}.ttrpc"`,
        '',
      ].join('\n'),
    );
    const log = fs.openSync(path.join(this.dir, 'containerd.log'), 'a');
    this.containerd = spawn('containerd', ['--config', cfg, '--log-level', 'warn'], { stdio: ['ignore', log, log], detached: true });
    fs.closeSync(log);
    const ok = await waitFor(() => fs.existsSync(this.containerdSock), 30000, 100);
    if (!ok) throw new Error('containerd did not come up in 30 s');
  }

  tail(): string {
    try {
      return fs.readFileSync(this.logFile, 'utf8').split('\n').slice(-20).join('\n');
    } catch {
      return '';
    }
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** SIGKILL dockerd (containers and containerd stay). */
  kill9(): void {
    if (this.proc?.pid) {
      try {
        process.kill(this.proc.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    this.proc = undefined;
  }

  /** SIGTERM and wait (bounded) for it to go. */
  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (!p?.pid) return;
    try {
      process.kill(p.pid, 'SIGTERM');
    } catch {
      return;
    }
    const gone = await waitFor(() => p.exitCode !== null || p.signalCode !== null, 30000, 100);
    if (!gone) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }

  /** The busybox image (docker import). */
  async buildImage(): Promise<void> {
    const root = path.join(this.dir, 'img');
    fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
    fs.mkdirSync(path.join(root, 'tmp'), { recursive: true });
    fs.mkdirSync(path.join(root, 'www'), { recursive: true });
    fs.copyFileSync('/bin/busybox', path.join(root, 'bin', 'busybox'));
    fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
    const applets = (await must('/bin/busybox', ['--list'])).split('\n').filter((a) => a && a !== 'busybox');
    for (const a of applets) fs.symlinkSync('busybox', path.join(root, 'bin', a));
    // busybox has no UDP server: a static UDP echo (replies "<name> <payload>")
    const src = path.join(this.dir, 'udpecho.c');
    fs.writeFileSync(src, UDP_ECHO_C);
    await must('cc', ['-static', '-O2', '-o', path.join(root, 'bin', 'udpecho'), src], 120000);
    // and its IPv6 twin (IPv6 only, on [::]): replies "<name> from <client v6 address>"
    const src6 = path.join(this.dir, 'udpecho6.c');
    fs.writeFileSync(src6, UDP_ECHO6_C);
    await must('cc', ['-static', '-O2', '-o', path.join(root, 'bin', 'udpecho6'), src6], 120000);
    const tar = path.join(this.dir, 'img.tar');
    await must('tar', ['-C', root, '-cf', tar, '.']);
    await this.dockerOk(['import', '-c', 'CMD ["/bin/sh"]', '-c', 'ENV PATH=/bin', tar, this.image], 120000);
  }

  /** Record a namespace / link of the test's own for cleanup (also after a crash). */
  own(what: { netns?: string; link?: string }): void {
    if (what.netns) this.extraNetns.push(what.netns);
    if (what.link) this.extraLinks.push(what.link);
    if (this.saved) this.persist();
  }

  /** Names of the bridges of our networks (recorded for cleanup). */
  async networkCreate(name: string, bridge: string, subnet: string, extra: string[] = []): Promise<void> {
    this.bridges.add(bridge);
    this.subnets.push(subnet.replace(/\.0\/\d+$/, '.'));
    // an IPv6 subnet (`--ipv6 --subnet fd..::/64`) as ip6tables -S prints it
    extra.forEach((x, i) => {
      if (i > 0 && extra[i - 1] === '--subnet' && x.includes(':')) this.subnets.push(x);
    });
    if (this.saved) this.persist();
    await this.dockerOk(['network', 'create', '-d', 'bridge', '--subnet', subnet, '-o', `com.docker.network.bridge.name=${bridge}`, ...extra, name]);
  }

  /** Stop dockerd (and containers), then undo everything Docker changed. */
  async cleanup(opts: { extras?: boolean } = {}): Promise<void> {
    // containers first, so their veths and namespaces go with them
    if (this.proc) {
      const ids = (await this.docker(['ps', '-aq'], 20000)).stdout.split('\n').filter(Boolean);
      if (ids.length) await this.docker(['rm', '-f', ...ids], 120000);
      const nets = (await this.docker(['network', 'ls', '-q', '--filter', 'driver=bridge'], 20000)).stdout.split('\n').filter(Boolean);
      for (const n of nets) await this.docker(['network', 'rm', n], 20000);
    }
    await this.stop();
    if (this.containerd?.pid) {
      try {
        process.kill(this.containerd.pid, 'SIGTERM');
      } catch {
        /* gone */
      }
      const c = this.containerd;
      await waitFor(() => c.exitCode !== null || c.signalCode !== null, 10000, 100);
    }
    // what is left of ours (shims, a killed dockerd's children): end those under our dirs only
    const execRoot = path.join(this.dir, 'exec');
    for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      const cmd = readSys(`/proc/${pid}/cmdline`)?.replace(/\0/g, ' ') ?? '';
      if (cmd.includes(execRoot) || cmd.includes(this.dir)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    await this.restoreGlobals();
    if (this.opts.iptables) dropIptablesLock();
    // a bridge's ports survive the bridge: delete our bridges' veths first
    // (a container killed with its shim can leave its host-side veth behind)
    for (const b of this.bridges) {
      const ports = fs.existsSync(`/sys/class/net/${b}/brif`) ? fs.readdirSync(`/sys/class/net/${b}/brif`) : [];
      for (const port of ports) await exec('ip', ['link', 'del', port], 10000);
    }
    for (const b of [...this.bridges, ...(opts.extras ? this.extraLinks : [])]) await exec('ip', ['link', 'del', b], 10000);
    for (const ns of opts.extras ? this.extraNetns : []) {
      for (const p of (await exec('ip', ['netns', 'pids', ns], 5000)).stdout.split('\n').filter(Boolean)) {
        try {
          process.kill(Number(p), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      await exec('ip', ['netns', 'del', ns], 10000);
    }
    // namespaces are under our exec-root
    await exec('umount', ['-R', path.join(this.dir, 'exec')], 10000);
    for (let i = 0; i < 3; i++) {
      try {
        fs.rmSync(this.dir, { recursive: true, force: true });
        break;
      } catch {
        await exec('sh', ['-c', `grep -F '${this.dir}' /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount -l`], 10000);
      }
    }
  }

  /** Remove the iptables (and ip6tables) chains and rules Docker added; restore the FORWARD policy and ip_forward. */
  async restoreGlobals(): Promise<void> {
    const s = this.saved;
    if (!s) return;
    // with --iptables=false dockerd leaves the tables alone; chains seen now belong to someone else
    // (another test's dockerd): touch nothing. Two --iptables=true dockerds at once would share
    // Docker's global chains, so only the conformance suite runs one (and the IPv6 conformance
    // suite only an --ip6tables one, with --iptables=false).
    if (this.opts.iptables) await this.restoreTables('iptables', s.chains, s.rules, s.forwardPolicy);
    if (this.opts.ipv6?.ip6tables && s.chains6 && s.rules6) await this.restoreTables('ip6tables', s.chains6, s.rules6, s.forwardPolicy6 ?? 'ACCEPT');
    // ip_forward: dockerd runs with --ip-forward=false and never writes it; writing it back here
    // would reset the per-interface forwarding of every other test on the machine, so it is only
    // checked (s.ipForward is kept for the record)
  }

  private async restoreTables(cmd: 'iptables' | 'ip6tables', chains: Record<string, Set<string>>, rules: Record<string, Set<string>>, forwardPolicy: string): Promise<void> {
    for (const t of ['filter', 'nat']) {
      const now = await iptablesRules(t, cmd);
      const ourBridge = (l: string): boolean => [...this.bridges].some((b) => new RegExp(`(^| )-[io] ${b}( |$)`).test(l));
      const ourSubnet = (l: string): boolean => this.subnets.some((n) => l.includes(` ${n}`));
      // rules Docker added to chains that were there before (FORWARD, PREROUTING, ...)
      for (const l of now.filter((x) => x.startsWith('-A ') && !rules[t]!.has(x))) {
        const chain = l.split(' ')[1]!;
        const tokens = l.split(' ');
        const dockerish = tokens.some((tok) => DOCKER_CHAINS.includes(tok)) || ourBridge(l) || ourSubnet(l);
        if (!dockerish) continue;
        if (DOCKER_CHAINS.includes(chain) && !chains[t]!.has(chain)) continue; // flushed with the chain below
        await exec(cmd, ['-w', '-t', t, '-D', ...splitRule(l.slice(3))], 10000);
      }
      for (const c of DOCKER_CHAINS) {
        if (chains[t]!.has(c)) continue;
        await exec(cmd, ['-w', '-t', t, '-F', c], 10000);
        await exec(cmd, ['-w', '-t', t, '-X', c], 10000);
      }
    }
    // the FORWARD policy: only Docker's DROP trap is undone (another test may own other changes)
    const pol = (await iptablesRules('filter', cmd)).find((l) => l.startsWith('-P FORWARD ')) ?? '';
    if (pol === '-P FORWARD DROP' && forwardPolicy !== 'DROP') await exec(cmd, ['-w', '-P', 'FORWARD', forwardPolicy], 10000);
  }
}

const UDP_ECHO_C = `
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
  if (argc < 3) return 2;
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons(atoi(argv[1]));
  if (bind(s, (struct sockaddr *)&a, sizeof a)) { perror("bind"); return 1; }
  for (;;) {
    char in[512], out[700];
    struct sockaddr_in p; socklen_t pl = sizeof p;
    ssize_t n = recvfrom(s, in, sizeof in - 1, 0, (struct sockaddr *)&p, &pl);
    if (n < 0) continue;
    in[n] = 0;
    int m = snprintf(out, sizeof out, "%s from %s", argv[2], inet_ntoa(p.sin_addr));
    sendto(s, out, m, 0, (struct sockaddr *)&p, pl);
  }
}
`;

/**
 * udpecho6 PORT NAME: the IPv6 UDP echo (IPv6 only, on [::]); replies "NAME from <client>"
 * and appends "<payload> from <client>" to /tmp/udp6.log, so a test can tell that a datagram
 * never arrived. udpecho6 send ADDR PORT PAYLOAD: one datagram, then "answer <reply>" or
 * "blocked (timeout)" after 2 s.
 */
const UDP_ECHO6_C = `
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
int main(int argc, char **argv) {
  if (argc < 3) return 2;
  int s = socket(AF_INET6, SOCK_DGRAM, 0);
  int on = 1;
  setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
  struct sockaddr_in6 a = {0};
  a.sin6_family = AF_INET6;
  if (!strcmp(argv[1], "send")) {
    if (argc < 5 || inet_pton(AF_INET6, argv[2], &a.sin6_addr) != 1) return 2;
    a.sin6_port = htons(atoi(argv[3]));
    struct timeval tv = {2, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (sendto(s, argv[4], strlen(argv[4]), 0, (struct sockaddr *)&a, sizeof a) < 0) { printf("blocked (send failed)\\n"); return 1; }
    char r[700];
    ssize_t n = recv(s, r, sizeof r - 1, 0);
    if (n < 0) { printf("blocked (timeout)\\n"); return 1; }
    r[n] = 0;
    printf("answer %s\\n", r);
    return 0;
  }
  a.sin6_port = htons(atoi(argv[1]));
  if (bind(s, (struct sockaddr *)&a, sizeof a)) { perror("bind"); return 1; }
  for (;;) {
    char in[512], out[700], peer[INET6_ADDRSTRLEN];
    struct sockaddr_in6 p; socklen_t pl = sizeof p;
    ssize_t n = recvfrom(s, in, sizeof in - 1, 0, (struct sockaddr *)&p, &pl);
    if (n < 0) continue;
    in[n] = 0;
    inet_ntop(AF_INET6, &p.sin6_addr, peer, sizeof peer);
    FILE *log = fopen("/tmp/udp6.log", "a");
    if (log) { fprintf(log, "%s from %s\\n", in, peer); fclose(log); }
    int m = snprintf(out, sizeof out, "%s from %s", argv[2], peer);
    sendto(s, out, m, 0, (struct sockaddr *)&p, pl);
  }
}
`;

/** Split an `iptables -S` rule into arguments (quotes kept together). */
export function splitRule(rule: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(rule))) out.push(m[1] !== undefined ? m[1] : m[2]!);
  return out;
}

/** Turn IPv4 forwarding on for one interface (per interface, never machine-wide). */
export function forwardOn(ifname: string): void {
  writeSys(`/proc/sys/net/ipv4/conf/${ifname}/forwarding`, '1');
}

/** The same for IPv6 (per interface; the interface then stops taking router advertisements, as a router does). */
export function forward6On(ifname: string): void {
  writeSys(`/proc/sys/net/ipv6/conf/${ifname}/forwarding`, '1');
}

/**
 * The kernel's own IPv6 forwarding from one interface without the machine-wide switch
 * (net.ipv6.conf.all.forwarding, which Docker sets and which other tests here must not see):
 * ip6_forward takes a packet only when all.forwarding or the arrival interface's
 * force_forwarding (Linux 6.17+) is 1. Returns false when this kernel has no force_forwarding.
 */
export function forceForward6On(ifname: string): boolean {
  const p = `/proc/sys/net/ipv6/conf/${ifname}/force_forwarding`;
  if (!fs.existsSync(p)) return false;
  writeSys(p, '1');
  return readSys(p) === '1';
}

// ---------------------------------------------------------------------------
// The conformance world: an "outside" client namespace, probes, and berth.

const PY = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
export const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'berth');

const PROBE_PY = `
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
tmo = float(sys.argv[4]) if len(sys.argv) > 4 else 2.0
try:
    if proto == 'tcp':
        s = socket.create_connection((host, port), timeout=tmo)
        s.settimeout(tmo)
        s.sendall(b'GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n')
        data = b''
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        print('answer ' + data.split(b'\\r\\n\\r\\n', 1)[-1].decode(errors='replace').strip())
    else:
        s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(tmo)
        s.sendto(sys.argv[5].encode() if len(sys.argv) > 5 else b'ping', (host, port))
        d, _ = s.recvfrom(4096)
        print('answer ' + d.decode(errors='replace').strip())
except socket.timeout:
    print('blocked (timeout)')
except ConnectionRefusedError:
    print('blocked (refused)')
except OSError as e:
    print('blocked (%s)' % (e.strerror or e.errno))
`;

/** Replies to any TCP connection with "from <peer address>" (HTTP/1.0); argv[2] '6': on [::] (IPv6 only). */
const SOURCE_SERVER_PY = `
import socket, sys
v6 = len(sys.argv) > 2 and sys.argv[2] == '6'
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if v6: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind(('::' if v6 else '0.0.0.0', int(sys.argv[1]))); s.listen(64)
while True:
    c, a = s.accept()
    try:
        c.settimeout(2); c.recv(4096)
        c.sendall(('HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nfrom %s\\n' % a[0]).encode())
    except Exception:
        pass
    c.close()
`;

export class Outside {
  readonly ns: string;
  readonly hostIf: string;
  readonly nsIf: string;
  readonly hostAddr: string;
  readonly addr: string;
  private server?: ChildProcess;
  private server6?: ChildProcess;
  /** set by up6(): the host side's and the namespace's IPv6 addresses */
  hostAddr6 = '';
  addr6 = '';
  readonly probe: string;
  readonly serverScript: string;

  constructor(readonly tag: string, readonly prefix: string, readonly dir: string, readonly serverPort: number) {
    this.ns = `${tag}out`;
    this.hostIf = `${tag}ov`;
    this.nsIf = `${tag}oc`;
    this.hostAddr = `${prefix}.1`;
    this.addr = `${prefix}.2`;
    this.probe = path.join(dir, 'probe.py');
    this.serverScript = path.join(dir, 'srcserver.py');
    fs.writeFileSync(this.probe, PROBE_PY);
    fs.writeFileSync(this.serverScript, SOURCE_SERVER_PY);
  }

  /** The namespace, its veth (host side = berth's uplink), routes to `routes` via the host. */
  async up(routes: readonly string[]): Promise<void> {
    await must('ip', ['netns', 'add', this.ns]);
    await must('ip', ['link', 'add', this.hostIf, 'type', 'veth', 'peer', 'name', this.nsIf]);
    await must('ip', ['link', 'set', this.nsIf, 'netns', this.ns]);
    await must('ip', ['addr', 'add', `${this.hostAddr}/24`, 'dev', this.hostIf]);
    await must('ip', ['link', 'set', this.hostIf, 'up']);
    await must('ip', ['-n', this.ns, 'addr', 'add', `${this.addr}/24`, 'dev', this.nsIf]);
    await must('ip', ['-n', this.ns, 'link', 'set', this.nsIf, 'up']);
    await must('ip', ['-n', this.ns, 'link', 'set', 'lo', 'up']);
    for (const r of routes) await must('ip', ['-n', this.ns, 'route', 'add', r, 'via', this.hostAddr]);
    forwardOn(this.hostIf);
    this.server = spawn('ip', ['netns', 'exec', this.ns, PY, this.serverScript, String(this.serverPort)], { stdio: 'ignore', detached: true });
    await waitFor(async () => (await this.fromOutside('tcp', this.addr, this.serverPort)).startsWith('answer'), 10000, 100);
  }

  /**
   * The IPv6 half (after up()): `prefix6` a /64 ("fd82:fa::"): ::1 on the host side, ::2 in the
   * namespace (nodad: usable at once), routes to `routes6` via the host, IPv6 forwarding on the
   * host side (forward6On), and the source server on [::]:serverPort as well.
   */
  async up6(prefix6: string, routes6: readonly string[]): Promise<void> {
    this.hostAddr6 = `${prefix6}1`;
    this.addr6 = `${prefix6}2`;
    await must('ip', ['-6', 'addr', 'add', `${this.hostAddr6}/64`, 'dev', this.hostIf, 'nodad']);
    await must('ip', ['-n', this.ns, '-6', 'addr', 'add', `${this.addr6}/64`, 'dev', this.nsIf, 'nodad']);
    for (const r of routes6) await must('ip', ['-n', this.ns, '-6', 'route', 'add', r, 'via', this.hostAddr6]);
    forward6On(this.hostIf);
    this.server6 = spawn('ip', ['netns', 'exec', this.ns, PY, this.serverScript, String(this.serverPort), '6'], { stdio: 'ignore', detached: true });
    await waitFor(async () => (await this.fromOutside('tcp', this.addr6, this.serverPort)).startsWith('answer'), 10000, 100);
  }

  async fromOutside(proto: 'tcp' | 'udp', host: string, port: number, timeoutSec = 2, payload?: string): Promise<string> {
    const r = await exec('ip', ['netns', 'exec', this.ns, PY, this.probe, proto, host, String(port), String(timeoutSec), ...(payload !== undefined ? [payload] : [])], 15000);
    return r.stdout.trim() || `blocked (probe failed: ${r.stderr.trim().split('\n').pop()})`;
  }

  async fromHost(proto: 'tcp' | 'udp', host: string, port: number): Promise<string> {
    const r = await exec(PY, [this.probe, proto, host, String(port)], 15000);
    return r.stdout.trim() || `blocked (probe failed: ${r.stderr.trim().split('\n').pop()})`;
  }

  async down(): Promise<void> {
    for (const srv of [this.server, this.server6]) {
      if (!srv?.pid) continue;
      try {
        process.kill(-srv.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await exec('ip', ['netns', 'pids', this.ns], 5000).then(async (r) => {
      for (const p of r.stdout.split('\n').filter(Boolean)) {
        try {
          process.kill(Number(p), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    });
    await exec('ip', ['link', 'del', this.hostIf], 10000);
    await exec('ip', ['netns', 'del', this.ns], 10000);
  }
}

/** `berth run --docker` as a child process. */
export class BerthProc {
  proc?: ChildProcess;
  url = '';
  readonly logFile: string;

  constructor(
    readonly pinRoot: string,
    readonly sock: string,
    readonly uplinks: readonly string[],
    readonly dir: string,
    readonly extra: readonly string[] = [],
  ) {
    this.logFile = path.join(dir, 'berth.log');
  }

  /** `timeoutMs`: a start that loads the dataplane (an empty pin root) runs the verifier, slow on a busy machine */
  start(timeoutMs = 120000): Promise<void> {
    // --interfaces '': berth serves the uplinks alone, never the machine's own interfaces
    const args = ['--bpffs', this.pinRoot, 'run', '--docker', '--docker-socket', this.sock, '--uplinks', this.uplinks.join(','), '--interfaces', '', '--metrics', '127.0.0.1:0', '--interval', '2000', ...this.extra];
    const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    const log = fs.createWriteStream(this.logFile, { flags: 'a' });
    proc.stderr!.pipe(log);
    return new Promise((resolve, reject) => {
      let out = '';
      // bounded, with room for a loaded machine (BPF loads and verification are CPU-bound); its log goes with the error
      const timer = setTimeout(() => reject(new Error(`berth did not start in ${timeoutMs / 1000} s: ${out}; its log: ${this.logText().split('\n').slice(-20).join('\n')}`)), timeoutMs);
      proc.stdout!.on('data', (d) => {
        out += d;
        const m = /metrics at (http:\/\/\S+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          this.url = m[1]!;
          resolve();
        }
      });
      proc.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`berth exited ${code}: ${out}; log ${this.logFile}`));
      });
    });
  }

  kill9(): void {
    if (this.proc && this.proc.exitCode === null) this.proc.kill('SIGKILL');
    this.proc = undefined;
  }

  signal(sig: NodeJS.Signals): void {
    this.proc?.kill(sig);
  }

  async metrics(): Promise<string> {
    const r = await fetch(this.url, { signal: AbortSignal.timeout(5000) });
    return r.text();
  }

  logText(): string {
    try {
      return fs.readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }
}

/** A container's web + UDP servers: "NAME" on tcp 80, 81, 82; "udp-NAME from <client>" on udp 5000. */
export function serverCmd(name: string): string[] {
  return ['sh', '-c', `echo ${name} > /www/index.html; udpecho 5000 udp-${name} & httpd -p 81 -h /www; httpd -p 82 -h /www; exec httpd -f -p 80 -h /www`];
}

/** serverCmd, plus the IPv6 UDP echo on udp 5006: "udp6-NAME from <client v6 address>". */
export function serverCmd6(name: string): string[] {
  return ['sh', '-c', `echo ${name} > /www/index.html; udpecho 5000 udp-${name} & udpecho6 5006 udp6-${name} & httpd -p 81 -h /www; httpd -p 82 -h /www; exec httpd -f -p 80 -h /www`];
}

/** A container's wget to ip:port (its own busybox wget: Dockerd.inside): "answer BODY" or "blocked (...)". */
export async function fromContainer(d: Dockerd, c: string, host: string, port: number): Promise<string> {
  const r = await d.inside(c, ['/bin/timeout', '3', '/bin/wget', '-qO-', `http://${host.includes(':') ? `[${host}]` : host}:${port}/`], 20000);
  return r.code === 0 ? `answer ${r.stdout.trim()}` : 'blocked';
}

/** Run fns with at most `limit` at once. */
export async function pool<T>(fns: ReadonlyArray<() => Promise<T>>, limit: number): Promise<T[]> {
  const out: T[] = new Array(fns.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < fns.length) {
      const i = next++;
      out[i] = await fns[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, fns.length) }, worker));
  return out;
}
