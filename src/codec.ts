/**
 * A small declarative codec for C structs with natural (System V) alignment.
 * A struct is described once as an ordered field list; offsets, size and the
 * encode/decode functions are derived from it. The contract test compares the
 * derived layout with the BTF clang emitted for bpf/berth_contract.h.
 */

export type Scalar = 'u8' | 'u16' | 'u32' | 'u64' | 'be16';

export type FieldType =
  | { kind: 'scalar'; scalar: Scalar }
  | { kind: 'ipv4' } // __be32 shown as dotted quad
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
export const ipv4: FieldType = { kind: 'ipv4' };
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
      return 4;
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
      if (!(name in v)) throw new RangeError(`${path}.${name}: missing`);
      writeField(buf, off + fo, t, v[name], `${path}.${name}`);
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
