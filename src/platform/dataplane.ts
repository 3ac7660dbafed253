/**
 * The dataplane's kernel objects and where they are pinned: loading the BPF
 * object (or finding it pinned), the map handles, and attaching the veth
 * programs to interfaces. No policy: the reconciler decides what goes where.
 *
 * Pin layout under the pin root (default /sys/fs/bpf/berth):
 *   <root>/<map name>               maps (libbpf LIBBPF_PIN_BY_NAME)
 *   <root>/progs/<program name>     programs
 *   <root>/links/<ifindex>-<dir>    tcx links, one per hook
 *   <root>/links/br-<ifindex>-<dir> the bridge choke points (tc_bridge)
 *   <root>/pending/{maps,progs}/    a deferred takeover by another build (src/platform/lifecycle.ts)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BpfLink, BpfMap, BpfProgram, CgroupHook, LinkInfo, TcDirection, bpfObjectPath, isBpfError, native } from './native';
import { SocketHooksTarget, resolveSocketHooks } from './cgroup';
import { DEFAULT_SETTINGS } from '../domain/config';
import { checkNatPortRange } from './hostnet';
import { le16, le32, le64, le8 } from './codec';
import {
  CGROUP_SOCK_OBJECT,
  MapName,
  ProgName,
  SockProgName,
  TC_BRIDGE_OBJECT,
  TC_UPLINK_OBJECT,
  TC_VETH_OBJECT,
  UplinkProgName,
  BridgeProgName,
  XDP_UPLINK_OBJECT,
  XdpProgName,
  ContractVersion,
} from './contract';
import { LoadPlan, abandonPending, buildVersion, commitPending, describeVersion, downgradeMessage, hasPending, pinnedSizes, readPinnedVersion, replacePrograms, transition, writePinnedVersion } from './lifecycle';
import { log } from './log';

export const DEFAULT_PIN_ROOT = '/sys/fs/bpf/berth';

/** What the kernel says of the link pinned at `pin` (undefined: nothing pinned there). */
function linkInfoAt(pin: string): LinkInfo | undefined {
  if (!fs.existsSync(pin)) return undefined;
  const link = native().openPinnedLink(pin);
  try {
    return link.info();
  } finally {
    link.close();
  }
}
export const BPFFS = '/sys/fs/bpf';

export interface DataplaneOptions {
  pinRoot: string;
  /** load-time setting berth_fast_path (default true) */
  fastPath?: boolean;
  /** max endpoints (sizes the endpoint and counter maps); default 4096 */
  maxEndpoints?: number;
  /** conntrack table size (halves: two per flow); default settings.conntrack.max of src/domain/config.ts */
  ctMax?: number;
  /** flows that may wait unassured at once (the slots of berth_ct_ring); default ctMax / 4 */
  ctUnassuredMax?: number;
  /** masquerade and hairpin source ports; default settings.nat of src/domain/config.ts */
  natPortMin?: number;
  natPortMax?: number;
  /**
   * where the host socket hooks attach (src/platform/cgroup.ts); default: the cgroup2
   * mount found in /proc/self/mountinfo, or unavailable when there is none
   */
  socketHooks?: SocketHooksTarget;
  /** take over a dataplane pinned by a newer berth (a downgrade), which is refused without it */
  force?: boolean;
}

export interface Maps {
  epByIfindex: BpfMap;
  epByIp: BpfMap;
  epByIp6: BpfMap;
  counters: BpfMap;
  netMeta: BpfMap;
  epMeta: BpfMap;
  net: BpfMap;
  publish: BpfMap;
  hostAddr: BpfMap;
  hostAddr6: BpfMap;
  uplink: BpfMap;
  bridge: BpfMap;
  ct: BpfMap;
  /** the unassured flows in creation order, and the ring's positions */
  ctRing: BpfMap;
  ctPos: BpfMap;
  /** the ports of translated datagrams' first fragments, for their later fragments (LRU) */
  frag: BpfMap;
  sock: BpfMap;
  stats: BpfMap;
}

const MAP_NAMES: Readonly<Record<keyof Maps, string>> = Object.freeze({
  epByIfindex: MapName.EP_BY_IFINDEX,
  epByIp: MapName.EP_BY_IP,
  epByIp6: MapName.EP_BY_IP6,
  counters: MapName.COUNTERS,
  netMeta: MapName.NET_META,
  epMeta: MapName.EP_META,
  net: MapName.NET,
  publish: MapName.PUBLISH,
  hostAddr: MapName.HOST_ADDR,
  hostAddr6: MapName.HOST_ADDR6,
  uplink: MapName.UPLINK,
  bridge: MapName.BRIDGE,
  ct: MapName.CT,
  ctRing: MapName.CT_RING,
  ctPos: MapName.CT_POS,
  frag: MapName.FRAG,
  sock: MapName.SOCK,
  stats: MapName.STATS,
});

export interface Programs {
  ingress: BpfProgram;
  egress: BpfProgram;
  /** uplink TC ingress (published ports, masquerade replies, drops) */
  uplink: BpfProgram;
  /** optional XDP drop path on uplinks */
  xdp: BpfProgram;
  /** the choke point on each managed bridge: into the network, and out of it */
  bridgeOut: BpfProgram;
  bridgeIn: BpfProgram;
  sockConnect: BpfProgram;
  sockSend: BpfProgram;
  sockRecv: BpfProgram;
  sockConnect6: BpfProgram;
  sockSend6: BpfProgram;
  sockRecv6: BpfProgram;
}

/** Which object holds which program, and its key in Programs. */
const PROGRAMS: ReadonlyArray<{ object: string; name: string; key: keyof Programs }> = [
  { object: TC_VETH_OBJECT, name: ProgName.VETH_INGRESS, key: 'ingress' },
  { object: TC_VETH_OBJECT, name: ProgName.VETH_EGRESS, key: 'egress' },
  { object: TC_UPLINK_OBJECT, name: UplinkProgName.TC_INGRESS, key: 'uplink' },
  { object: XDP_UPLINK_OBJECT, name: XdpProgName.UPLINK, key: 'xdp' },
  { object: TC_BRIDGE_OBJECT, name: BridgeProgName.EGRESS, key: 'bridgeOut' },
  { object: TC_BRIDGE_OBJECT, name: BridgeProgName.INGRESS, key: 'bridgeIn' },
  { object: CGROUP_SOCK_OBJECT, name: SockProgName.CONNECT4, key: 'sockConnect' },
  { object: CGROUP_SOCK_OBJECT, name: SockProgName.SENDMSG4, key: 'sockSend' },
  { object: CGROUP_SOCK_OBJECT, name: SockProgName.RECVMSG4, key: 'sockRecv' },
  { object: CGROUP_SOCK_OBJECT, name: SockProgName.CONNECT6, key: 'sockConnect6' },
  { object: CGROUP_SOCK_OBJECT, name: SockProgName.SENDMSG6, key: 'sockSend6' },
  { object: CGROUP_SOCK_OBJECT, name: SockProgName.RECVMSG6, key: 'sockRecv6' },
];

const SOCK_PROG: Readonly<Record<CgroupHook, keyof Programs | undefined>> = Object.freeze({
  connect4: 'sockConnect',
  sendmsg4: 'sockSend',
  recvmsg4: 'sockRecv',
  getpeername4: undefined,
  connect6: 'sockConnect6',
  sendmsg6: 'sockSend6',
  recvmsg6: 'sockRecv6',
});


export interface Attachment {
  ifindex: number;
  direction: TcDirection;
  linkId: number;
  progId: number;
  pin: string;
  /** false when the pinned link no longer has an interface (it was deleted) */
  live: boolean;
}

const HOOKS: ReadonlyArray<[TcDirection, keyof Programs]> = [
  ['ingress', 'ingress'],
  ['egress', 'egress'],
];

function mkdirp(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
}

export function validatePinRoot(pinRoot: string): string {
  const abs = path.resolve(pinRoot);
  if (abs !== BPFFS && !abs.startsWith(BPFFS + '/')) throw new Error(`pin root ${pinRoot} is not under ${BPFFS}`);
  if (abs === BPFFS) throw new Error(`pin root must be a directory below ${BPFFS}, not ${BPFFS} itself`);
  return abs;
}

/** Make sure bpffs is mounted at /sys/fs/bpf (the controller needs it to pin). */
export function ensureBpffs(): void {
  const mounts = fs.readFileSync('/proc/mounts', 'utf8');
  if (!mounts.split('\n').some((l) => l.split(' ')[1] === BPFFS && l.split(' ')[2] === 'bpf')) {
    throw new Error(`bpffs is not mounted at ${BPFFS}: run 'mount -t bpf bpf ${BPFFS}'`);
  }
}

export class Dataplane {
  private hooksTarget?: SocketHooksTarget;
  /** the build a deferred takeover waits to pin (set by openOrLoad) */
  private pendingBuild?: ContractVersion;

  private constructor(
    readonly pinRoot: string,
    readonly maps: Maps,
    readonly progs: Programs,
    readonly cpus: number,
    socketHooks?: SocketHooksTarget,
  ) {
    this.hooksTarget = socketHooks;
  }

  /** Where the host socket hooks attach, or why they cannot (found in mountinfo unless given). */
  get socketHooks(): SocketHooksTarget {
    this.hooksTarget ??= resolveSocketHooks();
    return this.hooksTarget;
  }

  static isPinned(pinRoot: string): boolean {
    return PROGRAMS.every((p) => fs.existsSync(path.join(pinRoot, 'progs', p.name)));
  }

  /** Open what is pinned; throws when nothing is. */
  static openPinned(pinRoot: string, opts: { socketHooks?: SocketHooksTarget } = {}): Dataplane {
    const root = validatePinRoot(pinRoot);
    if (!Dataplane.isPinned(root)) throw new Error(`no berth dataplane pinned at ${root}`);
    const n = native();
    const maps = Object.fromEntries(
      Object.entries(MAP_NAMES).map(([k, name]) => [k, n.openPinnedMap(path.join(root, name))]),
    ) as unknown as Maps;
    const progs = Object.fromEntries(PROGRAMS.map((p) => [p.key, n.openPinnedProgram(path.join(root, 'progs', p.name))])) as unknown as Programs;
    return new Dataplane(root, maps, progs, n.possibleCpus(), opts.socketHooks);
  }

  /**
   * Open the pinned dataplane, or load and pin it when there is none. A pinned dataplane of
   * another build is taken over in place (src/platform/lifecycle.ts): its maps kept (or migrated),
   * its links moved onto this build's programs with bpf_link_update; a newer one is refused
   * unless opts.force.
   */
  static async openOrLoad(opts: DataplaneOptions): Promise<Dataplane> {
    ensureBpffs();
    const root = validatePinRoot(opts.pinRoot);
    const natPortMin = opts.natPortMin ?? DEFAULT_SETTINGS.nat.portMin;
    const natPortMax = opts.natPortMax ?? DEFAULT_SETTINGS.nat.portMax;
    checkNatPortRange(natPortMin, natPortMax);
    const pinned = Dataplane.isPinned(root);
    const plan = Dataplane.loadPlan(opts, natPortMin, natPortMax, pinned ? pinnedSizes(root) : {});
    const build = buildVersion(plan);
    if (pinned) {
      const was = readPinnedVersion(root);
      const step = transition(was, build);
      if (step === 'downgrade' && !opts.force) throw new Error(downgradeMessage(root, was, build));
      if (step === 'same' && hasPending(root)) {
        const back = abandonPending(root);
        log('warn', 'a takeover by another build never finished; its links never moved: the old maps are back', { maps: back });
      }
      if (step !== 'same') {
        const r = await replacePrograms(root, plan, build);
        if (r.deferred)
          log('info', 'dataplane takeover deferred: the links keep the old programs until a reconcile has written the new maps', {
            transition: step, forced: step === 'downgrade', from: describeVersion(was), to: describeVersion(build), mapsMigrated: r.mapsMigrated, mapsReset: r.mapsReset,
          });
        else
          log('info', 'dataplane programs replaced on the live links', {
            transition: step, forced: step === 'downgrade', from: describeVersion(was), to: describeVersion(build),
            linksUpdated: r.linksUpdated, linksLeft: r.linksLeft, mapsMigrated: r.mapsMigrated, mapsReset: r.mapsReset,
          });
      }
      const dp = Dataplane.openPinned(root, opts);
      if (hasPending(root)) dp.pendingBuild = build;
      return dp;
    }
    mkdirp(root);
    const n = native();
    mkdirp(path.join(root, 'progs'));
    try {
      // tc_veth first: it creates and pins every map; the others reuse the pins
      for (const o of plan.objects) {
        const obj = n.openObject(bpfObjectPath(o.object), { pinRoot: root, rodata: o.rodata, maxEntries: plan.maxEntries });
        try {
          await obj.load();
          for (const name of o.programs) {
            const prog = obj.program(name);
            try {
              prog.pin(path.join(root, 'progs', name));
            } finally {
              prog.close();
            }
          }
        } finally {
          obj.close();
        }
      }
      writePinnedVersion(root, build);
    } catch (e) {
      // leave nothing half-loaded behind
      Dataplane.reset(root);
      throw e;
    }
    return Dataplane.openPinned(root, opts);
  }

  /**
   * What to load: every object (tc_veth first: it creates the maps) with its settings and the
   * map sizes. `pinned`: the sizes of maps already pinned, which a reload must keep (the
   * conntrack ring's size is also the programs' berth_ct_ring_size).
   */
  private static loadPlan(opts: DataplaneOptions, natPortMin: number, natPortMax: number, pinned: Record<string, number>): LoadPlan {
    const n = native();
    const maxEp = opts.maxEndpoints ?? 4096;
    const fast = le8(opts.fastPath === false ? 0 : 1);
    const ctMax = opts.ctMax ?? DEFAULT_SETTINGS.conntrack.max;
    const ctUnassured = pinned[MapName.CT_RING] ?? opts.ctUnassuredMax ?? Math.max(1, Math.floor(ctMax / 4));
    if (ctUnassured < 1 || ctUnassured > Math.max(1, Math.floor((pinned[MapName.CT] ?? ctMax) / 2)))
      throw new RangeError(`conntrack: ${ctUnassured} unassured flows do not fit a table of ${ctMax} entries (two per flow)`);
    // the ring's size is both its max_entries and the programs' berth_ct_ring_size
    const ringSize = le32(ctUnassured);
    const rodata: Record<string, Record<string, Buffer>> = {
      [TC_VETH_OBJECT]: {
        berth_fast_path: fast,
        berth_nat_port_min: le16(natPortMin),
        berth_nat_port_max: le16(natPortMax),
        berth_ct_ring_size: ringSize,
      },
      [TC_UPLINK_OBJECT]: { berth_fast_path: fast, berth_ct_ring_size: ringSize },
      [XDP_UPLINK_OBJECT]: { berth_fast_path: fast },
      // tc_bridge reads routed flows (lib/routed.h), and so conntrack's settings
      [TC_BRIDGE_OBJECT]: { berth_fast_path: fast, berth_ct_ring_size: ringSize },
      // only the host's own sockets are translated, never a container's
      // ... and the masquerade range, whose ports a host socket may not take from a flow (lib/sockguard.h)
      [CGROUP_SOCK_OBJECT]: { berth_host_netns_cookie: le64(n.netnsCookie()), berth_nat_port_min: le16(natPortMin), berth_nat_port_max: le16(natPortMax) },
    };
    const maxEntries = {
      [MapName.EP_BY_IFINDEX]: maxEp,
      [MapName.EP_BY_IP]: maxEp,
      [MapName.EP_BY_IP6]: maxEp,
      [MapName.COUNTERS]: maxEp * 2 + 512,
      [MapName.EP_META]: maxEp,
      [MapName.CT]: ctMax,
      [MapName.CT_RING]: ctUnassured,
    };
    const objects = [TC_VETH_OBJECT, TC_UPLINK_OBJECT, XDP_UPLINK_OBJECT, TC_BRIDGE_OBJECT, CGROUP_SOCK_OBJECT].map((object) => ({
      object,
      rodata: rodata[object]!,
      programs: PROGRAMS.filter((x) => x.object === object).map((x) => x.name),
    }));
    return { objects, maxEntries };
  }

  /** True while a takeover by this build waits for the maps to be written (the links run the old programs). */
  get upgradePending(): boolean {
    return hasPending(this.pinRoot);
  }

  /**
   * Finish a deferred takeover: call only after a reconcile has written the whole desired state
   * (and the policy) into the maps. Moves every link onto this build's programs, and this
   * handle's programs with them. Undefined when nothing was pending.
   */
  async finishUpgrade(): Promise<{ linksUpdated: number; linksLeft: number } | undefined> {
    if (!hasPending(this.pinRoot)) return undefined;
    if (!this.pendingBuild) throw new Error(`a takeover is pending at ${this.pinRoot}, and this handle did not start it (Dataplane.openOrLoad does)`);
    const r = await commitPending(this.pinRoot, this.pendingBuild);
    this.pendingBuild = undefined;
    const n = native();
    for (const p of PROGRAMS) {
      const now = n.openPinnedProgram(path.join(this.pinRoot, 'progs', p.name));
      this.progs[p.key].close();
      (this.progs as unknown as Record<string, BpfProgram>)[p.key] = now;
    }
    log('info', 'dataplane takeover finished: the links run the new programs', { ...r });
    return r;
  }

  /** The contract version of the dataplane pinned at `pinRoot` (undefined: none, or pinned before versions existed). */
  static pinnedVersion(pinRoot: string): ContractVersion | undefined {
    return readPinnedVersion(validatePinRoot(pinRoot));
  }

  private linkPin(ifindex: number, dir: TcDirection): string {
    return path.join(this.pinRoot, 'links', `${ifindex}-${dir}`);
  }

  /** Attachments recorded under the pin root. */
  attachments(): Attachment[] {
    return this.pinnedLinks(/^(\d+)-(ingress|egress)$/)
      .map(({ m, info, pin }) => ({
        ifindex: Number(m[1]),
        direction: m[2] as TcDirection,
        linkId: info.id,
        progId: info.progId,
        pin,
        live: info.ifindex === Number(m[1]),
      }))
      .sort((a, b) => a.ifindex - b.ifindex || a.direction.localeCompare(b.direction));
  }

  /** attachments() of one interface, read from its own two pins only (no walk of links/). */
  attachmentsOf(ifindex: number): Attachment[] {
    const out: Attachment[] = [];
    // attachments()' order: by direction name
    for (const direction of ['egress', 'ingress'] as const) {
      const pin = this.linkPin(ifindex, direction);
      const info = linkInfoAt(pin);
      if (info) out.push({ ifindex, direction, linkId: info.id, progId: info.progId, pin, live: info.ifindex === ifindex });
    }
    return out;
  }

  /** The pinned links under links/ whose file name matches `re`, with what the kernel says of each. */
  private pinnedLinks(re: RegExp): Array<{ m: RegExpExecArray; info: LinkInfo; pin: string }> {
    const dir = path.join(this.pinRoot, 'links');
    if (!fs.existsSync(dir)) return [];
    const out: Array<{ m: RegExpExecArray; info: LinkInfo; pin: string }> = [];
    for (const f of fs.readdirSync(dir)) {
      const m = re.exec(f);
      if (!m) continue;
      const pin = path.join(dir, f);
      const link = native().openPinnedLink(pin);
      try {
        out.push({ m, info: link.info(), pin });
      } finally {
        link.close();
      }
    }
    return out;
  }


  /**
   * Attach both veth programs to an interface; idempotent. Returns the
   * directions that were newly attached (for rollback).
   */
  attachVeth(ifindex: number): TcDirection[] {
    const made: TcDirection[] = [];
    try {
      for (const [dir, key] of HOOKS) {
        const pin = this.linkPin(ifindex, dir);
        if (this.keepPinned(pin, ifindex, this.progs[key].id)) continue;
        this.pinNew(native().attachTcx(this.progs[key], ifindex, dir), pin);
        made.push(dir);
      }
    } catch (e) {
      for (const dir of made) this.detachHook(ifindex, dir);
      throw e;
    }
    return made;
  }

  /** Detach one hook (no-op when not attached). */
  detachHook(ifindex: number, dir: TcDirection): boolean {
    return this.detachPinned(this.linkPin(ifindex, dir));
  }

  /**
   * True when `pin` holds a live link of program `progId` on `ifindex`
   * (undefined: any target). A pinned link that differs is detached and
   * unpinned, so the caller attaches afresh.
   */
  private keepPinned(pin: string, ifindex: number | undefined, progId: number): boolean {
    if (!fs.existsSync(pin)) return false;
    const link = native().openPinnedLink(pin);
    try {
      const info = link.info();
      if ((ifindex === undefined || info.ifindex === ifindex) && info.progId === progId) return true;
    } finally {
      link.close();
    }
    this.detachPinned(pin);
    return false;
  }

  /** Pin a new link; if pinning fails, closing the unpinned link detaches it. */
  private pinNew(link: BpfLink, pin: string): void {
    mkdirp(path.dirname(pin));
    try {
      link.pin(pin);
    } finally {
      link.close();
    }
  }

  detachVeth(ifindex: number): void {
    for (const [dir] of HOOKS) this.detachHook(ifindex, dir);
  }

  // --- uplinks ---------------------------------------------------------------

  private uplinkPin(ifindex: number, kind: 'tc' | 'xdp'): string {
    return path.join(this.pinRoot, 'links', `up-${ifindex}-${kind}`);
  }

  uplinkAttachments(): Array<{ ifindex: number; kind: 'tc' | 'xdp'; progId: number; live: boolean; pin: string }> {
    return this.pinnedLinks(/^up-(\d+)-(tc|xdp)$/).map(({ m, info, pin }) => ({
      ifindex: Number(m[1]),
      kind: m[2] as 'tc' | 'xdp',
      progId: info.progId,
      live: info.ifindex === Number(m[1]),
      pin,
    }));
  }


  /** uplinkAttachments() of one interface, read from its own pins only. */
  uplinkAttachmentsOf(ifindex: number): Array<{ ifindex: number; kind: 'tc' | 'xdp'; progId: number; live: boolean; pin: string }> {
    const out: Array<{ ifindex: number; kind: 'tc' | 'xdp'; progId: number; live: boolean; pin: string }> = [];
    for (const kind of ['tc', 'xdp'] as const) {
      const pin = this.uplinkPin(ifindex, kind);
      const info = linkInfoAt(pin);
      if (info) out.push({ ifindex, kind, progId: info.progId, live: info.ifindex === ifindex, pin });
    }
    return out;
  }

  /** Attach the uplink program (tc ingress, or the XDP drop path); idempotent. */
  attachUplink(ifindex: number, kind: 'tc' | 'xdp'): boolean {
    const pin = this.uplinkPin(ifindex, kind);
    const prog = kind === 'tc' ? this.progs.uplink : this.progs.xdp;
    if (this.keepPinned(pin, ifindex, prog.id)) return false;
    this.pinNew(kind === 'tc' ? native().attachTcx(prog, ifindex, 'ingress') : native().attachXdp(prog, ifindex, 'auto'), pin);
    return true;
  }

  detachUplink(ifindex: number, kind: 'tc' | 'xdp'): boolean {
    return this.detachPinned(this.uplinkPin(ifindex, kind));
  }

  // --- bridges: the networks' choke points --------------------------------------

  private bridgePin(ifindex: number, dir: TcDirection): string {
    return path.join(this.pinRoot, 'links', `br-${ifindex}-${dir}`);
  }

  bridgeAttachments(): Array<{ ifindex: number; direction: TcDirection; progId: number; live: boolean; pin: string }> {
    return this.pinnedLinks(/^br-(\d+)-(ingress|egress)$/)
      .map(({ m, info, pin }) => ({ ifindex: Number(m[1]), direction: m[2] as TcDirection, progId: info.progId, live: info.ifindex === Number(m[1]), pin }))
      .sort((a, b) => a.ifindex - b.ifindex || a.direction.localeCompare(b.direction));
  }


  /** bridgeAttachments() of one bridge, read from its own pins only. */
  bridgeAttachmentsOf(ifindex: number): Array<{ ifindex: number; direction: TcDirection; progId: number; live: boolean; pin: string }> {
    const out: Array<{ ifindex: number; direction: TcDirection; progId: number; live: boolean; pin: string }> = [];
    for (const direction of ['egress', 'ingress'] as const) {
      const pin = this.bridgePin(ifindex, direction);
      const info = linkInfoAt(pin);
      if (info) out.push({ ifindex, direction, progId: info.progId, live: info.ifindex === ifindex, pin });
    }
    return out;
  }

  /** Attach both bridge programs to a bridge; idempotent. Returns the directions newly attached. */
  attachBridge(ifindex: number): TcDirection[] {
    const made: TcDirection[] = [];
    try {
      for (const [dir, prog] of [['egress', this.progs.bridgeOut], ['ingress', this.progs.bridgeIn]] as const) {
        const pin = this.bridgePin(ifindex, dir);
        if (this.keepPinned(pin, ifindex, prog.id)) continue;
        this.pinNew(native().attachTcx(prog, ifindex, dir), pin);
        made.push(dir);
      }
    } catch (e) {
      for (const dir of made) this.detachPinned(this.bridgePin(ifindex, dir));
      throw e;
    }
    return made;
  }

  detachBridge(ifindex: number, dirs: readonly TcDirection[] = ['egress', 'ingress']): void {
    for (const dir of dirs) this.detachPinned(this.bridgePin(ifindex, dir));
  }

  // --- host socket hooks --------------------------------------------------------

  private cgroupPin(hook: CgroupHook): string {
    return path.join(this.pinRoot, 'links', `cg-${hook}`);
  }

  cgroupAttachments(): Array<{ hook: CgroupHook; progId: number }> {
    const out: Array<{ hook: CgroupHook; progId: number }> = [];
    for (const hook of Object.keys(SOCK_PROG) as CgroupHook[]) {
      const pin = this.cgroupPin(hook);
      if (!fs.existsSync(pin)) continue;
      const link = native().openPinnedLink(pin);
      try {
        out.push({ hook, progId: link.info().progId });
      } finally {
        link.close();
      }
    }
    return out;
  }

  /** Attach a host socket hook to the cgroup of `socketHooks`; idempotent. Throws its reason when unavailable. */
  attachCgroup(hook: CgroupHook): boolean {
    const key = SOCK_PROG[hook];
    if (!key) throw new Error(`no berth program for cgroup hook ${hook}`);
    const pin = this.cgroupPin(hook);
    if (this.keepPinned(pin, undefined, this.progs[key].id)) return false;
    const target = this.socketHooks;
    if (!target.available) throw new Error(target.reason);
    this.pinNew(native().attachCgroup(this.progs[key], target.cgroup, hook), pin);
    return true;
  }

  detachCgroup(hook: CgroupHook): boolean {
    return this.detachPinned(this.cgroupPin(hook));
  }

  private detachPinned(pin: string): boolean {
    if (!fs.existsSync(pin)) return false;
    const link = native().openPinnedLink(pin);
    try {
      link.detach();
    } catch (e) {
      // a link whose interface is gone is already detached
      if (!isBpfError(e) || !['ENOLINK', 'EINVAL', 'ENOENT', 'E67'].includes(e.code)) throw e;
    } finally {
      link.close();
    }
    native().unpin(pin);
    return true;
  }


  close(): void {
    for (const m of Object.values(this.maps)) m.close();
    for (const p of Object.values(this.progs)) p.close();
  }

  /**
   * Detach every link and unpin everything under the pin root, then remove
   * the directory: the kernel path is left as if berth never ran.
   */
  static reset(pinRoot: string): { detached: number; unpinned: string[] } {
    const root = validatePinRoot(pinRoot);
    const unpinned: string[] = [];
    let detached = 0;
    if (!fs.existsSync(root)) return { detached, unpinned };
    const linksDir = path.join(root, 'links');
    if (fs.existsSync(linksDir)) {
      for (const f of fs.readdirSync(linksDir)) {
        const pin = path.join(linksDir, f);
        try {
          const link = native().openPinnedLink(pin);
          try {
            link.detach();
            detached++;
          } catch {
            /* already detached (interface gone) */
          } finally {
            link.close();
          }
        } finally {
          native().unpin(pin);
          unpinned.push(pin);
        }
      }
    }
    const walk = (dir: string): void => {
      for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, ent.name);
        if (ent.isDirectory()) {
          walk(p);
          fs.rmdirSync(p);
        } else {
          native().unpin(p);
          unpinned.push(p);
        }
      }
    };
    walk(root);
    fs.rmdirSync(root);
    return { detached, unpinned };
  }
}
