/**
 * The user's policy: berth's DOCKER-USER. A YAML list of rules, evaluated in
 * order against every new flow from outside to a published port, before
 * berth's own verdicts; the first matching rule decides (allow or deny), and
 * when none matches the flow goes on to berth's usual checks (allow).
 *
 *   - action: deny            # required: allow | deny
 *     source: 192.0.2.0/24    # client address (CIDR or address, IPv4 or IPv6:
 *                             # fd00::/8, 2001:db8::1); default any (both families)
 *     container: web          # destination container by name, or
 *     network: front          # destination network by name; default any
 *     proto: tcp              # tcp | udp; default any
 *     port: 8080              # published host port; default any
 *
 * The file is parsed, validated and frozen before anything is written (errors
 * name the field: `policy.yaml: [1].source: ...`). Names are resolved against
 * the running containers and networks at every reconcile: a container rule
 * matches the address its ports are published to; a rule whose container or
 * network is not there matches nothing (its slot stays, so rule i is slot i).
 *
 * Both families, as Docker 29 has DOCKER-USER in iptables and ip6tables: an
 * IPv4 source matches IPv4 flows only, an IPv6 source IPv6 flows only, no
 * source (or `any`) both. A container or network names both of its
 * addresses (ip / ip6, subnet / subnet6): a rule meets each family's flows
 * on that family's address, and a family the container or network lacks
 * matches nothing. In the kernel a rule has IPv4 fields, IPv6 fields and a
 * families byte (berth_contract.h).
 *
 * In the kernel (bpf/lib/policy.h) the rules live in two banks of
 * berth_policy: rule i of bank b is slot b * MAX_POLICY_RULES + i, and a walk
 * stops at the first END. berth_policy_active says which bank packets read.
 * Writing a new rule set (writePolicy) fills the other bank whole (its rules,
 * then an END), then flips the index: one 4-byte write, so every packet sees
 * either the old rule set or the new one, never a mix. Every packet of an
 * inbound flow to a published port meets the rules, so a deny cuts a live
 * flow at its next packet. Hit counters: a slot whose rule is the same at the
 * same index in both banks takes over its count, a changed rule starts from
 * zero, so berth_policy_hits_total{rule} counts the current rule.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { Counter, Registry } from 'prom-client';
import { MAX_POLICY_RULES, MapName, PolicyAction, PolicyFamilies, PolicyRule, pbCodec, policyCtlCodec, policyRuleCodec } from '../platform/contract';
import type { Dataplane } from '../platform/dataplane';
import { deepFreeze } from './freeze';
import { formatIPv4, hasHostBits, networkAddress, parseCidr, prefixMask } from './ipv4';
import { formatCidr6, formatIPv6, hasHostBits6, isV4Mapped6, networkAddress6, parseCidr6, parseIPv6, prefixMask6, v4OfMapped } from './ipv6';
import { BpfMap, native } from '../platform/native';
import { PerCpuSums } from '../platform/percpu';

export type PolicyVerdict = 'allow' | 'deny';

export interface PolicyRuleSpec {
  readonly action: PolicyVerdict;
  /** an IPv4 or IPv6 CIDR (that family only), or 'any' (both families) */
  readonly source: string;
  readonly container?: string;
  readonly network?: string;
  readonly proto?: 'tcp' | 'udp';
  readonly port?: number;
}

export interface Policy {
  readonly source: string;
  readonly rules: readonly PolicyRuleSpec[];
}

export class PolicyError extends Error {
  constructor(
    readonly source: string,
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${source}: ${field ? `${field}: ` : ''}${reason}`);
    this.name = 'PolicyError';
  }
}

const FIELDS = new Set(['action', 'source', 'container', 'network', 'proto', 'port']);

/** Parse and validate a policy document; throws PolicyError naming the field. */
export function parsePolicy(text: string, source = 'policy'): Policy {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new PolicyError(source, '', `not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) doc = [];
  if (doc && typeof doc === 'object' && !Array.isArray(doc) && 'rules' in (doc as object)) {
    const extra = Object.keys(doc as object).filter((k) => k !== 'rules');
    if (extra.length) throw new PolicyError(source, extra[0]!, 'unknown field (expected only "rules")');
    doc = (doc as { rules: unknown }).rules ?? [];
  }
  if (!Array.isArray(doc)) throw new PolicyError(source, '', 'expected a list of rules');
  if (doc.length > MAX_POLICY_RULES) throw new PolicyError(source, '', `${doc.length} rules; at most ${MAX_POLICY_RULES}`);
  const rules: PolicyRuleSpec[] = doc.map((r: unknown, i: number) => {
    const f = `[${i}]`;
    if (!r || typeof r !== 'object' || Array.isArray(r)) throw new PolicyError(source, f, 'expected a mapping with at least "action"');
    const o = r as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!FIELDS.has(k)) throw new PolicyError(source, `${f}.${k}`, `unknown field (expected one of ${[...FIELDS].join(', ')})`);
    if (o.action !== 'allow' && o.action !== 'deny') throw new PolicyError(source, `${f}.action`, `expected allow or deny, got ${JSON.stringify(o.action)}`);
    let src = 'any';
    if (o.source !== undefined && o.source !== 'any') {
      if (typeof o.source !== 'string') throw new PolicyError(source, `${f}.source`, 'expected an IPv4 or IPv6 CIDR such as 192.0.2.0/24 or fd00::/8');
      src = sourceCidr(o.source, source, `${f}.source`);
    }
    if (o.container !== undefined && o.network !== undefined) throw new PolicyError(source, `${f}.network`, 'give container or network, not both');
    for (const k of ['container', 'network'] as const)
      if (o[k] !== undefined && (typeof o[k] !== 'string' || !(o[k] as string).trim())) throw new PolicyError(source, `${f}.${k}`, 'expected a name');
    if (o.proto !== undefined && o.proto !== 'any' && o.proto !== 'tcp' && o.proto !== 'udp') throw new PolicyError(source, `${f}.proto`, `expected tcp or udp, got ${JSON.stringify(o.proto)}`);
    if (o.port !== undefined && o.port !== 'any' && (typeof o.port !== 'number' || !Number.isInteger(o.port) || o.port < 1 || o.port > 65535))
      throw new PolicyError(source, `${f}.port`, `expected a port number 1..65535, got ${JSON.stringify(o.port)}`);
    const rule: PolicyRuleSpec = {
      action: o.action,
      source: src,
      ...(o.container !== undefined ? { container: o.container as string } : {}),
      ...(o.network !== undefined ? { network: o.network as string } : {}),
      ...(o.proto !== undefined && o.proto !== 'any' ? { proto: o.proto as 'tcp' | 'udp' } : {}),
      ...(o.port !== undefined && o.port !== 'any' ? { port: o.port as number } : {}),
    };
    return rule;
  });
  return deepFreeze({ source, rules });
}

/** A source CIDR (or address) of either family, normalized; throws PolicyError naming field. */
function sourceCidr(text: string, source: string, field: string): string {
  if (text.includes(':')) {
    const c = parseCidr6(text.includes('/') ? text : `${text}/128`);
    if (!c) throw new PolicyError(source, field, `invalid IPv6 CIDR ${JSON.stringify(text)}`);
    if (isV4Mapped6(c.addr) && c.prefixLen >= 96)
      throw new PolicyError(source, field, `${text} is an IPv4-mapped address; give IPv4 sources as IPv4 (${v4OfMapped(c.addr)})`);
    if (hasHostBits6(c)) throw new PolicyError(source, field, `host bits set in ${text} (did you mean ${formatIPv6(networkAddress6(c))}/${c.prefixLen}?)`);
    return formatCidr6(c);
  }
  const c = parseCidr(text.includes('/') ? text : `${text}/32`);
  if (!c) throw new PolicyError(source, field, `invalid IPv4 or IPv6 CIDR ${JSON.stringify(text)}`);
  if (hasHostBits(c)) throw new PolicyError(source, field, `host bits set in ${text} (did you mean ${formatIPv4(networkAddress(c))}/${c.prefixLen}?)`);
  return `${formatIPv4(c.addr)}/${c.prefixLen}`;
}

export function loadPolicy(file: string): Policy {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new PolicyError(file, '', `cannot read: ${(e as Error).message}`);
  }
  return parsePolicy(text, file);
}

/** What the names of a policy resolve to right now. */
export interface PolicyNames {
  /** the address a container's ports are published to (undefined: not running) */
  containerAddr(name: string): string | undefined;
  /** a network's subnet "a.b.c.d/len" (undefined: no such network) */
  networkSubnet(name: string): string | undefined;
  /** the IPv6 address a container's v6 ports are published to (undefined: none) */
  containerAddr6?(name: string): string | undefined;
  /** a network's subnet6 "addr/len" (undefined: no such network, or no IPv6) */
  networkSubnet6?(name: string): string | undefined;
}

/** A destination that no published port ever has (the limited broadcast address). */
const NOWHERE = { dst_addr: '255.255.255.255', dst_mask: '255.255.255.255' };
/** Nor in IPv6 (all ones: a multicast address, never a container's). */
const ALL6 = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
const NOWHERE6 = { dst6_addr: ALL6, dst6_mask: ALL6 };
const ANY6 = { dst6_addr: '::', dst6_mask: '::' };

/** The kernel slots for a policy (without the END). */
export function policySlots(p: Policy, names: PolicyNames): PolicyRule[] {
  return p.rules.map((r) => {
    let dst = { dst_addr: '0.0.0.0', dst_mask: '0.0.0.0' };
    let dst6 = ANY6;
    if (r.container !== undefined) {
      const a = names.containerAddr(r.container);
      dst = a ? { dst_addr: a, dst_mask: '255.255.255.255' } : NOWHERE;
      const a6 = parseIPv6(names.containerAddr6?.(r.container) ?? '');
      dst6 = a6 !== null ? { dst6_addr: formatIPv6(a6), dst6_mask: ALL6 } : NOWHERE6;
    } else if (r.network !== undefined) {
      const c = parseCidr(names.networkSubnet(r.network) ?? '');
      dst = c ? { dst_addr: formatIPv4(networkAddress(c)), dst_mask: formatIPv4(prefixMask(c.prefixLen)) } : NOWHERE;
      const c6 = parseCidr6(names.networkSubnet6?.(r.network) ?? '');
      dst6 = c6 ? { dst6_addr: formatIPv6(networkAddress6(c6)), dst6_mask: formatIPv6(prefixMask6(c6.prefixLen)) } : NOWHERE6;
    }
    let src = { src_addr: '0.0.0.0', src_mask: '0.0.0.0', src6_addr: '::', src6_mask: '::' };
    let families: number = PolicyFamilies.V6;
    if (r.source.includes(':')) {
      const c = parseCidr6(r.source)!;
      src = { ...src, src6_addr: formatIPv6(networkAddress6(c)), src6_mask: formatIPv6(prefixMask6(c.prefixLen)) };
      families = PolicyFamilies.V6 | PolicyFamilies.NOT_V4;
    } else if (r.source !== 'any') {
      const c = parseCidr(r.source)!;
      src = { ...src, src_addr: formatIPv4(networkAddress(c)), src_mask: formatIPv4(prefixMask(c.prefixLen)) };
      families = 0;
    }
    return {
      src_addr: src.src_addr,
      src_mask: src.src_mask,
      ...dst,
      port: r.port ?? 0,
      proto: r.proto === 'tcp' ? 6 : r.proto === 'udp' ? 17 : 0,
      action: r.action === 'deny' ? PolicyAction.DENY : PolicyAction.ALLOW,
      families,
      src6_addr: src.src6_addr,
      src6_mask: src.src6_mask,
      ...(families === 0 ? ANY6 : dst6),
    };
  });
}

const END_RULE: PolicyRule = { src_addr: '0.0.0.0', src_mask: '0.0.0.0', dst_addr: '0.0.0.0', dst_mask: '0.0.0.0', port: 0, proto: 0, action: PolicyAction.END };

function slotKey(i: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(i);
  return b;
}

export interface PolicyMaps {
  rules: BpfMap;
  hits: BpfMap;
  active: BpfMap;
}

export function openPolicyMaps(dp: Pick<Dataplane, 'pinRoot'>): PolicyMaps {
  const n = native();
  const open = (name: string): BpfMap => n.openPinnedMap(path.join(dp.pinRoot, name));
  return { rules: open(MapName.POLICY), hits: open(MapName.POLICY_HITS), active: open(MapName.POLICY_ACTIVE) };
}

export function closePolicyMaps(m: PolicyMaps): void {
  m.rules.close();
  m.hits.close();
  m.active.close();
}

/** The bank packets read now (0 or 1). */
export function activeBank(m: Pick<PolicyMaps, 'active'>): number {
  const v = m.active.lookup(slotKey(0));
  return v && policyCtlCodec.decode(v).bank ? 1 : 0;
}

const bankSlot = (bank: number, i: number): Buffer => slotKey(bank * MAX_POLICY_RULES + i);

/** The rules of a bank as the kernel holds them, up to (not including) the first END. */
function readBank(m: Pick<PolicyMaps, 'rules'>, bank: number): PolicyRule[] {
  const out: PolicyRule[] = [];
  for (let i = 0; i < MAX_POLICY_RULES; i++) {
    const v = m.rules.lookup(bankSlot(bank, i));
    if (!v) break;
    const r = policyRuleCodec.decode(v);
    if (r.action === PolicyAction.END) break;
    out.push(r);
  }
  return out;
}

/** The rules in force (the active bank), up to (not including) the first END. */
export function readPolicySlots(m: Pick<PolicyMaps, 'rules' | 'active'>): PolicyRule[] {
  return readBank(m, activeBank(m));
}

/**
 * Write a rule set: the inactive bank whole, then the flip (see the top of
 * this file). Returns the bank now in force, or undefined when the rule set
 * in force was already this one (nothing written). onFlip runs right before
 * the flip, with the new bank written (for tests).
 */
export function writePolicy(m: PolicyMaps, slots: readonly PolicyRule[], onFlip?: () => void): number | undefined {
  if (slots.length > MAX_POLICY_RULES) throw new Error(`${slots.length} policy rules; at most ${MAX_POLICY_RULES}`);
  const from = activeBank(m);
  const to = 1 - from;
  const enc = (i: number): Buffer => policyRuleCodec.encode(i < slots.length ? slots[i]! : END_RULE);
  let same = true;
  for (let i = 0; i <= Math.min(slots.length, MAX_POLICY_RULES - 1) && same; i++) {
    const cur = m.rules.lookup(bankSlot(from, i));
    same = cur !== null && cur.equals(enc(i));
  }
  if (same) return undefined;
  // rules 0..n-1 and the END at n; what lies past the END is never read
  const zeroHits = Buffer.alloc(m.hits.valueBufferSize);
  for (let i = 0; i <= slots.length && i < MAX_POLICY_RULES; i++) {
    const want = enc(i);
    if (i < slots.length) {
      const old = m.rules.lookup(bankSlot(from, i));
      m.hits.update(bankSlot(to, i), (old?.equals(want) && m.hits.lookup(bankSlot(from, i))) || zeroHits);
    }
    m.rules.update(bankSlot(to, i), want);
  }
  onFlip?.();
  m.active.update(slotKey(0), policyCtlCodec.encode({ bank: to }));
  return to;
}

/** Packets matched per rule of the rule set in force (summed over CPUs). */
export function readPolicyHits(m: PolicyMaps, count: number): Array<{ packets: bigint; bytes: bigint }> {
  const out: Array<{ packets: bigint; bytes: bigint }> = [];
  const bank = activeBank(m);
  for (let i = 0; i < count; i++) {
    const v = m.hits.lookup(bankSlot(bank, i));
    // struct berth_pb per CPU: packets, then bytes (the one per-CPU decode, platform/percpu.ts)
    const s = v ? new PerCpuSums(v, pbCodec.size) : undefined;
    out.push({ packets: s?.bigint(0) ?? 0n, bytes: s?.bigint(1) ?? 0n });
  }
  return out;
}

/**
 * The metric berth_policy_hits_total{rule, action}: packets matched by each
 * rule of the policy in force (read from the kernel at scrape time).
 */
export function registerPolicyMetrics(registry: Registry, dp: Pick<Dataplane, 'pinRoot'>, current: () => Policy | undefined): void {
  let maps: PolicyMaps | undefined;
  new Counter({
    name: 'berth_policy_hits_total',
    help: 'Packets of inbound flows to published ports matched by each rule of the user policy (DOCKER-USER equivalent).',
    labelNames: ['rule', 'action'],
    registers: [registry],
    collect() {
      this.reset();
      const p = current();
      if (!p || !p.rules.length) return;
      try {
        maps ??= openPolicyMaps(dp);
      } catch {
        return;
      }
      readPolicyHits(maps, p.rules.length).forEach((h, i) => this.inc({ rule: String(i), action: p.rules[i]!.action }, Number(h.packets)));
    },
  });
}

/** Keeps the policy in force and programs it; reload() keeps the old one on a bad file. */
export class PolicyManager {
  private policy: Policy;
  private lastSlots = '';

  constructor(
    readonly file: string,
    private readonly dp: Pick<Dataplane, 'pinRoot'>,
  ) {
    this.policy = loadPolicy(file);
  }

  get current(): Policy {
    return this.policy;
  }

  /** Re-read the file; throws PolicyError (and keeps the old policy) when it is bad. */
  reload(): Policy {
    this.policy = loadPolicy(this.file);
    this.lastSlots = '';
    return this.policy;
  }

  /** Program the slots for the names as they are now; false when nothing changed. */
  program(names: PolicyNames): boolean {
    const slots = policySlots(this.policy, names);
    const sig = JSON.stringify(slots);
    if (sig === this.lastSlots) return false;
    const m = openPolicyMaps(this.dp);
    try {
      const flipped = writePolicy(m, slots) !== undefined;
      this.lastSlots = sig;
      return flipped;
    } finally {
      closePolicyMaps(m);
    }
  }

  /** Remove every rule (an END in slot 0 of the bank put in force). */
  static clear(dp: Pick<Dataplane, 'pinRoot'>): void {
    const m = openPolicyMaps(dp);
    try {
      writePolicy(m, []);
    } finally {
      closePolicyMaps(m);
    }
  }
}

/** Names for the policy from plain maps. */
export function namesFrom(
  containers: ReadonlyMap<string, string>,
  networks: ReadonlyMap<string, string>,
  containers6: ReadonlyMap<string, string> = new Map(),
  networks6: ReadonlyMap<string, string> = new Map(),
): PolicyNames {
  return { containerAddr: (n) => containers.get(n), networkSubnet: (n) => networks.get(n), containerAddr6: (n) => containers6.get(n), networkSubnet6: (n) => networks6.get(n) };
}

