/** The floor: two namespaces on a bare veth pair. Nothing on one machine beats it. */
import { run } from '../../src/exec';

export interface Floor {
  clientNs: string;
  serverNs: string;
  serverAddr: string;
  teardown(): Promise<void>;
}

export async function makeFloor(tag: string, third: number): Promise<Floor> {
  const a = `${tag}-fa`;
  const b = `${tag}-fb`;
  const va = `${tag}fa`.slice(0, 15);
  const vb = `${tag}fb`.slice(0, 15);
  const teardown = async () => {
    for (const ns of [a, b]) await run('ip', ['netns', 'del', ns]).catch(() => undefined);
  };
  try {
    await run('ip', ['netns', 'add', a]);
    await run('ip', ['netns', 'add', b]);
    await run('ip', ['link', 'add', va, 'netns', a, 'type', 'veth', 'peer', 'name', vb, 'netns', b]);
    await run('ip', ['-n', a, 'addr', 'add', `10.199.${third}.1/24`, 'dev', va]);
    await run('ip', ['-n', b, 'addr', 'add', `10.199.${third}.2/24`, 'dev', vb]);
    for (const [ns, v] of [[a, va], [b, vb]]) {
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      await run('ip', ['-n', ns, 'link', 'set', v, 'up']);
    }
  } catch (e) {
    await teardown();
    throw e;
  }
  return { clientNs: a, serverNs: b, serverAddr: `10.199.${third}.2`, teardown };
}
