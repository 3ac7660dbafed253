// The socket hooks (cgroup_sock.bpf.c) on real sockets: BPF_PROG_TEST_RUN
// does not run cgroup sock_addr programs, so the test attaches them (with
// bpftool) to a cgroup of its own under the cgroup v2 mount and runs small
// python clients inside it. The "container" is a server of this process on
// 127.0.0.1:<random port>; the published port is what the client dials.
import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { promisify } from 'node:util';
import { Dataplane } from '../../src/dataplane';
import {
  CGROUP_SOCK_OBJECT,
  MapName,
  PublishFlags,
  SockProgName,
  globalStatsCodec,
  publishKeyCodec,
  publishValueCodec,
} from '../../src/contract';
import { bpfObjectPath, native } from '../../src/native';
import { findCgroup2 } from '../../src/cgroup';

const run = promisify(execFile);
// wherever this host mounts cgroup v2 (pure /sys/fs/cgroup, hybrid .../unified)
const CG2 = findCgroup2(fs.readFileSync('/proc/self/mountinfo', 'utf8'))?.path ?? '/nonexistent-cgroup2';
const cgroup = `${CG2}/berth-test-${process.pid}`;
const pinRoot = `/sys/fs/bpf/berth-test-cgroup-${process.pid}`;
const TCP_PUB = 20000 + (process.pid % 10000);
const UDP_PUB = TCP_PUB + 1;

function hostNetnsCookie(): bigint {
  const out = execFileSync('python3', ['-c', "import socket,struct;s=socket.socket();print(struct.unpack('<Q',s.getsockopt(socket.SOL_SOCKET,71,8))[0])"], { encoding: 'utf8' });
  return BigInt(out.trim());
}

const CLIENT = `
import os, socket, sys
open(sys.argv[1] + '/cgroup.procs', 'w').write(str(os.getpid()))
kind, host, port = sys.argv[2], sys.argv[3], int(sys.argv[4])
try:
    if kind == 'tcp':
        s = socket.create_connection((host, port), timeout=3)
        print('tcp', s.recv(100).decode())
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3)
        s.sendto(b'ping', (host, port))
        data, addr = s.recvfrom(100)
        print('udp', data.decode(), addr[0], addr[1])
except Exception as e:
    print('error', type(e).__name__)
`;

const supported = fs.existsSync(`${CG2}/cgroup.procs`) && fs.existsSync('/usr/sbin/bpftool');

t.test('host sockets to published ports are translated at connect/sendmsg/recvmsg', { skip: !supported && 'no cgroup v2 mount or bpftool' }, async (t) => {
  Dataplane.reset(pinRoot);
  fs.mkdirSync(`${pinRoot}/progs`, { recursive: true });
  fs.mkdirSync(cgroup, { recursive: true });
  const cookie = Buffer.alloc(8);
  cookie.writeBigUInt64LE(hostNetnsCookie());
  const obj = native().openObject(bpfObjectPath(CGROUP_SOCK_OBJECT), { pinRoot, rodata: { berth_host_netns_cookie: cookie } });
  await obj.load();
  const attach: Array<[string, string]> = [
    ['connect4', SockProgName.CONNECT4],
    ['sendmsg4', SockProgName.SENDMSG4],
    ['recvmsg4', SockProgName.RECVMSG4],
  ];
  for (const [, name] of attach) obj.program(name).pin(`${pinRoot}/progs/${name}`);
  t.teardown(() => {
    for (const [type, name] of attach) {
      try {
        execFileSync('bpftool', ['cgroup', 'detach', cgroup, type, 'pinned', `${pinRoot}/progs/${name}`], { stdio: 'ignore' });
      } catch {
        /* not attached */
      }
    }
    try {
      fs.rmdirSync(cgroup);
    } catch {
      /* ignore */
    }
    obj.close();
    Dataplane.reset(pinRoot);
  });
  for (const [type, name] of attach) execFileSync('bpftool', ['cgroup', 'attach', cgroup, type, 'pinned', `${pinRoot}/progs/${name}`]);

  const tcpServer = net.createServer((s) => s.end('from-container'));
  await new Promise<void>((res) => tcpServer.listen(0, '127.0.0.1', res));
  const udpServer = dgram.createSocket('udp4');
  udpServer.on('message', (msg, rinfo) => udpServer.send(Buffer.from('pong'), rinfo.port, rinfo.address));
  await new Promise<void>((res) => udpServer.bind(0, '127.0.0.1', res));
  t.teardown(() => {
    tcpServer.close();
    udpServer.close();
  });
  const tcpPort = (tcpServer.address() as net.AddressInfo).port;
  const udpPort = udpServer.address().port;

  const publish = native().openPinnedMap(`${pinRoot}/${MapName.PUBLISH}`);
  const statsMap = native().openPinnedMap(`${pinRoot}/${MapName.STATS}`);
  t.teardown(() => [publish, statsMap].forEach((m) => m.close()));
  const val = (port: number) => publishValueCodec.encode({ addr: '127.0.0.1', port, flags: 0, ifindex: 0, network_id: 1, mac: '00:00:00:00:00:00' });
  // -p 127.0.0.1:TCP_PUB:80 (loopback only) and -p UDP_PUB:53/udp (any address)
  publish.update(publishKeyCodec.encode({ host_addr: '127.0.0.1', host_port: TCP_PUB, proto: 6 }), publishValueCodec.encode({ addr: '127.0.0.1', port: tcpPort, flags: PublishFlags.LOOPBACK, ifindex: 0, network_id: 1, mac: '00:00:00:00:00:00' }));
  publish.update(publishKeyCodec.encode({ host_addr: '0.0.0.0', host_port: UDP_PUB, proto: 17 }), val(udpPort));

  const client = async (args: string[], netns = false): Promise<string> => {
    const argv = ['-c', CLIENT, cgroup, ...args];
    const r = netns
      ? await run('unshare', ['-n', 'sh', '-c', 'ip link set lo up && exec python3 "$@"', 'sh', ...argv])
      : await run('python3', argv);
    return r.stdout.trim();
  };
  const sockTranslations = (): bigint => {
    const b = statsMap.lookup(Buffer.alloc(4))!;
    const stride = Math.ceil(globalStatsCodec.size / 8) * 8;
    let n = 0n;
    for (let i = 0; i < native().possibleCpus(); i++) n += globalStatsCodec.decodeFrom(b, i * stride).sock_translations;
    return n;
  };

  t.equal(await client(['tcp', '127.0.0.1', String(TCP_PUB)]), 'tcp from-container', 'TCP connect to 127.0.0.1:published reaches the container');
  t.equal(await client(['tcp', '127.0.0.3', String(TCP_PUB)]), 'tcp from-container', 'any 127.x matches a loopback publish');
  t.equal(await client(['udp', '127.0.0.1', String(UDP_PUB)]), `udp pong 127.0.0.1 ${UDP_PUB}`, 'UDP: reply appears to come from the published address and port');
  t.ok(sockTranslations() >= 3n, 'counted in sock_translations');
  t.equal(await client(['tcp', '127.0.0.1', String(TCP_PUB + 2)]), 'error ConnectionRefusedError', 'an unpublished port is left alone');
  t.equal(await client(['tcp', '127.0.0.1', String(TCP_PUB)], true), 'error ConnectionRefusedError', "a process in another network namespace is not translated");
});
