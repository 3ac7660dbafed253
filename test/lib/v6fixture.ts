/**
 * The fixture of the IPv6 NAT and user-policy tests (v6-nat.test.ts,
 * v6-policy.test.ts): `berth up` makes the namespaces, veths and the IPv4
 * state of a config with one network; the IPv6 side is then given by hand
 * (addresses with nodad, the containers' default routes, forwarding on the
 * bridge for bpf_fib_lookup AF_INET6) and the desired state's IPv6 fields
 * (network subnet6/gateway6, endpoints' ip6, `[::]` publishes, the uplinks'
 * addr6 and host addresses) are written directly and reconciled, as the
 * daemon would from a v6 config. Also: a test's Python server in a
 * namespace (its output lines collected), its client, a bounded retry of the
 * client until the answer comes, and berth's counters of one interface.
 * Everything is removed at the test's teardown, also after a failure.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { BerthConfig } from '../../src/domain/config';
import { Dataplane } from '../../src/platform/dataplane';
import { run } from '../../src/platform/exec';
import { externalVethName, hostVethName } from '../../src/domain/names';
import { reconcile, DesiredState } from '../../src/engine/reconcile';
import * as standalone from '../../src/sources/standalone';
import { readCounters } from '../../src/observe/stats';
import { waitFor } from './dockerd';
import { forceDown } from './topo';

export interface V6FixtureSpec {
  /** one network, its containers and externals (IPv4 only: the IPv6 side is below) */
  cfg: BerthConfig;
  pinRoot: string;
  /** the temporary directory's name prefix */
  tag: string;
  /** the network's /64 ("fd85:1::") and its gateway6, on the bridge */
  subnet6: string;
  gateway6: string;
  /** each container's IPv6 address, by container name */
  ip6: Readonly<Record<string, string>>;
  /** each uplink (an external of cfg, by name): the host side's addr6 (the NAT66 source) and the outside host's address, both /64 */
  uplinks6: ReadonlyArray<{ external: string; addr6: string; remote6: string }>;
  /** `[::]` publishes of a container's port */
  publish6: ReadonlyArray<{ hostPort: number; proto: 'tcp' | 'udp'; container: string; port: number }>;
  /** the Python server (argument: its port) and client scripts of the test */
  server: string;
  client: string;
}

export class V6Fixture {
  readonly dir: string;
  private readonly servers: ChildProcess[] = [];

  constructor(
    t: { teardown(fn: () => void | Promise<void>): void },
    readonly spec: V6FixtureSpec,
  ) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-${spec.tag}-`));
    fs.writeFileSync(path.join(this.dir, 'server.py'), spec.server);
    fs.writeFileSync(path.join(this.dir, 'client.py'), spec.client);
    const { cfg, pinRoot } = spec;
    t.teardown(async () => {
      for (const s of this.servers) s.kill('SIGKILL');
      await forceDown(cfg, pinRoot, {
        netns: [...cfg.containers.map((c) => c.name), ...cfg.externals.map((e) => e.name)],
        links: [...cfg.networks.map((n) => n.bridge), ...cfg.containers.map((c) => hostVethName(c.name)), ...cfg.externals.map((e) => externalVethName(e.name))],
      });
      fs.rmSync(this.dir, { recursive: true, force: true });
    });
  }

  /** `berth up`, the IPv6 side, the desired state with its IPv6 fields reconciled; what `berth up` realized and the desired state. */
  async up(): Promise<{ res: standalone.SyncResult; desired: DesiredState }> {
    const { cfg, pinRoot, subnet6, gateway6, ip6, uplinks6, publish6 } = this.spec;
    const res = await standalone.up(cfg, { pinRoot, startCommands: false });
    const bridge = cfg.networks[0]!.bridge;
    // IPv6 on the bridge, the containers, the uplinks and the outside hosts (nodad: no DAD wait)
    await run('ip', ['-6', 'addr', 'add', `${gateway6}/64`, 'dev', bridge, 'nodad']);
    for (const [c, a] of Object.entries(ip6)) {
      await run('ip', ['-n', c, '-6', 'addr', 'add', `${a}/64`, 'dev', 'eth0', 'nodad']);
      await run('ip', ['-n', c, '-6', 'route', 'replace', 'default', 'via', gateway6]);
    }
    for (const u of uplinks6) {
      await run('ip', ['-6', 'addr', 'add', `${u.addr6}/64`, 'dev', externalVethName(u.external), 'nodad']);
      await run('ip', ['-n', u.external, '-6', 'addr', 'add', `${u.remote6}/64`, 'dev', 'eth0', 'nodad']);
    }
    // the route lookup (bpf_fib_lookup AF_INET6) needs forwarding on the bridge it starts from
    fs.writeFileSync(`/proc/sys/net/ipv6/conf/${bridge}/forwarding`, '1');

    // the desired state, IPv6 fields written directly (src/engine/reconcile.ts types)
    const host = await standalone.readHostFacts();
    const base = standalone.desiredFrom(cfg, res.endpoints, host);
    const ep = new Map(res.endpoints.map((e) => [e.container, e]));
    const addr6Of = new Map(uplinks6.map((u) => [externalVethName(u.external), u.addr6]));
    const desired: DesiredState = {
      ...base,
      networks: base.networks.map((n) => ({ ...n, subnet6, prefixLen6: 64, gateway6 })),
      endpoints: base.endpoints.map((e) => ({ ...e, ip6: ip6[e.container] })),
      publish: [
        ...(base.publish ?? []),
        ...publish6.map((p) => {
          const e = ep.get(p.container)!;
          return { hostIp: '::', hostPort: p.hostPort, proto: p.proto, container: p.container, network: e.network, ip: ip6[p.container]!, port: p.port, ifindex: e.hostIfindex, mac: e.mac };
        }),
      ],
      hostAddrs: [...(base.hostAddrs ?? []), ...uplinks6.map((u) => ({ addr: u.addr6, ifindex: this.ifindexOf(externalVethName(u.external)) }))],
      uplinks: (base.uplinks ?? []).map((u) => (addr6Of.has(u.ifname) ? { ...u, addr6: addr6Of.get(u.ifname) } : u)),
    };
    const dp = Dataplane.openPinned(pinRoot);
    try {
      await reconcile(dp, desired, standalone.scopeOf(cfg));
    } finally {
      dp.close();
    }
    return { res, desired };
  }

  ns(name: string, ...args: string[]): Promise<{ stdout: string }> {
    return run('ip', ['netns', 'exec', name, ...args]);
  }

  ifindexOf(name: string): number {
    return Number(fs.readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8').trim());
  }

  /** The test's server on `port` in namespace `name`; the lines it printed so far, on call. */
  serve(name: string, port: number): () => string[] {
    const got: string[] = [];
    const p = spawn('ip', ['netns', 'exec', name, 'python3', '-u', path.join(this.dir, 'server.py'), String(port)], { stdio: ['ignore', 'pipe', 'ignore'] });
    p.stdout!.on('data', (b: Buffer) => got.push(...b.toString().split('\n').filter(Boolean)));
    this.servers.push(p);
    return () => [...got];
  }

  /** The test's client, once, from namespace `from`: what it printed ("error" if it failed). */
  client(from: string, ...args: Array<string | number>): Promise<string> {
    return this.ns(from, 'python3', path.join(this.dir, 'client.py'), ...args.map(String)).then((r) => r.stdout.trim(), () => 'error');
  }

  /** The client retried until it prints `want` (ND and DAD settle; bounded: 15 s), then what it printed last. */
  async ask(from: string, args: ReadonlyArray<string | number>, want: string): Promise<string> {
    let last = '';
    await waitFor(async () => (last = await this.client(from, ...args)) === want, 15000, 200);
    return last;
  }

  /** berth's packets on interface `ifindex` (direction containing `direction`, '' any): redirected, passed, or dropped for reason `what`. */
  counter(ifindex: number, direction: string, what: 'redirect' | 'pass' | string): Promise<bigint> {
    return packetCount(this.spec.pinRoot, ifindex, direction, what);
  }
}

/** berth's packets (pinned under pinRoot) on interface `ifindex` (direction containing `direction`, '' any): redirected, passed, or dropped for reason `what`. */
export async function packetCount(pinRoot: string, ifindex: number, direction: string, what: 'redirect' | 'pass' | string): Promise<bigint> {
  const dp = Dataplane.openPinned(pinRoot);
  try {
    let n = 0n;
    for (const r of await readCounters(dp)) {
      if (r.ifindex !== ifindex || (direction && !String(r.direction).includes(direction))) continue;
      if (what === 'redirect') n += r.redirect.packets;
      else if (what === 'pass') n += r.pass.packets;
      else n += r.drop[what]?.packets ?? 0n;
    }
    return n;
  } finally {
    dp.close();
  }
}
