// IPv4 helpers: addresses are handled as unsigned 32-bit integers.

export interface Cidr {
  /** Address part as written (network address when host bits are zero). */
  readonly addr: number;
  readonly prefixLen: number;
}

const OCTET = /^(0|[1-9][0-9]{0,2})$/;

/** Parses a strict dotted quad ("10.0.0.1"); returns null when invalid. */
export function parseIPv4(s: string): number | null {
  if (typeof s !== 'string') return null;
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  let n = 0;
  for (const p of parts) {
    if (!OCTET.test(p)) return null;
    const v = Number(p);
    if (v > 255) return null;
    n = n * 256 + v;
  }
  return n >>> 0;
}

export function formatIPv4(n: number): string {
  n = n >>> 0;
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** Netmask for a prefix length, as uint32. */
export function prefixMask(prefixLen: number): number {
  if (prefixLen <= 0) return 0;
  if (prefixLen >= 32) return 0xffffffff;
  return (0xffffffff << (32 - prefixLen)) >>> 0;
}

/** Parses "a.b.c.d/len"; returns null when syntactically invalid (host bits are NOT checked). */
export function parseCidr(s: string): Cidr | null {
  if (typeof s !== 'string') return null;
  const m = /^([0-9.]+)\/(0|[1-9][0-9]?)$/.exec(s);
  if (!m) return null;
  const addr = parseIPv4(m[1]!);
  const prefixLen = Number(m[2]);
  if (addr === null || prefixLen > 32) return null;
  return { addr, prefixLen };
}

export function networkAddress(c: Cidr): number {
  return (c.addr & prefixMask(c.prefixLen)) >>> 0;
}

export function broadcastAddress(c: Cidr): number {
  return (networkAddress(c) | ~prefixMask(c.prefixLen)) >>> 0;
}

export function hasHostBits(c: Cidr): boolean {
  return networkAddress(c) !== c.addr >>> 0;
}

export function formatCidr(c: Cidr): string {
  return `${formatIPv4(c.addr)}/${c.prefixLen}`;
}

export function cidrContains(c: Cidr, ip: number): boolean {
  return ((ip & prefixMask(c.prefixLen)) >>> 0) === networkAddress(c);
}

export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  const len = Math.min(a.prefixLen, b.prefixLen);
  const m = prefixMask(len);
  return ((a.addr & m) >>> 0) === ((b.addr & m) >>> 0);
}
