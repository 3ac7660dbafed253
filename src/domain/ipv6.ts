// IPv6 helpers (issue 12): addresses are handled as unsigned 128-bit bigints.
// Pure, no I/O. Text in is RFC 4291 (with an embedded dotted quad in the last
// 32 bits, e.g. "::ffff:10.0.0.1"); text out is RFC 5952's canonical form.
import { formatIPv4, parseIPv4 } from './ipv4';

export interface Cidr6 {
  /** Address part as written (network address when host bits are zero). */
  readonly addr: bigint;
  readonly prefixLen: number;
}

const ALL_ONES = (1n << 128n) - 1n;
const HEXTET = /^[0-9a-fA-F]{1,4}$/;

/** Parses an IPv6 address ("fd00:1::2", "::ffff:10.0.0.1"); null when invalid (zones, brackets, prefixes included). */
export function parseIPv6(s: string): bigint | null {
  if (typeof s !== 'string' || s.length === 0 || s.length > 45) return null;
  let text = s;
  // an embedded dotted quad stands for the last two groups
  const lastColon = text.lastIndexOf(':');
  if (lastColon < 0) return null;
  const last = text.slice(lastColon + 1);
  if (last.includes('.')) {
    const v4 = parseIPv4(last);
    if (v4 === null) return null;
    text = `${text.slice(0, lastColon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groupsOf = (h: string): number[] | null => {
    if (h === '') return [];
    const out: number[] = [];
    for (const g of h.split(':')) {
      if (!HEXTET.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = groupsOf(halves[0]!);
  if (head === null) return null;
  let groups: number[];
  if (halves.length === 2) {
    const rest = groupsOf(halves[1]!);
    if (rest === null) return null;
    const fill = 8 - head.length - rest.length;
    // "::" stands for at least one group (RFC 4291 2.2)
    if (fill < 1) return null;
    groups = [...head, ...new Array<number>(fill).fill(0), ...rest];
  } else {
    groups = head;
    if (groups.length !== 8) return null;
  }
  let n = 0n;
  for (const g of groups) n = (n << 16n) | BigInt(g);
  return n;
}

function groupsOf(n: bigint): number[] {
  const out: number[] = [];
  for (let i = 7; i >= 0; i--) out.push(Number((n >> BigInt(i * 16)) & 0xffffn));
  return out;
}

/** RFC 5952 text: lowercase, no leading zeros, the longest run (>= 2) of zero groups as "::" (the first on a tie); v4-mapped as ::ffff:a.b.c.d. */
export function formatIPv6(n: bigint): string {
  n &= ALL_ONES;
  if (isV4Mapped6(n)) return `::ffff:${formatIPv4(Number(n & 0xffffffffn))}`;
  const g = groupsOf(n);
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  if (bestAt < 0) return hex(g);
  return `${hex(g.slice(0, bestAt))}::${hex(g.slice(bestAt + bestLen))}`;
}

/** The canonical text of an address, or null when it is not IPv6. */
export function canonicalIPv6(s: string): string | null {
  const n = parseIPv6(s);
  return n === null ? null : formatIPv6(n);
}

/** 4, 6 or null: which family a literal address (no brackets, no prefix) is. */
export function ipFamily(s: string): 4 | 6 | null {
  if (parseIPv4(s) !== null) return 4;
  if (parseIPv6(s) !== null) return 6;
  return null;
}

export function prefixMask6(prefixLen: number): bigint {
  if (prefixLen <= 0) return 0n;
  if (prefixLen >= 128) return ALL_ONES;
  return (ALL_ONES << BigInt(128 - prefixLen)) & ALL_ONES;
}

/** Parses "addr/len" (len 0..128); null when syntactically invalid (host bits are NOT checked). */
export function parseCidr6(s: string): Cidr6 | null {
  if (typeof s !== 'string') return null;
  const m = /^([0-9a-fA-F:.]+)\/(0|[1-9][0-9]{0,2})$/.exec(s);
  if (!m) return null;
  const addr = parseIPv6(m[1]!);
  const prefixLen = Number(m[2]);
  if (addr === null || prefixLen > 128) return null;
  return { addr, prefixLen };
}

export function networkAddress6(c: Cidr6): bigint {
  return c.addr & prefixMask6(c.prefixLen);
}

export function hasHostBits6(c: Cidr6): boolean {
  return networkAddress6(c) !== c.addr;
}

/** The last address of the prefix (IPv6 has no broadcast; the all-ones host part is still an address). */
export function lastAddress6(c: Cidr6): bigint {
  return networkAddress6(c) | (~prefixMask6(c.prefixLen) & ALL_ONES);
}

export function formatCidr6(c: Cidr6): string {
  return `${formatIPv6(c.addr)}/${c.prefixLen}`;
}

export function cidr6Contains(c: Cidr6, ip: bigint): boolean {
  return (ip & prefixMask6(c.prefixLen)) === networkAddress6(c);
}

export function cidr6Overlaps(a: Cidr6, b: Cidr6): boolean {
  const m = prefixMask6(Math.min(a.prefixLen, b.prefixLen));
  return (a.addr & m) === (b.addr & m);
}

/**
 * The lowest address >= `from` in the prefix that `taken` does not hold,
 * the network address (the subnet-router anycast, RFC 4291 2.6.1) never
 * given; null when none within `maxTries` candidates (a /64 never runs out,
 * the bound keeps the walk finite).
 */
export function nextFreeIPv6(c: Cidr6, from: bigint, taken: (a: bigint) => boolean, maxTries = 1 << 20): bigint | null {
  const net = networkAddress6(c);
  const last = lastAddress6(c);
  let a = from <= net ? net + 1n : from;
  for (let i = 0; i < maxTries && a <= last; i++, a++) if (!taken(a)) return a;
  return null;
}

// --- scopes -------------------------------------------------------------------

const inPrefix = (n: bigint, prefix: bigint, len: number) => (n & prefixMask6(len)) === prefix;

export const isUnspecified6 = (n: bigint): boolean => n === 0n;
export const isLoopback6 = (n: bigint): boolean => n === 1n;
/** fe80::/10 */
export const isLinkLocal6 = (n: bigint): boolean => inPrefix(n, 0xfe80n << 112n, 10);
/** ff00::/8 */
export const isMulticast6 = (n: bigint): boolean => inPrefix(n, 0xffn << 120n, 8);
/** fc00::/7, unique local (RFC 4193) */
export const isUla6 = (n: bigint): boolean => inPrefix(n, 0xfcn << 120n, 7);
/** ::ffff:0:0/96, an IPv4 address in IPv6 clothes */
export const isV4Mapped6 = (n: bigint): boolean => inPrefix(n, 0xffffn << 32n, 96);

/** The IPv4 address of a v4-mapped address (dotted quad), null for any other. */
export function v4OfMapped(n: bigint): string | null {
  return isV4Mapped6(n) ? formatIPv4(Number(n & 0xffffffffn)) : null;
}

/** Why an address cannot be a host's or container's unicast address on a bridge ('' when it can). */
export function unicastProblem6(n: bigint): string {
  if (isUnspecified6(n)) return 'the unspecified address';
  if (isLoopback6(n)) return 'the loopback address';
  if (isMulticast6(n)) return 'a multicast address';
  if (isLinkLocal6(n)) return 'a link-local address (fe80::/10; the kernel gives each interface its own)';
  if (isV4Mapped6(n)) return 'an IPv4-mapped address (::ffff:0:0/96; use the IPv4 field)';
  return '';
}

/** Why a prefix cannot be a network's IPv6 subnet ('' when it can): one of the scopes above overlaps it. */
export function subnetProblem6(c: Cidr6): string {
  const net = networkAddress6(c);
  const scopes: [Cidr6, string][] = [
    [{ addr: 0xfe80n << 112n, prefixLen: 10 }, 'link-local (fe80::/10)'],
    [{ addr: 0xffn << 120n, prefixLen: 8 }, 'multicast (ff00::/8)'],
    [{ addr: 0xffffn << 32n, prefixLen: 96 }, 'IPv4-mapped (::ffff:0:0/96)'],
    [{ addr: 1n, prefixLen: 128 }, 'the loopback address ::1'],
    [{ addr: 0n, prefixLen: 128 }, 'the unspecified address ::'],
  ];
  for (const [s, what] of scopes) if (cidr6Overlaps({ addr: net, prefixLen: c.prefixLen }, s)) return `it overlaps ${what}`;
  return '';
}
