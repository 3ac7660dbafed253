/**
 * The user policy in the kernel (the rules themselves, their file format and
 * what they mean: domain/policy.ts).
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
 * An egress rule (a `destination:`) is a slot with egress 1 and its out_*
 * fields; berth_policy_ctl.egress_banks tells the kernel which banks hold
 * one, so that what containers send out meets no walk when none does.
 */
import * as path from 'node:path';
import { MapName, PolicyAction, PolicyFamilies, PolicyRule, pbCodec, policyCtlCodec, policyRuleCodec } from '../platform/contract';
import type { Dataplane } from '../platform/dataplane';
import { BpfMap, native } from '../platform/native';
import { PerCpuSums } from '../platform/percpu';
import { formatIPv4, networkAddress, parseCidr, prefixMask } from '../domain/ipv4';
import { formatIPv6, networkAddress6, parseCidr6, parseIPv6, prefixMask6 } from '../domain/ipv6';
import { MAX_POLICY_RULES, Policy, PolicyNames, loadPolicy } from '../domain/policy';

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
    // an egress rule's destination (out_*); its family narrows the rule as a source's does
    // (domain/policy.ts refuses a source and a destination of two families)
    let out = { out_addr: '0.0.0.0', out_mask: '0.0.0.0', out6_addr: '::', out6_mask: '::' };
    if (r.destination?.includes(':')) {
      const c = parseCidr6(r.destination)!;
      out = { ...out, out6_addr: formatIPv6(networkAddress6(c)), out6_mask: formatIPv6(prefixMask6(c.prefixLen)) };
      families = PolicyFamilies.V6 | PolicyFamilies.NOT_V4;
    } else if (r.destination !== undefined && r.destination !== 'any') {
      const c = parseCidr(r.destination)!;
      out = { ...out, out_addr: formatIPv4(networkAddress(c)), out_mask: formatIPv4(prefixMask(c.prefixLen)) };
      families = 0;
    }
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
      ...out,
      egress: r.destination !== undefined ? 1 : 0,
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
  // bit b of egress_banks: bank b holds an egress rule (bpf/lib/egress_policy.h skips the walk otherwise)
  const ctl = m.active.lookup(slotKey(0));
  const bits = ctl ? (policyCtlCodec.decode(ctl).egress_banks ?? 0) : 0;
  const bitOf = (bank: number, on: boolean, b: number): number => (on ? b | (1 << bank) : b & ~(1 << bank));
  const egress = slots.some((s) => s.egress === 1);
  if (same) {
    // a dataplane migrated from before egress rules has the bit clear: set it for the bank in force
    if (bitOf(from, egress, bits) !== bits) m.active.update(slotKey(0), policyCtlCodec.encode({ bank: from, egress_banks: bitOf(from, egress, bits) }));
    return undefined;
  }
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
  // the new bank's egress bit first (packets still read the old bank, whose bit stays), then the
  // flip, which changes the bank alone: no packet sees one bank with the other's bit
  const next = bitOf(to, egress, bits);
  if (next !== bits) m.active.update(slotKey(0), policyCtlCodec.encode({ bank: from, egress_banks: next }));
  onFlip?.();
  m.active.update(slotKey(0), policyCtlCodec.encode({ bank: to, egress_banks: next }));
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

