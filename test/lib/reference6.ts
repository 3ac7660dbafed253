/**
 * The ip6tables half of the reference (issue 12): the rules Docker 29
 * (iptables firewall backend, ip6tables on, userland proxy OFF) installs for
 * the IPv6 side of a config's networks, containers and published ports, in
 * the form `ip6tables-save` prints them, with the same chain suffix scheme as
 * the IPv4 half (test/lib/reference.ts). applyReference installs both halves.
 *
 * Learnt from moby's iptabler (daemon/libnetwork/drivers/bridge/internal/
 * iptabler: network.go, port.go, endpoint.go) and its `__ip6tables.golden`
 * files (hairpin=true is the proxy-off case). Where IPv6 differs from IPv4:
 *
 *   nat DOCKER        DNAT rules carry `! -s fe80::/10` (a link-local source
 *                     is never translated): `! -s fe80::/10 [-d H/128] -p P
 *                     -m P --dport HP -j DNAT --to-destination [C6]:CP`
 *   nat OUTPUT        proxy off: `-m addrtype --dst-type LOCAL -j DOCKER`, ::1
 *                     included (proxy on it is `! -d ::1/128`)
 *   nat POSTROUTING   `-s S6 ! -o br -j MASQUERADE` for nat-mode networks with
 *                     masquerade, ULA and global prefixes alike (NAT66), the
 *                     `-o br --src-type LOCAL` MASQUERADE and the per-port
 *                     hairpin MASQUERADE `-s C6/128 -d C6/128`
 *   filter DOCKER-INTERNAL  `! -s S6 ! -i br -o br -j DROP` and
 *                     `! -d S6 -i br ! -o br -j DROP` (IPv4's lack the
 *                     `! -i br` / `! -o br`)
 *   filter DOCKER     routed networks: `-o br -p ipv6-icmp -j ACCEPT`
 *   raw PREROUTING    `-d C6/128 ! -i br -j DROP` per endpoint (nat mode, not
 *                     internal); NO loopback rule: moby's
 *                     filterPortMappedOnLoopback is IPv4 only, since the
 *                     kernel itself drops ::1 arriving on any interface but lo
 *                     (ip6_rcv_core, counted in Ip6InHdrErrors)
 *   sysctl            no route_localnet (IPv6 has none); forwarding is
 *                     machine-wide in Docker (net.ipv6.conf.all.forwarding=1);
 *                     applyReference sets the per-interface
 *                     net.ipv6.conf.IF.force_forwarding=1 (Linux 6.17+) on
 *                     the config's own interfaces instead
 *
 * `[::1]:HP:CP` publishes: Docker 29 installs the DNAT `-d ::1/128` (and the
 * filter ACCEPT) all the same, but with the userland proxy off nothing
 * answers: the host's SYN to [::1]:HP is translated to [C6]:CP and leaves
 * masqueraded to the bridge's address, and the container's SYN-ACK, un-NATed
 * back to ::1 in PREROUTING, arrives on the bridge for a loopback address,
 * which the kernel never routes from a non-loopback interface (IPv4 has
 * route_localnet for that, IPv6 nothing): Ip6InNoRoutes, an ICMPv6
 * unreachable to the container, and the host's connect() times out. The
 * same holds for the host to [::1]:HP of a port published on every address.
 * (With the default userland proxy, docker-proxy listens on [::1]:HP and
 * answers.) The reference installs Docker's rules unchanged, so its outcome
 * there is that timeout; berth, whose cgroup connect6/sendmsg6 hooks serve
 * [::1] (issue 12 item 3), is allowed to answer where the proxy would.
 */
import type { BerthConfig } from '../../src/domain/config';

/** A v6 publish: hostIp '::' (every v6 address), '::1', or one v6 host address. */
export interface Publish6 {
  readonly hostIp: string;
  readonly hostPort: number;
  readonly containerPort: number;
  readonly proto: 'tcp' | 'udp';
}

export interface Network6 {
  readonly name: string;
  readonly bridge: string;
  /** "fd87:1::/64" (the network address) */
  readonly subnet6: string;
  /** the bridge's v6 address */
  readonly gateway6: string;
  readonly internal: boolean;
  readonly icc: boolean;
  readonly masquerade: boolean;
  /** Docker's gateway_mode_ipv6=routed */
  readonly routed: boolean;
}

export interface Container6 {
  readonly name: string;
  readonly network: string;
  readonly ip6: string;
  readonly publish: readonly Publish6[];
}

export interface External6 {
  readonly name: string;
  readonly hostIfname: string;
  /** eth0's v6 address in the external's namespace */
  readonly address6: string;
  readonly prefixLen6: number;
  /** the host side's v6 address (the external's v6 gateway) */
  readonly hostAddress6: string;
}

/** The IPv6 side of a config: what the ip6tables reference is generated from. */
export interface Side6 {
  readonly networks: readonly Network6[];
  readonly containers: readonly Container6[];
  readonly externals: readonly External6[];
}

export interface Rules6Options {
  uplinks: readonly string[];
  /** the test's other host interfaces and their v6 addresses (scoped entry rules) */
  hostInterfaces?: readonly { ifname: string; addr6?: string }[];
  chainSuffix?: string;
  /** the user's ip6tables rules in DOCKER-USER (reference.ts's ReferenceOptions.dockerUser6) */
  dockerUser6?: readonly string[];
}

export interface Rules6 {
  filter: string[];
  nat: string[];
  raw: string[];
}

const uniq = (xs: string[]): string[] => [...new Set(xs)];

/** An IPv6 address as ip6tables-save prints it (RFC 5952: lower case, longest zero run as ::). Throws on anything else. */
export function canon6(addr: string): string {
  if (typeof addr !== 'string' || !addr.includes(':') || /[^0-9a-fA-F:.]/.test(addr)) throw new Error(`not an IPv6 address: ${JSON.stringify(addr)}`);
  let h: string;
  try {
    h = new URL(`http://[${addr}]/`).hostname;
  } catch {
    throw new Error(`not an IPv6 address: ${JSON.stringify(addr)}`);
  }
  return h.slice(1, -1);
}

/** "fd87:1::/64" canonical, host bits refused (Docker's prefixes are network addresses). */
export function canonCidr6(cidr: string): string {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(cidr);
  if (!m || Number(m[2]) > 128) throw new Error(`not an IPv6 prefix: ${JSON.stringify(cidr)}`);
  const len = Number(m[2]);
  const a = canon6(m[1]!);
  const bytes = bytes6(a);
  for (let i = len; i < 128; i++) if (bytes[i >> 3]! & (0x80 >> (i & 7))) throw new Error(`${cidr}: host bits set past /${len}`);
  return `${a}/${len}`;
}

function bytes6(a: string): number[] {
  const [head, tail] = a.includes('::') ? a.split('::') : [a, undefined];
  const hs = head ? head.split(':') : [];
  const ts = tail ? tail.split(':') : [];
  const groups = tail === undefined ? hs : [...hs, ...Array<string>(8 - hs.length - ts.length).fill('0'), ...ts];
  return groups.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 0xff];
  });
}

/** The prefix's ::1 (Docker's default IPv6 gateway). */
export function firstHost6(cidr: string): string {
  const b = bytes6(canonCidr6(cidr).split('/')[0]!);
  b[15] = b[15]! | 1;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return canon6(groups.join(':'));
}

/** Whether a v6 address lies in a canonical prefix. */
export function inPrefix6(addr: string, cidr: string): boolean {
  const [net, len] = cidr.split('/');
  const a = bytes6(canon6(addr));
  const n = bytes6(net!);
  for (let i = 0; i < Number(len); i++) if ((a[i >> 3]! ^ n[i >> 3]!) & (0x80 >> (i & 7))) return false;
  return true;
}


/**
 * Checks a Side6 (bad input: a clear error naming the field, nothing
 * generated): canonical addresses inside their prefixes, containers on
 * known networks, no publish on an internal network.
 */
export function checkSide6(s: Side6): void {
  /** whether `a` is written canonically; not an address at all: an error naming the field */
  const canonAt = (field: string, a: string, f: (x: string) => string = canon6): boolean => {
    try {
      return f(a) === a;
    } catch (err) {
      throw new Error(`${field}: ${(err as Error).message}`);
    }
  };
  const nets = new Map<string, Network6>();
  s.networks.forEach((n, i) => {
    const f = `v6.networks[${i}]`;
    if (nets.has(n.name)) throw new Error(`${f}.name: network ${n.name} given twice`);
    if (!canonAt(`${f}.subnet6`, n.subnet6, canonCidr6)) throw new Error(`${f}.subnet6: ${n.subnet6} is not canonical (${canonCidr6(n.subnet6)})`);
    if (!canonAt(`${f}.gateway6`, n.gateway6) || !inPrefix6(n.gateway6, n.subnet6)) throw new Error(`${f}.gateway6: ${n.gateway6} is not a canonical address in ${n.subnet6}`);
    nets.set(n.name, n);
  });
  s.containers.forEach((c, i) => {
    const f = `v6.containers[${i}]`;
    const n = nets.get(c.network);
    if (!n) throw new Error(`${f}.network: ${c.network} has no IPv6 side`);
    if (!canonAt(`${f}.ip6`, c.ip6) || !inPrefix6(c.ip6, n.subnet6)) throw new Error(`${f}.ip6: ${c.ip6} is not a canonical address in ${n.subnet6}`);
    c.publish.forEach((b, j) => {
      if (n.internal) throw new Error(`${f}.publish[${j}]: network ${n.name} is internal`);
      if (b.hostIp !== '::' && !canonAt(`${f}.publish[${j}].hostIp`, b.hostIp)) throw new Error(`${f}.publish[${j}].hostIp: ${b.hostIp} is not a canonical IPv6 address`);
    });
  });
  s.externals.forEach((e, i) => {
    for (const k of ['address6', 'hostAddress6'] as const) if (!canonAt(`v6.externals[${i}].${k}`, e[k])) throw new Error(`v6.externals[${i}].${k}: ${e[k]} is not canonical`);
  });
}

/**
 * The IPv6 side of a parsed config, from the dual-stack fields of issue 12
 * (networks `subnet6`/`gateway6`, containers `ip6`, externals `address6`,
 * publishes with a v6 `hostIp`; `8080:80` and `0.0.0.0:8080:80` serve both
 * families). Fields absent (a config without IPv6): an empty side.
 */
export function side6FromConfig(cfg: BerthConfig): Side6 {
  type Loose = Record<string, unknown>;
  const str = (o: Loose, ...keys: string[]): string | undefined => {
    for (const k of keys) {
      const v = o[k];
      if (typeof v === 'string' && v !== '') return v;
      if (v && typeof v === 'object' && typeof (v as Loose).addr === 'string' && typeof (v as Loose).prefixLen === 'number') return `${(v as Loose).addr as string}/${(v as Loose).prefixLen as number}`;
    }
    return undefined;
  };
  const networks: Network6[] = [];
  for (const n of cfg.networks) {
    const o = n as unknown as Loose;
    const sub = str(o, 'subnet6Cidr', 'subnet6');
    if (!sub) continue;
    const subnet6 = canonCidr6(sub);
    const gw = str(o, 'gateway6') ?? firstHost6(subnet6);
    networks.push({
      name: n.name,
      bridge: n.bridge,
      subnet6,
      gateway6: canon6(gw),
      internal: n.internal,
      icc: n.icc,
      masquerade: n.masquerade,
      routed: (o.gatewayMode6 ?? 'nat') === 'routed',
    });
  }
  const has6 = new Set(networks.map((n) => n.name));
  const containers: Container6[] = [];
  for (const c of cfg.containers) {
    const ip6 = str(c as unknown as Loose, 'ip6');
    if (!ip6 || !has6.has(c.network)) continue;
    const publish = uniqBy(
      c.publish.flatMap((b): Publish6[] => {
        const hostIp = b.hostIp === '0.0.0.0' ? '::' : b.hostIp.includes(':') ? (b.hostIp === '::' ? '::' : canon6(b.hostIp)) : null;
        return hostIp === null ? [] : [{ hostIp, hostPort: b.hostPort, containerPort: b.containerPort, proto: b.proto }];
      }),
      (b) => `${b.hostIp}|${b.hostPort}|${b.containerPort}|${b.proto}`,
    );
    containers.push({ name: c.name, network: c.network, ip6: canon6(ip6), publish });
  }
  const externals: External6[] = [];
  for (const e of cfg.externals) {
    const o = e as unknown as Loose;
    const a = str(o, 'address6');
    if (!a) continue;
    const [addr, len] = a.includes('/') ? a.split('/') : [a, String(o.prefixLen6 ?? 64)];
    const host = str(o, 'hostAddress6');
    if (!host) continue;
    externals.push({ name: e.name, hostIfname: e.hostIfname, address6: canon6(addr!), prefixLen6: Number(len), hostAddress6: canon6(host.split('/')[0]!) });
  }
  return { networks, containers, externals };
}

function uniqBy<T>(xs: T[], key: (x: T) => string): T[] {
  const seen = new Set<string>();
  return xs.filter((x) => (seen.has(key(x)) ? false : (seen.add(key(x)), true)));
}

/** The builtin chains of each table, in both families (reference.ts uses these too). */
export const BUILTIN: Record<keyof Rules6, readonly string[]> = {
  filter: ['INPUT', 'FORWARD', 'OUTPUT'],
  nat: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'],
  raw: ['PREROUTING', 'OUTPUT'],
};

/** `-p PROTO -m PROTO --dport PORT`, both families. */
export const portMatch = (proto: string, port: number): string => `-p ${proto} -m ${proto} --dport ${port}`;

/**
 * A suffixed rule set, either family (reference.ts and dockerRules6): the
 * custom chains and rules (`decl`, `rules`), the builtin chains the rules
 * use declared as custom chains NAME-<suffix>, and the real builtins'
 * entry rules, scoped to this config's traffic: forwarded from or to its
 * interfaces (goto: each packet runs through our FORWARD at most once),
 * arriving on them (nat and raw PREROUTING) or leaving by them
 * (POSTROUTING), and the host's own packets (OUTPUT) to its local
 * addresses (host routes of `hostLen` bits) and to the loopback publishes
 * (`loMatches`, each "-d ADDR/LEN PORTMATCH").
 */
export function scopedRules(
  ch: (name: string) => string,
  hostLen: 32 | 128,
  scope: { ifaces: readonly string[]; localAddrs: readonly string[]; loMatches: readonly string[] },
  decl: { filter: readonly string[]; nat: readonly string[] },
  rules: Rules6,
): Rules6 {
  const { ifaces, localAddrs, loMatches } = scope;
  const entries: Rules6 = {
    filter: ifaces.flatMap((i) => [`-A FORWARD -i ${i} -g ${ch('FORWARD')}`, `-A FORWARD -o ${i} -g ${ch('FORWARD')}`]),
    nat: [
      ...ifaces.map((i) => `-A PREROUTING -i ${i} -j ${ch('PREROUTING')}`),
      ...localAddrs.map((a) => `-A OUTPUT -d ${a}/${hostLen} -j ${ch('OUTPUT')}`),
      ...loMatches.map((m) => `-A OUTPUT ${m} -j ${ch('OUTPUT')}`),
      ...ifaces.map((i) => `-A POSTROUTING -o ${i} -j ${ch('POSTROUTING')}`),
    ],
    // no raw rule (a config of routed networks only, no loopback publish): nothing to enter
    raw: rules.raw.length ? ifaces.map((i) => `-A PREROUTING -i ${i} -j ${ch('PREROUTING')}`) : [],
  };
  const declare = (names: readonly string[]): string[] => names.map((c) => `:${ch(c)} - [0:0]`);
  const builtinDecl = (t: keyof Rules6, used: string[]): string[] => BUILTIN[t].filter((b) => used.some((l) => l.startsWith(`-A ${ch(b)} `))).map((b) => `:${ch(b)} - [0:0]`);
  return {
    filter: [...declare(decl.filter), ...builtinDecl('filter', rules.filter), ...rules.filter, ...entries.filter],
    nat: [...declare(decl.nat), ...builtinDecl('nat', rules.nat), ...rules.nat, ...entries.nat],
    raw: [...builtinDecl('raw', rules.raw), ...rules.raw, ...entries.raw],
  };
}

/**
 * Docker 29's ip6tables rules for a Side6 (proxy off), in ip6tables-save
 * form. With opts.chainSuffix, every chain is renamed NAME-<suffix> and the
 * real builtin chains get entry rules scoped to the config's interfaces and
 * v6 addresses, as the IPv4 half does.
 */
/**
 * The user's rules in DOCKER-USER, each a rule spec without `-A CHAIN` (as
 * `iptables -A DOCKER-USER` takes it: `-s 192.0.2.9/32 -p udp -j DROP`), in
 * order: Docker creates the chain empty, FORWARD jumps to it first, and a
 * rule's RETURN goes on to Docker's own chains.
 */
export function userRules(chain: string, specs: readonly string[] | undefined): string[] {
  return (specs ?? []).map((spec) => {
    if (!/^-[^A]/.test(spec.trim()) || /\n/.test(spec)) throw new Error(`DOCKER-USER rule ${JSON.stringify(spec)}: give one rule spec, without -A CHAIN`);
    return `-A ${chain} ${spec.trim()}`;
  });
}

export function dockerRules6(side: Side6, cfgUplinks: readonly string[], opts: Rules6Options): Rules6 {
  checkSide6(side);
  const sfx = opts.chainSuffix;
  if (sfx !== undefined && !/^[A-Za-z0-9_]{1,12}$/.test(sfx)) throw new Error(`chainSuffix ${JSON.stringify(sfx)}: 1..12 of [A-Za-z0-9_]`);
  const ch = (name: string): string => (sfx ? `${name}-${sfx}` : name);
  const netOf = new Map(side.networks.map((n) => [n.name, n]));
  const ext = side.networks.filter((n) => !n.internal);
  const internal = side.networks.filter((n) => n.internal);
  const pubs = side.containers.flatMap((c) => {
    const net = netOf.get(c.network)!;
    return net.internal ? [] : c.publish.map((b) => ({ c, net, b }));
  });
  /** a routed network's publishes have no host port (moby's routed port mapper): no NAT for them */
  const natPubs = pubs.filter(({ net }) => !net.routed);

  // ---- filter
  const fDecl = ['DOCKER', 'DOCKER-BRIDGE', 'DOCKER-CT', 'DOCKER-FORWARD', 'DOCKER-INTERNAL', 'DOCKER-USER'];
  const f: string[] = [`-A ${ch('FORWARD')} -j ${ch('DOCKER-USER')}`, `-A ${ch('FORWARD')} -j ${ch('DOCKER-FORWARD')}`];
  f.push(...userRules(ch('DOCKER-USER'), opts.dockerUser6));
  f.push(...uniq(pubs.map(({ c, net, b }) => `-A ${ch('DOCKER')} -d ${c.ip6}/128 ! -i ${net.bridge} -o ${net.bridge} ${portMatch(b.proto, b.containerPort)} -j ACCEPT`)));
  for (const n of ext) if (n.routed) f.push(`-A ${ch('DOCKER')} -o ${n.bridge} -p ipv6-icmp -j ACCEPT`);
  for (const n of ext) f.push(`-A ${ch('DOCKER')} ! -i ${n.bridge} -o ${n.bridge} -j DROP`);
  for (const n of ext) f.push(`-A ${ch('DOCKER-BRIDGE')} -o ${n.bridge} -j ${ch('DOCKER')}`);
  for (const n of ext) f.push(`-A ${ch('DOCKER-CT')} -o ${n.bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`);
  f.push(`-A ${ch('DOCKER-FORWARD')} -j ${ch('DOCKER-CT')}`, `-A ${ch('DOCKER-FORWARD')} -j ${ch('DOCKER-INTERNAL')}`, `-A ${ch('DOCKER-FORWARD')} -j ${ch('DOCKER-BRIDGE')}`);
  for (const n of side.networks) {
    const F = ch('DOCKER-FORWARD');
    if (n.internal) f.push(`-A ${F} -i ${n.bridge} -o ${n.bridge} -j ${n.icc ? 'ACCEPT' : 'DROP'}`);
    else if (n.icc) f.push(`-A ${F} -i ${n.bridge} -j ACCEPT`);
    else f.push(`-A ${F} -i ${n.bridge} -o ${n.bridge} -j DROP`, `-A ${F} -i ${n.bridge} ! -o ${n.bridge} -j ACCEPT`);
  }
  for (const n of internal) {
    const I = ch('DOCKER-INTERNAL');
    f.push(`-A ${I} ! -s ${n.subnet6} ! -i ${n.bridge} -o ${n.bridge} -j DROP`, `-A ${I} ! -d ${n.subnet6} -i ${n.bridge} ! -o ${n.bridge} -j DROP`);
  }

  // ---- nat
  const nDecl = ['DOCKER'];
  const n: string[] = [`-A ${ch('PREROUTING')} -m addrtype --dst-type LOCAL -j ${ch('DOCKER')}`, `-A ${ch('OUTPUT')} -m addrtype --dst-type LOCAL -j ${ch('DOCKER')}`];
  for (const net of ext) {
    n.push(`-A ${ch('POSTROUTING')} -o ${net.bridge} -m addrtype --src-type LOCAL -j MASQUERADE`);
    if (net.masquerade && !net.routed) n.push(`-A ${ch('POSTROUTING')} -s ${net.subnet6} ! -o ${net.bridge} -j MASQUERADE`);
  }
  n.push(...uniq(natPubs.map(({ c, b }) => `-A ${ch('POSTROUTING')} -s ${c.ip6}/128 -d ${c.ip6}/128 ${portMatch(b.proto, b.containerPort)} -j MASQUERADE`)));
  for (const { c, b } of natPubs) {
    const dst = b.hostIp === '::' ? '' : `-d ${b.hostIp}/128 `;
    n.push(`-A ${ch('DOCKER')} ! -s fe80::/10 ${dst}${portMatch(b.proto, b.hostPort)} -j DNAT --to-destination [${c.ip6}]:${b.containerPort}`);
  }

  // ---- raw: direct access only (no loopback rule in IPv6)
  const r: string[] = [];
  for (const c of side.containers) {
    const net = netOf.get(c.network)!;
    if (!net.internal && !net.routed) r.push(`-A ${ch('PREROUTING')} -d ${c.ip6}/128 ! -i ${net.bridge} -j DROP`);
  }

  const decl = (names: string[]): string[] => names.map((c) => `:${ch(c)} - [0:0]`);
  if (!sfx) return { filter: [...decl(fDecl), ...f], nat: [...decl(nDecl), ...n], raw: r };

  const others = opts.hostInterfaces ?? [];
  const ifaces = uniq([...side.networks.map((x) => x.bridge), ...cfgUplinks, ...opts.uplinks, ...side.externals.map((e) => e.hostIfname), ...others.map((o) => o.ifname)]);
  const localAddrs = uniq([
    ...side.networks.map((x) => x.gateway6),
    ...side.externals.map((e) => e.hostAddress6),
    ...others.flatMap((o) => (o.addr6 ? [canon6(o.addr6)] : [])),
    ...natPubs.filter(({ b }) => b.hostIp !== '::' && b.hostIp !== '::1').map(({ b }) => b.hostIp),
  ]);
  // Docker's OUTPUT `--dst-type LOCAL` catches ::1 too (proxy off): enter ours for
  // this config's ::1 publishes and for ::1 on the ports published on every address
  const loPubs = uniq(natPubs.filter(({ b }) => b.hostIp === '::1' || b.hostIp === '::').map(({ b }) => `-d ::1/128 ${portMatch(b.proto, b.hostPort)}`));
  return scopedRules(ch, 128, { ifaces, localAddrs, loMatches: loPubs }, { filter: fDecl, nat: nDecl }, { filter: f, nat: n, raw: r });
}

/** Every interface whose v6 forwarding the reference needs (the IPv4 half's list, with the v6 side's bridges and externals). */
export function forwardingInterfaces6(side: Side6, cfgUplinks: readonly string[], opts: Rules6Options): string[] {
  return uniq([...side.networks.map((x) => x.bridge), ...opts.uplinks, ...cfgUplinks, ...side.externals.map((e) => e.hostIfname), ...(opts.hostInterfaces ?? []).map((o) => o.ifname)]);
}
