/**
 * The host's interfaces and addresses as they change (issue 13: "the events
 * replace polling"): the addon's rtnetlink subscription (native/netlink.cc,
 * platform/netlink.ts NetlinkEvents) read on its own thread, filtered here,
 * and a burst of the events that can change berth's desired state turned
 * into one call of onChange after a short window (the caller's sync; its
 * SyncLoop coalesces runs again).
 *
 * What can change the desired state (engine/desired.ts, platform/hostnet.ts):
 * - a link that appears or goes, or whose name, master, kind, alias, MAC or
 *   link type changes (chooseInterfaces picks uplinks and served interfaces
 *   from exactly these; the endpoints' host veths are found by name);
 * - an address that appears or goes (berth_host_addr holds every IPv4
 *   address and the global IPv6 ones, an uplink's first ones are the
 *   masquerade source).
 * What cannot, and is counted as ignored without a sync: a link going up or
 * down or changing its MTU or carrier (nothing berth programs depends on it;
 * tcx links survive it), an address announced again (flags, lifetimes), an
 * IPv6 link-local address, and every route: the uplink choice does not look
 * at the default route (autoUplinks takes every outside-facing Ethernet link).
 * Namespaces other than the daemon's are not seen at all (a container's
 * inner veth, its addresses). When the source names its interfaces (a file
 * with both `uplinks` and `interfaces`), only the links it names, its
 * bridges and its veths count (linkOfInterest): Docker's or another file's
 * veths coming and going cost nothing.
 *
 * An overrun (ENOBUFS: events lost) re-reads the links and addresses and
 * asks for one full sync; a fatal read error is logged, asks for a sync, and
 * the subscription is opened again a second later. close() ends it all.
 */
import { native } from '../platform/native';
import type { BpfError } from '../platform/native';
import { withNetlink } from '../platform/netlink';
import type { NetlinkAddress, NetlinkEvent, NetlinkEvents, NetlinkLink } from '../platform/netlink';
import { log } from '../platform/log';

export interface HostWatchOptions {
  /** called once per burst of relevant events (and after an overrun), with what started it */
  onChange: (why: string) => void;
  /** the window a burst is coalesced over, from its first relevant event; default 30 ms */
  debounceMs?: number;
  /**
   * the links whose changes matter, by name (undefined: every link, as when
   * the uplinks or served interfaces are auto-detected); asked at each event
   */
  linkOfInterest?: () => ((name: string) => boolean) | undefined;
}

export interface HostWatchStatus {
  /** every event delivered */
  events: number;
  /** events that can change the desired state */
  relevant: number;
  /** events that cannot (see the header) */
  ignored: number;
  /** onChange calls */
  changes: number;
  /** receive overruns (each one full resync) */
  overruns: number;
  /** fatal read errors (each a resubscribe) */
  errors: number;
}

/** The facts of a link the interface choice and the endpoints depend on. */
function linkKey(l: Pick<NetlinkLink, 'name' | 'master' | 'kind' | 'alias' | 'mac' | 'linkType'>): string {
  return `${l.name}|${l.master}|${l.kind}|${l.alias}|${l.mac}|${l.linkType}`;
}

function addrKey(a: Pick<NetlinkAddress, 'ifindex' | 'address' | 'prefixLen'>): string {
  return `${a.ifindex}|${a.address}/${a.prefixLen}`;
}

/** An address berth never programs: IPv6 link-local (hostAddressesOf leaves them out). */
function ignoredAddress(a: Pick<NetlinkAddress, 'family' | 'scope'>): boolean {
  return a.family === 6 && a.scope === 'link';
}

/**
 * The facts the events are compared with: each link's relevant facts by
 * ifindex, the set of addresses. relevant() answers and remembers.
 */
export class HostFilter {
  private readonly links = new Map<number, { key: string; name: string }>();
  private readonly addrs = new Set<string>();

  /** interest: the links whose changes matter, by name (see HostWatchOptions.linkOfInterest) */
  constructor(private readonly interest: () => ((name: string) => boolean) | undefined = () => undefined) {}

  /** Forget everything and take these as the host now. */
  seed(links: readonly NetlinkLink[], addrs: readonly NetlinkAddress[]): void {
    this.links.clear();
    this.addrs.clear();
    for (const l of links) this.links.set(l.ifindex, { key: linkKey(l), name: l.name });
    for (const a of addrs) if (!ignoredAddress(a)) this.addrs.add(addrKey(a));
  }

  /** Does this event change a fact the desired state depends on (and remember it)? */
  relevant(e: NetlinkEvent): boolean {
    if (e.type === 'route') return false;
    if (e.type === 'link') {
      const known = this.links.get(e.ifindex);
      const wanted = this.interest();
      // a link of interest under its old or its new name (a rename into or out of the set counts)
      const matters = !wanted || wanted(e.name) || (known !== undefined && wanted(known.name));
      if (e.action === 'del') {
        this.links.delete(e.ifindex);
        // a link never seen going: relevant (it may have come and gone between a dump and the events)
        return matters;
      }
      const key = linkKey(e);
      if (known?.key === key) return false;
      this.links.set(e.ifindex, { key, name: e.name });
      return matters;
    }
    if (ignoredAddress(e)) return false;
    const key = addrKey(e);
    if (e.action === 'del') {
      this.addrs.delete(key);
      return true;
    }
    if (this.addrs.has(key)) return false;
    this.addrs.add(key);
    return true;
  }
}

export class HostWatch {
  readonly status: HostWatchStatus = { events: 0, relevant: 0, ignored: 0, changes: 0, overruns: 0, errors: 0 };
  private sub?: NetlinkEvents;
  private readonly filter: HostFilter;
  private pending?: { timer: NodeJS.Timeout; why: string; count: number };
  private retry?: NodeJS.Timeout;
  private closed = false;
  private readonly debounceMs: number;

  private constructor(private readonly opts: HostWatchOptions) {
    this.debounceMs = opts.debounceMs ?? 30;
    this.filter = new HostFilter(opts.linkOfInterest);
  }

  /** Subscribes, then reads the links and addresses the events are compared with. */
  static async start(opts: HostWatchOptions): Promise<HostWatch> {
    const w = new HostWatch(opts);
    w.subscribe();
    try {
      await w.seed();
    } catch (e) {
      w.close();
      throw e;
    }
    return w;
  }

  /** true while the subscription reads */
  get running(): boolean {
    return this.sub?.running ?? false;
  }

  close(): void {
    this.closed = true;
    if (this.pending) clearTimeout(this.pending.timer);
    this.pending = undefined;
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    this.sub?.close();
    this.sub = undefined;
  }

  private subscribe(): void {
    this.sub = native().subscribeNetlink(
      (e) => this.onEvent(e),
      (e) => this.onError(e),
    );
  }

  /** The links and addresses now (subscribed first, so nothing falls between the dump and the events). */
  private async seed(): Promise<void> {
    // an interrupted dump is taken again (platform/netlink.ts openNetlink)
    const { links, addrs } = await withNetlink(undefined, async (nl) => ({ links: await nl.links(), addrs: await nl.addresses() }));
    this.filter.seed(links, addrs);
  }

  private onEvent(e: NetlinkEvent): void {
    if (this.closed) return;
    this.status.events++;
    if (!this.filter.relevant(e)) {
      this.status.ignored++;
      return;
    }
    this.status.relevant++;
    this.schedule(e.type === 'link' ? `link ${e.action} ${e.name}` : e.type === 'addr' ? `address ${e.action} ${e.address}/${e.prefixLen}` : `route ${e.action} ${e.dst}`);
  }

  /** One onChange per window, the window starting at the first relevant event (a steady stream still syncs every window). */
  private schedule(why: string): void {
    if (this.pending) {
      this.pending.count++;
      return;
    }
    const timer = setTimeout(() => {
      const p = this.pending!;
      this.pending = undefined;
      this.fire(p.count > 1 ? `${p.why} (+${p.count - 1} more)` : p.why);
    }, this.debounceMs);
    this.pending = { timer, why, count: 1 };
  }

  private fire(why: string): void {
    if (this.closed) return;
    this.status.changes++;
    this.opts.onChange(why);
  }

  private onError(e: BpfError): void {
    if (this.closed) return;
    if (e.code === 'ENOBUFS') {
      // events were lost: what the cache says may be stale, so read it again and sync everything once
      this.status.overruns++;
      log('warn', 'netlink events lost (overrun); full resync', {});
      this.seed().then(
        () => this.fire('netlink overrun'),
        (err: Error) => {
          log('error', 'netlink re-read after an overrun failed', { error: err.message });
          this.fire('netlink overrun');
        },
      );
      return;
    }
    this.status.errors++;
    log('error', 'netlink events stopped; resubscribing in 1 s (the periodic sync goes on)', { error: e.message });
    this.sub?.close();
    this.sub = undefined;
    this.fire('netlink error');
    this.retry = setTimeout(() => {
      this.retry = undefined;
      if (this.closed) return;
      try {
        this.subscribe();
        void this.seed().then(
          () => this.fire('netlink resubscribed'),
          () => this.fire('netlink resubscribed'),
        );
      } catch (err) {
        this.onError(err as BpfError);
      }
    }, 1000);
    this.retry.unref();
  }
}
