// Docker mode's IPv6 half (issue 12) against a live dual-stack dockerd: a
// private daemon (test/lib/dockerd.ts, ipv6 option: --ipv6
// --fixed-cidr-v6 fd89:d::/64 on the default bridge bv6d0, ip6tables off)
// with `docker network create --ipv6` networks and containers publishing in
// both families. The desired state berth builds from what the daemon
// answers must carry the IPv6 fields, and they must match what dockerd put
// on the host (the bridges' addresses, the containers' veths). No BPF.
//
// Then berth itself follows that daemon (Docker mode, its own pin root, the
// uplink a veth to an outside namespace of this test): the IPv4 publish
// answers from outside through berth, no resync fails, and the IPv6
// endpoints and publishes dockerd reports are the ones berth pins.
//
// With BERTH_DOCKER_V6_CAPTURE=<file> it also writes the daemon's answers
// there: that is how test/fixtures/docker/dockerd-20.10-dualstack.json (the
// unit tests' fixture) was made.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Dataplane } from '../../src/platform/dataplane';
import { DockerClient, DockerContainer, DockerNetwork } from '../../src/sources/docker/client';
import { DEFAULT_DOCKER_SETTINGS, desiredFromDocker } from '../../src/sources/docker/desired';
import { DockerFollower } from '../../src/sources/docker/follower';
import { readHostFacts } from '../../src/sources/standalone';
import { publishKeyCodec, publishValueCodec } from '../../src/platform/contract';
import { readCurrent } from '../../src/engine/reconcile';
import { BerthProc, Dockerd, Outside, dockerSkipReason, must, serverCmd, waitFor } from '../lib/dockerd';

t.setTimeout(10 * 60 * 1000);

const pinRoot = '/sys/fs/bpf/berth-v6docker';
const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'v6docker-'));
const d = new Dockerd({ tag: 'v6docker', iptables: false, bridge: 'bv6d0', bridgeCidr: '10.89.0.1/24', ipv6: { fixedCidr6: 'fd89:d::/64' } });
const outside = new Outside('v6d', '10.89.250', workdir, 28960);
let client: DockerClient | undefined;
let berth: BerthProc | undefined;

t.teardown(async () => {
  berth?.kill9();
  await client?.destroy();
  await d.cleanup().catch(() => undefined);
  try {
    Dataplane.reset(pinRoot);
  } catch {
    /* nothing pinned */
  }
  await outside.down();
  fs.rmSync(workdir, { recursive: true, force: true });
});

const ipv6Off = fs.existsSync('/proc/sys/net/ipv6/conf/all/disable_ipv6') ? fs.readFileSync('/proc/sys/net/ipv6/conf/all/disable_ipv6', 'utf8').trim() === '1' : true;
const skip = dockerSkipReason() ?? (ipv6Off ? 'IPv6 is disabled on this machine' : undefined);

t.test('the desired state built from a live dual-stack dockerd has the IPv6 fields', { skip: skip ?? false }, async (t) => {
  await Dockerd.sweepStale();
  d.own({ netns: outside.ns, link: outside.hostIf });
  await d.start();
  await d.buildImage();
  await d.networkCreate('v6d-net', 'bv6d1', '10.89.1.0/24', ['--ipv6', '--subnet', 'fd89:1::/64']);
  await d.networkCreate('v6d-gw', 'bv6d2', '10.89.2.0/24', ['--ipv6', '--subnet', 'fd89:2::/64', '--gateway', '10.89.2.1', '--gateway', 'fd89:2::fe', '-o', 'com.docker.network.bridge.gateway_mode_ipv6=routed']);
  await d.networkCreate('v6d-v4', 'bv6d3', '10.89.3.0/24');
  await d.networkCreate('v6d-no4', 'bv6d4', '10.89.4.0/24', ['--ipv6', '--subnet', 'fd89:4::/64', '-o', 'com.docker.network.enable_ipv4=false']);
  const run = (name: string, net: string, ports: string[]): Promise<string> =>
    d.dockerOk(['run', '-d', '--name', name, '--network', net, ...ports.flatMap((p) => ['-p', p]), d.image, ...serverCmd(name)]);
  await run('v6d-c1', 'v6d-net', ['28961:80', '127.0.0.1:28962:81/udp', '[::1]:28963:82', '[::]:28964:83']);
  await run('v6d-c2', 'bridge', ['28965:80']);
  await run('v6d-c3', 'v6d-v4', ['28966:80']);
  await run('v6d-c4', 'v6d-gw', ['28967:80']);
  await run('v6d-c5', 'v6d-no4', ['28968:80']);

  client = new DockerClient({ socketPath: d.sock });
  const networks = await client.networks();
  const infos: DockerContainer[] = [];
  for (const s of await client.containers()) {
    const c = await client.container(s.Id);
    if (c?.State.Running) infos.push(c);
  }
  t.equal(infos.length, 5, 'five containers running');
  if (process.env.BERTH_DOCKER_V6_CAPTURE) {
    const inspect: Record<string, DockerNetwork> = {};
    for (const n of networks) inspect[n.Name] = await client.network(n.Id);
    fs.writeFileSync(process.env.BERTH_DOCKER_V6_CAPTURE, JSON.stringify({ version: await client.version(), networks, inspect, containers: Object.fromEntries(infos.map((c) => [c.Name, c])) }, null, 2) + '\n');
  }

  const host = await readHostFacts();
  // resolve() only finds the veths (nsenter + ip); it touches no dataplane
  const follower = new DockerFollower({ client, dp: undefined as unknown as Dataplane, settings: DEFAULT_DOCKER_SETTINGS });
  const resolved = await Promise.all(infos.map((c) => follower.resolve(c, host)));
  const warnings: Array<{ msg: string; f: Record<string, unknown> }> = [];
  // uplinks/interfaces empty: nothing of the machine's own is chosen (nothing is attached anyway)
  const dd = desiredFromDocker(networks, resolved, { ...DEFAULT_DOCKER_SETTINGS, uplinks: [], interfaces: [] }, host, (msg, f) => warnings.push({ msg, f }));

  const net = (n: string) => dd.desired.networks.find((x) => x.name === `docker:${n}`)!;
  t.match(net('v6d-net'), { subnet: '10.89.1.0', prefixLen: 24, subnet6: 'fd89:1::', prefixLen6: 64, gateway6: 'fd89:1::1' });
  t.match(net('bridge'), { bridge: 'bv6d0', subnet6: 'fd89:d::', prefixLen6: 64, gateway6: 'fd89:d::1' });
  t.match(net('v6d-gw'), { subnet6: 'fd89:2::', gateway6: 'fd89:2::fe', routed6: true, routed: false });
  t.match(net('v6d-no4'), { subnet: '', gateway: '', ipv4: false, subnet6: 'fd89:4::', gateway6: 'fd89:4::1' });
  t.equal(net('v6d-v4').subnet6, undefined);
  // the gateways are what dockerd put on the bridges
  for (const [n, br] of [['v6d-net', 'bv6d1'], ['bridge', 'bv6d0'], ['v6d-gw', 'bv6d2']] as const) {
    const addrs = host.addresses.filter((a) => a.ifname === br).map((a) => a.addr);
    t.ok(addrs.includes(net(n).gateway6!), `${br} has ${net(n).gateway6} (it has ${addrs.join(', ') || 'none'})`);
  }

  const ep = (c: string) => dd.desired.endpoints.find((e) => e.container === c)!;
  t.match(ep('v6d-c1'), { network: 'docker:v6d-net', ip: '10.89.1.2', ip6: 'fd89:1::2' });
  t.match(ep('v6d-c4'), { network: 'docker:v6d-gw', ip6: 'fd89:2::1' });
  t.match(ep('v6d-c5'), { network: 'docker:v6d-no4', ip: '', ip6: 'fd89:4::2' });
  t.equal(ep('v6d-c3').ip6, undefined);
  t.match(ep('v6d-c2').ip6, /^fd89:d::/);
  // each endpoint's veth is the one dockerd plugged into that network's bridge
  for (const e of dd.desired.endpoints) {
    const i = host.interfaces.find((x) => x.ifindex === e.ifindex);
    t.equal(i?.master, net(e.network.slice('docker:'.length)).bridge, `${e.container}: ${e.ifname} on its bridge`);
  }
  // and the container itself has the address inside
  const c1 = infos.find((c) => c.Name === '/v6d-c1')!;
  const addrs = await must('nsenter', [`--net=${c1.NetworkSettings.SandboxKey}`, 'ip', '-6', '-o', 'addr', 'show', 'scope', 'global']);
  t.match(addrs, /inet6 fd89:1::2\/64/, "v6d-c1's namespace has fd89:1::2");

  const pubs = dd.desired.publish!.map((p) => `${p.hostIp.includes(':') ? `[${p.hostIp}]` : p.hostIp}:${p.hostPort}/${p.proto}->${p.container}@${p.ip}:${p.port}`).sort();
  t.same(pubs, [
    '0.0.0.0:28961/tcp->v6d-c1@10.89.1.2:80',
    '0.0.0.0:28965/tcp->v6d-c2@10.89.0.2:80',
    '0.0.0.0:28966/tcp->v6d-c3@10.89.3.2:80',
    '0.0.0.0:28967/tcp->v6d-c4@10.89.2.2:80',
    '127.0.0.1:28962/udp->v6d-c1@10.89.1.2:81',
    '[::1]:28963/tcp->v6d-c1@fd89:1::2:82',
    '[::]:28961/tcp->v6d-c1@fd89:1::2:80',
    '[::]:28964/tcp->v6d-c1@fd89:1::2:83',
    `[::]:28965/tcp->v6d-c2@${ep('v6d-c2').ip6}:80`,
    '[::]:28967/tcp->v6d-c4@fd89:2::1:80',
    '[::]:28968/tcp->v6d-c5@fd89:4::2:80',
  ]);
  t.same(warnings, [{ msg: 'publish skipped: the container has no address of that family on its network', f: { container: 'v6d-c5', network: 'docker:v6d-no4', skipped: ['0.0.0.0:28968:80/tcp'] } }], 'the one warning: the IPv6-only network\'s IPv4 binding (dockerd 20.10 ignores enable_ipv4=false)');
});

t.test('berth follows the dual-stack daemon: IPv4 programmed and answering, IPv6 never a failed resync', { skip: skip ?? false }, async (t) => {
  if (!client) return void t.fail('the daemon of the first test did not come up');
  await outside.up([]);
  berth = new BerthProc(pinRoot, d.sock, [outside.hostIf], workdir);
  await berth.start();
  const ans = await waitFor(async () => {
    const r = await outside.fromOutside('tcp', outside.hostAddr, 28961);
    return r.startsWith('answer') ? r : '';
  }, 20000, 200);
  t.equal(ans, 'answer v6d-c1', "the IPv4 half of -p 28961:80 answers from outside, through berth's DNAT");
  const m = await berth.metrics();
  const seen = [...m.matchAll(/^berth_veth_packets_total\{[^}]*container="v6d-c1"[^}]*direction="to_container"[^}]*\} (\d+)/gm)].reduce((a, x) => a + Number(x[1]), 0);
  t.ok(seen > 0, `berth counted packets to v6d-c1 (${seen})`);
  t.match(m, /berth_docker_networks\{network="v6d-net",driver="bridge",managed="true",families="ipv4,ipv6"\} 1/);
  // one more resync with steps (a new network), then the log holds several resyncs
  await d.networkCreate('v6d-late', 'bv6d5', '10.89.5.0/24');
  t.ok(await waitFor(() => berth!.logText().includes('docker:v6d-late'), 20000, 200), 'berth programmed the new network');
  const log = berth.logText();
  t.notMatch(log, /docker resync failed/, 'no resync failed');
  {
    // and what dockerd said in IPv6 is what berth pinned
    const dp = Dataplane.openPinned(pinRoot);
    try {
      const cur = await readCurrent(dp);
      t.ok(cur.byIp6?.has('fd89:1::2') && cur.byIp6?.has('fd89:4::2'), `the IPv6 endpoints pinned (${[...(cur.byIp6?.keys() ?? [])].join(', ')})`);
      const pubs = [...(cur.publish?.values() ?? [])].map((e) => {
        const k = publishKeyCodec.decode(e.key);
        const v = publishValueCodec.decode(e.value);
        return `${k.host_addr}:${k.host_port}->${v.addr}:${v.port}`;
      });
      t.ok(pubs.includes('::1:28963->fd89:1::2:82') && pubs.some((x) => x.endsWith(':28961->fd89:1::2:80')), `the IPv6 publishes pinned (${pubs.join(', ')})`);
    } finally {
      dp.close();
    }
  }
});
