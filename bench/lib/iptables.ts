/**
 * Docker's iptables path for the suite: the reference rules (test/lib/reference.ts),
 * plus N other published ports as Docker makes them (one DNAT rule per port in the
 * DOCKER chain, before the measured ones, as if those containers had started first),
 * the time to program N ports, and conntrack clean-up scoped to the suite's flows.
 */
import { spawn } from 'node:child_process';
import type { BerthConfig } from '../../src/domain/config';
import { run } from '../../src/platform/exec';
import { applyReference, dockerRules } from '../../test/lib/reference';

export function restore(text: string, args: string[] = ['--noflush', '--wait']): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const p = spawn('iptables-restore', args, { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`iptables-restore failed (exit ${code}): ${err.trim().slice(0, 500)}`))));
    p.stdin.end(text);
  });
}

/** Docker's DNAT rule for one more published port; it points at an unused container address. */
export function otherRule(chain: string, hostPort: number, unusedIp: string): string {
  return `-A ${chain} -p tcp -m tcp --dport ${hostPort} -j DNAT --to-destination ${unusedIp}:80`;
}

/** The host ports of the N other published ports (below the suite's measured ports). */
export function otherPorts(n: number): number[] {
  return Array.from({ length: n }, (_, i) => 1024 + i);
}

export interface IptablesPath {
  undo(): Promise<void>;
  /** seconds iptables-restore took to add the other ports */
  otherSeconds: number;
}

/**
 * Install Docker's rules for cfg, then N other published ports before the
 * config's own DNAT rules (one iptables-restore transaction).
 */
export async function installDocker(cfg: BerthConfig, o: { uplinks: string[]; suffix: string; others: number; unusedIp: string }): Promise<IptablesPath> {
  const undo = await applyReference(cfg, { uplinks: o.uplinks, chainSuffix: o.suffix });
  let otherSeconds = 0;
  if (o.others > 0) {
    try {
      const chain = `DOCKER-${o.suffix}`;
      const own = dockerRules(cfg, { uplinks: o.uplinks, chainSuffix: o.suffix }).nat.filter((l) => l.startsWith(`-A ${chain} `));
      const text = [
        '*nat',
        ...own.map((l) => `-D${l.slice(2)}`),
        ...otherPorts(o.others).map((p) => otherRule(chain, p, o.unusedIp)),
        ...own,
        'COMMIT',
        '',
      ].join('\n');
      const t0 = process.hrtime.bigint();
      await restore(text);
      otherSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    } catch (e) {
      await undo().catch(() => undefined);
      throw e;
    }
  }
  return { undo, otherSeconds };
}

/** Delete the kernel conntrack entries of the suite's flows (never `conntrack -F`). */
export async function forgetFlows(filters: string[][]): Promise<void> {
  for (const f of filters) await run('conntrack', ['-D', ...f], { timeoutMs: 60000 }).catch(() => undefined);
}

/** Time to program N published ports with iptables: one iptables-restore, and one `iptables` call per port. */
export async function programTimes(o: { suffix: string; n: number; perCall: number; unusedIp: string }): Promise<{ restoreSeconds: number; perCallSeconds: number; perCallMeasured: number }> {
  const chain = `BNPROG-${o.suffix}`;
  const clean = async () => {
    await run('iptables', ['-w', '-t', 'nat', '-F', chain]).catch(() => undefined);
    await run('iptables', ['-w', '-t', 'nat', '-X', chain]).catch(() => undefined);
  };
  await clean();
  try {
    await run('iptables', ['-w', '-t', 'nat', '-N', chain]);
    const text = ['*nat', ...otherPorts(o.n).map((p) => otherRule(chain, p, o.unusedIp)), 'COMMIT', ''].join('\n');
    const t0 = process.hrtime.bigint();
    await restore(text);
    const restoreSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    await run('iptables', ['-w', '-t', 'nat', '-F', chain]);
    // dockerd adds each rule with its own iptables call
    const k = Math.min(o.perCall, o.n);
    if (k <= 0) return { restoreSeconds, perCallSeconds: NaN, perCallMeasured: 0 };
    const t1 = process.hrtime.bigint();
    for (const p of otherPorts(k)) await run('iptables', ['-w', '-t', 'nat', ...otherRule(chain, p, o.unusedIp).split(' ')]);
    const perCallMeasured = Number(process.hrtime.bigint() - t1) / 1e9;
    return { restoreSeconds, perCallSeconds: (perCallMeasured * o.n) / k, perCallMeasured };
  } finally {
    await clean();
  }
}
