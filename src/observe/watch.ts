/**
 * `berth stats --watch`: a live terminal view of the per-veth counters with
 * rates, redrawn every interval (default 1 s) from the same reader as the
 * exporter. Bounded: stops on Ctrl-C/SIGTERM, or after --count frames.
 */
import { DROP_REASON_COUNT, DROP_REASON_NAMES } from '../platform/contract';
import { Dataplane } from '../platform/dataplane';
import { table } from './table';
import { CounterTotals, V, readCounterTotals, readGlobals } from './stats';

export interface WatchOptions {
  pinRoot: string;
  intervalMs?: number;
  /** stop after this many frames */
  count?: number;
  /** default: process.stdout.write */
  write?: (s: string) => void;
  /** clear the screen between frames; default: stdout is a TTY */
  clear?: boolean;
}

const si = (n: number, unit = ''): string => {
  const a = Math.abs(n);
  if (a >= 1e9) return `${(n / 1e9).toFixed(1)}G${unit}`;
  if (a >= 1e6) return `${(n / 1e6).toFixed(1)}M${unit}`;
  if (a >= 1e3) return `${(n / 1e3).toFixed(1)}k${unit}`;
  return `${Number.isInteger(n) ? n : n.toFixed(1)}${unit}`;
};

interface Totals {
  packets: number;
  bytes: number;
  drops: number;
}

function totals(r: CounterTotals): Totals {
  let drops = 0;
  let dropBytes = 0;
  for (let i = 1; i < DROP_REASON_COUNT; i++) {
    drops += r.vals[V.drop(i)];
    dropBytes += r.vals[V.drop(i) + 1];
  }
  return { packets: r.vals[V.PASS_P] + r.vals[V.REDIR_P] + drops, bytes: r.vals[V.PASS_B] + r.vals[V.REDIR_B] + dropBytes, drops };
}

/** One frame: rates since `prev` (keyed by ifindex/direction). */
export function renderFrame(rows: CounterTotals[], prev: Map<string, Totals> | undefined, dtSec: number, extra: string): { text: string; now: Map<string, Totals> } {
  const now = new Map<string, Totals>();
  let sumBps = 0;
  let sumPps = 0;
  let sumDps = 0;
  const body = rows
    .slice()
    .sort((a, b) => a.container.localeCompare(b.container) || a.interface.localeCompare(b.interface) || a.direction.localeCompare(b.direction))
    .map((r) => {
      const key = `${r.ifindex}/${r.direction}`;
      const t = totals(r);
      now.set(key, t);
      const p = prev?.get(key);
      const rate = (a: number, b: number | undefined) => (b === undefined || dtSec <= 0 ? 0 : Math.max(0, (a - b) / dtSec));
      const pps = rate(t.packets, p?.packets);
      const bps = rate(t.bytes, p?.bytes);
      const dps = rate(t.drops, p?.drops);
      sumBps += bps;
      sumPps += pps;
      sumDps += dps;
      const reasons: string[] = [];
      for (let i = 1; i < DROP_REASON_COUNT; i++) if (r.vals[V.drop(i)] > 0) reasons.push(`${DROP_REASON_NAMES[i]}=${r.vals[V.drop(i)]}`);
      return [r.container || '(uplink)', r.network, r.interface, r.direction, si(pps, '/s'), si(bps, 'B/s'), si(dps, '/s'), si(t.packets), si(t.bytes, 'B'), reasons.join(' ')];
    });
  const head = `berth stats --watch  ${new Date().toLocaleTimeString()}  ${rows.length} counter entries  total ${si(sumPps, ' pkt/s')}  ${si(sumBps, 'B/s')}  drops ${si(sumDps, '/s')}${extra}`;
  const text = [head, '', table(['CONTAINER', 'NETWORK', 'VETH', 'DIRECTION', 'PKT/S', 'BYTES/S', 'DROPS/S', 'PACKETS', 'BYTES', 'DROPS BY REASON'], body), ''].join('\n');
  return { text, now };
}

/** Resolves with the number of frames drawn. */
export async function runWatch(opts: WatchOptions): Promise<number> {
  const write = opts.write ?? ((s: string) => void process.stdout.write(s));
  const clear = opts.clear ?? process.stdout.isTTY === true;
  const interval = opts.intervalMs ?? 1000;
  if (!Dataplane.isPinned(opts.pinRoot)) throw new Error(`no berth dataplane pinned at ${opts.pinRoot}`);
  const dp = Dataplane.openPinned(opts.pinRoot);
  let stopped = false;
  let wake: (() => void) | undefined;
  const onSignal = (): void => {
    stopped = true;
    wake?.();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let frames = 0;
  let prev: Map<string, Totals> | undefined;
  let prevAt = 0;
  try {
    while (!stopped) {
      const rows = await readCounterTotals(dp);
      const g = readGlobals(dp);
      const at = Date.now();
      const { text, now } = renderFrame(rows, prev, prev ? (at - prevAt) / 1000 : 0, `  conntrack created ${si(Number(g.ct_created))}  nat retries ${si(Number(g.nat_port_retries))} failures ${si(Number(g.nat_port_exhausted))}`);
      write((clear ? '\x1b[H\x1b[2J' : frames ? '\n' : '') + text);
      prev = now;
      prevAt = at;
      frames++;
      if (opts.count !== undefined && frames >= opts.count) break;
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, interval);
      });
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    dp.close();
  }
  return frames;
}
