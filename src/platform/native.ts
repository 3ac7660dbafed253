/**
 * The one typed boundary to the native addon (native/*.cc, built by cmake-js
 * against the system libbpf, or the static prebuild shipped in the npm
 * package). Nothing else in berth loads the addon: import from here. The
 * addon is mechanism only; policy lives in TypeScript.
 *
 * Where the addon comes from (addonCandidates(), first that loads wins):
 * $BERTH_ADDON if set, then a build from source at build/Release (the dev
 * build, or scripts/install.js where no prebuild fits), then
 * prebuilds/<platform>-<arch>/berth_native.node.
 *
 * Errors thrown (or rejected) by the addon are BpfError-shaped: a JS Error
 * with `errno` (positive number), `code` (the errno's symbolic name, e.g.
 * 'ENOENT', or 'EINVAL' for argument errors detected before any syscall),
 * `op` (e.g. 'map.update'), `object` (e.g. "map 'berth_counters'" or
 * "ifindex 7"), for failed loads `verifierLog`, and for a failed batch op the
 * `element` it failed at.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface BpfError extends Error {
  errno: number;
  code: string;
  op: string;
  object: string;
  verifierLog?: string;
  /** batch ops (lookupBatch, updateBatch, deleteBatch): the index of the element that failed */
  element?: number;
}

export function isBpfError(e: unknown): e is BpfError {
  return e instanceof Error && typeof (e as BpfError).errno === 'number' && typeof (e as BpfError).op === 'string';
}

export interface BtfMember {
  name: string;
  /** byte offset inside the struct */
  offset: number;
  /** byte size of the member's type (arrays: whole array) */
  size: number;
}

export interface BtfStruct {
  name: string;
  size: number;
  members: BtfMember[];
}

export interface BtfEnum {
  name: string;
  values: Record<string, number>;
}

export interface OpenOptions {
  /** bpffs directory for maps declared with LIBBPF_PIN_BY_NAME: existing pins are reused, new ones created. */
  pinRoot?: string;
  /** `const volatile` settings, by variable name; each Buffer must match the variable's size exactly. */
  rodata?: Record<string, Buffer>;
  /** override max_entries per map name before load */
  maxEntries?: Record<string, number>;
}

export interface MapInfo {
  name: string;
  /** BPF_MAP_TYPE_* number */
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  /** per-CPU map: values are valueSize rounded up to 8, times possibleCpus */
  perCpu: boolean;
  id: number;
}

export type UpdateFlag = 'any' | 'noexist' | 'exist';

export interface BpfMap extends MapInfo {
  readonly fd: number;
  /** bytes of one lookup/update value buffer (per-CPU: roundup(valueSize,8) * possibleCpus) */
  readonly valueBufferSize: number;
  lookup(key: Buffer): Buffer | null;
  update(key: Buffer, value: Buffer, flag?: UpdateFlag): void;
  /** false when the key was not there */
  delete(key: Buffer): boolean;
  /** all keys, by get_next_key */
  keys(): Buffer[];
  /** every entry, off the event loop (batch ops when the map type supports them) */
  dump(): Promise<Array<[Buffer, Buffer]>>;
  /** each key's value (null: absent), one lookup per key, off the event loop */
  lookupBatch(keys: Buffer[]): Promise<Array<Buffer | null>>;
  /** many updates, off the event loop; all keys and values checked first */
  updateBatch(keys: Buffer[], values: Buffer[], flag?: UpdateFlag): Promise<void>;
  /** many deletes, off the event loop; returns how many existed */
  deleteBatch(keys: Buffer[]): Promise<number>;
  pin(path: string): void;
  /** the key/value layout from the kernel's BTF of this map, as canonical JSON (native/layout.cc) */
  layout(): string;
  close(): void;
}

export interface TestRunOptions {
  data: Buffer;
  repeat?: number;
  /** bytes reserved for the output packet; default data.length + 256 */
  dataSizeOut?: number;
  /** optional context (struct __sk_buff for tc programs) */
  ctx?: Buffer;
}

/**
 * A `struct __sk_buff` context for testRun() of a tc program that makes the
 * kernel run the packet as if it arrived on `ifindex` (which must exist).
 * The whole struct is passed: a shorter ctx_out makes the kernel fail ENOSPC.
 */
export function skbTestContext(ifindex: number): Buffer {
  const c = Buffer.alloc(192); // sizeof(struct __sk_buff)
  c.writeUInt32LE(ifindex, 40); // offsetof(struct __sk_buff, ifindex)
  return c;
}

export interface TestRunResult {
  retval: number;
  /** average nanoseconds per run as reported by the kernel */
  duration: number;
  data: Buffer;
  ctx?: Buffer;
}

/** One run of testRunBatch(): its result, or why the kernel refused it. */
export type TestRunBatchResult =
  | { retval: number; duration: number; data: Buffer; errno?: undefined; code?: undefined }
  | { errno: number; code: string; retval?: undefined; data?: undefined };

export interface BpfProgram {
  readonly name: string;
  readonly fd: number;
  /** BPF_PROG_TYPE_* number */
  readonly type: number;
  readonly id: number;
  pin(path: string): void;
  testRun(opts: TestRunOptions): Promise<TestRunResult>;
  /**
   * Many runs (repeat 1, output room data.length + 256) on one worker thread,
   * in order; a run the kernel refuses gets its errno in its own slot.
   */
  testRunBatch(runs: ReadonlyArray<{ data: Buffer; ctx?: Buffer }>): Promise<TestRunBatchResult[]>;
  close(): void;
}

export type TcDirection = 'ingress' | 'egress';
export type CgroupHook = 'connect4' | 'sendmsg4' | 'recvmsg4' | 'getpeername4' | 'connect6' | 'sendmsg6' | 'recvmsg6';

export interface LinkInfo {
  id: number;
  progId: number;
  /** BPF_LINK_TYPE_* */
  type: number;
  /** 0 when unknown or detached */
  ifindex: number;
  /** BPF_* attach type */
  attachType: number;
}

export interface BpfLink {
  readonly fd: number;
  info(): LinkInfo;
  pin(path: string): void;
  /** detach the program from its hook (the link object stays until closed/unpinned) */
  detach(): void;
  /** bpf_link_update: run `prog` on the live hook instead (the kernel swaps them; no packet meets an empty hook) */
  update(prog: BpfProgram): void;
  close(): void;
}

export interface BpfObject {
  readonly path: string;
  /** async: runs the verifier off the event loop; on failure the error has verifierLog */
  load(): Promise<void>;
  maps(): BpfMap[];
  map(name: string): BpfMap;
  programs(): BpfProgram[];
  program(name: string): BpfProgram;
  btfStruct(name: string): BtfStruct;
  btfEnum(name: string): BtfEnum;
  /** a map's key/value layout from this object's BTF, before or after load; same JSON as BpfMap.layout() */
  mapLayout(name: string): string;
  close(): void;
}

/**
 * A pinned BPF_MAP_TYPE_RINGBUF read on a native thread (libbpf ring_buffer).
 * Each wake-up's records reach `onEvents` as one batch of raw Buffers.
 */
export interface RingBuffer {
  readonly name: string;
  /** data area size in bytes (the map's max_entries) */
  readonly size: number;
  readonly fd: number;
  /** true between start() and stop()/close() */
  readonly running: boolean;
  /** start the reader; EBUSY when already started. Without onError a read failure is an uncaught exception. */
  start(onEvents: (records: Buffer[]) => void, onError?: (e: BpfError) => void): void;
  /** stop and join the reader; batches not yet delivered are dropped. Idempotent. */
  stop(): void;
  /** stop() and close the map fd */
  close(): void;
}

/** Network namespace argument: a path (/run/netns/X, /proc/PID/ns/net, a Docker SandboxKey) or an open fd. */
export type NetnsRef = string | number;

/** XDP attachment of a link (IFLA_XDP). attached: 0 none, 1 driver, 2 generic (skb), 3 offload, 4 several. */
export interface NetlinkXdp {
  attached: number;
  progId: number;
  drvProgId: number;
  skbProgId: number;
  hwProgId: number;
}

/** One link as RTM_NEWLINK describes it. */
export interface NetlinkLink {
  ifindex: number;
  name: string;
  /** IFLA_INFO_KIND ('bridge', 'veth', ...); '' for devices without one (NICs, lo) */
  kind: string;
  /** IFLA_INFO_SLAVE_KIND ('bridge' for a bridge port), '' when none */
  slaveKind: string;
  /** ifindex of the master (bridge), 0 when none */
  master: number;
  alias: string;
  /** IFF_UP */
  up: boolean;
  /** IFF_LOWER_UP (carrier) */
  lowerUp: boolean;
  /** IFLA_OPERSTATE as `ip` names it: 'UP', 'DOWN', 'LOWERLAYERDOWN', 'UNKNOWN', ... */
  operstate: string;
  /** ifi_flags */
  flags: number;
  mtu: number;
  /** lower-case aa:bb:cc:dd:ee:ff ('' when the device has none) */
  mac: string;
  /** `ip link`'s link type: 'ether', 'loopback', 'none', 'ipip', 'gre', 'sit', ...; '[N]' for other ARPHRD_* */
  linkType: string;
  /** IFLA_LINK_NETNSID: the peer's namespace id as this namespace knows it, null when the peer is local or none */
  linkNetnsid: number | null;
  /** IFLA_LINK: for a veth, the peer's ifindex (in the peer's namespace); 0 when none */
  peerIfindex: number;
  xdp: NetlinkXdp | null;
}

export interface NetlinkAddress {
  ifindex: number;
  family: 4 | 6;
  address: string;
  prefixLen: number;
  /** IPv4 broadcast, '' when none */
  broadcast: string;
  /** 'global', 'link', 'host', 'site' or the number */
  scope: string;
  /** IFA_F_* */
  flags: number;
  label: string;
}

export interface NetlinkRoute {
  family: 4 | 6;
  /** 'default' or 'a.b.c.d/n' / 'x::/n' */
  dst: string;
  /** first next hop's gateway, '' when none */
  gateway: string;
  /** first next hop's device, 0 when none */
  ifindex: number;
  /** RT_TABLE_*: 254 main, 255 local */
  table: number;
  protocol: number;
  scope: number;
  /** RTN_*: 1 unicast, 2 local, ... */
  routeType: number;
  priority: number;
}

export interface NetlinkNeighbour {
  family: 4 | 6;
  ifindex: number;
  address: string;
  lladdr: string;
  /** NUD_* */
  state: number;
}

export interface NetlinkAddressSpec {
  address: string;
  prefixLen: number;
  /** IPv4 only: true computes it like `brd +`; or the broadcast address itself */
  broadcast?: boolean | string;
  /** IPv6 only: IFA_F_NODAD */
  nodad?: boolean;
}

export interface NetlinkRouteSpec {
  /** 'default' or a prefix 'a.b.c.d/n' */
  dst: string;
  gateway?: string;
  dev?: string;
  /** needed only for a default route without gateway */
  family?: 4 | 6;
}

export interface NetlinkLinkChanges {
  up?: boolean;
  /** the master's name; null: no master */
  master?: string | null;
  alias?: string;
  mtu?: number;
  /** move the link into this namespace */
  netns?: NetnsRef;
}

/**
 * One NETLINK_ROUTE socket, in the namespace it was opened in (netns: its
 * path, null for the caller's). Requests run off the event loop, one at a
 * time; errors are BpfError-shaped with the kernel's errno (EEXIST, ENODEV,
 * ...), argument errors are TypeErrors with code EINVAL, and any request
 * after close() rejects with EBADF.
 */
export interface Netlink {
  readonly netns: string | null;
  readonly closed: boolean;
  links(): Promise<NetlinkLink[]>;
  /** null when there is no link of that name */
  link(name: string): Promise<NetlinkLink | null>;
  addBridge(name: string): Promise<void>;
  /** the peer is created in peerNetns (else next to name) under peerName */
  addVeth(name: string, peerName: string, opts?: { peerNetns?: NetnsRef }): Promise<void>;
  deleteLink(name: string): Promise<void>;
  setLink(name: string, changes: NetlinkLinkChanges): Promise<void>;
  /** family 4, 6, or 0/undefined for both */
  addresses(family?: 0 | 4 | 6): Promise<NetlinkAddress[]>;
  addAddress(dev: string, spec: NetlinkAddressSpec): Promise<void>;
  deleteAddress(dev: string, spec: { address: string; prefixLen: number }): Promise<void>;
  /** every route of every table */
  routes(family?: 0 | 4 | 6): Promise<NetlinkRoute[]>;
  addRoute(spec: NetlinkRouteSpec): Promise<void>;
  deleteRoute(spec: NetlinkRouteSpec): Promise<void>;
  neighbours(family?: 0 | 4 | 6): Promise<NetlinkNeighbour[]>;
  /** frees the socket (after a request in flight); idempotent */
  close(): void;
}

export type NetlinkEvent =
  | ({ type: 'link'; action: 'new' | 'del' } & NetlinkLink)
  | ({ type: 'addr'; action: 'new' | 'del' } & NetlinkAddress)
  | ({ type: 'route'; action: 'new' | 'del' } & NetlinkRoute);

/** A subscription to the link, IPv4/IPv6 address and route groups, read on a native thread. */
export interface NetlinkEvents {
  /** true until close() (or a fatal read error) */
  readonly running: boolean;
  /** stops and joins the reader; events not yet delivered are dropped. Idempotent. */
  close(): void;
}

export interface NativeAddon {
  openObject(path: string, opts?: OpenOptions): BpfObject;
  /** a pinned ring buffer map; EINVAL when the pin is another map type */
  openRingBuffer(path: string): RingBuffer;
  openPinnedMap(path: string): BpfMap;
  openPinnedProgram(path: string): BpfProgram;
  openPinnedLink(path: string): BpfLink;
  /** tcx attach via bpf_link_create (attach types 46/47) */
  attachTcx(prog: BpfProgram, ifindex: number, direction: TcDirection): BpfLink;
  /** XDP attach via bpf_link_create; mode 'skb' | 'drv' | 'auto' */
  attachXdp(prog: BpfProgram, ifindex: number, mode?: 'skb' | 'drv' | 'auto'): BpfLink;
  /** cgroup v2 socket hook via bpf_link_create on the cgroup directory */
  attachCgroup(prog: BpfProgram, cgroupPath: string, hook: CgroupHook): BpfLink;
  /** clsact fallback (kernels without tcx): creates the qdisc if missing, attaches a filter */
  tcAttach(prog: BpfProgram, ifindex: number, direction: TcDirection, priority: number): void;
  /** removes the filter at that priority; false when none */
  tcDetach(ifindex: number, direction: TcDirection, priority: number): boolean;
  /** true when the kernel accepts tcx links */
  probeTcx(): boolean;
  possibleCpus(): number;
  /** SO_NETNS_COOKIE of the caller's network namespace */
  netnsCookie(): bigint;
  /** unlink a bpffs path; false when it did not exist */
  unpin(path: string): boolean;
  /** one datagram to a unix datagram socket (a leading '@': an abstract name); returns the bytes sent */
  sendUnixDatagram(path: string, data: Buffer): number;
  libbpfVersion(): string;
  /** a NETLINK_ROUTE socket, created inside the namespace at netnsPath when given */
  openNetlink(netnsPath?: string | null): Netlink;
  /**
   * Events of the namespace at netnsPath (default: the caller's), one call per
   * event. onError gets read failures; an ENOBUFS there means events were
   * lost (the receive buffer overran) and reading goes on.
   */
  subscribeNetlink(onEvent: (e: NetlinkEvent) => void, onError?: ((e: BpfError) => void) | null, netnsPath?: string | null): NetlinkEvents;
  /** `ip netns add name`: /run/netns/name bound to a new network namespace; EEXIST when it exists */
  netnsAdd(name: string): Promise<void>;
  /** `ip netns del name`: unmount and remove /run/netns/name; ENOENT when missing */
  netnsDelete(name: string): Promise<void>;
  /** write value to /proc/sys/<key> inside the namespace at netnsPath (null: the caller's) */
  writeSysctl(netnsPath: string | null, key: string, value: string): Promise<void>;
}

/** The package root (a checkout or the installed package): dist/src/platform/native.js -> ../../.. */
export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..', '..');

/** File name of the addon, in build/Release and in prebuilds/<platform>-<arch>. */
export const ADDON_FILE = 'berth_native.node';

/** Path of the addon built from source (dev build, or a source build at install). */
export const ADDON_PATH = path.join(PACKAGE_ROOT, 'build', 'Release', ADDON_FILE);

/**
 * Directory of the compiled BPF objects; the npm package ships them at the same path.
 * BERTH_BPF_OBJECT_DIR overrides it (tests load a second build of the objects from there).
 */
export const BPF_OBJECT_DIR = process.env.BERTH_BPF_OBJECT_DIR || path.join(PACKAGE_ROOT, 'build', 'bpf');

/** The places the addon is looked for, in order. */
export function addonCandidates(
  root: string = PACKAGE_ROOT,
  platform: string = process.platform,
  arch: string = process.arch,
  override: string | undefined = process.env.BERTH_ADDON,
): string[] {
  const list = [
    path.join(root, 'build', 'Release', ADDON_FILE),
    path.join(root, 'prebuilds', `${platform}-${arch}`, ADDON_FILE),
  ];
  return override ? [path.resolve(override), ...list] : list;
}

export interface LoadedAddon<T> {
  addon: T;
  path: string;
}

/**
 * Loads the first candidate that exists and loads. A candidate that exists but
 * fails to load (wrong libc, missing shared libbpf, ...) is skipped with a
 * process warning when a later one loads; when none loads, the error lists
 * every place with why it was not used.
 */
export function loadAddon<T>(
  candidates: string[],
  load: (file: string) => unknown = require,
  exists: (file: string) => boolean = fs.existsSync,
  warn: (message: string) => void = (m) => process.emitWarning(m, 'BerthAddonWarning'),
): LoadedAddon<T> {
  const tried: string[] = [];
  for (const file of candidates) {
    if (!exists(file)) {
      tried.push(`  ${file}: not found`);
      continue;
    }
    try {
      const addon = load(file) as T;
      if (tried.some((l) => !l.endsWith(': not found'))) {
        warn(`berth: using the native addon at ${file}; skipped:\n${tried.join('\n')}`);
      }
      return { addon, path: file };
    } catch (e) {
      tried.push(`  ${file}: ${firstLine((e as Error).message)}`);
    }
  }
  const err = new Error(
    `berth: cannot load the native addon (${ADDON_FILE}) for ${process.platform}-${process.arch}. Looked in:\n${tried.join('\n')}\n` +
      `In a checkout run 'npm run build'. In an installed package build it from source with ` +
      `'BERTH_BUILD_FROM_SOURCE=1 node ${path.join(PACKAGE_ROOT, 'scripts', 'install.js')}' ` +
      `(needs cmake, a C++ compiler, pkg-config and libbpf-dev).`,
  ) as Error & { code: string; candidates: string[] };
  err.code = 'BERTH_ADDON_NOT_FOUND';
  err.candidates = candidates;
  throw err;
}

function firstLine(s: string): string {
  const i = s.indexOf('\n');
  return i < 0 ? s : s.slice(0, i);
}

let cached: LoadedAddon<NativeAddon> | undefined;

export function native(): NativeAddon {
  if (!cached) cached = loadAddon<NativeAddon>(addonCandidates());
  return cached.addon;
}

/** The file the addon was loaded from (loads it if needed). */
export function nativePath(): string {
  native();
  return cached!.path;
}

export function bpfObjectPath(stem: string): string {
  return path.join(BPF_OBJECT_DIR, `${stem}.bpf.o`);
}
