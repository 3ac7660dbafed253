/**
 * The one desired-state builder. Each source (a config file, dockerd) turns
 * its own facts into a scope's networks, endpoints and publishes (what only
 * it knows: sources/standalone.ts desiredFrom, sources/docker/desired.ts);
 * this turns them, with the host's facts and the source's interface
 * selection, into the DesiredState the reconcilers take. The host's part
 * (its addresses, the one uplink choice, the served interfaces, the socket
 * hooks) is decided here only, for both modes.
 */
import { HostAddress, HostInterface, InterfaceChoice, InterfaceSelection, chooseInterfaces } from '../platform/hostnet';
import type { DesiredEndpoint, DesiredNetwork, DesiredPublish, DesiredState, DesiredUplink } from './reconcile';

export interface HostFacts {
  interfaces: readonly HostInterface[];
  addresses: readonly HostAddress[];
}

/** What a source knows of its scope. */
export interface ScopeFacts {
  networks: readonly DesiredNetwork[];
  endpoints: readonly DesiredEndpoint[];
  publish: readonly DesiredPublish[];
  /** the host socket hooks are needed (a file: when a container publishes; Docker: always) */
  socketHooks: boolean;
}

/** An uplink's masquerade addresses: its IPv4 and, when it has one, its first global IPv6 address (NAT66's source). */
export function toUplink(i: HostInterface): DesiredUplink {
  return { ifindex: i.ifindex, ifname: i.ifname, addr: i.addr, ...(i.addr6 ? { addr6: i.addr6 } : {}), mac: i.mac };
}

/** The uplinks and served interfaces a selection gives on this host (the one choice, hostnet's chooseInterfaces). */
export function interfacesOf(sel: InterfaceSelection, host: Pick<HostFacts, 'interfaces'>): InterfaceChoice {
  return chooseInterfaces(sel, host.interfaces);
}

/**
 * The desired state of a scope. Without host facts only the scope's own
 * entries are desired and the shared resources are left alone (undefined).
 */
export function buildDesired(facts: ScopeFacts, sel: InterfaceSelection, host?: HostFacts): { desired: DesiredState; refused: InterfaceChoice['refused'] } {
  if (!host) return { desired: { networks: facts.networks, endpoints: facts.endpoints }, refused: [] };
  const ifs = interfacesOf(sel, host);
  return {
    desired: {
      networks: facts.networks,
      endpoints: facts.endpoints,
      publish: facts.publish,
      hostAddrs: host.addresses.map((a) => ({ addr: a.addr, ifindex: a.ifindex })),
      uplinks: ifs.uplinks.map(toUplink),
      served: ifs.served.map((i) => ({ ifindex: i.ifindex, ifname: i.ifname })),
      socketHooks: facts.socketHooks,
    },
    refused: ifs.refused,
  };
}
