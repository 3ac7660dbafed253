/**
 * A small declarative codec for C structs with natural (System V) alignment.
 * A struct is described once as an ordered field list; offsets, size and the
 * encode/decode functions are derived from it. The contract test compares the
 * derived layout with the BTF clang emitted for bpf/berth_contract.h.
 */
import { parseIPv4 } from '../domain/ipv4';
import { formatIPv6, isV4Mapped6, parseIPv6, prefixMask6 } from '../domain/ipv6';

export type Scalar = 'u8' | 'u16' | 'u32' | 'u64' | 'be16';

export type FieldType =
  | { kind: 'scalar'; scalar: Scalar; dflt?: number } // dflt: the value when left out
  | { kind: 'ipv4'; dflt?: string } // __be32 shown as dotted quad (dflt: the value when left out)
  | { kind: 'ipv6'; dflt?: string } // __be32[4] IPv6 address, shown in RFC 5952 text ('::' when absent and dflt)
  | { kind: 'ip46' } // __be32[4] of either family: IPv4 as ::ffff:a.b.c.d, shown (and given) as a dotted quad
  | { kind: 'family'; of: string } // __u8 BERTH_AF_INET (2) / BERTH_AF_INET6 (10); when not given, that of the ip46 field `of`
  | { kind: 'mac' } // __u8[6] shown as aa:bb:cc:dd:ee:ff
  | { kind: 'cstr'; length: number } // char[N], NUL padded
  | { kind: 'pad'; length: number } // __u8[N], always zero
  | { kind: 'struct'; codec: StructCodec<any> }
  | { kind: 'array'; of: FieldType; count: number };

export const u8: FieldType = { kind: 'scalar', scalar: 'u8' };
export const u16: FieldType = { kind: 'scalar', scalar: 'u16' };
export const u32: FieldType = { kind: 'scalar', scalar: 'u32' };
export const u64: FieldType = { kind: 'scalar', scalar: 'u64' };
/** __be16: a port in network byte order, shown as a number */
export const be16: FieldType = { kind: 'scalar', scalar: 'be16' };
/** a u32 that may be left out (then 0): fields added to a struct that older callers do not set */
export const u32opt: FieldType = { kind: 'scalar', scalar: 'u32', dflt: 0 };
export const ipv4: FieldType = { kind: 'ipv4' };
/** an IPv4 address field added to a struct that older callers do not set: '0.0.0.0' when left out */
export const ipv4opt: FieldType = { kind: 'ipv4', dflt: '0.0.0.0' };
/** an IPv6 address field; '::' when the value leaves it out */
export const ipv6: FieldType = { kind: 'ipv6', dflt: '::' };
export const ip46: FieldType = { kind: 'ip46' };
export const family = (of: string): FieldType => ({ kind: 'family', of });
export const AF_INET = 2;
export const AF_INET6 = 10;
export const mac: FieldType = { kind: 'mac' };
export const cstr = (length: number): FieldType => ({ kind: 'cstr', length });
export const pad = (length: number): FieldType => ({ kind: 'pad', length });
export const struct = (codec: StructCodec<any>): FieldType => ({ kind: 'struct', codec });
export const array = (of: FieldType, count: number): FieldType => ({ kind: 'array', of, count });

export interface FieldLayout {
  name: string;
  offset: number;
  size: number;
}

function sizeOf(t: FieldType): number {
  switch (t.kind) {
    case 'scalar':
      return { u8: 1, u16: 2, be16: 2, u32: 4, u64: 8 }[t.scalar];
    case 'ipv4':
      return 4;
    case 'ipv6':
    case 'ip46':
      return 16;
    case 'family':
      return 1;
    case 'mac':
      return 6;
    case 'cstr':
    case 'pad':
      return t.length;
    case 'struct':
      return t.codec.size;
    case 'array':
      return sizeOf(t.of) * t.count;
  }
}

function alignOf(t: FieldType): number {
  switch (t.kind) {
    case 'scalar':
      return sizeOf(t);
    case 'ipv4':
    case 'ipv6':
    case 'ip46':
      return 4;
    case 'family':
    case 'mac':
    case 'cstr':
    case 'pad':
      return 1;
    case 'struct':
      return t.codec.align;
    case 'array':
      return alignOf(t.of);
  }
}

const align = (n: number, a: number): number => Math.ceil(n / a) * a;

function writeField(buf: Buffer, off: number, t: FieldType, v: unknown, path: string): void {
  switch (t.kind) {
    case 'scalar': {
      if (t.scalar === 'u64') {
        const big = typeof v === 'bigint' ? v : BigInt(v as number);
        if (big < 0n || big > 0xffffffffffffffffn) throw new RangeError(`${path}: ${v} does not fit u64`);
        buf.writeBigUInt64LE(big, off);
        return;
      }
      const n = v as number;
      const max = { u8: 0xff, u16: 0xffff, be16: 0xffff, u32: 0xffffffff }[t.scalar];
      if (!Number.isInteger(n) || n < 0 || n > max) throw new RangeError(`${path}: ${v} does not fit ${t.scalar}`);
      if (t.scalar === 'u8') buf.writeUInt8(n, off);
      else if (t.scalar === 'u16') buf.writeUInt16LE(n, off);
      else if (t.scalar === 'be16') buf.writeUInt16BE(n, off);
      else buf.writeUInt32LE(n, off);
      return;
    }
    case 'ipv4': {
      const parts = String(v).split('.');
      if (parts.length !== 4) throw new RangeError(`${path}: '${v}' is not an IPv4 address`);
      parts.forEach((p, i) => {
        const n = Number(p);
        if (!/^\d{1,3}$/.test(p) || n > 255) throw new RangeError(`${path}: '${v}' is not an IPv4 address`);
        buf.writeUInt8(n, off + i);
      });
      return;
    }
    case 'ipv6':
    case 'ip46': {
      const b = t.kind === 'ip46' ? ip46Bytes(String(v)) : ipv6Bytes(String(v));
      if (!b) throw new RangeError(`${path}: '${v}' is not an ${t.kind === 'ip46' ? 'IPv4 or IPv6' : 'IPv6'} address`);
      b.copy(buf, off);
      return;
    }
    case 'family': {
      const n = v as number;
      if (n !== AF_INET && n !== AF_INET6) throw new RangeError(`${path}: ${v} is not an address family (2 or 10)`);
      buf.writeUInt8(n, off);
      return;
    }
    case 'mac': {
      const parts = String(v).split(':');
      if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p)))
        throw new RangeError(`${path}: '${v}' is not a MAC address`);
      parts.forEach((p, i) => buf.writeUInt8(parseInt(p, 16), off + i));
      return;
    }
    case 'cstr': {
      const b = Buffer.from(String(v), 'utf8');
      if (b.length >= t.length) throw new RangeError(`${path}: '${v}' is longer than ${t.length - 1} bytes`);
      b.copy(buf, off);
      return;
    }
    case 'pad':
      return;
    case 'struct':
      t.codec.encodeInto(buf, off, v as object, path);
      return;
    case 'array': {
      const arr = v as unknown[];
      if (!Array.isArray(arr) || arr.length !== t.count) throw new RangeError(`${path}: expected ${t.count} elements`);
      const es = sizeOf(t.of);
      arr.forEach((e, i) => writeField(buf, off + i * es, t.of, e, `${path}[${i}]`));
      return;
    }
  }
}

function readField(buf: Buffer, off: number, t: FieldType): unknown {
  switch (t.kind) {
    case 'scalar':
      if (t.scalar === 'u8') return buf.readUInt8(off);
      if (t.scalar === 'u16') return buf.readUInt16LE(off);
      if (t.scalar === 'be16') return buf.readUInt16BE(off);
      if (t.scalar === 'u32') return buf.readUInt32LE(off);
      return buf.readBigUInt64LE(off);
    case 'ipv4':
      return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
    case 'ipv6':
      return formatIPv6Bytes(buf.subarray(off, off + 16));
    case 'ip46': {
      const b = buf.subarray(off, off + 16);
      return isV4Mapped(b) ? `${b[12]}.${b[13]}.${b[14]}.${b[15]}` : formatIPv6Bytes(b);
    }
    case 'family':
      return buf.readUInt8(off);
    case 'mac':
      return [...buf.subarray(off, off + 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
    case 'cstr': {
      const s = buf.subarray(off, off + t.length);
      const nul = s.indexOf(0);
      return s.subarray(0, nul < 0 ? s.length : nul).toString('utf8');
    }
    case 'pad':
      return undefined;
    case 'struct':
      return t.codec.decodeFrom(buf, off);
    case 'array': {
      const es = sizeOf(t.of);
      return Array.from({ length: t.count }, (_, i) => readField(buf, off + i * es, t.of));
    }
  }
}

export class StructCodec<T extends object> {
  readonly size: number;
  readonly align: number;
  readonly layout: readonly FieldLayout[];
  private readonly types: ReadonlyArray<[string, FieldType, number]>;

  /** `cName` is the C struct's name in berth_contract.h. Fields in C order. */
  constructor(
    readonly cName: string,
    fields: ReadonlyArray<[keyof T & string | `pad${string}`, FieldType]>,
  ) {
    let off = 0;
    let maxAlign = 1;
    const types: Array<[string, FieldType, number]> = [];
    const layout: FieldLayout[] = [];
    for (const [name, t] of fields) {
      const a = alignOf(t);
      maxAlign = Math.max(maxAlign, a);
      off = align(off, a);
      types.push([name, t, off]);
      layout.push({ name, offset: off, size: sizeOf(t) });
      off += sizeOf(t);
    }
    this.align = maxAlign;
    this.size = align(off, maxAlign);
    this.types = Object.freeze(types);
    this.layout = Object.freeze(layout.map((l) => Object.freeze(l)));
  }

  encode(value: T): Buffer {
    const buf = Buffer.alloc(this.size);
    this.encodeInto(buf, 0, value, this.cName);
    return buf;
  }

  encodeInto(buf: Buffer, off: number, value: object, path = this.cName): void {
    const v = value as Record<string, unknown>;
    for (const [name, t, fo] of this.types) {
      if (t.kind === 'pad') continue;
      let fv = v[name];
      if (!(name in v)) {
        if (t.kind === 'family' && typeof v[t.of] === 'string') fv = String(v[t.of]).includes(':') ? AF_INET6 : AF_INET;
        else if ((t.kind === 'ipv6' || t.kind === 'ipv4' || t.kind === 'scalar') && t.dflt !== undefined) fv = t.dflt;
        else throw new RangeError(`${path}.${name}: missing`);
      }
      writeField(buf, off + fo, t, fv, `${path}.${name}`);
    }
  }

  decode(buf: Buffer): T {
    if (buf.length < this.size) throw new RangeError(`${this.cName}: buffer of ${buf.length} bytes, need ${this.size}`);
    return this.decodeFrom(buf, 0);
  }

  decodeFrom(buf: Buffer, off: number): T {
    const out: Record<string, unknown> = {};
    for (const [name, t, fo] of this.types) {
      if (t.kind === 'pad') continue;
      out[name] = readField(buf, off + fo, t);
    }
    return out as T;
  }
}

// --- 16-byte address fields <-> text (the parsing itself is src/domain/ipv6.ts's) --

function bigToBytes(n: bigint): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64BE(n >> 64n, 0);
  b.writeBigUInt64BE(n & 0xffffffffffffffffn, 8);
  return b;
}

/** 16 bytes of an IPv6 address in text, or null. */
export function ipv6Bytes(s: string): Buffer | null {
  const n = parseIPv6(s);
  return n === null ? null : bigToBytes(n);
}

/** 16 bytes of either family: a dotted quad as ::ffff:a.b.c.d, else IPv6 text. */
export function ip46Bytes(s: string): Buffer | null {
  const v4 = parseIPv4(s);
  return v4 !== null ? bigToBytes((0xffffn << 32n) | BigInt(v4)) : ipv6Bytes(s);
}

const bytesToBig = (b: Buffer): bigint => (b.readBigUInt64BE(0) << 64n) | b.readBigUInt64BE(8);

function isV4Mapped(b: Buffer): boolean {
  return isV4Mapped6(bytesToBig(b));
}

/** RFC 5952 text of 16 bytes. */
export function formatIPv6Bytes(b: Buffer): string {
  return formatIPv6(bytesToBig(b));
}

/** The IPv6 netmask of a prefix length, as text ('ffff:ffff:ffff:ffff::' for 64). */
export function ipv6Mask(prefixLen: number): string {
  return formatIPv6(prefixMask6(prefixLen));
}

/** Little-endian buffers for `const volatile` settings and array keys. */
export const le8 = (v: number): Buffer => Buffer.from([v]);
export function le16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return b;
}
export function le32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
}
export function le64(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
}
