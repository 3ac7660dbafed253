/**
 * berth's conntrack table as the controller sees it: flows (pairs of halves),
 * their age and state, filters for `berth ct`, and the sweeper that removes
 * expired flows. The sweeper never races a live packet into a wrong state:
 * it re-reads a half right before deleting it and keeps the flow if the
 * packet path touched it in between. (Unassured flows, and assured ones that
 * are closing, are also evicted by the packet path itself when new ones need
 * room: bpf/lib/conntrack.h.)
 */
import { ConntrackTimeouts, DEFAULT_CONNTRACK_TIMEOUTS } from '../domain/conntrack-timeouts';
import { CT_STATE_ORDER, CtEntry, CtFlags, CtKey, CtState, ctEntryCodec, ctKeyCodec, sumGlobalStats } from '../platform/contract';
import type { BpfMap } from '../platform/native';
import { canonicalIPv6 } from '../domain/ipv6';

export interface Half {
  key: CtKey;
  entry: CtEntry;
  raw: Buffer;
}

export interface Flow {
  orig: Half;
  reply?: Half;
  proto: number;
  /** the flow's state (both halves keep it; the further one wins should they differ) */
  state: number;
  /** handshake completed / a reply seen: never evicted for a new flow */
  assured: boolean;
  kind: 'masquerade' | 'published' | 'hairpin' | 'routed' | 'other';
  /** nanoseconds, CLOCK_MONOTONIC (bpf_ktime_get_ns) */
  lastSeen: bigint;
  created: bigint;
}

export const PROTO_NAMES: Record<number, string> = {
  1: 'icmp', 2: 'igmp', 4: 'ipip', 6: 'tcp', 17: 'udp', 33: 'dccp', 41: 'ipv6', 47: 'gre', 50: 'esp', 51: 'ah', 89: 'ospf', 103: 'pim', 112: 'vrrp', 132: 'sctp', 136: 'udplite',
  58: 'icmpv6',
};

/** The protocols whose flows have ports (ICMP and ICMPv6 echo: the identifier); every other one is tracked by addresses alone (bpf/lib/generic.h). */
export function hasPorts(proto: number): boolean {
  return proto === 1 || proto === 6 || proto === 17 || proto === 58;
}

/** An address with a port for people: a.b.c.d:port, or [v6]:port (RFC 3986) so that the port is not read as part of the address. */
export function addrPortStr(addr: string, port: number): string {
  return addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`;
}

/** A protocol by name (PROTO_NAMES) or number, as `berth ct --proto` takes it; undefined when it is neither. */
export function protoNumber(s: string): number | undefined {
  if (/^\d{1,3}$/.test(s) && Number(s) <= 255) return Number(s);
  const e = Object.entries(PROTO_NAMES).find(([, n]) => n === s.toLowerCase());
  return e ? Number(e[0]) : undefined;
}

/** One side of a tuple for people: addr:port, or the address alone for a protocol without ports. */
export function endpointStr(proto: number, addr: string, port: number): string {
  return hasPorts(proto) ? addrPortStr(addr, port) : addr;
}
export const STATE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(CtState).map(([k, v]) => [v, k.toLowerCase()]));

export function partnerKey(e: CtEntry): CtKey {
  return { saddr: e.rewrite.daddr, daddr: e.rewrite.saddr, sport: e.rewrite.dport, dport: e.rewrite.sport, proto: e.rewrite.proto };
}

const keyStr = (k: CtKey) => `${k.proto}/${k.saddr}:${k.sport}>${k.daddr}:${k.dport}`;

/** Pair halves into flows. A reply half without its orig half is a flow of its own. */
export function pairFlows(halves: readonly Half[]): Flow[] {
  return [...pairing(halves)];
}

/** pairFlows() one flow at a time, so a caller with a big table can yield to the event loop between slices. */
export function* pairing(halves: readonly Half[]): Generator<Flow> {
  const byKey = new Map(halves.map((h) => [keyStr(h.key), h]));
  const used = new Set<string>();
  const sorted = [...halves].sort((a, b) => (a.entry.flags & CtFlags.REPLY) - (b.entry.flags & CtFlags.REPLY));
  for (const h of sorted) {
    const k = keyStr(h.key);
    if (used.has(k)) continue;
    used.add(k);
    const pk = keyStr(partnerKey(h.entry));
    const partner = byKey.get(pk);
    if (partner && !used.has(pk)) used.add(pk);
    const [orig, reply] = h.entry.flags & CtFlags.REPLY && partner ? [partner, h] : [h, partner];
    const f = orig.entry.flags | (reply?.entry.flags ?? 0);
    const states = [orig.entry.state, ...(reply ? [reply.entry.state] : [])];
    yield {
      orig,
      reply,
      proto: orig.key.proto,
      state: states.reduce((a, b) => (stateRank(b) > stateRank(a) ? b : a)),
      assured: (f & CtFlags.ASSURED) !== 0,
      kind: f & CtFlags.HAIRPIN ? 'hairpin' : f & CtFlags.PUBLISHED ? 'published' : f & CtFlags.MASQ ? 'masquerade' : f & CtFlags.ROUTED ? 'routed' : 'other',
      lastSeen: reply && reply.entry.last_seen_ns > orig.entry.last_seen_ns ? reply.entry.last_seen_ns : orig.entry.last_seen_ns,
      created: orig.entry.created_ns,
    };
  }
}

/** Where a state lies in a connection's life (the enum's values are append-only). */
export function stateRank(state: number): number {
  const i = CT_STATE_ORDER.indexOf(state);
  return i < 0 ? -1 : i;
}

/** Seconds of idleness after which a flow is removed. */
export function timeoutFor(flow: Pick<Flow, 'proto' | 'state' | 'assured'>, t: ConntrackTimeouts): number {
  if (flow.proto === 6) {
    switch (flow.state) {
      case CtState.CLOSED:
        return t.tcpCloseTimeout;
      case CtState.CLOSING:
        return t.tcpFinTimeout;
      case CtState.ESTABLISHED:
        // unassured: picked up mid-stream and never answered (the kernel's unacknowledged timeout)
        return flow.assured ? t.tcpEstablishedTimeout : t.tcpUnacknowledgedTimeout;
      case CtState.SYN_RECV:
        return t.tcpSynRecvTimeout;
      default:
        return t.tcpSynTimeout;
    }
  }
  if (flow.proto === 17) return flow.assured ? t.udpStreamTimeout : t.udpTimeout;
  if (flow.proto === 1 || flow.proto === 58) return t.icmpTimeout;
  if (flow.proto === 47) return flow.assured ? t.greStreamTimeout : t.greTimeout;
  return t.genericTimeout;
}

/** The table's sizes and what the packet path did since load (berth_global_stats). */
export interface CtSummary {
  /** entries (two per flow) */
  capacity: number;
  /** flows that may wait unassured at once */
  unassuredCapacity: number;
  created: number;
  assured: number;
  evicted: number;
  /** refused: the table was full of assured flows */
  refused: number;
}

export function ctSummary(maps: { ct: BpfMap; ctRing: BpfMap; stats: BpfMap }, cpus: number): CtSummary {
  const v = maps.stats.lookup(Buffer.alloc(4));
  const g = v ? sumGlobalStats(v, cpus) : undefined;
  return {
    capacity: maps.ct.maxEntries,
    unassuredCapacity: maps.ctRing.maxEntries,
    created: Number(g?.ct_created ?? 0n),
    assured: Number(g?.ct_assured ?? 0n),
    evicted: Number(g?.ct_evicted ?? 0n),
    refused: Number(g?.ct_full ?? 0n),
  };
}

export function formatCtSummary(s: CtSummary): string {
  return `conntrack: ${s.capacity} entries, at most ${s.unassuredCapacity} unassured flows; since load: ${s.created} created, ${s.assured} assured, ${s.evicted} evicted (unassured or closing, oldest first), ${s.refused} refused (full of assured flows)`;
}

/** Entries decoded (or flows paired) between two turns of the event loop: a big table is 100,000s of them. */
const SLICE = 2048;
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Every half: the dump on the thread pool, the decoding in slices between turns of the event loop. */
export async function readHalves(ct: BpfMap): Promise<Half[]> {
  const raw = await ct.dump();
  const out: Half[] = [];
  for (let i = 0; i < raw.length; i++) {
    if (i && i % SLICE === 0) await turn();
    const [k, v] = raw[i];
    out.push({ key: ctKeyCodec.decode(k), entry: ctEntryCodec.decode(v), raw: v });
  }
  return out;
}

/** The flows of `halves`, paired in slices between turns of the event loop. */
async function pairSliced(halves: readonly Half[]): Promise<Flow[]> {
  const flows: Flow[] = [];
  for (const f of pairing(halves)) {
    flows.push(f);
    if (flows.length % SLICE === 0) await turn();
  }
  return flows;
}

export function monotonicNs(): bigint {
  return process.hrtime.bigint();
}

export interface SweepResult {
  flows: number;
  /** flows not assured when the sweep read them (those not expired) */
  unassured: number;
  expired: number;
  kept: number;
  durationMs: number;
}

/**
 * Delete the flows idle past their timeout, both halves. Off the event loop
 * for a big table: the dump and the re-read and deletes of the expired flows
 * on the thread pool (lookupBatch, deleteBatch), the decoding and pairing in
 * slices between turns of the loop.
 */
export async function sweep(ct: BpfMap, t: ConntrackTimeouts = DEFAULT_CONNTRACK_TIMEOUTS, now: bigint = monotonicNs()): Promise<SweepResult> {
  const started = process.hrtime.bigint();
  const flows = await pairSliced(await readHalves(ct));
  let unassured = 0;
  const candidates: Array<{ f: Flow; halves: Half[] }> = [];
  for (const f of flows) {
    const idle = Number(now - f.lastSeen) / 1e9;
    if (idle <= timeoutFor(f, t)) {
      if (!f.assured) unassured++;
      continue;
    }
    candidates.push({ f, halves: [f.orig, f.reply].filter((h): h is Half => !!h) });
  }
  // re-read both halves: a packet may have touched the flow since the dump
  const keys = candidates.flatMap((c) => c.halves.map((h) => ctKeyCodec.encode(h.key)));
  const cur = keys.length ? await ct.lookupBatch(keys) : [];
  const gone: Buffer[] = [];
  let kept = 0;
  let j = 0;
  for (const { f, halves } of candidates) {
    const touched = halves.some((h, i) => {
      const c = cur[j + i];
      return c !== null && !c.equals(h.raw) && ctEntryCodec.decode(c).last_seen_ns !== h.entry.last_seen_ns;
    });
    if (touched) {
      kept++;
      if (!f.assured) unassured++;
    } else for (let i = 0; i < halves.length; i++) gone.push(keys[j + i]);
    j += halves.length;
  }
  if (gone.length) await ct.deleteBatch(gone);
  return { flows: flows.length, unassured, expired: candidates.length - kept, kept, durationMs: Number(process.hrtime.bigint() - started) / 1e6 };
}

export interface CtFilter {
  /** IPv4 or IPv6 (any spelling of it: compared in RFC 5952 form) */
  addr?: string;
  /** 4 or 6: only flows of that family */
  family?: 4 | 6;
  port?: number;
  /** a name of PROTO_NAMES or a protocol number */
  proto?: string;
}

export function matchFlow(f: Flow, filt: CtFilter): boolean {
  const ks = [f.orig.key, f.orig.entry.rewrite];
  if (filt.proto && protoNumber(filt.proto) !== f.proto) return false;
  if (filt.family && (f.orig.key.saddr.includes(':') ? 6 : 4) !== filt.family) return false;
  const addr = filt.addr && filt.addr.includes(':') ? canonicalIPv6(filt.addr) ?? filt.addr : filt.addr;
  if (addr && !ks.some((k) => k.saddr === addr || k.daddr === addr)) return false;
  if (filt.port !== undefined && !ks.some((k) => k.sport === filt.port || k.dport === filt.port)) return false;
  return true;
}

export interface FlowJson {
  proto: string;
  kind: Flow['kind'];
  state: string;
  /** handshake completed / a reply seen: never evicted for a new flow */
  assured: boolean;
  /** sport and dport only for a protocol with ports (TCP, UDP, ICMP echo) */
  original: { src: string; sport?: number; dst: string; dport?: number };
  translated: { src: string; sport?: number; dst: string; dport?: number };
  ageSeconds: number;
  idleSeconds: number;
  packets: number;
  bytes: number;
  replySeen: boolean;
}

/** A tuple of `berth ct` for people: src:sport -> dst:dport, or src -> dst for a flow without ports (GRE, SCTP, ...). */
export function flowSideStr(s: FlowJson['original']): string {
  const end = (a: string, p: number | undefined): string => (p === undefined ? a : addrPortStr(a, p));
  return `${end(s.src, s.sport)} -> ${end(s.dst, s.dport)}`;
}

export function flowToJson(f: Flow, now: bigint = monotonicNs()): FlowJson {
  const t = (k: CtKey) => (hasPorts(k.proto) ? { src: k.saddr, sport: k.sport, dst: k.daddr, dport: k.dport } : { src: k.saddr, dst: k.daddr });
  return {
    proto: PROTO_NAMES[f.proto] ?? String(f.proto),
    kind: f.kind,
    state: STATE_NAMES[f.state] ?? String(f.state),
    assured: f.assured,
    original: t(f.orig.key),
    translated: t(f.orig.entry.rewrite),
    ageSeconds: Math.max(0, Number(now - f.created) / 1e9),
    idleSeconds: Math.max(0, Number(now - f.lastSeen) / 1e9),
    packets: Number(f.orig.entry.packets + (f.reply?.entry.packets ?? 0n)),
    bytes: Number(f.orig.entry.bytes + (f.reply?.entry.bytes ?? 0n)),
    replySeen: !!f.reply && f.reply.entry.packets > 0n,
  };
}

/**
 * What a reconcile changed that tracked flows may still point at: container
 * addresses whose endpoint went away or changed (a restarted container keeps
 * its address but not its veth), and published ports that went away or now
 * lead elsewhere. A flow still pointing at the old endpoint would carry a
 * sender with a fixed source port into the void until it expires (moby#8795).
 */
export interface CtInvalidation {
  addresses: ReadonlySet<string>;
  /** `${proto}/${hostAddr}:${hostPort}` of the publishes that changed; hostAddr 0.0.0.0 = any IPv4 address, :: any IPv6 one */
  publishes: ReadonlySet<string>;
}

export const publishRef = (proto: number, hostAddr: string, hostPort: number): string => `${proto}/${hostAddr}:${hostPort}`;

/** Whether a flow touches what changed. */
export function flowInvalidated(f: Flow, inv: CtInvalidation): boolean {
  const halves = [f.orig, f.reply].filter((h): h is Half => !!h);
  for (const h of halves)
    for (const a of [h.key.saddr, h.key.daddr, h.entry.rewrite.saddr, h.entry.rewrite.daddr]) if (inv.addresses.has(a)) return true;
  if ((f.kind === 'published' || f.kind === 'hairpin') && inv.publishes.size) {
    const k = f.orig.key; // the client's packet as it arrived: to a host address and the host port
    const any = k.daddr.includes(':') ? '::' : '0.0.0.0'; // the publish of every address of the flow's family
    if (inv.publishes.has(publishRef(k.proto, k.daddr, k.dport)) || inv.publishes.has(publishRef(k.proto, any, k.dport))) return true;
  }
  return false;
}

/** Delete every flow (both halves) that touches what changed; returns how many. Off the event loop for the dump. */
export async function flushInvalidated(ct: BpfMap, inv: CtInvalidation): Promise<number> {
  if (!inv.addresses.size && !inv.publishes.size) return 0;
  let n = 0;
  const gone: Buffer[] = [];
  for (const f of await pairSliced(await readHalves(ct))) {
    if (!flowInvalidated(f, inv)) continue;
    for (const h of [f.orig, f.reply]) if (h) gone.push(ctKeyCodec.encode(h.key));
    n++;
  }
  if (gone.length) await ct.deleteBatch(gone);
  return n;
}
