// Docker's `-p` / `--publish` syntax, restricted to what berth supports:
//
//   [hostIp:]hostPort:containerPort[/proto]
//   [hostIp:]hostLo-hostHi:containerLo-containerHi[/proto]   (equal lengths)
//
// hostIp is a dotted quad or a bracketed IPv6 address ("[::]", "[::1]",
// "[fd00::5]"). The families follow Docker 29 (issue 12): no hostIp and
// 0.0.0.0 serve both families (the binding keeps '0.0.0.0'; expandBinding
// gives one entry per family the network has), '::' serves IPv6 only, '::1'
// the host only (loopback), any other address only itself. IPv4 and IPv6 get
// the same host port (bindingsConflict).
//
// One PortBinding per port (a range expands to one binding per port).
// Unlike Docker, berth needs an explicit host port: "80", "ip::80" and
// "8000-8010:80" (Docker picks a free port) are rejected. tcp and udp only
// (sctp: not supported yet). Pure: no I/O.
import { formatIPv4, parseIPv4 } from './ipv4';
import { formatIPv6, ipFamily, isLinkLocal6, isMulticast6, isUnspecified6, isV4Mapped6, parseIPv6 } from './ipv6';

export type PortProto = 'tcp' | 'udp';

export interface PortBinding {
  /**
   * Host address: a dotted quad or canonical IPv6 text (RFC 5952). '0.0.0.0'
   * means any address of the host in every family the network has, '::' any
   * IPv6 address of the host.
   */
  readonly hostIp: string;
  readonly hostPort: number;
  readonly containerPort: number;
  readonly proto: PortProto;
}

export const ANY_IP = '0.0.0.0';
export const ANY_IP6 = '::';

/** A `-p` spec that berth cannot use; `message` says why. */
export class PublishError extends Error {
  constructor(
    readonly spec: string,
    readonly reason: string,
  ) {
    super(`invalid publish ${JSON.stringify(spec)}: ${reason}`);
    this.name = 'PublishError';
  }
}

const PORT_RE = /^[0-9]{1,5}$/;

function parsePort(s: string, what: string, spec: string): number {
  if (!PORT_RE.test(s)) throw new PublishError(spec, `${what} ${JSON.stringify(s)} is not a port number`);
  const n = Number(s);
  if (n < 1 || n > 65535) throw new PublishError(spec, `${what} ${n} is out of range (1..65535)`);
  return n;
}

function parseRange(s: string, what: string, spec: string): [number, number] {
  const dash = s.indexOf('-');
  if (dash < 0) {
    const p = parsePort(s, what, spec);
    return [p, p];
  }
  const lo = parsePort(s.slice(0, dash), what, spec);
  const hi = parsePort(s.slice(dash + 1), what, spec);
  if (hi < lo) throw new PublishError(spec, `${what} range ${s} is reversed`);
  return [lo, hi];
}

export function parseProto(s: string, spec: string): PortProto {
  if (s === 'tcp' || s === 'udp') return s;
  if (s === 'sctp') throw new PublishError(spec, 'sctp is not supported yet (tcp and udp are)');
  throw new PublishError(spec, `unknown protocol ${JSON.stringify(s)} (expected tcp or udp)`);
}

/** Parses one `-p` spec into its bindings; throws PublishError. */
export function parsePublish(spec: string): PortBinding[] {
  if (typeof spec !== 'string' || spec.trim() === '') throw new PublishError(String(spec), 'empty');
  let rest = spec;
  let proto: PortProto = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    proto = parseProto(rest.slice(slash + 1), spec);
    rest = rest.slice(0, slash);
  }
  let hostIp = ANY_IP;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) throw new PublishError(spec, 'unclosed "[" around the host IPv6 address (expected e.g. "[::1]:8080:80")');
    const ip = rest.slice(1, close);
    if (rest[close + 1] !== ':') throw new PublishError(spec, `expected ":hostPort" after [${ip}]`);
    hostIp = hostIPv6(ip, spec);
    rest = rest.slice(close + 2);
    if (rest.split(':').length !== 2) {
      throw new PublishError(spec, rest.split(':').length < 2 ? 'expected "[ip]:hostPort:containerPort"' : `too many ":" after [${ip}]`);
    }
    rest = `:${rest}`; // the host address is taken: the common path sees ":hostPort:containerPort"
  } else if (rest.split(':').length > 3) {
    throw new PublishError(spec, 'an IPv6 host address needs brackets (e.g. "[::1]:8080:80")');
  } else if (rest.includes(']')) {
    throw new PublishError(spec, 'unmatched "]"');
  }
  const parts = rest.split(':');
  let hostPart: string;
  let contPart: string;
  if (parts.length === 1) {
    throw new PublishError(spec, `no host port: berth needs an explicit host port ("hostPort:${parts[0]}"); Docker would pick a free one`);
  } else if (parts.length === 2) {
    [hostPart, contPart] = parts as [string, string];
  } else {
    const ip = parts[0]!;
    if (ip !== '') {
      const n = parseIPv4(ip);
      if (n === null) throw new PublishError(spec, `invalid host IPv4 address ${JSON.stringify(ip)}`);
      hostIp = formatIPv4(n);
    }
    hostPart = parts[1]!;
    contPart = parts[2]!;
  }
  if (hostPart === '') {
    throw new PublishError(spec, 'no host port: berth needs an explicit host port; Docker would pick a free one');
  }
  const [hLo, hHi] = parseRange(hostPart, 'host port', spec);
  const [cLo, cHi] = parseRange(contPart, 'container port', spec);
  if (hHi - hLo !== cHi - cLo) {
    if (cLo === cHi) {
      throw new PublishError(
        spec,
        `host port range ${hostPart} for a single container port: Docker picks one free port of the range, berth needs the host port spelled out (e.g. "${hLo}:${cLo}")`,
      );
    }
    throw new PublishError(spec, `host range ${hostPart} and container range ${contPart} must have the same length`);
  }
  const out: PortBinding[] = [];
  for (let i = 0; i <= hHi - hLo; i++) out.push({ hostIp, hostPort: hLo + i, containerPort: cLo + i, proto });
  return out;
}

/** The bracketed host address of a spec, canonical; throws PublishError for what cannot be a host's address to publish on. */
function hostIPv6(ip: string, spec: string): string {
  const n = parseIPv6(ip);
  if (n === null) {
    if (parseIPv4(ip) !== null) throw new PublishError(spec, `brackets are for IPv6 addresses; write ${ip} without them`);
    throw new PublishError(spec, `invalid host IPv6 address ${JSON.stringify(ip)}`);
  }
  if (isV4Mapped6(n)) throw new PublishError(spec, `[${ip}] is an IPv4-mapped address; publish on ${formatIPv6(n).slice(7)} instead`);
  if (isMulticast6(n)) throw new PublishError(spec, `[${ip}] is a multicast address`);
  if (isLinkLocal6(n)) throw new PublishError(spec, `[${ip}] is a link-local address (not supported: it needs a zone)`);
  return isUnspecified6(n) ? ANY_IP6 : formatIPv6(n);
}

/** 4 or 6: the family of a binding's host address ('0.0.0.0', both families, counts as 4 here; see expandBinding). */
export function bindingFamily(b: Pick<PortBinding, 'hostIp'>): 4 | 6 {
  return ipFamily(b.hostIp) === 6 ? 6 : 4;
}

/**
 * The host addresses a binding takes on a network with these families, one
 * per family entry ('0.0.0.0' gives '0.0.0.0' and/or '::'); [] when the
 * network has none of the families the binding asks for.
 */
export function expandBinding(b: Pick<PortBinding, 'hostIp'>, has: { ipv4: boolean; ipv6: boolean }): string[] {
  if (b.hostIp === ANY_IP) return [...(has.ipv4 ? [ANY_IP] : []), ...(has.ipv6 ? [ANY_IP6] : [])];
  return (bindingFamily(b) === 6 ? has.ipv6 : has.ipv4) ? [b.hostIp] : [];
}

/**
 * True when two bindings cannot both be installed: same port and protocol,
 * and addresses that meet: the same address, '0.0.0.0' (both families) and
 * anything, '::' and any IPv6 address. IPv4 and IPv6 get the same host port,
 * so '0.0.0.0:8080' and '[::]:8080' collide, '[::]:8080' and '127.0.0.1:8080' do not.
 */
export function bindingsConflict(a: PortBinding, b: PortBinding): boolean {
  if (a.hostPort !== b.hostPort || a.proto !== b.proto) return false;
  if (a.hostIp === b.hostIp || a.hostIp === ANY_IP || b.hostIp === ANY_IP) return true;
  const v6 = (x: PortBinding) => bindingFamily(x) === 6;
  return (a.hostIp === ANY_IP6 && v6(b)) || (b.hostIp === ANY_IP6 && v6(a));
}

/** A host address and port as Docker writes them: "127.0.0.1:8081", "[::]:8080". */
export function formatHostPort(hostIp: string, port: number): string {
  return ipFamily(hostIp) === 6 ? `[${hostIp}]:${port}` : `${hostIp}:${port}`;
}

/** "127.0.0.1:8081->80/tcp", "[::]:8080->80/tcp", like `docker ps`. */
export function formatBinding(b: PortBinding): string {
  return `${formatHostPort(b.hostIp, b.hostPort)}->${b.containerPort}/${b.proto}`;
}

/** Docker Engine API `NetworkSettings.Ports`: {"80/tcp": [{HostIp, HostPort}] | null}. */
export type DockerPorts = Record<string, readonly { HostIp?: string; HostPort?: string }[] | null | undefined>;

/**
 * Bindings of a running container from its `NetworkSettings.Ports`. Exposed
 * but unpublished ports (null), IPv6 host addresses and protocols berth does
 * not handle (sctp) are skipped; other malformed entries throw PublishError.
 */
export function bindingsFromDockerPorts(ports: DockerPorts | null | undefined, opts: { routed?: boolean } = {}): PortBinding[] {
  const out: PortBinding[] = [];
  for (const [key, list] of Object.entries(ports ?? {})) {
    if (!list) continue;
    const m = /^([0-9]+)\/([a-z]+)$/.exec(key);
    if (!m) throw new PublishError(key, 'expected "port/proto"');
    if (m[2] === 'sctp') continue;
    const proto = parseProto(m[2]!, key);
    const containerPort = parsePort(m[1]!, 'container port', key);
    for (const e of list) {
      const ipStr = e.HostIp ?? '';
      if (ipStr.includes(':')) continue; // IPv6 ("::")
      const ipNum = ipStr === '' ? 0 : parseIPv4(ipStr);
      if (ipNum === null) throw new PublishError(key, `invalid HostIp ${JSON.stringify(ipStr)}`);
      // a routed network's binding has no host port (Docker's routed port mapper clears it)
      const hostPort = opts.routed && ['', '0'].includes(e.HostPort ?? '') ? 0 : parsePort(e.HostPort ?? '', 'host port', key);
      const b: PortBinding = { hostIp: formatIPv4(ipNum), hostPort, containerPort, proto };
      if (!out.some((o) => o.hostIp === b.hostIp && o.hostPort === b.hostPort && o.proto === b.proto)) out.push(b);
    }
  }
  return out;
}
