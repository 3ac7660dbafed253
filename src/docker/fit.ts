/**
 * Issue 12 lands in steps: Docker mode builds the desired state's IPv6
 * fields, while the planner (src/reconcile.ts) and the maps learn IPv6 in
 * another change. A planner that takes IPv4 only refuses an IPv6 address
 * with an error (the codecs never mis-encode one), so one dual-stack Docker
 * network would fail every resync. Until the planner takes them, the IPv6
 * parts are left out, with a warning that names them, and IPv4 is
 * programmed as before: IPv6 is then handed to the kernel untouched, as
 * without this change.
 *
 * Whether the planner takes them is asked of the planner itself, once: plan()
 * (pure) on a small dual-stack state. Once it takes them (main's planner
 * does since issue 12's contract change), nothing is left out and this file
 * has no effect.
 */
import { CurrentState, DesiredState, plan } from '../reconcile';
import type { DockerDesired } from './desired';

let takes: boolean | undefined;

/** True when plan() accepts IPv6 networks, endpoints and publishes. */
export function plannerTakesIpv6(): boolean {
  if (takes !== undefined) return takes;
  const current: CurrentState = { networks: new Map(), endpoints: new Map(), byIp: new Map(), counters: new Set(), attachments: [], progIds: { ingress: 1, egress: 2 } };
  const probe: DesiredState = {
    networks: [
      { name: 'probe:dual', bridge: 'probe0', subnet: '10.0.0.0', prefixLen: 24, gateway: '10.0.0.1', subnet6: 'fd00:1::', prefixLen6: 64, gateway6: 'fd00:1::1', icc: true, masquerade: true },
      { name: 'probe:six', bridge: 'probe1', subnet: '', prefixLen: 0, gateway: '', ipv4: false, subnet6: 'fd00:2::', prefixLen6: 64, gateway6: 'fd00:2::1', icc: true, masquerade: true },
    ],
    endpoints: [
      { container: 'a', network: 'probe:dual', ip: '10.0.0.2', ip6: 'fd00:1::2', mac: '02:00:00:00:00:02', ifindex: 1000002, ifname: 'probe2' },
      { container: 'b', network: 'probe:six', ip: '', ip6: 'fd00:2::2', mac: '02:00:00:00:00:03', ifindex: 1000003, ifname: 'probe3' },
    ],
    publish: [{ hostIp: '::', hostPort: 8080, proto: 'tcp', container: 'a', network: 'probe:dual', ip: 'fd00:1::2', port: 80, ifindex: 1000002, mac: '02:00:00:00:00:02' }],
    hostAddrs: [{ addr: '::1', ifindex: 1 }],
  };
  try {
    plan(probe, current, new Set(['probe:dual', 'probe:six']));
    takes = true;
  } catch {
    takes = false;
  }
  return takes;
}

/** For tests: forget the probe's answer. */
export function resetPlannerProbe(value?: boolean): void {
  takes = value;
}

/**
 * The desired state as this planner takes it: unchanged when it takes IPv6;
 * else without IPv6-only networks (and their endpoints and publishes), the
 * networks' and endpoints' IPv6 fields, the IPv6 publishes and the host's
 * IPv6 addresses. `left` names what was left out (for one warning).
 */
export function fitToPlanner(dd: DockerDesired, takesIpv6 = plannerTakesIpv6()): { dd: DockerDesired; left: string[] } {
  const d = dd.desired;
  if (takesIpv6) return { dd, left: [] };
  const left: string[] = [];
  const only6 = new Set(d.networks.filter((n) => n.ipv4 === false).map((n) => n.name));
  for (const n of only6) left.push(`network ${n} (IPv6-only)`);
  const networks = d.networks
    .filter((n) => !only6.has(n.name))
    .map((n) => {
      if (!n.subnet6) return n;
      left.push(`IPv6 of network ${n.name}`);
      const rest: typeof n & { routed6?: boolean } = { ...n };
      delete rest.subnet6;
      delete rest.prefixLen6;
      delete rest.gateway6;
      delete rest.routed6;
      return rest;
    });
  const endpoints = d.endpoints.filter((e) => !only6.has(e.network) && e.ip).map((e) => {
    if (!e.ip6) return e;
    const rest = { ...e };
    delete rest.ip6;
    return rest;
  });
  const publish = d.publish?.filter((p) => {
    const keep = !only6.has(p.network) && !p.hostIp.includes(':') && !p.ip.includes(':');
    if (!keep) left.push(`publish [${p.hostIp}]:${p.hostPort}/${p.proto} -> ${p.container}`);
    return keep;
  });
  const hostAddrs = d.hostAddrs?.filter((a) => !a.addr.includes(':'));
  if (hostAddrs && hostAddrs.length !== d.hostAddrs!.length) left.push('the host\'s IPv6 addresses');
  const managed = new Map([...dd.managed].filter(([name]) => !only6.has(name)));
  return { dd: { ...dd, managed, desired: { ...d, networks, endpoints, ...(publish ? { publish } : {}), ...(hostAddrs ? { hostAddrs } : {}) } }, left };
}
