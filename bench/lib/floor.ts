/**
 * The floor: two namespaces on a bare veth pair. Nothing on one machine beats it.
 * The pair is dual stack (fd92:X::1 and ::2/64, no DAD): the IPv6 scenarios'
 * floor is the same veth pair dialled over IPv6 (serverAddr6).
 */
import { run } from '../../src/platform/exec';

export interface Floor {
  clientNs: string;
  serverNs: string;
  serverAddr: string;
  serverAddr6: string;
  /** IPv4 or IPv6 packets the client namespace has sent so far (/proc/net/snmp, snmp6) */
  sentPackets(family: 4 | 6): Promise<number>;
  teardown(): Promise<void>;
}

export async function makeFloor(tag: string, third: number, at: { v4?: string; v6?: string } = {}): Promise<Floor> {
  const a = `${tag}-fa`;
  const b = `${tag}-fb`;
  const va = `${tag}fa`.slice(0, 15);
  const vb = `${tag}fb`.slice(0, 15);
  const p6 = `${at.v6 ?? `fd92:${third.toString(16)}`}::`;
  const p4 = at.v4 ?? `10.199.${third}`;
  const teardown = async () => {
    for (const ns of [a, b]) await run('ip', ['netns', 'del', ns]).catch(() => undefined);
  };
  try {
    await run('ip', ['netns', 'add', a]);
    await run('ip', ['netns', 'add', b]);
    await run('ip', ['link', 'add', va, 'netns', a, 'type', 'veth', 'peer', 'name', vb, 'netns', b]);
    await run('ip', ['-n', a, 'addr', 'add', `${p4}.1/24`, 'dev', va]);
    await run('ip', ['-n', b, 'addr', 'add', `${p4}.2/24`, 'dev', vb]);
    await run('ip', ['-n', a, '-6', 'addr', 'add', `${p6}1/64`, 'dev', va, 'nodad']);
    await run('ip', ['-n', b, '-6', 'addr', 'add', `${p6}2/64`, 'dev', vb, 'nodad']);
    for (const [ns, v] of [[a, va], [b, vb]]) {
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      await run('ip', ['-n', ns, 'link', 'set', v, 'up']);
    }
  } catch (e) {
    await teardown();
    throw e;
  }
  const sentPackets = async (family: 4 | 6): Promise<number> => {
    if (family === 6) {
      const { stdout } = await run('ip', ['netns', 'exec', a, 'cat', '/proc/net/snmp6']);
      const m = /^Ip6OutRequests\s+(\d+)/m.exec(stdout);
      if (!m) throw new Error('no Ip6OutRequests in /proc/net/snmp6');
      return Number(m[1]);
    }
    const { stdout } = await run('ip', ['netns', 'exec', a, 'cat', '/proc/net/snmp']);
    const [names, values] = stdout.split('\n').filter((l) => l.startsWith('Ip: '));
    const i = names.split(/\s+/).indexOf('OutRequests');
    return Number(values.split(/\s+/)[i]);
  };
  return { clientNs: a, serverNs: b, serverAddr: `${p4}.2`, serverAddr6: `${p6}2`, sentPackets, teardown };
}
