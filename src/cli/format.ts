/** Terminal tables for the CLI. */
import type { SocketHooksStatus, Status } from '../observe/status';
import { CounterRow, totalDrops } from '../observe/stats';
import { formatCtSummary } from '../engine/conntrack';
import type { PortRow } from '../observe/ports';
import { formatHostPort } from '../domain/publish';
import { table } from '../observe/table';

export { table } from '../observe/table';

/** The host socket hooks in one line. */
export function formatSocketHooks(h: SocketHooksStatus): string {
  const attached = h.attached.length ? `attached (${h.attached.join(', ')})` : 'not attached';
  const reason = (h.reason ?? '').replace(/^host socket hooks unavailable: /, '');
  if (!h.available) return `host socket hooks: ${h.attached.length ? `${attached}, but ` : ''}unavailable: ${reason}`;
  return `host socket hooks: ${attached}; cgroup2 at ${h.cgroup} (${h.source === 'option' ? '--cgroup' : 'from mountinfo'})${h.note ? `; ${h.note}` : ''}`;
}

export function formatStatus(st: Status): string {
  if (!st.loaded) return [`berth: no dataplane pinned at ${st.pinRoot}`, formatSocketHooks(st.socketHooks)].join('\n');
  const v6nets = st.networks.some((n) => n.subnet6);
  const v6eps = st.endpoints.some((e) => e.address6);
  const out = [
    `dataplane pinned at ${st.pinRoot}; programs ${st.programs.map((p) => `${p.name}#${p.id}`).join(', ')}`,
    st.version ? `version: berth ${st.version.release}, contract epoch ${st.version.epoch}, layout ${st.version.layout}, programs ${st.version.programs}` : 'version: none pinned (a dataplane from before contract versions)',
    formatSocketHooks(st.socketHooks),
    ...(st.conntrack ? [formatCtSummary(st.conntrack)] : []),
    '',
    // the IPv6 columns only when some network or endpoint has IPv6 (an IPv4-only host's tables stay as they were)
    table(
      ['NETWORK', 'ID', 'BRIDGE', 'SUBNET', 'GATEWAY', ...(v6nets ? ['SUBNET6', 'GATEWAY6'] : []), 'ICC', 'MODE', 'ENDPOINTS'],
      st.networks.map((n) => [n.name, String(n.id), n.bridge, n.subnet, n.gateway, ...(v6nets ? [n.subnet6 ?? '-', n.gateway6 ?? '-'] : []), n.icc ? 'yes' : 'no', n.routed ? (n.routed6 || !n.subnet6 ? 'routed' : 'routed, v6 nat') : n.routed6 ? 'nat, v6 routed' : 'nat', String(n.endpoints)]),
    ),
    '',
    table(
      ['CONTAINER', 'NETWORK', 'ADDRESS', ...(v6eps ? ['ADDRESS6'] : []), 'MAC', 'VETH', 'IFINDEX', 'HOOKS'],
      st.endpoints.map((e) => [e.container, e.network, e.address, ...(v6eps ? [e.address6 ?? '-'] : []), e.mac, e.interface, String(e.ifindex), e.hooks.join(',') || 'none']),
    ),
  ];
  if (st.staleLinks) out.push('', `${st.staleLinks} link(s) pinned for interfaces that no longer exist (the next reconcile removes them)`);
  return out.join('\n');
}

/** `berth ports`: host addresses as Docker writes them ("0.0.0.0:8080", "[::]:8080"). */
export function formatPorts(rows: readonly PortRow[]): string {
  return table(
    ['HOST', 'PROTO', 'CONTAINER', 'NETWORK', 'TARGET', 'SCOPE'],
    rows.map((r) => [formatHostPort(r.hostIp, r.hostPort), r.proto, r.container, r.network, formatHostPort(r.containerIp, r.containerPort), r.loopbackOnly ? 'host only' : r.routed ? 'routed (own address)' : 'any']),
  );
}

export function formatStats(rows: CounterRow[]): string {
  return table(
    ['CONTAINER', 'NETWORK', 'VETH', 'DIRECTION', 'PASS PKTS', 'PASS BYTES', 'REDIR PKTS', 'REDIR BYTES', 'DROP PKTS', 'DROPS BY REASON'],
    rows.map((r) => {
      const d = totalDrops(r);
      const reasons = Object.entries(r.drop)
        .filter(([, pb]) => pb.packets > 0n)
        .map(([k, pb]) => `${k}=${pb.packets}`)
        .join(' ');
      return [r.container, r.network, r.interface, r.direction, String(r.pass.packets), String(r.pass.bytes), String(r.redirect.packets), String(r.redirect.bytes), String(d.packets), reasons];
    }),
  );
}
