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
import { Dataplane } from '../../src/platform/dataplane';
import {
  CGROUP_SOCK_OBJECT,
  MapName,
  PublishFlags,
  SockProgName,
  globalStatsCodec,
  publishKeyCodec,
  publishValueCodec,
} from '../../src/platform/contract';
import { bpfObjectPath, native } from '../../src/platform/native';
import { findCgroup2 } from '../../src/platform/cgroup';

const run = promisify(execFile);
// wherever this host mounts cgroup v2 (pure /sys/fs/cgroup, hybrid .../unified)
const CG2 = findCgroup2(fs.readFileSync('/proc/self/mountinfo', 'utf8'))?.path ?? '/nonexistent-cgroup2';
const cgroup = `${CG2}/berth-test-${process.pid}`;
const pinRoot = `/sys/fs/bpf/berth-test-cgroup-${process.pid}`;
const TCP_PUB = 20000 + (process.pid % 10000);
const UDP_PUB = TCP_PUB + 1;
const TCP6_PUB = TCP_PUB + 2; // [::1]:TCP6_PUB (loopback only)
const UDP6_PUB = TCP_PUB + 3; // [::]:UDP6_PUB/udp (any IPv6 address)

function hostNetnsCookie(): bigint {
  const out = execFileSync('python3', ['-c', "import socket,struct;s=socket.socket();print(struct.unpack('<Q',s.getsockopt(socket.SOL_SOCKET,71,8))[0])"], { encoding: 'utf8' });
  return BigInt(out.trim());
}

const CLIENT = `
import os, socket, sys
open(sys.argv[1] + '/cgroup.procs', 'w').write(str(os.getpid()))
kind, host, port = sys.argv[2], sys.argv[3], int(sys.argv[4])
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
try:
    if kind == 'tcp':
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(3)
        s.connect((host, port))
        print('tcp', s.recv(100).decode())
    else:
        s = socket.socket(fam, socket.SOCK_DGRAM)
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
    ['connect6', SockProgName.CONNECT6],
    ['sendmsg6', SockProgName.SENDMSG6],
    ['recvmsg6', SockProgName.RECVMSG6],
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

  // IPv6: the "container" serves on [::1]; -p [::1]:TCP6_PUB:80 and -p [::]:UDP6_PUB:53/udp
  const tcp6 = net.createServer((s) => s.end('from-container-v6'));
  await new Promise<void>((res) => tcp6.listen(0, '::1', res));
  const udp6 = dgram.createSocket('udp6');
  udp6.on('message', (msg, rinfo) => udp6.send(Buffer.from('pong6'), rinfo.port, rinfo.address));
  await new Promise<void>((res) => udp6.bind(0, '::1', res));
  t.teardown(() => {
    tcp6.close();
    udp6.close();
  });
  const v6val = (port: number, flags: number) => publishValueCodec.encode({ addr: '::1', port, flags, ifindex: 0, network_id: 1, mac: '00:00:00:00:00:00' });
  publish.update(publishKeyCodec.encode({ host_addr: '::1', host_port: TCP6_PUB, proto: 6 }), v6val((tcp6.address() as net.AddressInfo).port, PublishFlags.LOOPBACK));
  publish.update(publishKeyCodec.encode({ host_addr: '::', host_port: UDP6_PUB, proto: 17 }), v6val(udp6.address().port, 0));
  const before = sockTranslations();
  t.equal(await client(['tcp', '::1', String(TCP6_PUB)]), 'tcp from-container-v6', 'TCP connect to [::1]:published reaches the container (connect6)');
  t.equal(await client(['udp', '::1', String(UDP6_PUB)]), `udp pong6 ::1 ${UDP6_PUB}`, 'UDP over IPv6: the reply appears to come from the published port (sendmsg6, recvmsg6)');
  t.equal(await client(['tcp', '::1', String(TCP_PUB)]), 'error ConnectionRefusedError', 'an IPv4 publish is not an IPv6 one');
  t.equal(await client(['tcp', '::1', String(TCP6_PUB + 10)]), 'error ConnectionRefusedError', 'an unpublished IPv6 port is left alone');
  // a dual-stack socket dialing a v4-mapped address follows the IPv4 publishes
  t.equal(await client(['tcp', '::ffff:127.0.0.1', String(TCP_PUB)]), 'tcp from-container', 'v4-mapped 127.0.0.1 on an IPv6 socket reaches the IPv4 publish');
  t.equal(await client(['udp', '::ffff:127.0.0.1', String(UDP_PUB)]), `udp pong ::ffff:127.0.0.1 ${UDP_PUB}`, 'v4-mapped UDP: the reply is restored as sent');
  t.ok(sockTranslations() - before >= 4n, 'the IPv6 translations are counted');
  t.equal(await client(['tcp', '::1', String(TCP6_PUB)], true), 'error ConnectionRefusedError', 'IPv6: another network namespace is not translated');
});
