/**
 * An in-memory view of what is programmed: the CurrentState plan() takes
 * (reconcile.ts), read from the pins once and then kept up to date from the
 * steps apply() ran, so a reconcile that follows one event plans without
 * dumping every map and opening every pinned link again.
 *
 * Kept exact by construction: a step's end state does not depend on what
 * the map held before it (a put leaves its value, a noexist put of counters
 * leaves the key, a delete leaves nothing), so replaying the steps of a
 * successful apply() on the view gives what readCurrent() would read. Hooks
 * are re-read from the step's own pins (a few syscalls, never the whole
 * links/ directory). Anything else is doubt, and doubt re-reads the pins at
 * the next plan: a failed apply() (rolled back, or half-done and then
 * rolled back), a step on a map the view does not model, invalidate() (a
 * full resync), and a berth_net_meta that differs from the view's networks
 * (another process programmed another scope on the same pin root: a new
 * network there must never have its id reused here). That last check reads
 * one small map (one entry per network) at every plan.
 *
 * What the kernel changes by itself is not seen until the next full read: a
 * hook whose interface was deleted stays `live` here. plan() never needs it:
 * a deleted veth is not desired any more, and its removal steps are the same
 * either way.
 */
import {
  Endpoint,
  EndpointMeta,
  NetworkMeta,
  counterKeyCodec,
  endpointCodec,
  endpointMetaCodec,
  ifindexKeyCodec,
  ip6KeyCodec,
  ipKeyCodec,
  networkKeyCodec,
  networkMetaCodec,
} from '../platform/contract';
import type { Attachment, Dataplane, Maps } from '../platform/dataplane';
import { log } from '../platform/log';
import { CurrentEndpoint, CurrentState, Step, readCurrent } from './reconcile';

type Raw = Map<string, { key: Buffer; value: Buffer }>;
type RawMapName = 'net' | 'publish' | 'hostAddr' | 'hostAddr6' | 'uplink' | 'bridge';
type UplinkAttachment = NonNullable<CurrentState['uplinkAttachments']>[number];
type BridgeAttachment = NonNullable<CurrentState['bridgeAttachments']>[number];

interface State {
  networks: Map<number, NetworkMeta>;
  /** berth_ep_by_ifindex and berth_ep_meta as they are; `endpoints` is made of both as readCurrent() makes it */
  eps: Map<number, Endpoint>;
  metas: Map<number, EndpointMeta>;
  endpoints: Map<number, CurrentEndpoint>;
  byIp: Map<string, Endpoint>;
  byIp6: Map<string, Endpoint>;
  counters: Set<string>;
  attachments: Array<Pick<Attachment, 'ifindex' | 'direction' | 'progId' | 'live'>>;
  raw: Record<RawMapName, Raw>;
  uplinkAttachments: UplinkAttachment[];
  bridgeAttachments: BridgeAttachment[];
  cgroupAttachments: NonNullable<CurrentState['cgroupAttachments']>;
  /** the parts of CurrentState that steps never change (program ids, socket hooks availability) */
  fixed: Pick<CurrentState, 'progIds' | 'socketHooksAvailable'>;
  /** the CurrentState handed out: the same maps, read-only */
  view: CurrentState;
}

const RAW_MAPS: Readonly<Record<RawMapName, true>> = { net: true, publish: true, hostAddr: true, hostAddr6: true, uplink: true, bridge: true };

function isRawMap(m: keyof Maps): m is RawMapName {
  return Object.prototype.hasOwnProperty.call(RAW_MAPS, m);
}

/** The placeholder readCurrent() gives metadata whose endpoint entry is missing (a half-made endpoint). */
function placeholder(ifindex: number, meta: EndpointMeta): Endpoint {
  return { addr: '0.0.0.0', ifindex, network_id: meta.network_id, flags: 0, mac: '00:00:00:00:00:00' };
}

export class ProgrammedView {
  private s?: State;
  /** times the view was (re)built from the pins */
  reads = 0;
  /** why the last rebuild happened ('' before the first) */
  lastReason = '';
  private reason = 'first read';

  constructor(private readonly dp: Dataplane) {}

  /** True while the view is held (the next current() reads no map but berth_net_meta). */
  get valid(): boolean {
    return this.s !== undefined;
  }

  /** Forget the view: the next current() reads the pins again. */
  invalidate(reason = 'invalidated'): void {
    if (this.s) this.reason = reason;
    this.s = undefined;
  }

  /**
   * What is programmed, for plan(): the view when it is held and its
   * networks are still berth_net_meta's, else read from the pins. The
   * object is the view itself: use it before the next applied().
   */
  async current(): Promise<CurrentState> {
    if (this.s && !(await this.networksUnchanged(this.s))) this.invalidate('berth_net_meta changed outside this view');
    if (!this.s) {
      this.s = this.build(await readCurrent(this.dp));
      this.reads++;
      this.lastReason = this.reason;
    }
    return this.s.view;
  }

  private async networksUnchanged(s: State): Promise<boolean> {
    const pinned = await this.dp.maps.netMeta.dump();
    if (pinned.length !== s.networks.size) return false;
    for (const [k, v] of pinned) {
      const have = s.networks.get(networkKeyCodec.decode(k).network_id);
      if (!have || !networkMetaCodec.encode(have).equals(v)) return false;
    }
    return true;
  }

  private build(c: CurrentState): State {
    const eps = new Map<number, Endpoint>();
    const metas = new Map<number, EndpointMeta>();
    for (const [ifindex, e] of c.endpoints) {
      if (e.meta) metas.set(ifindex, e.meta);
      // readCurrent() makes a placeholder for metadata without an entry: that is no entry
      if (!(e.meta && e.ep === placeholderOf(c, ifindex))) eps.set(ifindex, e.ep);
    }
    const copy = (r: CurrentState['net']): Raw => new Map(r ?? []);
    const s: State = {
      networks: new Map(c.networks),
      eps,
      metas,
      endpoints: new Map(c.endpoints),
      byIp: new Map(c.byIp),
      byIp6: new Map(c.byIp6 ?? []),
      counters: new Set(c.counters),
      attachments: [...c.attachments],
      raw: { net: copy(c.net), publish: copy(c.publish), hostAddr: copy(c.hostAddrs), hostAddr6: copy(c.hostAddrs6), uplink: copy(c.uplinks), bridge: copy(c.bridges) },
      uplinkAttachments: [...(c.uplinkAttachments ?? [])],
      bridgeAttachments: [...(c.bridgeAttachments ?? [])],
      cgroupAttachments: [...(c.cgroupAttachments ?? [])],
      fixed: { progIds: c.progIds, socketHooksAvailable: c.socketHooksAvailable },
      view: undefined as unknown as CurrentState,
    };
    s.view = this.viewOf(s);
    return s;
  }

  private viewOf(s: State): CurrentState {
    return {
      networks: s.networks,
      endpoints: s.endpoints,
      byIp: s.byIp,
      byIp6: s.byIp6,
      counters: s.counters,
      attachments: s.attachments,
      progIds: s.fixed.progIds,
      net: s.raw.net,
      publish: s.raw.publish,
      hostAddrs: s.raw.hostAddr,
      hostAddrs6: s.raw.hostAddr6,
      uplinks: s.raw.uplink,
      uplinkAttachments: s.uplinkAttachments,
      bridges: s.raw.bridge,
      bridgeAttachments: s.bridgeAttachments,
      cgroupAttachments: s.cgroupAttachments,
      socketHooksAvailable: s.fixed.socketHooksAvailable,
    };
  }

  /**
   * The steps of an apply() that succeeded, all of them done: bring the view
   * to the state they left. A step the view cannot follow drops the view.
   */
  applied(steps: readonly Step[]): void {
    const s = this.s;
    if (!s) return;
    try {
      for (const st of steps) this.step(s, st);
    } catch (e) {
      log('debug', 'programmed view dropped', { error: (e as Error).message });
      this.invalidate(`a step it could not follow: ${(e as Error).message}`);
      return;
    }
    // the arrays handed out are replaced by step(); the view object names the new ones
    s.view = this.viewOf(s);
  }

  private step(s: State, st: Step): void {
    switch (st.op) {
      case 'put':
      case 'delete':
        this.entry(s, st);
        return;
      case 'attach':
      case 'detach': {
        const now = this.dp.attachmentsOf(st.ifindex);
        s.attachments = [...s.attachments.filter((a) => a.ifindex !== st.ifindex), ...now].sort((a, b) => a.ifindex - b.ifindex || a.direction.localeCompare(b.direction));
        return;
      }
      case 'attachUplink':
      case 'detachUplink':
        s.uplinkAttachments = [...s.uplinkAttachments.filter((a) => a.ifindex !== st.ifindex), ...this.dp.uplinkAttachmentsOf(st.ifindex)];
        return;
      case 'attachBridge':
      case 'detachBridge':
        s.bridgeAttachments = [...s.bridgeAttachments.filter((a) => a.ifindex !== st.ifindex), ...this.dp.bridgeAttachmentsOf(st.ifindex)].sort((a, b) => a.ifindex - b.ifindex || a.direction.localeCompare(b.direction));
        return;
      case 'attachCgroup':
      case 'detachCgroup':
        s.cgroupAttachments = this.dp.cgroupAttachments();
        return;
      default:
        throw new Error(`unknown step ${(st as Step).op}`);
    }
  }

  private entry(s: State, st: Extract<Step, { op: 'put' | 'delete' }>): void {
    const put = st.op === 'put';
    if (isRawMap(st.map)) {
      const hex = st.key.toString('hex');
      if (put) s.raw[st.map].set(hex, { key: Buffer.from(st.key), value: Buffer.from(st.value) });
      else s.raw[st.map].delete(hex);
      return;
    }
    switch (st.map) {
      case 'netMeta': {
        const id = networkKeyCodec.decode(st.key).network_id;
        if (put) s.networks.set(id, networkMetaCodec.decode(st.value));
        else s.networks.delete(id);
        return;
      }
      case 'epByIfindex': {
        const ifindex = ifindexKeyCodec.decode(st.key).ifindex;
        if (put) s.eps.set(ifindex, endpointCodec.decode(st.value));
        else s.eps.delete(ifindex);
        refreshEndpoint(s, ifindex);
        return;
      }
      case 'epMeta': {
        const ifindex = ifindexKeyCodec.decode(st.key).ifindex;
        if (put) s.metas.set(ifindex, endpointMetaCodec.decode(st.value));
        else s.metas.delete(ifindex);
        refreshEndpoint(s, ifindex);
        return;
      }
      case 'epByIp': {
        const addr = ipKeyCodec.decode(st.key).addr;
        if (put) s.byIp.set(addr, endpointCodec.decode(st.value));
        else s.byIp.delete(addr);
        return;
      }
      case 'epByIp6': {
        const addr = ip6KeyCodec.decode(st.key).addr;
        if (put) s.byIp6.set(addr, endpointCodec.decode(st.value));
        else s.byIp6.delete(addr);
        return;
      }
      case 'counters': {
        // the value is apply()'s (zeroed per CPU); the view holds keys only
        const ck = counterKeyCodec.decode(st.key);
        if (put) s.counters.add(`${ck.ifindex}:${ck.direction}`);
        else s.counters.delete(`${ck.ifindex}:${ck.direction}`);
        return;
      }
      default:
        throw new Error(`a ${st.op} on ${st.map}, which the view does not hold`);
    }
  }
}

/** readCurrent()'s endpoint for an ifindex: the entry with its metadata, or the metadata's placeholder, or none. */
function refreshEndpoint(s: State, ifindex: number): void {
  const ep = s.eps.get(ifindex);
  const meta = s.metas.get(ifindex);
  if (ep) s.endpoints.set(ifindex, { ep, meta });
  else if (meta) s.endpoints.set(ifindex, { ep: placeholder(ifindex, meta), meta });
  else s.endpoints.delete(ifindex);
}

/** The placeholder object readCurrent() made for ifindex, if that is what it holds (no berth_ep_by_ifindex entry). */
function placeholderOf(c: CurrentState, ifindex: number): Endpoint | undefined {
  const e = c.endpoints.get(ifindex);
  if (!e?.meta) return undefined;
  const p = e.ep;
  const looks = p.addr === '0.0.0.0' && p.flags === 0 && p.mac === '00:00:00:00:00:00' && p.network_id === e.meta.network_id && p.addr6 === undefined;
  return looks ? p : undefined;
}
