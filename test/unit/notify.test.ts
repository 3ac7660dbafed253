// sd_notify (src/platform/notify.ts, native/notify.cc): the datagrams a unix datagram socket bound
// by a python3 child receives, and `berth run`'s READY=1 after its first reconcile on a tiny
// standalone topology (one network, one container), STOPPING=1 on stop.
//
// Names blfn*, subnet 10.65.250.0/24, pin root /sys/fs/bpf/berth-lf-test-n<pid>.
import t from 'tap';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { sdNotify } from '../../src/platform/notify';
import { native } from '../../src/platform/native';
import { Dataplane } from '../../src/platform/dataplane';
import { parseConfig } from '../../src/domain/config';
import { hostVethName } from '../../src/domain/names';
import { startDaemon } from '../../src/engine/daemon';
import { forceDown } from '../lib/topo';

const id = process.pid % 1000;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-blfn-'));
const children: ChildProcess[] = [];
t.teardown(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A python3 child bound to a unix datagram socket at `addr` ('@name': abstract); its datagrams, one per line of JSON. */
function listener(addr: string): Promise<{ got: string[]; next: (n: number) => Promise<string[]> }> {
  const py = `
import socket, sys, json
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
a = sys.argv[1]
s.bind('\\0' + a[1:] if a.startswith('@') else a)
print('bound', flush=True)
while True:
    d = s.recv(4096)
    print(json.dumps(d.decode()), flush=True)
`;
  const c = spawn('python3', ['-c', py, addr], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(c);
  const got: string[] = [];
  let buf = '';
  let waiters: Array<() => void> = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`listener at ${addr} did not bind in 20 s`)), 20000);
    c.on('exit', (code) => reject(new Error(`listener exited ${code}`)));
    c.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line === 'bound') {
          clearTimeout(timer);
          resolve({
            got,
            next: (n) =>
              new Promise((res, rej) => {
                const tm = setTimeout(() => rej(new Error(`${n} datagrams did not come in 300 s; got ${JSON.stringify(got)}`)), 300000);
                const check = (): void => {
                  if (got.length >= n) {
                    clearTimeout(tm);
                    res(got.slice());
                  } else waiters.push(check);
                };
                check();
              }),
          });
        } else {
          got.push(JSON.parse(line) as string);
          const w = waiters;
          waiters = [];
          for (const f of w) f();
        }
      }
    });
  });
}

t.test('sdNotify: nothing without NOTIFY_SOCKET; one datagram to a path or an abstract name', async (t) => {
  t.equal(sdNotify('READY=1', {}), false, 'no NOTIFY_SOCKET: nothing sent');
  const sock = path.join(dir, 'notify.sock');
  const l = await listener(sock);
  t.equal(sdNotify('READY=1', { NOTIFY_SOCKET: sock }), true);
  t.same(await l.next(1), ['READY=1\n']);
  const abs = `@berth-blfn-${process.pid}`;
  const la = await listener(abs);
  t.equal(sdNotify('STATUS=x\nREADY=1\n', { NOTIFY_SOCKET: abs }), true);
  t.same(await la.next(1), ['STATUS=x\nREADY=1\n'], 'an abstract name (leading @)');
  t.equal(native().sendUnixDatagram(sock, Buffer.from('X=1')), 3, 'the native call returns the bytes sent');
  t.throws(() => sdNotify('READY=1', { NOTIFY_SOCKET: path.join(dir, 'nobody.sock') }), { code: 'ENOENT', op: 'unixDatagram.send' }, 'no such socket: an error with its code and op');
  t.throws(() => native().sendUnixDatagram('x'.repeat(200), Buffer.from('a')), { code: 'EINVAL' }, 'a path too long for sun_path');
});

t.test('berth run: READY=1 after the first reconcile, STOPPING=1 on stop', async (t) => {
  const pinRoot = `/sys/fs/bpf/berth-lf-test-n${id}`;
  const tag = `blfn${id}`;
  const text = [
    'networks:',
    `  - name: ${tag}-n`,
    '    subnet: 10.65.250.0/24',
    `    bridge: ${tag}br`,
    'containers:',
    `  - name: ${tag}-c`,
    `    network: ${tag}-n`,
    '    ip: 10.65.250.10',
    'uplinks: []',
    'interfaces: []',
    '',
  ].join('\n');
  const cfgPath = path.join(dir, 'topo.yaml');
  fs.writeFileSync(cfgPath, text);
  const cfg = parseConfig(text, cfgPath);
  t.teardown(() => forceDown(cfg, pinRoot, { netns: [`${tag}-c`], links: [hostVethName(`${tag}-c`), `${tag}br`] }));
  const sock = path.join(dir, 'run.sock');
  const l = await listener(sock);
  const attachedAtReady: number[] = [];
  // the moment READY=1 arrives, what is attached (the first reconcile's hooks)
  const ready = l.next(1).then(() => {
    const dp = Dataplane.openPinned(pinRoot);
    try {
      attachedAtReady.push(...dp.attachments().map((a) => a.ifindex));
    } finally {
      dp.close();
    }
  });
  ready.catch(() => undefined); // awaited below; a start that fails is the failure reported
  const saved = process.env.NOTIFY_SOCKET;
  process.env.NOTIFY_SOCKET = sock;
  let d: Awaited<ReturnType<typeof startDaemon>> | undefined;
  try {
    d = await startDaemon({ configPath: cfgPath, pinRoot, metrics: '127.0.0.1:0', intervalMs: 60000, startCommands: false, socketHooks: { available: false, reason: 'not in this test' } });
    await ready;
    t.same(l.got, ['READY=1\n'], 'READY=1, once');
    const veth = fs.readFileSync(`/sys/class/net/${hostVethName(`${tag}-c`)}/ifindex`, 'utf8').trim();
    t.ok(attachedAtReady.includes(Number(veth)), `the container's veth (ifindex ${veth}) was attached when READY=1 came: ${attachedAtReady.join(' ')}`);
    await d.stop();
    d = undefined;
    t.same(await l.next(2), ['READY=1\n', 'STOPPING=1\n'], 'STOPPING=1 on stop');
  } finally {
    await d?.stop();
    if (saved === undefined) delete process.env.NOTIFY_SOCKET;
    else process.env.NOTIFY_SOCKET = saved;
  }
});
