/**
 * TypeScript side of bpf/berth_contract.h: the map key/value codecs, verdicts,
 * directions and drop reasons. test/unit/contract-btf.test.ts checks every
 * codec's layout and every enum's values against the compiled object's BTF.
 */
import { StructCodec, array, be16, cstr, family, ip46, ipv4, ipv4opt, ipv6, mac, pad, struct, u16, u32, u32opt, u64, u8 } from './codec';
import { PerCpuSums } from './percpu';

export const Direction = Object.freeze({ FROM_CONTAINER: 0, TO_CONTAINER: 1 } as const);
export type Direction = (typeof Direction)[keyof typeof Direction];
export const DIRECTION_NAMES: Readonly<Record<Direction, string>> = Object.freeze({ 0: 'from_container', 1: 'to_container' });

export const Verdict = Object.freeze({ PASS: 0, REDIRECT: 1, DROP: 2 } as const);
export type Verdict = (typeof Verdict)[keyof typeof Verdict];

/** enum berth_drop_reason: index = value; names are metric label values. */
export const DropReason = Object.freeze({
  NONE: 0,
  ISOLATION: 1,
  ICC: 2,
  MALFORMED: 3,
  NO_ENDPOINT: 4,
  CT_FULL: 5,
  NAT_NO_PORT: 6,
  NOT_PUBLISHED: 7,
  INTERNAL: 8,
  NO_UPLINK: 9,
  LOOPBACK_ONLY: 10,
  FRAGMENT: 11,
  POLICY: 12,
  SPOOFED: 13,
  UNKNOWN_SOURCE: 14,
  CT_INVALID: 15,
  TTL_EXCEEDED: 16,
  TOO_BIG: 17,
  FRAG_ORPHAN: 18,
  NO_IPV6: 19,
} as const);
export type DropReason = (typeof DropReason)[keyof typeof DropReason];
export const DROP_REASON_COUNT = 20; // BERTH_DROP_REASON_MAX
export const DROP_REASON_NAMES: readonly string[] = Object.freeze(
  Object.entries(DropReason)
    .sort((a, b) => a[1] - b[1])
    .map(([k]) => k.toLowerCase()),
);

export const EndpointFlags = Object.freeze({ ICC: 1, MASQUERADE: 2, INTERNAL: 4, ROUTED: 8, IPV6: 16, NO_IPV4: 32, ROUTED6: 64 } as const);
export const PublishFlags = Object.freeze({ LOOPBACK: 1, ROUTED: 2 } as const);
/** enum berth_ct_state: append-only, so the values do not follow a connection's life (see CT_STATE_ORDER). */
export const CtState = Object.freeze({ NEW: 0, ESTABLISHED: 1, CLOSING: 2, CLOSED: 3, SYN_SENT: 4, SYN_RECV: 5 } as const);
/** The states in the order a connection goes through them. */
export const CT_STATE_ORDER: readonly number[] = Object.freeze([CtState.NEW, CtState.SYN_SENT, CtState.SYN_RECV, CtState.ESTABLISHED, CtState.CLOSING, CtState.CLOSED]);
export const CtFlags = Object.freeze({ REPLY: 1, HAIRPIN: 2, PUBLISHED: 4, MASQ: 8, ASSURED: 16, ROUTED: 32 } as const);
/** enum berth_ct_wscale: berth_ct_entry.tcp_wscale, a direction's window scale (SHIFT is the mask of the shift). */
export const CtWscale = Object.freeze({ SHIFT: 0x0f, SEEN: 0x10, SYN_WIN: 0x20 } as const);
export const OutKind = Object.freeze({ PEER: 0, MAC: 1, NEIGH: 2 } as const);
export const PolicyAction = Object.freeze({ END: 0, ALLOW: 1, DENY: 2 } as const);
/** enum berth_policy_families: berth_policy_rule.families (0: an IPv4-only rule). */
export const PolicyFamilies = Object.freeze({ V6: 1, NOT_V4: 2 } as const);

/** The C enum names and value-name prefixes, for the BTF check. */
export const CONTRACT_ENUMS = Object.freeze([
  { cName: 'berth_direction', prefix: 'BERTH_DIR_', values: Direction, max: 2 },
  { cName: 'berth_verdict', prefix: 'BERTH_VERDICT_', values: Verdict, max: 3 },
  { cName: 'berth_drop_reason', prefix: 'BERTH_DROP_', values: DropReason, max: DROP_REASON_COUNT, maxName: 'BERTH_DROP_REASON_MAX' },
  { cName: 'berth_endpoint_flags', prefix: 'BERTH_EP_', values: EndpointFlags },
  { cName: 'berth_publish_flags', prefix: 'BERTH_PUB_', values: PublishFlags },
  { cName: 'berth_ct_state', prefix: 'BERTH_CT_', values: CtState },
  { cName: 'berth_ct_flags', prefix: 'BERTH_CT_', values: CtFlags },
  { cName: 'berth_ct_wscale', prefix: 'BERTH_CT_WSCALE_', values: CtWscale },
  { cName: 'berth_out_kind', prefix: 'BERTH_OUT_', values: OutKind },
  { cName: 'berth_policy_action', prefix: 'BERTH_POLICY_', values: PolicyAction },
  { cName: 'berth_policy_families', prefix: 'BERTH_POLICY_', values: PolicyFamilies },
  { cName: 'berth_contract_version', prefix: 'BERTH_CONTRACT_', values: { EPOCH: 1 } },
]);

export interface PacketsBytes {
  packets: bigint;
  bytes: bigint;
}
export const pbCodec = new StructCodec<PacketsBytes>('berth_pb', [
  ['packets', u64],
  ['bytes', u64],
]);

export interface CounterKey {
  ifindex: number;
  direction: number;
}
export const counterKeyCodec = new StructCodec<CounterKey>('berth_counter_key', [
  ['ifindex', u32],
  ['direction', u32],
]);

export interface CounterValue {
  pass: PacketsBytes;
  redirect: PacketsBytes;
  drop: PacketsBytes[];
}
export const counterValueCodec = new StructCodec<CounterValue>('berth_counter_value', [
  ['pass', struct(pbCodec)],
  ['redirect', struct(pbCodec)],
  ['drop', array(struct(pbCodec), DROP_REASON_COUNT)],
]);

export interface IfindexKey {
  ifindex: number;
}
export const ifindexKeyCodec = new StructCodec<IfindexKey>('berth_ifindex_key', [['ifindex', u32]]);

export interface IpKey {
  addr: string;
}
export const ipKeyCodec = new StructCodec<IpKey>('berth_ip_key', [['addr', ipv4]]);

/** berth_ep_by_ip6 / berth_host_addr6 key: an IPv6 address. */
export const ip6KeyCodec = new StructCodec<IpKey>('berth_ip6_key', [['addr', ipv6]]);

export interface Endpoint {
  addr: string;
  ifindex: number;
  network_id: number;
  flags: number;
  mac: string;
  /** the container's IPv6 address; '::' (the default) for none */
  addr6?: string;
}
export const endpointCodec = new StructCodec<Endpoint>('berth_endpoint', [
  ['addr', ipv4],
  ['ifindex', u32],
  ['network_id', u32],
  ['flags', u32],
  ['mac', mac],
  ['pad', pad(2)],
  ['addr6', ipv6],
]);

export const NAME_LEN = 64;

export interface NetworkKey {
  network_id: number;
}
export const networkKeyCodec = new StructCodec<NetworkKey>('berth_network_key', [['network_id', u32]]);

export interface NetworkMeta {
  name: string;
  bridge: string;
  subnet: string;
  prefix_len: number;
  gateway: string;
  flags: number;
  /** IPv6 ('::' and 0: none) */
  subnet6?: string;
  gateway6?: string;
  prefix_len6?: number;
}
export const networkMetaCodec = new StructCodec<NetworkMeta>('berth_network_meta', [
  ['name', cstr(NAME_LEN)],
  ['bridge', cstr(16)],
  ['subnet', ipv4],
  ['prefix_len', u32],
  ['gateway', ipv4],
  ['flags', u32],
  ['subnet6', ipv6],
  ['gateway6', ipv6],
  ['prefix_len6', u32opt],
  ['pad', pad(4)],
]);

export interface EndpointMeta {
  container: string;
  ifname: string;
  network_id: number;
}
export const endpointMetaCodec = new StructCodec<EndpointMeta>('berth_endpoint_meta', [
  ['container', cstr(NAME_LEN)],
  ['ifname', cstr(16)],
  ['network_id', u32],
  ['pad', pad(4)],
]);

export interface NetValue {
  subnet: string;
  mask: string;
  gateway: string;
  flags: number;
  bridge_ifindex: number;
  gw_mac: string;
  /** IPv6 (BERTH_EP_IPV6): subnet, mask, gateway; '::' for none */
  subnet6?: string;
  mask6?: string;
  gateway6?: string;
}
export const netValueCodec = new StructCodec<NetValue>('berth_net', [
  ['subnet', ipv4],
  ['mask', ipv4],
  ['gateway', ipv4],
  ['flags', u32],
  ['bridge_ifindex', u32],
  ['gw_mac', mac],
  ['pad', pad(2)],
  ['subnet6', ipv6],
  ['mask6', ipv6],
  ['gateway6', ipv6],
]);

export interface BridgeValue {
  network_id: number;
  flags: number;
}
export const bridgeCodec = new StructCodec<BridgeValue>('berth_bridge', [
  ['network_id', u32],
  ['flags', u32],
]);

export interface PublishKey {
  /** a dotted quad ('0.0.0.0': any IPv4 address) or IPv6 text ('::': any IPv6 address) */
  host_addr: string;
  host_port: number; // host byte order in TS; network order on the wire
  proto: number;
  /** AF_INET / AF_INET6; when left out, host_addr's */
  family?: number;
}
export const publishKeyCodec = new StructCodec<PublishKey>('berth_publish_key', [
  ['host_addr', ip46],
  ['host_port', be16],
  ['proto', u8],
  ['family', family('host_addr')],
]);

export interface PublishValue {
  addr: string;
  port: number;
  flags: number;
  ifindex: number;
  network_id: number;
  mac: string;
}
export const publishValueCodec = new StructCodec<PublishValue>('berth_publish_value', [
  ['addr', ip46],
  ['port', be16],
  ['flags', u16],
  ['ifindex', u32],
  ['network_id', u32],
  ['mac', mac],
  ['pad', pad(2)],
]);

export interface HostAddrValue {
  ifindex: number;
  flags: number;
}
export const hostAddrValueCodec = new StructCodec<HostAddrValue>('berth_host_addr_value', [
  ['ifindex', u32],
  ['flags', u32],
]);

export interface Uplink {
  addr: string;
  flags: number;
  mac: string;
  /** NAT66 source; '::' (the default) for none */
  addr6?: string;
}
export const uplinkCodec = new StructCodec<Uplink>('berth_uplink', [
  ['addr', ipv4],
  ['flags', u32],
  ['mac', mac],
  ['pad', pad(2)],
  ['addr6', ipv6],
]);

export interface CtKey {
  /** dotted quad (IPv4, stored ::ffff:a.b.c.d) or IPv6 text */
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  proto: number;
  /** AF_INET / AF_INET6; when left out, saddr's */
  family?: number;
}
export const ctKeyCodec = new StructCodec<CtKey>('berth_ct_key', [
  ['saddr', ip46],
  ['daddr', ip46],
  ['sport', be16],
  ['dport', be16],
  ['proto', u8],
  ['family', family('saddr')],
  ['pad', pad(2)],
]);

export interface CtEntry {
  rewrite: CtKey;
  created_ns: bigint;
  last_seen_ns: bigint;
  packets: bigint;
  bytes: bigint;
  out_ifindex: number;
  out_kind: number;
  count_ifindex: number;
  out_smac: string;
  out_dmac: string;
  state: number;
  flags: number;
  tcp_flags_seen: number;
  /** TCP, this direction as sent (host order): highest seq + payload, highest ack, last window (unscaled) */
  tcp_end: number;
  tcp_ack: number;
  tcp_win: number;
  /** CtWscale: the shift this direction's SYN announced, whether it announced one, whether tcp_win came from a SYN */
  tcp_wscale: number;
}
export const ctEntryCodec = new StructCodec<CtEntry>('berth_ct_entry', [
  ['rewrite', struct(ctKeyCodec)],
  ['created_ns', u64],
  ['last_seen_ns', u64],
  ['packets', u64],
  ['bytes', u64],
  ['out_ifindex', u32],
  ['out_kind', u32],
  ['count_ifindex', u32],
  ['out_smac', mac],
  ['out_dmac', mac],
  ['state', u8],
  ['flags', u8],
  ['tcp_flags_seen', u8],
  ['pad', pad(1)],
  ['tcp_end', u32],
  ['tcp_ack', u32],
  ['tcp_win', u16],
  ['tcp_wscale', u8],
  ['pad2', pad(1)],
]);

/** A slot of berth_ct_ring: the unassured flows in creation order. */
export interface CtSlot {
  key: CtKey;
  /** 0: empty */
  created_ns: bigint;
}
export const ctSlotCodec = new StructCodec<CtSlot>('berth_ct_slot', [
  ['key', struct(ctKeyCodec)],
  ['created_ns', u64],
]);

/** Slot 0 of berth_ct_pos. */
export interface CtPos {
  /** flows recorded since load */
  head: bigint;
  tail: bigint;
}
export const ctPosCodec = new StructCodec<CtPos>('berth_ct_pos', [
  ['head', u64],
  ['tail', u64],
]);

/** berth_frag's key: the arriving first fragment's addresses, IP id and protocol (bpf/lib/frag.h). */
export interface FragKey {
  saddr: string;
  daddr: string;
  /** the identification (IPv4 16 bits, IPv6 32), host order */
  id: number;
  proto: number;
  family?: number;
}
export const fragKeyCodec = new StructCodec<FragKey>('berth_frag_key', [
  ['saddr', ip46],
  ['daddr', ip46],
  ['id', u32],
  ['proto', u8],
  ['family', family('saddr')],
  ['pad', pad(2)],
]);

/** berth_frag's value: the ports the first fragment arrived with. */
export interface FragPorts {
  sport: number;
  dport: number;
}
export const fragPortsCodec = new StructCodec<FragPorts>('berth_frag_ports', [
  ['sport', be16],
  ['dport', be16],
]);

export interface SockKey {
  cookie: bigint;
  addr: string;
  port: number;
}
export const sockKeyCodec = new StructCodec<SockKey>('berth_sock_key', [
  ['cookie', u64],
  ['addr', ip46],
  ['port', be16],
  ['pad', pad(2)],
]);

export interface SockValue {
  addr: string;
  port: number;
}
export const sockValueCodec = new StructCodec<SockValue>('berth_sock_value', [
  ['addr', ip46],
  ['port', be16],
  ['pad', pad(2)],
]);

export interface GlobalStats {
  ct_created: bigint;
  ct_full: bigint;
  nat_port_retries: bigint;
  nat_port_exhausted: bigint;
  sock_translations: bigint;
  events_emitted: bigint;
  events_suppressed: bigint;
  /** flows that became assured (handshake completed / a reply seen) */
  ct_assured: bigint;
  /** unassured flows evicted to make room for new ones */
  ct_evicted: bigint;
}
export const globalStatsCodec = new StructCodec<GlobalStats>('berth_global_stats', [
  ['ct_created', u64],
  ['ct_full', u64],
  ['nat_port_retries', u64],
  ['nat_port_exhausted', u64],
  ['sock_translations', u64],
  ['events_emitted', u64],
  ['events_suppressed', u64],
  ['ct_assured', u64],
  ['ct_evicted', u64],
]);

/** Sum the per-CPU slots of berth_stats (the one per-CPU decode: percpu.ts). */
export function sumGlobalStats(buf: Buffer, cpus: number): GlobalStats {
  const s = new PerCpuSums(buf, globalStatsCodec.size, cpus);
  const total = {} as Record<string, bigint>;
  for (const f of globalStatsCodec.layout) total[f.name] = s.bigint(f.offset / 8);
  return total as unknown as GlobalStats;
}

// BERTH_MAX_POLICY_RULES: its one home is the file format's limit (domain/policy.ts)
export { MAX_POLICY_RULES } from '../domain/policy';
export const POLICY_BANKS = 2; // BERTH_POLICY_BANKS

export interface PolicyCtl {
  bank: number;
  /** bit b: bank b holds an egress rule; left out: 0 */
  egress_banks?: number;
}
export const policyCtlCodec = new StructCodec<PolicyCtl>('berth_policy_ctl', [
  ['bank', u32],
  ['pad', pad(4)],
  ['egress_banks', u32opt],
  ['pad2', pad(4)],
]);

export interface PolicyRule {
  src_addr: string;
  src_mask: string;
  dst_addr: string;
  dst_mask: string;
  port: number;
  proto: number;
  action: number;
  /** PolicyFamilies bits; left out: 0, an IPv4-only rule */
  families?: number;
  /** IPv6 text; left out: '::' */
  src6_addr?: string;
  src6_mask?: string;
  dst6_addr?: string;
  dst6_mask?: string;
  /** an egress rule (egress 1): the destination; left out: 0.0.0.0/0, ::/0 */
  out_addr?: string;
  out_mask?: string;
  out6_addr?: string;
  out6_mask?: string;
  /** 1: an egress rule (a `destination:`); left out: 0, an inbound rule */
  egress?: number;
}
export const policyRuleCodec = new StructCodec<PolicyRule>('berth_policy_rule', [
  ['src_addr', ipv4],
  ['src_mask', ipv4],
  ['dst_addr', ipv4],
  ['dst_mask', ipv4],
  ['port', be16],
  ['proto', u8],
  ['action', u8],
  ['families', { kind: 'scalar', scalar: 'u8', dflt: 0 }],
  ['pad', pad(3)],
  ['src6_addr', ipv6],
  ['src6_mask', ipv6],
  ['dst6_addr', ipv6],
  ['dst6_mask', ipv6],
  ['out_addr', ipv4opt],
  ['out_mask', ipv4opt],
  ['out6_addr', ipv6],
  ['out6_mask', ipv6],
  ['egress', { kind: 'scalar', scalar: 'u8', dflt: 0 }],
  ['pad2', pad(3)],
]);

export interface MonitorCfg {
  enabled: number;
  rate_per_sec: number;
  burst: number;
}
export const monitorCfgCodec = new StructCodec<MonitorCfg>('berth_monitor_cfg', [
  ['enabled', u32],
  ['rate_per_sec', u32],
  ['burst', u32],
  ['pad', pad(4)],
]);

export interface MonitorBucket {
  last_ns: bigint;
  credit_ns: bigint;
}
export const monitorBucketCodec = new StructCodec<MonitorBucket>('berth_monitor_bucket', [
  ['last_ns', u64],
  ['credit_ns', u64],
]);

export interface DropEvent {
  ts_ns: bigint;
  ifindex: number;
  reason: number;
  /** either family: a dotted quad for IPv4 (::ffff:a.b.c.d in the event), IPv6 as text; '::' when neither */
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  proto: number;
  direction: number;
  len: number;
}
export const dropEventCodec = new StructCodec<DropEvent>('berth_drop_event', [
  ['ts_ns', u64],
  ['ifindex', u32],
  ['reason', u32],
  ['saddr', ip46],
  ['daddr', ip46],
  ['sport', be16],
  ['dport', be16],
  ['proto', u8],
  ['direction', u8],
  ['len', u16],
]);

/** The pinned dataplane's contract version (berth_version, key 0; src/platform/lifecycle.ts). */
export interface ContractVersion {
  epoch: number;
  /** 64-bit hashes (the first 8 bytes of a sha256) */
  layout: bigint;
  programs: bigint;
  release: string;
}
export const versionCodec = new StructCodec<ContractVersion>('berth_version', [
  ['epoch', u32],
  ['pad', pad(4)],
  ['layout', u64],
  ['programs', u64],
  ['release', cstr(32)],
]);

export const ALL_CODECS: readonly StructCodec<any>[] = Object.freeze([
  pbCodec,
  counterKeyCodec,
  counterValueCodec,
  ifindexKeyCodec,
  ipKeyCodec,
  ip6KeyCodec,
  endpointCodec,
  networkKeyCodec,
  networkMetaCodec,
  endpointMetaCodec,
  netValueCodec,
  publishKeyCodec,
  publishValueCodec,
  hostAddrValueCodec,
  bridgeCodec,
  uplinkCodec,
  ctKeyCodec,
  ctEntryCodec,
  ctSlotCodec,
  ctPosCodec,
  fragKeyCodec,
  fragPortsCodec,
  sockKeyCodec,
  sockValueCodec,
  globalStatsCodec,
  policyRuleCodec,
  policyCtlCodec,
  monitorCfgCodec,
  monitorBucketCodec,
  dropEventCodec,
  versionCodec,
]);

/** Map names as declared in bpf/lib/maps.h (pinned by these names). */
export const MapName = Object.freeze({
  EP_BY_IFINDEX: 'berth_ep_by_ifindex',
  EP_BY_IP: 'berth_ep_by_ip',
  EP_BY_IP6: 'berth_ep_by_ip6',
  COUNTERS: 'berth_counters',
  NET_META: 'berth_net_meta',
  EP_META: 'berth_ep_meta',
  NET: 'berth_net',
  PUBLISH: 'berth_publish',
  HOST_ADDR: 'berth_host_addr',
  HOST_ADDR6: 'berth_host_addr6',
  UPLINK: 'berth_uplink',
  BRIDGE: 'berth_bridge',
  CT: 'berth_ct',
  CT_RING: 'berth_ct_ring',
  CT_POS: 'berth_ct_pos',
  FRAG: 'berth_frag',
  SOCK: 'berth_sock',
  STATS: 'berth_stats',
  POLICY: 'berth_policy',
  POLICY_HITS: 'berth_policy_hits',
  POLICY_ACTIVE: 'berth_policy_active',
  EVENTS: 'berth_events',
  MONITOR: 'berth_monitor',
  MONITOR_BUCKET: 'berth_monitor_bucket',
  VERSION: 'berth_version',
} as const);

/** Programs in bpf/tc_veth.bpf.c. */
export const ProgName = Object.freeze({
  VETH_INGRESS: 'berth_veth_ingress',
  VETH_EGRESS: 'berth_veth_egress',
} as const);

export const TC_VETH_OBJECT = 'tc_veth';

/*
 * The NAT objects. Each is its own .bpf.o sharing every map with tc_veth by
 * pinning (same pin root). Not in ProgName: Dataplane loads ProgName's
 * programs from tc_veth only.
 */
export const TC_UPLINK_OBJECT = 'tc_uplink';
export const TC_BRIDGE_OBJECT = 'tc_bridge';
export const XDP_UPLINK_OBJECT = 'xdp_uplink';
export const CGROUP_SOCK_OBJECT = 'cgroup_sock';

/** Program names per NAT object (all <= 15 characters, so never truncated). */
export const UplinkProgName = Object.freeze({ TC_INGRESS: 'berth_up_in' } as const);
/** The choke point on each bridge berth manages (bpf/tc_bridge.bpf.c). */
export const BridgeProgName = Object.freeze({ EGRESS: 'berth_br_out', INGRESS: 'berth_br_in' } as const);
export const XdpProgName = Object.freeze({ UPLINK: 'berth_xdp_up' } as const);
export const SockProgName = Object.freeze({
  CONNECT4: 'berth_sock_conn',
  SENDMSG4: 'berth_sock_send',
  RECVMSG4: 'berth_sock_recv',
  CONNECT6: 'berth_sock_conn6',
  SENDMSG6: 'berth_sock_send6',
  RECVMSG6: 'berth_sock_recv6',
} as const);

/**
 * Load-time (`const volatile`) settings of the BPF objects, by variable name,
 * with their byte sizes (values are little-endian host order).
 *   tc_veth:     berth_fast_path (u8), berth_nat_port_min (u16),
 *                berth_nat_port_max (u16), berth_nat_port_tries (u32, <= 128),
 *                berth_ct_ring_size (u32, = berth_ct_ring's max_entries)
 *   tc_uplink:   berth_fast_path (u8), berth_ct_ring_size (u32)
 *   tc_bridge:   berth_fast_path (u8), berth_ct_ring_size (u32: it reads routed flows)
 *   xdp_uplink:  berth_fast_path (u8)
 *   cgroup_sock: berth_host_netns_cookie (u64; 0 = translate nothing)
 */
export const NatSetting = Object.freeze({
  FAST_PATH: 'berth_fast_path',
  NAT_PORT_MIN: 'berth_nat_port_min',
  NAT_PORT_MAX: 'berth_nat_port_max',
  NAT_PORT_TRIES: 'berth_nat_port_tries',
  HOST_NETNS_COOKIE: 'berth_host_netns_cookie',
  CT_RING_SIZE: 'berth_ct_ring_size',
} as const);

/**
 * Where each count of struct berth_counter_value lies, in u64 slots: pass,
 * redirect, then one berth_pb per drop reason (index = enum value); packets
 * at the slot, bytes at the next.
 */
export const CounterSlot = Object.freeze({ PASS: 0, REDIRECT: 2, drop: (reason: number): number => 4 + 2 * reason, COUNT: (2 + DROP_REASON_COUNT) * 2 } as const);

/** A counter value from its per-CPU sums (see CounterSlot). */
export function counterValueOf(s: PerCpuSums): CounterValue {
  if (s.length !== CounterSlot.COUNT) throw new RangeError(`berth_counter_value: ${s.length} u64, expected ${CounterSlot.COUNT}`);
  const pb = (i: number): PacketsBytes => ({ packets: s.bigint(i), bytes: s.bigint(i + 1) });
  return { pass: pb(CounterSlot.PASS), redirect: pb(CounterSlot.REDIRECT), drop: Array.from({ length: DROP_REASON_COUNT }, (_, r) => pb(CounterSlot.drop(r))) };
}

/** Sum a per-CPU counter buffer (possibleCpus slots of roundup(size, 8) bytes; the one per-CPU decode: percpu.ts). */
export function sumPerCpuCounters(buf: Buffer, cpus: number): CounterValue {
  return counterValueOf(new PerCpuSums(buf, counterValueCodec.size, cpus));
}

/** A zeroed per-CPU counter value buffer for `cpus` CPUs. */
export function zeroPerCpuCounters(cpus: number): Buffer {
  return Buffer.alloc(Math.ceil(counterValueCodec.size / 8) * 8 * cpus);
}
