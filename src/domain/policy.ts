/**
 * The user's policy: berth's DOCKER-USER. A YAML list of rules, evaluated in
 * order against every packet from outside to a published port, and every
 * packet from outside into a routed network (bpf/lib/routed_policy.h: on the
 * packet's own header, `port` being the container port), before berth's own
 * verdicts; the first matching rule decides (allow or deny), and when none
 * matches the flow goes on to berth's usual checks (allow).
 *
 *   - action: deny            # required: allow | deny
 *     source: 192.0.2.0/24    # client address (CIDR or address, IPv4 or IPv6:
 *                             # fd00::/8, 2001:db8::1); default any (both families)
 *     container: web          # destination container by name, or
 *     network: front          # destination network by name; default any
 *     proto: tcp              # tcp | udp; default any
 *     port: 8080              # published host port (a routed network: the container port); default any
 *
 * The replies of a container's masqueraded flows (NAT44, NAT66) meet these
 * rules too, after de-NAT as Docker's DOCKER-USER sees them: `source` the
 * outside host that answers, `container`/`network` the container the reply
 * goes to, `proto` its protocol; a rule with `port` never meets a reply (a
 * masqueraded flow has no published port). bpf/lib/egress_policy.h.
 *
 * A rule with `destination:` (CIDR or address of either family, or `any`)
 * is an egress rule instead: it meets only what containers send out of the
 * host (masqueraded and routed traffic, a published flow's replies, a
 * network without masquerade's), never what arrives. Then `container` /
 * `network` name the sender, `source` (optional) matches the sender's own
 * address (e.g. a container subnet, as `iptables -s` on the way out),
 * `destination` the packet's destination, `proto`/`port` its protocol and
 * destination port:
 *
 *   - {action: deny, destination: 169.254.169.254}   # no container reaches the metadata service
 *
 * `source` and `destination` given together must be of one family.
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
 * How a rule becomes kernel slots, the two banks and the hit counters:
 * engine/policy.ts. This file is pure: the schema, the parse and the
 * validation, the freeze, and what names resolve to (PolicyNames).
 */
import * as fs from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { deepFreeze } from './freeze';
import { formatIPv4, hasHostBits, networkAddress, parseCidr } from './ipv4';
import { formatCidr6, formatIPv6, hasHostBits6, isV4Mapped6, networkAddress6, parseCidr6, v4OfMapped } from './ipv6';

export type PolicyVerdict = 'allow' | 'deny';

export interface PolicyRuleSpec {
  readonly action: PolicyVerdict;
  /** an IPv4 or IPv6 CIDR (that family only), or 'any' (both families) */
  readonly source: string;
  readonly container?: string;
  readonly network?: string;
  readonly proto?: 'tcp' | 'udp';
  readonly port?: number;
  /** an egress rule: the destination, an IPv4 or IPv6 CIDR, or 'any' (both families) */
  readonly destination?: string;
}

export interface Policy {
  readonly source: string;
  readonly rules: readonly PolicyRuleSpec[];
}

/** At most this many rules: BERTH_MAX_POLICY_RULES of bpf/berth_contract.h, the kernel's slots per bank (platform/contract.ts re-exports it). */
export const MAX_POLICY_RULES = 64;

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

const FIELDS = new Set(['action', 'source', 'destination', 'container', 'network', 'proto', 'port']);

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
    let dest: string | undefined;
    if (o.destination !== undefined) {
      if (o.destination === 'any') dest = 'any';
      else if (typeof o.destination !== 'string') throw new PolicyError(source, `${f}.destination`, 'expected an IPv4 or IPv6 CIDR or address such as 169.254.169.254 or fd00::/8, or any');
      else dest = sourceCidr(o.destination, source, `${f}.destination`);
      if (src !== 'any' && dest !== 'any' && src.includes(':') !== dest.includes(':'))
        throw new PolicyError(source, `${f}.destination`, `${o.destination} is ${dest.includes(':') ? 'IPv6' : 'IPv4'} but source ${src} is ${src.includes(':') ? 'IPv6' : 'IPv4'}: a rule meets one family, or both when neither is given`);
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
      ...(dest !== undefined ? { destination: dest } : {}),
    };
    return rule;
  });
  return deepFreeze({ source, rules });
}

/** A source or destination CIDR (or address) of either family, normalized; throws PolicyError naming field. */
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

/** Names for the policy from plain maps. */
export function namesFrom(
  containers: ReadonlyMap<string, string>,
  networks: ReadonlyMap<string, string>,
  containers6: ReadonlyMap<string, string> = new Map(),
  networks6: ReadonlyMap<string, string> = new Map(),
): PolicyNames {
  return { containerAddr: (n) => containers.get(n), networkSubnet: (n) => networks.get(n), containerAddr6: (n) => containers6.get(n), networkSubnet6: (n) => networks6.get(n) };
}

