/**
 * The dataplane's kernel objects and where they are pinned: loading the BPF
 * object (or finding it pinned), the map handles, and attaching the veth
 * programs to interfaces. No policy: the reconciler decides what goes where.
 *
 * Pin layout under the pin root (default /sys/fs/bpf/berth):
 *   <root>/<map name>               maps (libbpf LIBBPF_PIN_BY_NAME)
 *   <root>/progs/<program name>     programs
 *   <root>/links/<ifindex>-<dir>    tcx links, one per hook
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BpfLink, BpfMap, BpfProgram, TcDirection, bpfObjectPath, isBpfError, native } from './native';
import { MapName, ProgName, TC_VETH_OBJECT } from './contract';

export const DEFAULT_PIN_ROOT = '/sys/fs/bpf/berth';
export const BPFFS = '/sys/fs/bpf';

export interface DataplaneOptions {
  pinRoot: string;
  /** load-time setting berth_fast_path (default true) */
  fastPath?: boolean;
  /** max endpoints (sizes the endpoint and counter maps); default 4096 */
  maxEndpoints?: number;
}

export interface Maps {
  epByIfindex: BpfMap;
  epByIp: BpfMap;
  counters: BpfMap;
  netMeta: BpfMap;
  epMeta: BpfMap;
}

export interface Programs {
  ingress: BpfProgram;
  egress: BpfProgram;
}

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
  private constructor(
    readonly pinRoot: string,
    readonly maps: Maps,
    readonly progs: Programs,
    readonly cpus: number,
  ) {}

  static isPinned(pinRoot: string): boolean {
    return fs.existsSync(path.join(pinRoot, 'progs', ProgName.VETH_INGRESS));
  }

  /** Open what is pinned; throws when nothing is. */
  static openPinned(pinRoot: string): Dataplane {
    const root = validatePinRoot(pinRoot);
    if (!Dataplane.isPinned(root)) throw new Error(`no berth dataplane pinned at ${root}`);
    const n = native();
    const m = (name: string): BpfMap => n.openPinnedMap(path.join(root, name));
    const maps: Maps = {
      epByIfindex: m(MapName.EP_BY_IFINDEX),
      epByIp: m(MapName.EP_BY_IP),
      counters: m(MapName.COUNTERS),
      netMeta: m(MapName.NET_META),
      epMeta: m(MapName.EP_META),
    };
    const progs: Programs = {
      ingress: n.openPinnedProgram(path.join(root, 'progs', ProgName.VETH_INGRESS)),
      egress: n.openPinnedProgram(path.join(root, 'progs', ProgName.VETH_EGRESS)),
    };
    return new Dataplane(root, maps, progs, n.possibleCpus());
  }

  /** Open the pinned dataplane, or load and pin it when there is none. */
  static async openOrLoad(opts: DataplaneOptions): Promise<Dataplane> {
    ensureBpffs();
    const root = validatePinRoot(opts.pinRoot);
    if (Dataplane.isPinned(root)) return Dataplane.openPinned(root);
    mkdirp(root);
    const n = native();
    const maxEp = opts.maxEndpoints ?? 4096;
    const obj = n.openObject(bpfObjectPath(TC_VETH_OBJECT), {
      pinRoot: root,
      rodata: { berth_fast_path: Buffer.from([opts.fastPath === false ? 0 : 1]) },
      maxEntries: {
        [MapName.EP_BY_IFINDEX]: maxEp,
        [MapName.EP_BY_IP]: maxEp,
        [MapName.COUNTERS]: maxEp * 2,
        [MapName.EP_META]: maxEp,
      },
    });
    try {
      await obj.load();
      mkdirp(path.join(root, 'progs'));
      for (const name of Object.values(ProgName)) {
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
    return Dataplane.openPinned(root);
  }

  private linkPin(ifindex: number, dir: TcDirection): string {
    return path.join(this.pinRoot, 'links', `${ifindex}-${dir}`);
  }

  /** Attachments recorded under the pin root. */
  attachments(): Attachment[] {
    const dir = path.join(this.pinRoot, 'links');
    if (!fs.existsSync(dir)) return [];
    const out: Attachment[] = [];
    for (const f of fs.readdirSync(dir)) {
      const m = /^(\d+)-(ingress|egress)$/.exec(f);
      if (!m) continue;
      const pin = path.join(dir, f);
      const link = native().openPinnedLink(pin);
      try {
        const info = link.info();
        out.push({
          ifindex: Number(m[1]),
          direction: m[2] as TcDirection,
          linkId: info.id,
          progId: info.progId,
          pin,
          live: info.ifindex === Number(m[1]),
        });
      } finally {
        link.close();
      }
    }
    return out.sort((a, b) => a.ifindex - b.ifindex || a.direction.localeCompare(b.direction));
  }

  /**
   * Attach both veth programs to an interface; idempotent. Returns the
   * directions that were newly attached (for rollback).
   */
  attachVeth(ifindex: number): TcDirection[] {
    mkdirp(path.join(this.pinRoot, 'links'));
    const made: TcDirection[] = [];
    try {
      for (const [dir, key] of HOOKS) {
        const pin = this.linkPin(ifindex, dir);
        if (fs.existsSync(pin)) {
          const existing = native().openPinnedLink(pin);
          try {
            const info = existing.info();
            if (info.ifindex === ifindex && info.progId === this.progs[key].id) continue;
            existing.detach();
          } catch (e) {
            if (!isBpfError(e)) throw e;
          } finally {
            existing.close();
          }
          native().unpin(pin);
        }
        let link: BpfLink | undefined;
        try {
          link = native().attachTcx(this.progs[key], ifindex, dir);
          link.pin(pin);
          made.push(dir);
        } finally {
          link?.close();
        }
      }
    } catch (e) {
      for (const dir of made) this.detachHook(ifindex, dir);
      throw e;
    }
    return made;
  }

  /** Detach one hook (no-op when not attached). */
  detachHook(ifindex: number, dir: TcDirection): boolean {
    const pin = this.linkPin(ifindex, dir);
    if (!fs.existsSync(pin)) return false;
    const link = native().openPinnedLink(pin);
    try {
      try {
        link.detach();
      } catch (e) {
        // a link whose interface is gone is already detached
        if (!isBpfError(e) || !['ENOLINK', 'EINVAL', 'ENOENT', 'E67'].includes(e.code)) throw e;
      }
    } finally {
      link.close();
    }
    native().unpin(pin);
    return true;
  }

  detachVeth(ifindex: number): void {
    for (const [dir] of HOOKS) this.detachHook(ifindex, dir);
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
