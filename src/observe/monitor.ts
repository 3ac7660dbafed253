/**
 * `berth monitor`: drop events streamed from the BPF ring buffer
 * (berth_events). The dataplane writes events only while slot 0 of
 * berth_monitor is enabled, and then at most `rate` per second per CPU (a
 * token bucket in BPF), so a flood of drops cannot hurt it. The monitor is
 * enabled while we listen and disabled on every way out: stop(), SIGINT,
 * SIGTERM, --count/--duration, and process exit.
 */
import * as path from 'node:path';
import {
  DIRECTION_NAMES,
  DROP_REASON_NAMES,
  Direction,
  DropEvent,
  MapName,
  dropEventCodec,
  endpointMetaCodec,
  ifindexKeyCodec,
  monitorCfgCodec,
  networkKeyCodec,
  networkMetaCodec,
} from '../platform/contract';
import { Dataplane, validatePinRoot } from '../platform/dataplane';
import { ifnameOf } from '../platform/hostnet';
import { BpfError, BpfMap, RingBuffer, native } from '../platform/native';
import { UPLINK_DIRECTION_NAMES } from './stats';
import { PROTO_NAMES } from '../engine/conntrack';

export const DEFAULT_MONITOR_RATE = 100;

export interface MonitorEvent {
  /** wall-clock time of the drop, ISO 8601 */
  time: string;
  reason: string;
  interface: string;
  ifindex: number;
  container: string;
  network: string;
  direction: string;
  proto: string;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  /** packet length in bytes */
  len: number;
}

interface Naming {
  container: string;
  network: string;
  interface: string;
  uplink: boolean;
}

const u32key = (): Buffer => Buffer.alloc(4);

/** Names ifindexes from the pinned metadata; re-read on a miss at most once a second. */
class Namer {
  private names = new Map<number, Naming>();
  private readAt = 0;
  constructor(private readonly maps: { epMeta: BpfMap; netMeta: BpfMap; uplink: BpfMap }) {}

  private reload(): void {
    this.readAt = Date.now();
    const nets = new Map<number, string>();
    for (const k of this.maps.netMeta.keys()) {
      const v = this.maps.netMeta.lookup(k);
      if (v) nets.set(networkKeyCodec.decode(k).network_id, networkMetaCodec.decode(v).name);
    }
    this.names.clear();
    for (const k of this.maps.epMeta.keys()) {
      const v = this.maps.epMeta.lookup(k);
      if (!v) continue;
      const m = endpointMetaCodec.decode(v);
      this.names.set(ifindexKeyCodec.decode(k).ifindex, { container: m.container, network: nets.get(m.network_id) ?? '', interface: m.ifname, uplink: false });
    }
    for (const k of this.maps.uplink.keys()) {
      const ifindex = ifindexKeyCodec.decode(k).ifindex;
      if (!this.names.has(ifindex)) this.names.set(ifindex, { container: '', network: '', interface: ifnameOf(ifindex), uplink: true });
    }
  }

  name(ifindex: number): Naming {
    let n = this.names.get(ifindex);
    if (!n && Date.now() - this.readAt > 1000) {
      this.reload();
      n = this.names.get(ifindex);
    }
    return n ?? { container: '', network: '', interface: ifnameOf(ifindex), uplink: false };
  }
}

export function decodeEvent(raw: Buffer, namer: { name(ifindex: number): Naming }, nowNs: bigint = process.hrtime.bigint(), nowMs: number = Date.now()): MonitorEvent {
  const e: DropEvent = dropEventCodec.decode(raw.subarray(0, dropEventCodec.size));
  const n = namer.name(e.ifindex);
  const ageMs = Number(nowNs - e.ts_ns) / 1e6;
  return {
    time: new Date(nowMs - Math.max(0, ageMs)).toISOString(),
    reason: DROP_REASON_NAMES[e.reason] ?? `reason_${e.reason}`,
    interface: n.interface,
    ifindex: e.ifindex,
    container: n.container,
    network: n.network,
    direction: n.uplink ? UPLINK_DIRECTION_NAMES[e.direction] ?? String(e.direction) : DIRECTION_NAMES[e.direction as Direction] ?? String(e.direction),
    proto: PROTO_NAMES[e.proto] ?? (e.proto ? String(e.proto) : ''),
    src: e.saddr,
    sport: e.sport,
    dst: e.daddr,
    dport: e.dport,
    len: e.len,
  };
}

export function formatEvent(e: MonitorEvent): string {
  const where = e.container ? `${e.interface} (${e.container})` : e.interface;
  const ep = (a: string, p: number) => (p ? (a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`) : a);
  return `${e.time}  ${e.reason.padEnd(13)}  ${where}  ${e.direction}  ${e.proto || '-'} ${ep(e.src, e.sport)} -> ${ep(e.dst, e.dport)}  len ${e.len}`;
}

export interface MonitorOptions {
  pinRoot: string;
  /** events per second per CPU; default 100 */
  rate?: number;
  /** events at once after a quiet spell; default = rate */
  burst?: number;
}

export class DropMonitor {
  private ring: RingBuffer;
  private cfg: BpfMap;
  private meta: { epMeta: BpfMap; netMeta: BpfMap; uplink: BpfMap };
  private namer: Namer;
  private enabled = false;
  private closed = false;
  private readonly onExit = (): void => this.disable();

  private constructor(readonly pinRoot: string, private readonly opts: MonitorOptions) {
    const n = native();
    const p = (name: string) => path.join(pinRoot, name);
    this.cfg = n.openPinnedMap(p(MapName.MONITOR));
    try {
      this.ring = n.openRingBuffer(p(MapName.EVENTS));
    } catch (e) {
      this.cfg.close();
      throw e;
    }
    this.meta = { epMeta: n.openPinnedMap(p(MapName.EP_META)), netMeta: n.openPinnedMap(p(MapName.NET_META)), uplink: n.openPinnedMap(p(MapName.UPLINK)) };
    this.namer = new Namer(this.meta);
  }

  static open(opts: MonitorOptions): DropMonitor {
    const root = validatePinRoot(opts.pinRoot);
    if (!Dataplane.isPinned(root)) throw new Error(`no berth dataplane pinned at ${root}`);
    const rate = opts.rate ?? DEFAULT_MONITOR_RATE;
    if (!Number.isInteger(rate) || rate <= 0 || rate > 1_000_000) throw new Error(`--rate must be a whole number in 1..1000000, got ${rate}`);
    return new DropMonitor(root, opts);
  }

  /** Start listening: the reader first, then the dataplane's switch. */
  start(onEvent: (e: MonitorEvent) => void, onError: (e: BpfError) => void = () => undefined): void {
    if (this.closed) throw new Error('monitor closed');
    this.ring.start(
      (records) => {
        const nowNs = process.hrtime.bigint();
        const nowMs = Date.now();
        for (const r of records) {
          if (this.closed) return;
          onEvent(decodeEvent(r, this.namer, nowNs, nowMs));
        }
      },
      (e) => {
        this.stop();
        onError(e);
      },
    );
    const rate = this.opts.rate ?? DEFAULT_MONITOR_RATE;
    this.cfg.update(u32key(), monitorCfgCodec.encode({ enabled: 1, rate_per_sec: rate, burst: this.opts.burst ?? rate }));
    this.enabled = true;
    process.on('exit', this.onExit);
  }

  /** Turn the dataplane's event switch off (synchronous, safe to repeat). */
  disable(): void {
    if (!this.enabled) return;
    this.enabled = false;
    try {
      this.cfg.update(u32key(), monitorCfgCodec.encode({ enabled: 0, rate_per_sec: 0, burst: 0 }));
    } catch {
      /* the dataplane was unpinned meanwhile */
    }
  }

  /** Disable the monitor, stop the reader and close everything. */
  stop(): void {
    if (this.closed) return;
    this.disable();
    this.closed = true;
    process.off('exit', this.onExit);
    this.ring.close();
    this.cfg.close();
    for (const m of Object.values(this.meta)) m.close();
  }
}

export interface RunMonitorOptions extends MonitorOptions {
  json?: boolean;
  /** stop after this many events */
  count?: number;
  /** stop after this many seconds */
  durationSec?: number;
  /** default console.log */
  print?: (line: string) => void;
}

/** `berth monitor`: resolves with the number of events shown once stopped. */
export async function runMonitor(opts: RunMonitorOptions): Promise<number> {
  const print = opts.print ?? ((l: string) => console.log(l));
  const mon = DropMonitor.open(opts);
  let shown = 0;
  let finish!: () => void;
  let fail!: (e: Error) => void;
  const done = new Promise<void>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  const onSignal = (): void => finish();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const timer = opts.durationSec ? setTimeout(finish, opts.durationSec * 1000) : undefined;
  try {
    mon.start(
      (e) => {
        if (opts.count !== undefined && shown >= opts.count) return;
        shown++;
        print(opts.json ? JSON.stringify(e) : formatEvent(e));
        if (opts.count !== undefined && shown >= opts.count) finish();
      },
      (e) => fail(e),
    );
    if (!opts.json)
      process.stderr.write(
        `berth monitor: drop events from ${mon.pinRoot}, at most ${opts.rate ?? DEFAULT_MONITOR_RATE}/s per CPU${opts.count ? `, stopping after ${opts.count}` : ''}${opts.durationSec ? `, for ${opts.durationSec} s` : ''}; Ctrl-C stops\n`,
      );
    await done;
  } finally {
    if (timer) clearTimeout(timer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    mon.stop();
  }
  return shown;
}
