/**
 * Where the XDP drop path pays (issue 14 item 4): only on interfaces whose
 * driver runs XDP natively. Elsewhere it is not attached: generic (skb) XDP
 * does the work TC does, later and twice; a veth runs XDP "natively" but then
 * gives up GRO for the packets it carries, which halves TCP throughput; a
 * bridge or another virtual device has no driver mode. berth_up_in (TC)
 * takes the same drops (container addresses and loopback publishes from
 * outside: bpf/lib/guard.h, counted), so not attaching XDP never fails open.
 *
 * The driver is the one sysfs names for the interface's device
 * (/sys/class/net/IF/device/driver, what ETHTOOL_GDRVINFO reports for a NIC);
 * a virtual interface has no device.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { log } from './log';

/** NIC drivers with a native (driver-mode) XDP hook in Linux 6.x */
export const NATIVE_XDP_DRIVERS: ReadonlySet<string> = new Set([
  'atlantic', 'bnxt_en', 'cpsw', 'dpaa2-eth', 'ena', 'enetc', 'fec', 'fsl_dpaa_eth', 'gve', 'hv_netvsc',
  'i40e', 'ice', 'idpf', 'igb', 'igc', 'ixgbe', 'ixgbevf', 'lan966x-switch', 'mlx4_core', 'mlx5_core',
  'mvneta', 'mvpp2', 'netsec', 'nfp', 'nicvf', 'octeontx2-nicpf', 'octeontx2-nicvf', 'qede', 'rvu_nicpf',
  'rvu_nicvf', 'sfc', 'stmmaceth', 'tsnep', 'virtio_net', 'xennet',
]);

export interface XdpChoice {
  ifname: string;
  mode: 'native' | 'none';
  /** the device's driver, or 'virtual (veth)', 'virtual (bridge)', ... */
  driver: string;
  why: string;
}

function virtualKind(ifname: string): string {
  const base = `/sys/class/net/${ifname}`;
  if (fs.existsSync(path.join(base, 'bridge'))) return 'bridge';
  try {
    const dt = /^DEVTYPE=(\S+)$/m.exec(fs.readFileSync(path.join(base, 'uevent'), 'utf8'));
    if (dt) return dt[1];
  } catch {
    /* gone */
  }
  // a veth's iflink is its peer's ifindex (any other virtual device without a DEVTYPE: its own)
  try {
    const iflink = fs.readFileSync(path.join(base, 'iflink'), 'utf8').trim();
    const ifindex = fs.readFileSync(path.join(base, 'ifindex'), 'utf8').trim();
    if (iflink !== ifindex) return 'veth';
  } catch {
    /* gone */
  }
  return 'virtual';
}

/** Whether the XDP drop path is worth attaching on ifname, and why (reads sysfs only). */
export function xdpChoice(ifname: string): XdpChoice {
  let driver: string | undefined;
  try {
    driver = path.basename(fs.readlinkSync(`/sys/class/net/${ifname}/device/driver`));
  } catch {
    driver = undefined;
  }
  if (driver === undefined) {
    const kind = virtualKind(ifname);
    const why =
      kind === 'veth'
        ? 'veth: XDP on a veth costs GRO (TCP throughput halves); the tc program takes the same drops'
        : `${kind}: no native XDP on a virtual device (generic XDP would only repeat the tc program's drops, later)`;
    return { ifname, mode: 'none', driver: `virtual (${kind})`, why };
  }
  if (NATIVE_XDP_DRIVERS.has(driver)) return { ifname, mode: 'native', driver, why: `driver ${driver} has native XDP` };
  return { ifname, mode: 'none', driver, why: `driver ${driver} is not known to have native XDP (generic XDP would only repeat the tc program's drops, later)` };
}

const said = new Set<string>();
/** xdpChoice, and the reason XDP is left off said once per interface and reason in the log. */
export function xdpChoiceLogged(ifname: string): XdpChoice {
  const c = xdpChoice(ifname);
  const k = `${ifname}\u0000${c.why}`;
  if (c.mode === 'none' && !said.has(k)) {
    said.add(k);
    log('info', `xdp: not attached on ${ifname}: ${c.why}`, { ifname, driver: c.driver });
  }
  return c;
}
