/**
 * The few IPv6 helpers Docker mode needs to read dockerd's answers: parse,
 * canonical text (RFC 5952, as `ip` and Docker print it), a subnet's base and
 * first address, and membership. Private to src/docker/ until the shared
 * src/ipv6.ts lands (issue 12); then these become imports from there.
 */

/** 16 bytes, or null when s is not an IPv6 address (a trailing dotted IPv4 is taken). */
export function parseIp6(s: string): Uint8Array | null {
  if (typeof s !== 'string' || !s.includes(':') || s.length > 45 || /[^0-9a-fA-F:.]/.test(s)) return null;
  let str = s;
  const tail: number[] = [];
  if (str.includes('.')) {
    const at = str.lastIndexOf(':');
    const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(str.slice(at + 1));
    if (!m) return null;
    const b = m.slice(1).map(Number);
    if (b.some((x) => x > 255)) return null;
    tail.push((b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!);
    str = str.slice(0, at + 1);
    if (!str.endsWith('::')) str = str.slice(0, -1);
  }
  const halves = str.split('::');
  if (halves.length > 2) return null;
  const groups = (h: string): string[] => (h === '' ? [] : h.split(':'));
  const head = groups(halves[0]!);
  const rest = halves.length === 2 ? groups(halves[1]!) : [];
  if ([...head, ...rest].some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) return null;
  const n = head.length + rest.length + tail.length;
  if (halves.length === 2 ? n > 7 : n !== 8) return null;
  const words = [...head.map((g) => parseInt(g, 16)), ...new Array<number>(halves.length === 2 ? 8 - n : 0).fill(0), ...rest.map((g) => parseInt(g, 16)), ...tail];
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

/** RFC 5952 text: lower case, no leading zeros, the longest run (>= 2) of zero groups as '::'. */
export function formatIp6(b: Uint8Array): string {
  const w = Array.from({ length: 8 }, (_, i) => (b[2 * i]! << 8) | b[2 * i + 1]!);
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = w.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** The canonical text of an IPv6 address, or null. */
export function canonicalIp6(s: string): string | null {
  const b = parseIp6(s);
  return b ? formatIp6(b) : null;
}

/** The address with its host bits cleared. */
export function maskIp6(b: Uint8Array, prefixLen: number): Uint8Array {
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) {
    const bits = Math.max(0, Math.min(8, prefixLen - 8 * i));
    out[i] = b[i]! & ((0xff << (8 - bits)) & 0xff);
  }
  return out;
}

/** "fd00:1::/64" -> base and length (the base with host bits cleared), or null. */
export function parseCidr6(s: string): { addr: Uint8Array; prefixLen: number } | null {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s ?? '');
  if (!m) return null;
  const a = parseIp6(m[1]!);
  const len = Number(m[2]);
  if (!a || len > 128) return null;
  return { addr: maskIp6(a, len), prefixLen: len };
}

/** The subnet's first address (base + 1), Docker's default IPv6 gateway. */
export function firstAddr6(base: Uint8Array): Uint8Array {
  const out = Uint8Array.from(base);
  for (let i = 15; i >= 0; i--) {
    out[i] = (out[i]! + 1) & 0xff;
    if (out[i] !== 0) break;
  }
  return out;
}

export function inSubnet6(a: Uint8Array, base: Uint8Array, prefixLen: number): boolean {
  const m = maskIp6(a, prefixLen);
  return m.every((x, i) => x === base[i]);
}
