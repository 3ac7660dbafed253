/**
 * The pinned dataplane's lifecycle across berth builds: what version of the
 * contract it holds, and how a build whose programs or map layouts differ
 * takes it over without a packet meeting an empty hook.
 *
 * The version (struct berth_version in the pinned map berth_version, key 0):
 *   epoch     BERTH_CONTRACT_EPOCH from the objects' BTF (bumped by hand when a map changes meaning)
 *   layout    hash of every pinned map's key/value layout, as the objects' BTF describes it
 *   programs  hash of the object files and their load-time settings (const volatile)
 *   release   the package version that wrote it
 *
 * At start (Dataplane.openOrLoad) berth compares the pinned version with its own build:
 *   same layout and programs         -> open what is pinned, change nothing;
 *   older release or epoch, or the same release with other programs or settings
 *                                     -> replace: load the new objects (maps whose layout is the
 *                                        same are reused through their pins, at their pinned size;
 *                                        a map whose layout changed is migrated member by member, or
 *                                        reset when no conversion exists, with a warning naming it),
 *                                        then bpf_link_update every pinned link to the new program
 *                                        of the same name, then the program pins and the version;
 *   newer release or epoch           -> a downgrade: refused (nothing changed) unless --force.
 *
 * No fail-open window. A reset map is empty, and for several maps empty means "pass" (no policy
 * rule, no isolation flag on a network, no host address), so new programs must not run on it
 * before the first reconcile has written it (nor old programs on a reset map's old copy next to a
 * partner map the reconcile rewrites: maps that hold one state together, COUPLED, are reset
 * together). When a map is reset the takeover is therefore
 * deferred: every link keeps the old program, which keeps the old copy of every reset map (it
 * holds it, and it is pinned at <root>/pending/maps/<name>), while the new programs wait at
 * <root>/pending/progs/<name> and the new maps are pinned under their names for the reconcile
 * to fill. commitPending (Dataplane.finishUpgrade, which the daemon calls after a reconcile that
 * wrote the whole desired state and the policy) then bpf_link_updates every link, moves the
 * program pins, writes the version and removes pending/. Each hook runs either the old program
 * on the old state or the new program on maps a complete reconcile wrote, never a new program
 * on an empty map. pending/ is the marker that survives a crash: a takeover over a dataplane
 * that has one is deferred again (its maps count as not written yet), and starting the old
 * build again puts the old maps back under their names (abandonPending).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BpfMap, BpfObject, BpfProgram, bpfObjectPath, isBpfError, native } from './native';
import { ContractVersion, MapName, versionCodec } from './contract';
import { VERSION } from './version';
import { log } from './log';

/** One object to load: its stem, its const volatile settings, the programs berth pins from it. */
export interface ObjectPlan {
  object: string;
  rodata: Record<string, Buffer>;
  programs: readonly string[];
}

export interface LoadPlan {
  objects: readonly ObjectPlan[];
  /** max_entries by map name (the pinned sizes win over these on a replace) */
  maxEntries: Record<string, number>;
}

export interface BuildVersion extends ContractVersion {
  /** every pinned map's layout JSON (native/layout.cc), by map name */
  maps: ReadonlyMap<string, string>;
  /** the pinned maps each object declares, by object stem */
  objectMaps: ReadonlyMap<string, ReadonlySet<string>>;
}

const PINNED_MAPS: readonly string[] = Object.values(MapName);
const PERCPU_TYPES = new Set([5, 6, 10]); // PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH

function hash64(h: ReturnType<typeof createHash>): bigint {
  return h.digest().readBigUInt64BE(0);
}

export function hex(v: bigint): string {
  return v.toString(16).padStart(16, '0');
}

/** This build's version: read from the objects (not loaded) and their settings. */
export function buildVersion(plan: LoadPlan, objectPath: (stem: string) => string = bpfObjectPath): BuildVersion {
  const maps = new Map<string, string>();
  const objectMaps = new Map<string, Set<string>>();
  const progs = createHash('sha256');
  let epoch: number | undefined;
  for (const o of plan.objects) {
    const file = objectPath(o.object);
    progs.update(`object ${o.object}\n`).update(fs.readFileSync(file));
    for (const k of Object.keys(o.rodata).sort()) progs.update(`\n${k}=${o.rodata[k]!.toString('hex')}`);
    const obj = native().openObject(file);
    try {
      const e = obj.btfEnum('berth_contract_version').values.BERTH_CONTRACT_EPOCH;
      if (e === undefined) throw new Error(`${file}: no BERTH_CONTRACT_EPOCH in its BTF`);
      if (epoch !== undefined && e !== epoch) throw new Error(`${file}: contract epoch ${e}, the other objects ${epoch}: a mixed build`);
      epoch = e;
      const has = new Set<string>();
      for (const name of PINNED_MAPS) {
        const l = objectMapLayout(obj, name);
        if (l === undefined) continue;
        has.add(name);
        if (!maps.has(name)) maps.set(name, l);
      }
      objectMaps.set(o.object, has);
    } finally {
      obj.close();
    }
  }
  const layout = createHash('sha256').update(`epoch ${epoch}\n`);
  for (const name of [...maps.keys()].sort()) layout.update(`${name} ${maps.get(name)}\n`);
  return { epoch: epoch ?? 0, layout: hash64(layout), programs: hash64(progs), release: VERSION, maps, objectMaps };
}

function objectMapLayout(obj: BpfObject, name: string): string | undefined {
  try {
    return obj.mapLayout(name);
  } catch (e) {
    if (isBpfError(e) && e.code === 'ENOENT') return undefined;
    throw e;
  }
}

/** The version pinned at `root`, or undefined when the dataplane there predates it (no berth_version pin). */
export function readPinnedVersion(root: string): ContractVersion | undefined {
  const pin = path.join(root, MapName.VERSION);
  if (!fs.existsSync(pin)) return undefined;
  const m = native().openPinnedMap(pin);
  try {
    const v = m.lookup(Buffer.alloc(4));
    if (!v) return undefined;
    const d = versionCodec.decode(v);
    // an entry never written is all zero
    return d.epoch === 0 && d.release === '' ? undefined : d;
  } finally {
    m.close();
  }
}

export function writePinnedVersion(root: string, v: ContractVersion): void {
  const m = native().openPinnedMap(path.join(root, MapName.VERSION));
  try {
    m.update(Buffer.alloc(4), versionCodec.encode({ epoch: v.epoch, layout: v.layout, programs: v.programs, release: v.release }));
  } finally {
    m.close();
  }
}

/** -1, 0, 1 as release a is older, the same, newer than b (x.y.z; a pre-release tag is ignored). */
export function compareReleases(a: string, b: string): number {
  const parse = (s: string): number[] | undefined => {
    const m = /^(\d+)\.(\d+)\.(\d+)/.exec(s);
    return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
  };
  const pa = parse(a);
  const pb = parse(b);
  if (!pa || !pb) return 0;
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i]! < pb[i]! ? -1 : 1;
  return 0;
}

export type Transition = 'same' | 'upgrade' | 'replace' | 'downgrade';

/** What starting `build` over the `pinned` dataplane is (undefined: pinned before versions existed). */
export function transition(pinned: ContractVersion | undefined, build: ContractVersion): Transition {
  if (!pinned) return 'upgrade';
  if (pinned.epoch !== build.epoch) return pinned.epoch > build.epoch ? 'downgrade' : 'upgrade';
  const c = compareReleases(pinned.release, build.release);
  if (c !== 0) return c > 0 ? 'downgrade' : 'upgrade';
  return pinned.layout === build.layout && pinned.programs === build.programs ? 'same' : 'replace';
}

export function describeVersion(v: ContractVersion | undefined): string {
  return v ? `berth ${v.release || '?'} (contract epoch ${v.epoch}, layout ${hex(v.layout)}, programs ${hex(v.programs)})` : 'a berth from before contract versions';
}

export function downgradeMessage(root: string, pinned: ContractVersion | undefined, build: ContractVersion): string {
  return (
    `refusing to downgrade the dataplane pinned at ${root}: it was written by ${describeVersion(pinned)}, ` +
    `newer than this ${describeVersion(build)}; nothing was changed. Run the newer berth, or 'berth run --force' ` +
    `to replace its programs with this build's (maps whose layout differs are converted, or reset where no conversion exists)`
  );
}

// --- map layouts and their conversion -----------------------------------------

interface TypeDesc {
  k: string;
  s?: number;
  n?: number;
  t?: TypeDesc;
  name?: string;
  signed?: boolean;
  bits?: number;
  m?: Array<{ n: string; o: number; bit?: number; bits?: number; t: TypeDesc }>;
}
interface LayoutDesc {
  type: number;
  flags: number;
  keySize: number;
  valueSize: number;
  key: TypeDesc;
  value: TypeDesc;
}

function sizeOfDesc(t: TypeDesc): number {
  if (t.k === 'array') return (t.n ?? 0) * sizeOfDesc(t.t!);
  if (t.k === 'ptr') return 8;
  return t.s ?? 0;
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

export interface Conversion {
  /** the new value for an old one */
  convert(old: Buffer): Buffer;
  /** members of the new value that the old one lacks (zero after conversion) */
  added: string[];
  /** members of the old value that the new one lacks (their content is dropped) */
  removed: string[];
}

/**
 * How entries of a map with layout `oldJson` become entries of `newJson`, or why they cannot:
 * same map type (not per-CPU), same key; the value's members are carried over by name where their
 * type is the same, new members are zero, members whose type changed make it unconvertible.
 */
export function planConversion(oldJson: string, newJson: string): Conversion | { reason: string } {
  const o = JSON.parse(oldJson) as LayoutDesc;
  const n = JSON.parse(newJson) as LayoutDesc;
  if (o.type !== n.type) return { reason: `map type ${o.type} became ${n.type}` };
  if (PERCPU_TYPES.has(n.type)) return { reason: 'per-CPU values are not converted' };
  if (!same(o.key, n.key)) return { reason: 'the key layout changed' };
  if (same(o.value, n.value)) return { convert: (b) => Buffer.from(b), added: [], removed: [] };
  if (o.value.k !== 'struct' || n.value.k !== 'struct') return { reason: 'the value is not a struct on both sides' };
  const copies: Array<[number, number, number]> = [];
  const added: string[] = [];
  const oldMembers = new Map((o.value.m ?? []).map((m) => [m.n, m]));
  for (const m of n.value.m ?? []) {
    if (m.bits || m.bit !== undefined) return { reason: `member ${m.n} is a bitfield` };
    const om = oldMembers.get(m.n);
    if (!om || m.n === '') {
      added.push(m.n);
      continue;
    }
    if (om.bits || om.bit !== undefined) return { reason: `member ${m.n} was a bitfield` };
    if (!same(om.t, m.t)) return { reason: `member ${m.n} changed type` };
    copies.push([om.o, m.o, sizeOfDesc(m.t)]);
  }
  const kept = new Set((n.value.m ?? []).map((m) => m.n));
  const removed = (o.value.m ?? []).map((m) => m.n).filter((x) => !kept.has(x));
  const size = n.valueSize;
  return {
    convert: (b: Buffer): Buffer => {
      const out = Buffer.alloc(size);
      for (const [from, to, len] of copies) b.copy(out, to, from, from + len);
      return out;
    },
    added,
    removed,
  };
}

// --- replacing the programs of a live dataplane ----------------------------------

interface ChangedMap {
  name: string;
  pin: string;
  old: BpfMap;
  conversion: Conversion | { reason: string };
}

export interface ReplaceResult {
  /** pinned links now running the new programs */
  linksUpdated: number;
  /** pinned links whose program is none of the pinned programs (left to the reconciler) */
  linksLeft: number;
  mapsKept: string[];
  mapsMigrated: Array<{ map: string; entries: number; added: string[]; removed: string[] }>;
  mapsReset: Array<{ map: string; reason: string }>;
  /** the links stay on the old programs until commitPending (a map was reset, or a takeover is pending) */
  deferred: boolean;
}

/** Maps that hold one state together: when one is reset, so are the others. */
const COUPLED: ReadonlyArray<readonly string[]> = [
  // the rules' two banks, the index of the bank in force, the hits per slot (src/engine/policy.ts)
  [MapName.POLICY, MapName.POLICY_ACTIVE, MapName.POLICY_HITS],
  // the unassured flows' ring and its positions
  [MapName.CT_RING, MapName.CT_POS],
];

/** Where a deferred takeover waits (see the top of this file). */
export const PENDING_DIR = 'pending';

export function hasPending(root: string): boolean {
  return fs.existsSync(path.join(root, PENDING_DIR));
}

function pinnedProgIds(dir: string, names: Iterable<string>, into: Map<number, string>): void {
  for (const name of names) {
    const pin = path.join(dir, name);
    if (!fs.existsSync(pin)) continue;
    const p = native().openPinnedProgram(pin);
    into.set(p.id, name);
    p.close();
  }
}

function removeTree(dir: string): void {
  if (!fs.existsSync(dir)) return;
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name);
    if (ent.isDirectory()) removeTree(p);
    else native().unpin(p);
  }
  fs.rmdirSync(dir);
}

/** The size of every pinned map under root, by name. */
export function pinnedSizes(root: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of PINNED_MAPS) {
    const pin = path.join(root, name);
    if (!fs.existsSync(pin)) continue;
    const m = native().openPinnedMap(pin);
    out[name] = m.maxEntries;
    m.close();
  }
  return out;
}

/**
 * Load `plan` over the dataplane pinned at `root` and move every pinned link onto the new
 * programs with bpf_link_update. Nothing is detached: until a link is updated its hook runs the
 * old program, with the maps it always had (a reset map's old copy stays alive with it).
 * On a load failure the pins are put back as they were and the error is thrown.
 */
export async function replacePrograms(root: string, plan: LoadPlan, build: BuildVersion): Promise<ReplaceResult> {
  const n = native();
  const progDir = path.join(root, 'progs');
  const result: ReplaceResult = { linksUpdated: 0, linksLeft: 0, mapsKept: [], mapsMigrated: [], mapsReset: [], deferred: false };
  const pendingDir = path.join(root, PENDING_DIR);
  const names = plan.objects.flatMap((o) => o.programs);
  // the programs the links run now, by id (those of a pending takeover too: a crash may have moved some links)
  const oldByProgId = new Map<number, string>();
  pinnedProgIds(progDir, names, oldByProgId);
  pinnedProgIds(path.join(pendingDir, 'progs'), names, oldByProgId);
  // maps: kept through their pins at their pinned size, or set aside for a migration
  const sizes = pinnedSizes(root);
  const maxEntries: Record<string, number> = { ...plan.maxEntries, ...sizes };
  const changed: ChangedMap[] = [];
  for (const [name, layout] of build.maps) {
    const pin = path.join(root, name);
    if (!fs.existsSync(pin)) continue;
    const m = n.openPinnedMap(pin);
    const was = m.layout();
    if (was === layout) {
      m.close();
      result.mapsKept.push(name);
      continue;
    }
    changed.push({ name, pin, old: m, conversion: planConversion(was, layout) });
  }
  // a map reset resets the maps it holds one state with (a kept partner would be shared by the
  // old programs and the new maps: the policy's bank index flipped onto a bank the old rules lack)
  for (const group of COUPLED) {
    const cause = changed.find((c) => group.includes(c.name) && 'reason' in c.conversion);
    if (!cause) continue;
    for (const name of group) {
      const pin = path.join(root, name);
      if (changed.some((c) => c.name === name) || !fs.existsSync(pin)) continue;
      changed.push({ name, pin, old: n.openPinnedMap(pin), conversion: { reason: `reset with ${cause.name}: they hold one state together` } });
      const kept = result.mapsKept.indexOf(name);
      if (kept >= 0) result.mapsKept.splice(kept, 1);
    }
  }
  for (const c of changed) n.unpin(c.pin);
  const objs: BpfObject[] = [];
  const progs = new Map<string, BpfProgram>();
  try {
    try {
      for (const o of plan.objects) {
        // each object's own pinned maps at their pinned sizes (the others' names would not resolve)
        const has = build.objectMaps.get(o.object) ?? new Set<string>();
        const own = Object.fromEntries(Object.entries(maxEntries).filter(([k]) => has.has(k) || !PINNED_MAPS.includes(k)));
        const obj = n.openObject(bpfObjectPath(o.object), { pinRoot: root, rodata: o.rodata, maxEntries: own });
        objs.push(obj);
        await obj.load();
        for (const name of o.programs) progs.set(name, obj.program(name));
      }
    } catch (e) {
      // put the old maps back where they were; the links never moved
      for (const c of changed) {
        if (fs.existsSync(c.pin)) n.unpin(c.pin);
        c.old.pin(c.pin);
      }
      throw e;
    }
    // migrated maps get their entries before any program uses them
    const migrated = new Map<string, { into: BpfMap; conversion: Conversion }>();
    for (const c of changed) {
      if ('reason' in c.conversion) {
        result.mapsReset.push({ map: c.name, reason: c.conversion.reason });
        log('warn', 'map layout changed and no conversion exists: the map starts empty (the reconcile refills what berth programs)', { map: c.name, reason: c.conversion.reason });
        continue;
      }
      const into = n.openPinnedMap(c.pin);
      const entries = await copyEntries(c.old, into, c.conversion, false);
      migrated.set(c.name, { into, conversion: c.conversion });
      result.mapsMigrated.push({ map: c.name, entries, added: c.conversion.added, removed: c.conversion.removed });
    }
    if (result.mapsReset.length || fs.existsSync(pendingDir)) {
      // deferred: the links keep the old programs and the old maps until commitPending
      fs.mkdirSync(path.join(pendingDir, 'maps'), { recursive: true });
      fs.mkdirSync(path.join(pendingDir, 'progs'), { recursive: true });
      for (const c of changed) {
        // the copy the old programs use; a pending takeover's own (older) copy wins
        const pin = path.join(pendingDir, 'maps', c.name);
        if (!fs.existsSync(pin)) c.old.pin(pin);
      }
      for (const { into } of migrated.values()) into.close();
      for (const [name, p] of progs) {
        const pin = path.join(pendingDir, 'progs', name);
        if (fs.existsSync(pin)) n.unpin(pin);
        p.pin(pin);
      }
      result.deferred = true;
      return result;
    }
    result.linksUpdated = updateLinks(root, oldByProgId, progs, result);
    // what the old programs wrote between the copy and their links' update
    for (const c of changed) {
      const m = migrated.get(c.name);
      if (m) await copyEntries(c.old, m.into, m.conversion, true);
    }
    for (const { into } of migrated.values()) into.close();
    // the program pins follow the links
    for (const [name, p] of progs) {
      const pin = path.join(progDir, name);
      if (fs.existsSync(pin)) n.unpin(pin);
      p.pin(pin);
    }
    writePinnedVersion(root, build);
  } finally {
    for (const p of progs.values()) p.close();
    for (const o of objs) o.close();
    for (const c of changed) c.old.close();
  }
  return result;
}

/**
 * Finish a deferred takeover (see the top of this file), once the maps are written: every link
 * moves to the pending program of its name, migrated maps catch up with what the old programs
 * wrote meanwhile, then the program pins, the version, and pending/ goes. Undefined when
 * nothing is pending.
 */
export async function commitPending(root: string, build: ContractVersion): Promise<Pick<ReplaceResult, 'linksUpdated' | 'linksLeft'> | undefined> {
  const pendingDir = path.join(root, PENDING_DIR);
  if (!fs.existsSync(pendingDir)) return undefined;
  const n = native();
  const progDir = path.join(root, 'progs');
  const names = fs.readdirSync(path.join(pendingDir, 'progs'));
  const oldByProgId = new Map<number, string>();
  pinnedProgIds(progDir, names, oldByProgId);
  const progs = new Map(names.map((name) => [name, n.openPinnedProgram(path.join(pendingDir, 'progs', name))]));
  const result = { linksUpdated: 0, linksLeft: 0 };
  try {
    result.linksUpdated = updateLinks(root, oldByProgId, progs, result);
    for (const name of fs.readdirSync(path.join(pendingDir, 'maps'))) {
      const old = n.openPinnedMap(path.join(pendingDir, 'maps', name));
      const into = n.openPinnedMap(path.join(root, name));
      try {
        const conversion = planConversion(old.layout(), into.layout());
        if (!('reason' in conversion)) await copyEntries(old, into, conversion, true);
      } finally {
        old.close();
        into.close();
      }
    }
    for (const [name, p] of progs) {
      const pin = path.join(progDir, name);
      if (fs.existsSync(pin)) n.unpin(pin);
      p.pin(pin);
    }
    writePinnedVersion(root, build);
    removeTree(pendingDir);
  } finally {
    for (const p of progs.values()) p.close();
  }
  return result;
}

/**
 * The build that is pinned starts again over a takeover it never saw finish: its links never
 * moved, so the old copies of the reset maps go back under their names and the pending programs
 * go. Returns the maps put back.
 */
export function abandonPending(root: string): string[] {
  const pendingDir = path.join(root, PENDING_DIR);
  if (!fs.existsSync(pendingDir)) return [];
  const n = native();
  const back: string[] = [];
  const mapsDir = path.join(pendingDir, 'maps');
  for (const name of fs.existsSync(mapsDir) ? fs.readdirSync(mapsDir) : []) {
    const old = n.openPinnedMap(path.join(mapsDir, name));
    try {
      const pin = path.join(root, name);
      if (fs.existsSync(pin)) n.unpin(pin);
      old.pin(pin);
      back.push(name);
    } finally {
      old.close();
    }
  }
  removeTree(pendingDir);
  return back;
}

/**
 * Copy `from`'s entries into `into`, converted; returns how many were written. The first pass
 * writes every entry; a catch-up pass only the keys `into` still lacks (what the old programs
 * added meanwhile; an array has every key, so it has no catch-up).
 */
async function copyEntries(from: BpfMap, into: BpfMap, conversion: Conversion, catchUp: boolean): Promise<number> {
  const isArray = into.type === 2; // BPF_MAP_TYPE_ARRAY
  if (catchUp && isArray) return 0;
  let todo = await from.dump();
  if (catchUp) {
    const present = new Set((await into.dump()).map(([k]) => k.toString('hex')));
    todo = todo.filter(([k]) => !present.has(k.toString('hex')));
  }
  if (!todo.length) return 0;
  await into.updateBatch(
    todo.map(([k]) => k),
    todo.map(([, v]) => conversion.convert(v)),
    isArray || !catchUp ? 'any' : 'noexist',
  );
  return todo.length;
}

/** bpf_link_update every pinned link whose program is one of the old pinned ones. */
function updateLinks(root: string, oldByProgId: ReadonlyMap<number, string>, progs: ReadonlyMap<string, BpfProgram>, result: { linksLeft: number }): number {
  const dir = path.join(root, 'links');
  if (!fs.existsSync(dir)) return 0;
  let updated = 0;
  for (const f of fs.readdirSync(dir)) {
    const link = native().openPinnedLink(path.join(dir, f));
    try {
      const name = oldByProgId.get(link.info().progId);
      const prog = name ? progs.get(name) : undefined;
      if (!prog) {
        result.linksLeft++;
        continue;
      }
      try {
        link.update(prog);
        updated++;
      } catch (e) {
        // a link whose interface is gone cannot take a program; the reconciler removes its pin
        if (!isBpfError(e) || !['ENOLINK', 'EINVAL', 'ENOENT', 'E67'].includes(e.code)) throw e;
        result.linksLeft++;
      }
    } finally {
      link.close();
    }
  }
  return updated;
}
