/**
 * The conntrack timeouts: how long a flow may idle, in seconds, by protocol
 * and state. The one home of their names, the kernel sysctl each one mirrors
 * (net.netfilter.nf_conntrack_*, as the kernel's nf_conntrack names them) and
 * their defaults, which are the kernel's (Docker hosts run with them).
 * `settings.conntrack` of the config file (domain/config.ts) takes the same
 * keys; engine/conntrack.ts's sweeper applies them (timeoutFor).
 */

export interface ConntrackTimeoutSpec {
  /** the key in `settings.conntrack` and in ConntrackTimeouts */
  readonly key: string;
  /** the kernel's sysctl (net.netfilter.<kernel>) whose default this is */
  readonly kernel: string;
  /** seconds */
  readonly default: number;
  /** when it applies */
  readonly what: string;
}

/** Every timeout, in the order the file format documents them. */
export const CONNTRACK_TIMEOUTS = Object.freeze([
  { key: 'tcpEstablishedTimeout', kernel: 'nf_conntrack_tcp_timeout_established', default: 432000, what: 'TCP, assured: the handshake completed (5 days)' },
  { key: 'tcpSynTimeout', kernel: 'nf_conntrack_tcp_timeout_syn_sent', default: 120, what: 'TCP: SYN seen, no answer' },
  { key: 'tcpSynRecvTimeout', kernel: 'nf_conntrack_tcp_timeout_syn_recv', default: 60, what: "TCP: SYN-ACK seen, the opener's ACK not yet" },
  { key: 'tcpUnacknowledgedTimeout', kernel: 'nf_conntrack_tcp_timeout_unacknowledged', default: 300, what: 'TCP: picked up mid-stream (first packet not a SYN), no answer yet' },
  { key: 'tcpCloseTimeout', kernel: 'nf_conntrack_tcp_timeout_close', default: 10, what: 'TCP: closed (an RST seen)' },
  { key: 'tcpFinTimeout', kernel: 'nf_conntrack_tcp_timeout_fin_wait', default: 120, what: 'TCP: closing (a FIN seen; the kernel gives time_wait the same 120 s)' },
  { key: 'udpTimeout', kernel: 'nf_conntrack_udp_timeout', default: 30, what: 'UDP: no reply yet' },
  { key: 'udpStreamTimeout', kernel: 'nf_conntrack_udp_timeout_stream', default: 120, what: "UDP: a reply seen (the kernel's 120 s since Linux 5.0; 180 before)" },
  { key: 'icmpTimeout', kernel: 'nf_conntrack_icmp_timeout', default: 30, what: 'ICMP and ICMPv6 echo (nf_conntrack_icmpv6_timeout is 30 s too)' },
  { key: 'greTimeout', kernel: 'nf_conntrack_gre_timeout', default: 30, what: "GRE: no reply yet (the kernel's GRE tracker, which keys GRE version 0 as generic)" },
  { key: 'greStreamTimeout', kernel: 'nf_conntrack_gre_timeout_stream', default: 180, what: 'GRE: a reply seen' },
  { key: 'genericTimeout', kernel: 'nf_conntrack_generic_timeout', default: 600, what: 'every other protocol but TCP, UDP and ICMP (SCTP, ESP, DCCP, UDP-Lite, ...)' },
] as const satisfies readonly ConntrackTimeoutSpec[]);

export type ConntrackTimeoutKey = (typeof CONNTRACK_TIMEOUTS)[number]['key'];

/** How long a flow may idle, in seconds, by its state (see CONNTRACK_TIMEOUTS for each key). */
export type ConntrackTimeouts = { readonly [K in ConntrackTimeoutKey]: number };

/** The kernel's defaults, by key. */
export const DEFAULT_CONNTRACK_TIMEOUTS: ConntrackTimeouts = Object.freeze(Object.fromEntries(CONNTRACK_TIMEOUTS.map((t) => [t.key, t.default])) as unknown as ConntrackTimeouts);
