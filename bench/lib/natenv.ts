/**
 * The topology of the NAT scenarios, built once by the suite: one bridge
 * network with a server container and a client container, and one external
 * ("outside host") namespace whose host-side veth is the only uplink. Paths
 * are switched on and off on that same topology:
 *
 *   iptables   Docker 29's rules for the config (userland proxy off), kernel conntrack
 *   proxy      docker-proxy processes for the 127.0.0.1 publishes, no rules
 *   berth      berth's TC (and cgroup) programs; 'berth-xdp' also attaches the XDP drop path
 *
 * Only one is active at a time; switching deactivates the previous one and
 * forgets the suite's kernel conntrack entries.
 *
 * The topology is dual stack (issue 12): the network has a subnet6, both
 * containers an ip6, the outside host an address6 on the uplink's link, so
 * the same paths carry the IPv6 scenarios (published6, masquerade6). A
 * `HP:CP` publish serves both families (Docker 29); the iptables path
 * installs the ip6tables half of the reference too (test/lib/reference6.ts,
 * through applyReference), and forwarding is on per interface for both
 * families (standalone.enableForwarding; the reference sets IPv6's
 * force_forwarding itself and restores it).
 */
import { BerthConfig, parseConfig } from '../../src/domain/config';
import { Dataplane } from '../../src/platform/dataplane';
import { run } from '../../src/platform/exec';
import { readCounters } from '../../src/observe/stats';
import { externalVethName } from '../../src/domain/names';
import { publishKeyCodec, publishValueCodec } from '../../src/platform/contract';
import * as standalone from '../../src/sources/standalone';
import * as topology from '../../src/platform/topology';
import { forgetFlows, installDocker, otherPorts, IptablesPath } from './iptables';
import { Proxy, startProxy } from './dockerproxy';

/**
 * Switch berth off without unloading it: detach every hook, the bridges' included (the kernel path is
 * then as if berth were not there) and empty its conntrack table. Loading the
 * objects again each time would cost more than a measurement.
 */
export async function berthOff(pinRoot: string): Promise<void> {
  if (!Dataplane.isPinned(pinRoot)) return;
  const dp = Dataplane.openPinned(pinRoot);
  try {
    for (const a of dp.attachments()) dp.detachHook(a.ifindex, a.direction);
    for (const u of dp.uplinkAttachments()) dp.detachUplink(u.ifindex, u.kind);
    // the networks' choke points too: left on, they drop the Docker path's DNAT'd packets (not_published)
    for (const b of dp.bridgeAttachments()) dp.detachBridge(b.ifindex, [b.direction]);
    for (const c of dp.cgroupAttachments()) dp.detachCgroup(c.hook);
    const keys = dp.maps.ct.keys();
    if (keys.length) await dp.maps.ct.deleteBatch(keys);
  } finally {
    dp.close();
  }
}

/** Every packet the pinned dataplane's programs passed or redirected so far (all interfaces, both families). */
export async function berthPackets(pinRoot: string): Promise<number> {
  const dp = Dataplane.openPinned(pinRoot);
  try {
    let n = 0n;
    for (const r of await readCounters(dp)) n += r.pass.packets + r.redirect.packets;
    return Number(n);
  } finally {
    dp.close();
  }
}

export interface NatAddrs {
  net4?: string;
  ext4?: string;
  net6?: string;
  ext6?: string;
  pinRoot?: string;
}

export type Mode = 'none' | 'iptables' | 'proxy' | 'berth' | 'berth-xdp';

export interface Activation {
  /** publish specs of the server container, Docker -p syntax */
  publish: string[];
  /** other published ports (rule scale) */
  others?: number;
}

export class NatEnv {
  readonly pinRoot: string;
  readonly suffix: string;
  readonly server: { ns: string; ip: string; ip6: string };
  readonly client: { ns: string; ip: string; ip6: string };
  readonly ext: { ns: string; addr: string; hostAddr: string; addr6: string; hostAddr6: string; hostIf: string };
  /** the network's and the uplink link's IPv6 prefixes (/64) */
  readonly subnet6: string;
  readonly link6: string;
  readonly unusedIp: string;
  /** the network's /24, first three octets */
  readonly net4: string;
  private mode: Mode = 'none';
  private ipt?: IptablesPath;
  private proxies: Proxy[] = [];
  private current?: Activation;
  /** seconds the last berth activation took to write the other ports */
  lastBerthOtherSeconds = 0;
  lastIptablesOtherSeconds = 0;

  constructor(
    readonly tag: string,
    readonly third: number,
    readonly proxyBin: () => Promise<string>,
    /** where it lives (tests give their own): the /24s' first three octets, the /64s' first two groups, the pin root */
    at: NatAddrs = {},
  ) {
    this.pinRoot = at.pinRoot ?? `/sys/fs/bpf/berth-bench-${tag}-nat`;
    this.suffix = `${tag}N`.slice(0, 12);
    const x = third.toString(16);
    const net4 = at.net4 ?? `10.190.${third}`;
    const ext4 = at.ext4 ?? `10.191.${third}`;
    const net6 = at.net6 ?? `fd90:${x}`;
    const ext6 = at.ext6 ?? `fd91:${x}`;
    this.subnet6 = `${net6}::/64`;
    this.link6 = `${ext6}::/64`;
    this.net4 = net4;
    this.server = { ns: `${tag}-s`, ip: `${net4}.10`, ip6: `${net6}::10` };
    this.client = { ns: `${tag}-c`, ip: `${net4}.11`, ip6: `${net6}::11` };
    this.unusedIp = `${net4}.200`;
    // the host side of an external is the first address of its subnet (config.ts): fd91:X::1
    this.ext = { ns: `${tag}-x`, addr: `${ext4}.2`, hostAddr: `${ext4}.1`, addr6: `${ext6}::2`, hostAddr6: `${ext6}::1`, hostIf: externalVethName(`${tag}-x`) };
  }

  cfg(publish: string[] = []): BerthConfig {
    const { tag } = this;
    const pub = publish.length ? `\n    publish: [${publish.map((p) => JSON.stringify(p)).join(', ')}]` : '';
    return parseConfig(
      `uplinks: [${this.ext.hostIf}]
interfaces: []
networks:
  - name: ${tag}n
    subnet: ${this.net4}.0/24
    subnet6: ${this.subnet6}
    bridge: ${`${tag}nb`.slice(0, 15)}
containers:
  - name: ${this.server.ns}
    network: ${tag}n
    ip: ${this.server.ip}
    ip6: ${this.server.ip6}${pub}
  - name: ${this.client.ns}
    network: ${tag}n
    ip: ${this.client.ip}
    ip6: ${this.client.ip6}
externals:
  - name: ${this.ext.ns}
    address: ${this.ext.addr}/24
    address6: ${this.ext.addr6}/64
settings:
  conntrack:
    max: 524288
`,
      'bench-nat',
    );
  }

  async setup(): Promise<void> {
    Dataplane.reset(this.pinRoot);
    await topology.up(this.cfg(), { startCommands: false });
    await standalone.enableForwarding(this.cfg());
  }

  async activate(mode: Mode, a: Activation): Promise<void> {
    await this.deactivate();
    const cfg = this.cfg(a.publish);
    this.current = a;
    this.mode = mode;
    if (mode === 'iptables') {
      this.ipt = await installDocker(cfg, { uplinks: [this.ext.hostIf], suffix: this.suffix, others: a.others ?? 0, unusedIp: this.unusedIp });
      this.lastIptablesOtherSeconds = this.ipt.otherSeconds;
    } else if (mode === 'proxy') {
      const bin = await this.proxyBin();
      for (const b of cfg.containers[0].publish)
        this.proxies.push(await startProxy(bin, { hostIp: b.hostIp, hostPort: b.hostPort, containerIp: this.server.ip, containerPort: b.containerPort }));
    } else if (mode === 'berth' || mode === 'berth-xdp') {
      await standalone.up(cfg, { pinRoot: this.pinRoot, startCommands: false, xdp: mode === 'berth-xdp' });
      this.lastBerthOtherSeconds = (a.others ?? 0) > 0 ? await this.writeOthers(a.others!) : 0;
    }
  }

  /** N other published ports in berth_publish, written directly with the map codecs (one batch). */
  private async writeOthers(n: number): Promise<number> {
    const dp = Dataplane.openPinned(this.pinRoot);
    try {
      // the measured publish's IPv4 entry (the dual-stack topology has its IPv6 twin too)
      const tested = (await dp.maps.publish.dump()).find(([k]) => !publishKeyCodec.decode(k).host_addr.includes(':'));
      if (!tested) throw new Error('berth: the measured publish\'s IPv4 entry is not in berth_publish');
      const v = publishValueCodec.decode(tested[1]);
      // keyed on the suite's own host address, so that the host's connect()
      // hook cannot take over other sockets of this machine
      const keys = otherPorts(n).map((p) => publishKeyCodec.encode({ host_addr: this.ext.hostAddr, host_port: p, proto: 6 }));
      const value = publishValueCodec.encode({ ...v, addr: this.unusedIp, port: 80 });
      const t0 = process.hrtime.bigint();
      await dp.maps.publish.updateBatch(keys, keys.map(() => value));
      return Number(process.hrtime.bigint() - t0) / 1e9;
    } finally {
      dp.close();
    }
  }

  /**
   * Packets the active path has handled so far, to show a scenario's rows
   * really took that path (the bench reports the change over each path's
   * runs): berth, every packet its programs passed or redirected (counters
   * of the pinned dataplane); iptables, the packet counts of the suite's
   * DNAT and MASQUERADE rules in the nat table of the family (the first
   * packet of each connection). undefined for the other modes.
   */
  async pathPackets(family: 4 | 6): Promise<number | undefined> {
    if (this.mode === 'berth' || this.mode === 'berth-xdp') return berthPackets(this.pinRoot);
    if (this.mode === 'iptables') {
      const { stdout } = await run(family === 6 ? 'ip6tables-save' : 'iptables-save', ['-c', '-t', 'nat']);
      let n = 0;
      for (const l of stdout.split('\n')) {
        const m = /^\[(\d+):\d+\] -A (\S+) .*-j (DNAT|MASQUERADE)\b/.exec(l);
        if (m && m[2].endsWith(`-${this.suffix}`)) n += Number(m[1]);
      }
      return n;
    }
    return undefined;
  }

  /** Pin docker-proxy processes (the one-CPU runs share CPU 1 with everything). */
  async proxyCpu(cpus: string): Promise<void> {
    for (const p of this.proxies) await p.setCpu(cpus);
  }

  async deactivate(): Promise<void> {
    const mode = this.mode;
    this.mode = 'none';
    const problems: string[] = [];
    if (mode === 'iptables') await this.ipt?.undo().catch((e: Error) => problems.push(e.message));
    this.ipt = undefined;
    for (const p of this.proxies) await p.stop();
    this.proxies = [];
    if (mode === 'berth' || mode === 'berth-xdp') await berthOff(this.pinRoot);
    if (mode !== 'none') await this.forget();
    if (problems.length) throw new Error(problems.join('; '));
  }

  /** The suite's own kernel conntrack entries, and nothing else. */
  async forget(): Promise<void> {
    const f: string[][] = [['-d', this.ext.hostAddr], ['-d', this.ext.addr], ['-d', this.server.ip]];
    for (const a of [this.ext.hostAddr6, this.ext.addr6, this.server.ip6]) f.push(['-f', 'ipv6', '-d', a]);
    const lo = (this.current?.publish ?? []).filter((p) => p.startsWith('127.')).map((p) => p.split(':')[1]);
    for (const port of lo) f.push(['-d', '127.0.0.1', '-p', 'tcp', '--dport', port]);
    await forgetFlows(f);
  }

  async teardown(): Promise<void> {
    await this.deactivate().catch(() => undefined);
    Dataplane.reset(this.pinRoot);
    await topology.down(this.cfg()).catch(() => undefined);
    for (const ns of [this.server.ns, this.client.ns, this.ext.ns]) await run('ip', ['netns', 'del', ns]).catch(() => undefined);
  }
}
