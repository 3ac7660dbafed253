/**
 * The iptables reference: the rules Docker 29 (iptables firewall backend,
 * userland proxy OFF, IPv4 only) installs for the networks, containers and
 * published ports of a berth config, so that tests can check berth's BPF
 * dataplane against what Docker itself would do, packet for packet.
 *
 * Layout (Docker 29, moby's integration/network/bridge/iptablesdoc):
 *
 *   filter FORWARD           -j DOCKER-USER, -j DOCKER-FORWARD
 *   filter DOCKER-USER       (empty: the user's hook)
 *   filter DOCKER-FORWARD    -j DOCKER-CT, -j DOCKER-INTERNAL, -j DOCKER-BRIDGE, then per network:
 *                              icc:    -i br -j ACCEPT
 *                              no icc: -i br -o br -j DROP; -i br ! -o br -j ACCEPT
 *                              internal: -i br -o br -j ACCEPT|DROP (icc) only
 *   filter DOCKER-CT         -o br -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT  (not internal)
 *   filter DOCKER-BRIDGE     -o br -j DOCKER  (not internal)
 *   filter DOCKER            per published port: -d C ! -i br -o br -p P --dport CP -j ACCEPT,
 *                            then per bridge: ! -i br -o br -j DROP
 *   filter DOCKER-INTERNAL   per internal network: ! -s S -o br -j DROP; ! -d S -i br -j DROP
 *   nat PREROUTING           -m addrtype --dst-type LOCAL -j DOCKER
 *   nat OUTPUT               -m addrtype --dst-type LOCAL -j DOCKER  (proxy off: loopback too)
 *   nat POSTROUTING          per bridge: -o br -m addrtype --src-type LOCAL -j MASQUERADE (proxy off)
 *                            per masquerading network: -s S ! -o br -j MASQUERADE
 *                            per published port: -s C -d C -p P --dport CP -j MASQUERADE (hairpin)
 *   nat DOCKER               per published port: [-d hostIp] -p P --dport HP -j DNAT --to-destination C:CP
 *                            (proxy off: no `! -i br`, so containers reach published ports too)
 *   raw PREROUTING           per endpoint: -d C ! -i br -j DROP (no direct access from outside;
 *                            this also isolates networks from each other, replacing 20.10-28's
 *                            DOCKER-ISOLATION-STAGE-1/2 chains)
 *                            per 127.x publish: -d 127.0.0.1 ! -i lo -p P --dport HP -j DROP
 *   sysctl                   forwarding=1 on the config's bridges and uplinks (Docker sets the
 *                            machine-wide ip_forward); route_localnet=1 on bridges with 127.x publishes
 *   bridge ports             hairpin on for every endpoint of a non-internal network (Docker does
 *                            so with the userland proxy off: with br_netfilter loaded, a DNATed
 *                            packet from a container to its own published port is bridged back
 *                            out of the port it came in on)
 *
 * Internal networks get no nat rules, no raw rules and no DOCKER/CT/BRIDGE
 * rules (their publishes are rejected by the config anyway).
 *
 * Routed networks (gateway_mode_ipv4=routed; moby's iptabler, golden files
 * `gwm=routed`): the filter rules above plus `DOCKER: -o br -p icmp -j ACCEPT`
 * (after the per-port ACCEPTs, before the DROP); no MASQUERADE of the subnet;
 * no raw `-d C ! -i br -j DROP` for their endpoints; and their publishes get
 * the filter ACCEPT of the container port only: the routed port mapper clears
 * the host port, so there is no DNAT, no hairpin MASQUERADE and no raw
 * loopback DROP for them (a `127.0.0.1:` publish opens the container port all
 * the same). Rules are
 * written the way `iptables-save` prints them (option order, /32, `-m tcp`),
 * so they can be compared with its output line by line. Within a chain the
 * order follows the config (Docker's order depends on creation history;
 * the verdicts do not).
 *
 * With `chainSuffix`, every chain is renamed NAME-<suffix> — the builtin
 * chains too (FORWARD-<suffix>, PREROUTING-<suffix>, ...) — and the real
 * builtin chains get entry rules that only match the config's own
 * interfaces and addresses (bridges, uplinks, bridge/external host
 * addresses, loopback published ports, and the test's other host
 * interfaces: hostInterfaces), so parallel tests cannot see each other's
 * rules.
 */
import * as fs from 'node:fs';
import type { BerthConfig, NetworkConfig } from '../../src/config';
import { run } from '../../src/exec';
import { hostVethName } from '../../src/names';

const uniq = (xs: string[]): string[] => [...new Set(xs)];

export interface ReferenceOptions {
  /** Interfaces that bring traffic in from outside (the config's, if it names them, are added). */
  uplinks: readonly string[];
  /**
   * The host's other interfaces a test made (a second NIC, a foreign bridge,
   * an L3 device), with their addresses. Docker 29's rules cover every
   * interface and every local address, and its ip_forward is machine-wide:
   * the scoped entry rules (chainSuffix) catch these interfaces' traffic and
   * the host's connections to these addresses too, and applyReference turns
   * forwarding on there. Docker's own rules do not change.
   */
  hostInterfaces?: readonly { ifname: string; addr?: string }[];
  /** Rename every chain NAME-<suffix> and add scoped entry rules (at most 12 characters). */
  chainSuffix?: string;
}

export interface ReferenceRules {
  /** iptables-restore lines (":CHAIN - [0:0]" declarations, then "-A" rules), without "*table"/COMMIT. */
  filter: string[];
  nat: string[];
  raw: string[];
}

type Table = keyof ReferenceRules;
const TABLES: readonly Table[] = ['raw', 'nat', 'filter'];
const BUILTIN: Record<Table, readonly string[]> = {
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  raw: ['PREROUTING', 'OUTPUT'],
};

function isLoopback(ip: string): boolean {
  return ip.startsWith('127.');
}

function portMatch(proto: string, port: number): string {
  return `-p ${proto} -m ${proto} --dport ${port}`;
}

export function dockerRules(cfg: BerthConfig, opts: ReferenceOptions): ReferenceRules {
  const sfx = opts.chainSuffix;
  if (sfx !== undefined && !/^[A-Za-z0-9_]{1,12}$/.test(sfx)) throw new Error(`chainSuffix ${JSON.stringify(sfx)}: 1..12 of [A-Za-z0-9_]`);
  const ch = (name: string): string => (sfx ? `${name}-${sfx}` : name);

  const netOf = new Map<string, NetworkConfig>(cfg.networks.map((n) => [n.name, n]));
  const ext = cfg.networks.filter((n) => !n.internal);
  const internal = cfg.networks.filter((n) => n.internal);
  /** (container, network, binding) for every publish on a non-internal network */
  const pubs = cfg.containers.flatMap((c) => {
    const net = netOf.get(c.network)!;
    return net.internal ? [] : c.publish.map((b) => ({ c, net, b }));
  });
  const routed = (n: NetworkConfig): boolean => n.gatewayMode === 'routed';
  /** the publishes with a host port: nat networks' (a routed network's have none) */
  const natPubs = pubs.filter(({ net }) => !routed(net));

  // ---- filter
  const fDecl = ['DOCKER', 'DOCKER-BRIDGE', 'DOCKER-CT', 'DOCKER-FORWARD', 'DOCKER-INTERNAL', 'DOCKER-USER'];
  const f: string[] = [];
  f.push(`-A ${ch('FORWARD')} -j ${ch('DOCKER-USER')}`, `-A ${ch('FORWARD')} -j ${ch('DOCKER-FORWARD')}`);
  f.push(...uniq(pubs.map(({ c, net, b }) => `-A ${ch('DOCKER')} -d ${c.ip}/32 ! -i ${net.bridge} -o ${net.bridge} ${portMatch(b.proto, b.containerPort)} -j ACCEPT`)));
  for (const n of ext) if (routed(n)) f.push(`-A ${ch('DOCKER')} -o ${n.bridge} -p icmp -j ACCEPT`);
  for (const n of ext) f.push(`-A ${ch('DOCKER')} ! -i ${n.bridge} -o ${n.bridge} -j DROP`);
  for (const n of ext) f.push(`-A ${ch('DOCKER-BRIDGE')} -o ${n.bridge} -j ${ch('DOCKER')}`);
  for (const n of ext) f.push(`-A ${ch('DOCKER-CT')} -o ${n.bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`);
  f.push(`-A ${ch('DOCKER-FORWARD')} -j ${ch('DOCKER-CT')}`, `-A ${ch('DOCKER-FORWARD')} -j ${ch('DOCKER-INTERNAL')}`, `-A ${ch('DOCKER-FORWARD')} -j ${ch('DOCKER-BRIDGE')}`);
  for (const n of cfg.networks) {
    const F = ch('DOCKER-FORWARD');
    if (n.internal) f.push(`-A ${F} -i ${n.bridge} -o ${n.bridge} -j ${n.icc ? 'ACCEPT' : 'DROP'}`);
    else if (n.icc) f.push(`-A ${F} -i ${n.bridge} -j ACCEPT`);
    else f.push(`-A ${F} -i ${n.bridge} -o ${n.bridge} -j DROP`, `-A ${F} -i ${n.bridge} ! -o ${n.bridge} -j ACCEPT`);
  }
  for (const n of internal) {
    f.push(`-A ${ch('DOCKER-INTERNAL')} ! -s ${n.subnetCidr} -o ${n.bridge} -j DROP`, `-A ${ch('DOCKER-INTERNAL')} ! -d ${n.subnetCidr} -i ${n.bridge} -j DROP`);
  }

  // ---- nat
  const nDecl = ['DOCKER'];
  const n: string[] = [];
  n.push(`-A ${ch('PREROUTING')} -m addrtype --dst-type LOCAL -j ${ch('DOCKER')}`, `-A ${ch('OUTPUT')} -m addrtype --dst-type LOCAL -j ${ch('DOCKER')}`);
  for (const net of ext) {
    n.push(`-A ${ch('POSTROUTING')} -o ${net.bridge} -m addrtype --src-type LOCAL -j MASQUERADE`);
    if (net.masquerade && !routed(net)) n.push(`-A ${ch('POSTROUTING')} -s ${net.subnetCidr} ! -o ${net.bridge} -j MASQUERADE`);
  }
  n.push(...uniq(natPubs.map(({ c, b }) => `-A ${ch('POSTROUTING')} -s ${c.ip}/32 -d ${c.ip}/32 ${portMatch(b.proto, b.containerPort)} -j MASQUERADE`)));
  for (const { c, b } of natPubs) {
    const dst = b.hostIp === '0.0.0.0' ? '' : `-d ${b.hostIp}/32 `;
    n.push(`-A ${ch('DOCKER')} ${dst}${portMatch(b.proto, b.hostPort)} -j DNAT --to-destination ${c.ip}:${b.containerPort}`);
  }

  // ---- raw
  const r: string[] = [];
  for (const c of cfg.containers) {
    const net = netOf.get(c.network)!;
    if (!net.internal && !routed(net)) r.push(`-A ${ch('PREROUTING')} -d ${c.ip}/32 ! -i ${net.bridge} -j DROP`);
  }
  for (const { b } of natPubs) {
    if (isLoopback(b.hostIp)) r.push(`-A ${ch('PREROUTING')} -d ${b.hostIp}/32 ! -i lo ${portMatch(b.proto, b.hostPort)} -j DROP`);
  }

  const decl = (names: string[]): string[] => names.map((c) => `:${ch(c)} - [0:0]`);
  if (!sfx) return { filter: [...decl(fDecl), ...f], nat: [...decl(nDecl), ...n], raw: r };

  // ---- suffixed: builtins become custom chains, entered only for our own traffic
  const others = opts.hostInterfaces ?? [];
  const ifaces = uniq([...cfg.networks.map((x) => x.bridge), ...(cfg.uplinks ?? []), ...opts.uplinks, ...cfg.externals.map((e) => e.hostIfname), ...others.map((o) => o.ifname)]);
  const localAddrs = uniq([
    ...cfg.networks.map((x) => x.gateway),
    ...cfg.externals.map((e) => e.hostAddress),
    ...others.flatMap((o) => (o.addr ? [o.addr] : [])),
    ...natPubs.filter(({ b }) => b.hostIp !== '0.0.0.0' && !isLoopback(b.hostIp)).map(({ b }) => b.hostIp),
  ]);
  // Docker's `OUTPUT -m addrtype --dst-type LOCAL` also catches 127.0.0.1 for
  // ports published on every address: enter our OUTPUT for those too
  const loPubs = uniq([
    ...natPubs.filter(({ b }) => isLoopback(b.hostIp)).map(({ b }) => `-d ${b.hostIp}/32 ${portMatch(b.proto, b.hostPort)}`),
    ...natPubs.filter(({ b }) => b.hostIp === '0.0.0.0').map(({ b }) => `-d 127.0.0.1/32 ${portMatch(b.proto, b.hostPort)}`),
  ]);
  const entries: Record<Table, string[]> = {
    // goto: each forwarded packet runs through our FORWARD at most once
    filter: ifaces.flatMap((i) => [`-A FORWARD -i ${i} -g ${ch('FORWARD')}`, `-A FORWARD -o ${i} -g ${ch('FORWARD')}`]),
    nat: [
      ...ifaces.map((i) => `-A PREROUTING -i ${i} -j ${ch('PREROUTING')}`),
      ...localAddrs.map((a) => `-A OUTPUT -d ${a}/32 -j ${ch('OUTPUT')}`),
      ...loPubs.map((m) => `-A OUTPUT ${m} -j ${ch('OUTPUT')}`),
      ...ifaces.map((i) => `-A POSTROUTING -o ${i} -j ${ch('POSTROUTING')}`),
    ],
    raw: ifaces.map((i) => `-A PREROUTING -i ${i} -j ${ch('PREROUTING')}`),
  };
  const builtinDecl = (t: Table, used: string[]): string[] => BUILTIN[t].filter((b) => used.some((l) => l.startsWith(`-A ${ch(b)} `))).map((b) => `:${ch(b)} - [0:0]`);
  return {
    filter: [...decl(fDecl), ...builtinDecl('filter', f), ...f, ...entries.filter],
    nat: [...decl(nDecl), ...builtinDecl('nat', n), ...n, ...entries.nat],
    raw: [...builtinDecl('raw', r), ...r, ...entries.raw],
  };
}

/** Custom chains declared by a rule set. */
export function chainsOf(lines: readonly string[]): string[] {
  return lines.filter((l) => l.startsWith(':')).map((l) => l.slice(1).split(' ')[0]!);
}

/** The entry rules in builtin chains of a rule set. */
function builtinRules(t: Table, lines: readonly string[]): string[] {
  return lines.filter((l) => BUILTIN[t].some((b) => l.startsWith(`-A ${b} `)));
}

async function restore(text: string): Promise<void> {
  const { spawn } = await import('node:child_process');
  await new Promise<void>((resolve, reject) => {
    const p = spawn('iptables-restore', ['--noflush', '--wait'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`iptables-restore --noflush failed (exit ${code}): ${err.trim()}\n--- input ---\n${text}`))));
    p.stdin.end(text);
  });
}

function readSysctl(path: string): string | null {
  try {
    return fs.readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

function writeSysctl(path: string, value: string): void {
  fs.writeFileSync(path, `${value}\n`);
}

/**
 * Installs dockerRules(cfg, opts) (chainSuffix required) with
 * `iptables-restore --noflush` and sets the sysctls Docker sets. Returns an
 * undo function that deletes exactly those rules and chains and restores the
 * sysctls it changed; it is safe to call more than once.
 */
export async function applyReference(cfg: BerthConfig, opts: ReferenceOptions): Promise<() => Promise<void>> {
  if (!opts.chainSuffix) throw new Error('applyReference: a chainSuffix is required (the rules must not collide with anything else)');
  const rules = dockerRules(cfg, opts);
  const sysctls: { path: string; old: string }[] = [];
  const hairpins: string[] = [];
  let undone = false;

  const undo = async (): Promise<void> => {
    if (undone) return;
    undone = true;
    const problems: string[] = [];
    for (const t of TABLES) {
      const chains = chainsOf(rules[t]);
      const entries = builtinRules(t, rules[t]);
      // Delete the entry rules that exist, then flush and delete our chains.
      for (const l of entries) {
        const spec = l.slice(3).split(' ');
        for (;;) {
          try {
            await run('iptables', ['-w', '-t', t, '-D', ...spec]);
          } catch {
            break;
          }
        }
      }
      for (const c of chains) await run('iptables', ['-w', '-t', t, '-F', c]).catch(() => undefined);
      for (const c of chains) await run('iptables', ['-w', '-t', t, '-X', c]).catch(() => undefined);
      const left = (await run('iptables-save', ['-t', t])).stdout.split('\n').filter((l) => chains.some((c) => l.includes(c)));
      if (left.length) problems.push(`table ${t}: still there:\n    ${left.join('\n    ')}`);
    }
    for (const v of hairpins) {
      if (fs.existsSync(`/sys/class/net/${v}`)) {
        await run('ip', ['link', 'set', 'dev', v, 'type', 'bridge_slave', 'hairpin', 'off']).catch((err: Error) => problems.push(`hairpin off ${v}: ${err.message}`));
      }
    }
    for (const s of sysctls.reverse()) {
      try {
        if (fs.existsSync(s.path)) writeSysctl(s.path, s.old);
      } catch (err) {
        problems.push(`restore ${s.path}=${s.old}: ${(err as Error).message}`);
      }
    }
    if (problems.length) throw new Error(`applyReference undo incomplete:\n  ${problems.join('\n  ')}`);
  };

  try {
    const set = (path: string, value: string): void => {
      const old = readSysctl(path);
      if (old === null) throw new Error(`sysctl ${path} not found`);
      if (old === value) return;
      writeSysctl(path, value);
      sysctls.push({ path, old });
    };
    // Forwarding on this config's own interfaces only: the machine-wide
    // ip_forward switch would flip every interface, under other tests too.
    for (const i of uniq([...cfg.networks.map((x) => x.bridge), ...opts.uplinks, ...(cfg.uplinks ?? []), ...cfg.externals.map((e) => e.hostIfname), ...(opts.hostInterfaces ?? []).map((o) => o.ifname)]))
      set(`/proc/sys/net/ipv4/conf/${i}/forwarding`, '1');
    const netOf = new Map(cfg.networks.map((n) => [n.name, n]));
    for (const c of cfg.containers) {
      const net = netOf.get(c.network)!;
      if (!net.internal && net.gatewayMode !== 'routed' && c.publish.some((b) => isLoopback(b.hostIp))) set(`/proc/sys/net/ipv4/conf/${net.bridge}/route_localnet`, '1');
    }
    for (const c of cfg.containers) {
      if (netOf.get(c.network)!.internal) continue;
      const v = hostVethName(c.name);
      if (readSysctl(`/sys/class/net/${v}/brport/hairpin_mode`) === '1') continue;
      await run('ip', ['link', 'set', 'dev', v, 'type', 'bridge_slave', 'hairpin', 'on']);
      hairpins.push(v);
    }
    const text = TABLES.filter((t) => rules[t].length > 0)
      .map((t) => `*${t}\n${rules[t].join('\n')}\nCOMMIT\n`)
      .join('');
    await restore(text);
  } catch (err) {
    await undo().catch(() => undefined);
    throw err;
  }
  return undo;
}
