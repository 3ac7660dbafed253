// Real-kernel test of the addon's rtnetlink (native/netlink.cc through
// src/platform/netlink.ts): named namespaces that `ip netns` sees (and the
// other way round), a bridge with both families' addresses, a veth whose
// peer is created inside a namespace, routes, a sysctl written inside the
// namespace only, real pings across what it built, the neighbour entry they
// leave, events for an address added and a link removed, and the errors
// (EEXIST, ENODEV, ESRCH, ENOENT, EBADF after close). Everything it makes is
// named bnl*, in 10.71.1.0/24 and fd71:1::/64, and removed in teardown even
// when a step fails. Needs root, iproute2 (only to check interop), ping and
// nsenter.
import t, { Test } from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { isBpfError, native } from '../../src/platform/native';
import type { NetlinkEvent } from '../../src/platform/native';
import {
  addressesOf, defaultRoutes, deleteLinkIfPresent, netnsAdd, netnsDelete, netnsList, netnsPath, netnsPids,
  openNetlink, writeSysctl,
} from '../../src/platform/netlink';

const tag = String(process.pid % 10000);
const NS = `bnl${tag}a`;
const NS2 = `bnl${tag}b`; // made by `ip netns add`, to prove interop
const BR = `bnlbr${tag}`;
const VH = `bnlv${tag}a`;
const VM1 = `bnlm${tag}a`; // a pair moved with setLink({ netns })
const VM2 = `bnlm${tag}b`;

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', timeout: 20000 });
}

function quiet(cmd: string, args: string[]): void {
  spawnSync(cmd, args, { stdio: 'ignore', timeout: 20000 });
}

async function rejectsCode(tt: Tap, p: () => Promise<unknown>, code: string, msg: string): Promise<void> {
  let err: unknown;
  try {
    await p();
  } catch (e) {
    err = e;
  }
  tt.ok(isBpfError(err), `${msg}: a BpfError`);
  if (isBpfError(err)) tt.equal(err.code, code, `${msg}: ${err.message}`);
}
type Tap = Test;

/** Waits (bounded) until pred holds over the events seen so far. */
async function waitFor(events: NetlinkEvent[], pred: (e: NetlinkEvent) => boolean, what: string): Promise<NetlinkEvent> {
  const deadline = Date.now() + 5000;
  for (let i = 0; i < 500 && Date.now() < deadline; i++) {
    const hit = events.find(pred);
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no ${what} event within 5 s (${events.length} events seen)`);
}

t.test('rtnetlink in a real namespace', async (tt) => {
  const host = openNetlink();
  const events: NetlinkEvent[] = [];
  const errors: Error[] = [];
  const sub = native().subscribeNetlink((e) => events.push(e), (e) => errors.push(e));
  tt.teardown(async () => {
    sub.close();
    for (const l of [VH, BR, VM1]) await deleteLinkIfPresent(host, l).catch(() => undefined);
    host.close();
    for (const n of [NS, NS2]) await netnsDelete(n).catch(() => undefined);
    quiet('ip', ['netns', 'del', NS2]);
  });
  tt.equal(sub.running, true, 'the event reader runs');

  // named namespaces: ours is seen by ip, ip's by us
  await netnsAdd(NS);
  tt.ok(netnsList().includes(NS), 'netnsList lists it');
  tt.match(sh('ip', ['netns', 'list']), new RegExp(`^${NS}\\b`, 'm'), '`ip netns list` lists it');
  tt.equal(sh('ip', ['netns', 'exec', NS, 'cat', '/proc/net/dev']).split('\n').filter((l) => l.includes(':')).length, 1,
    'a fresh namespace: only lo');
  await rejectsCode(tt, () => netnsAdd(NS), 'EEXIST', 'netnsAdd twice');
  sh('ip', ['netns', 'add', NS2]);
  const inner2 = openNetlink(NS2);
  tt.teardown(() => inner2.close());
  tt.same((await inner2.links()).map((l) => l.name), ['lo'], 'a Netlink inside the namespace ip made');
  tt.equal(inner2.netns, netnsPath(NS2));

  // bridge with both families
  await host.addBridge(BR);
  await rejectsCode(tt, () => host.addBridge(BR), 'EEXIST', 'addBridge twice');
  await host.setLink(BR, { alias: `bnl:bridge:${tag}`, up: true });
  await host.addAddress(BR, { address: '10.71.1.1', prefixLen: 24, broadcast: true });
  await host.addAddress(BR, { address: 'fd71:1::1', prefixLen: 64, nodad: true });
  await rejectsCode(tt, () => host.addAddress(BR, { address: '10.71.1.1', prefixLen: 24 }), 'EEXIST', 'address twice');
  const br = await host.link(BR);
  tt.match(br, { name: BR, kind: 'bridge', alias: `bnl:bridge:${tag}`, up: true, linkType: 'ether' });
  const brAddrs = await addressesOf(host, BR);
  tt.match(brAddrs.find((a) => a.family === 4), { address: '10.71.1.1', prefixLen: 24, broadcast: '10.71.1.255', scope: 'global' });
  const a6 = brAddrs.find((a) => a.address === 'fd71:1::1');
  tt.ok(a6 && (a6.flags & 0x02) !== 0, 'the IPv6 address is nodad (IFA_F_NODAD)');
  const ipAddr = JSON.parse(sh('ip', ['-j', 'addr', 'show', 'dev', BR])) as Array<{ addr_info: Array<{ local: string; broadcast?: string }> }>;
  tt.equal(ipAddr[0].addr_info.find((a) => a.local === '10.71.1.1')?.broadcast, '10.71.1.255', 'ip sees the same broadcast');

  // veth with its peer created inside the namespace
  await host.addVeth(VH, 'eth0', { peerNetns: netnsPath(NS) });
  await rejectsCode(tt, () => host.addVeth(VH, 'eth0', { peerNetns: netnsPath(NS) }), 'EEXIST', 'addVeth twice');
  await host.setLink(VH, { master: BR, up: true, alias: `bnl:veth:${tag}` });
  const inner = openNetlink(NS);
  tt.teardown(() => inner.close());
  await inner.setLink('lo', { up: true });
  await inner.setLink('eth0', { up: true, mtu: 1400 });
  await inner.addAddress('eth0', { address: '10.71.1.2', prefixLen: 24, broadcast: true });
  await inner.addAddress('eth0', { address: 'fd71:1::2', prefixLen: 64, nodad: true });
  await inner.addRoute({ dst: 'default', gateway: '10.71.1.1', dev: 'eth0' });
  await inner.addRoute({ dst: 'default', gateway: 'fd71:1::1', dev: 'eth0' });
  await rejectsCode(tt, () => inner.addRoute({ dst: 'default', gateway: '10.71.1.1', dev: 'eth0' }), 'EEXIST', 'route twice');
  await inner.addRoute({ dst: '10.71.9.0/24', gateway: '10.71.1.1' });

  const vh = await host.link(VH);
  const eth0 = await inner.link('eth0');
  tt.ok(vh && eth0, 'both ends exist');
  tt.match(vh, { kind: 'veth', master: br!.ifindex, slaveKind: 'bridge', alias: `bnl:veth:${tag}`, up: true });
  tt.equal(vh!.peerIfindex, eth0!.ifindex, "the host end's IFLA_LINK is eth0's ifindex in the namespace");
  tt.type(vh!.linkNetnsid, 'number', 'the peer lives in another namespace (link-netnsid)');
  tt.equal(eth0!.peerIfindex, vh!.ifindex, "eth0's IFLA_LINK is the host end");
  tt.match(eth0, { kind: 'veth', mtu: 1400, up: true });
  tt.match(eth0!.mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
  tt.equal(await host.link('bnlnope0'), null, 'link() of a missing name is null');
  tt.ok((await host.links()).some((l) => l.name === VH), 'links() lists the host end');
  tt.notOk((await host.links()).some((l) => l.name === 'eth0' && l.ifindex === eth0!.ifindex && l.kind === 'veth' && l.peerIfindex === vh!.ifindex),
    "the namespace's eth0 is not in the host's list");
  tt.match(await defaultRoutes(inner, 4), [{ gateway: '10.71.1.1', ifindex: eth0!.ifindex, table: 254 }]);
  tt.match(await defaultRoutes(inner, 6), [{ gateway: 'fd71:1::1', ifindex: eth0!.ifindex }]);
  tt.ok((await inner.routes(4)).some((r) => r.dst === '10.71.9.0/24' && r.gateway === '10.71.1.1'), 'a prefix route');
  tt.match(sh('ip', ['-n', NS, 'route', 'show', 'default']), /default via 10\.71\.1\.1 dev eth0/, 'ip sees the default route');

  // real packets over what netlink built, both families
  const ping4 = spawnSync('nsenter', [`--net=${netnsPath(NS)}`, 'ping', '-c', '1', '-W', '5', '10.71.1.1'], { encoding: 'utf8', timeout: 20000 });
  tt.equal(ping4.status, 0, `ping 10.71.1.1 from the namespace: ${ping4.stdout.trim().split('\n').pop()}`);
  const ping6 = spawnSync('nsenter', [`--net=${netnsPath(NS)}`, 'ping', '-6', '-c', '1', '-W', '5', 'fd71:1::1'], { encoding: 'utf8', timeout: 20000 });
  tt.equal(ping6.status, 0, `ping fd71:1::1 from the namespace: ${ping6.stdout.trim().split('\n').pop()}`);
  const neigh = await inner.neighbours(4);
  const brNow = await host.link(BR); // a bridge takes a port's MAC when the port joins
  tt.ok(neigh.some((n) => n.address === '10.71.1.1' && n.lladdr === brNow?.mac && n.ifindex === eth0!.ifindex),
    "the ping left the gateway's neighbour entry with the bridge's MAC");

  // sysctl inside the namespace only
  const hostRpf = fs.readFileSync('/proc/sys/net/ipv4/conf/all/accept_local', 'utf8').trim();
  const want = hostRpf === '1' ? '0' : '1';
  await writeSysctl(NS, 'net/ipv4/conf/all/accept_local', want);
  tt.equal(sh('nsenter', [`--net=${netnsPath(NS)}`, 'cat', '/proc/sys/net/ipv4/conf/all/accept_local']).trim(), want, 'written inside');
  tt.equal(fs.readFileSync('/proc/sys/net/ipv4/conf/all/accept_local', 'utf8').trim(), hostRpf, 'the host value is untouched');
  await rejectsCode(tt, () => writeSysctl(NS, 'net/ipv4/conf/bnlnope/accept_local', '1'), 'ENOENT', 'sysctl of a missing device');
  tt.same(netnsPids(NS), [], 'no process lives in the namespace');

  // move a link into a namespace with setLink({ netns })
  await host.addVeth(VM1, VM2);
  await host.setLink(VM2, { netns: netnsPath(NS2) });
  tt.equal(await host.link(VM2), null, 'moved out of the host');
  tt.ok(await inner2.link(VM2), 'moved into the namespace');

  // errors
  await rejectsCode(tt, () => host.deleteLink('bnlnope0'), 'ENODEV', 'deleteLink of a missing link');
  await rejectsCode(tt, () => host.setLink('bnlnope0', { up: true }), 'ENODEV', 'setLink of a missing link');
  await rejectsCode(tt, () => host.setLink(VH, { master: 'bnlnope0' }), 'ENODEV', 'setLink to a missing master');
  await rejectsCode(tt, () => inner.addAddress('bnlnope0', { address: '10.71.1.9', prefixLen: 24 }), 'ENODEV', 'address on a missing link');
  await rejectsCode(tt, () => inner.deleteRoute({ dst: '10.71.8.0/24', gateway: '10.71.1.1' }), 'ESRCH', 'deleteRoute of a missing route');
  await inner.deleteRoute({ dst: '10.71.9.0/24', gateway: '10.71.1.1' });
  tt.notOk((await inner.routes(4)).some((r) => r.dst === '10.71.9.0/24'), 'deleteRoute removed it');
  await inner.deleteAddress('eth0', { address: '10.71.1.2', prefixLen: 24 });
  tt.notOk((await addressesOf(inner, 'eth0', 4)).length, 'deleteAddress removed it');
  await rejectsCode(tt, () => inner.deleteAddress('eth0', { address: '10.71.1.2', prefixLen: 24 }), 'EADDRNOTAVAIL', 'deleteAddress twice');
  await rejectsCode(tt, () => netnsDelete(`bnl${tag}z`), 'ENOENT', 'netnsDelete of a missing namespace');

  // events: the bridge's address, then the veth's removal
  await waitFor(events, (e) => e.type === 'addr' && e.action === 'new' && e.address === '10.71.1.1' && e.ifindex === br!.ifindex, 'address added');
  await host.deleteLink(VH);
  const del = await waitFor(events, (e) => e.type === 'link' && e.action === 'del' && e.name === VH, 'link removed');
  tt.equal(del.type === 'link' && del.ifindex, vh!.ifindex, 'the removal names the ifindex');
  tt.ok(events.some((e) => e.type === 'route' && e.action === 'new' && e.dst === '10.71.1.0/24'), 'the prefix route came as a route event');
  tt.same(errors, [], 'no read errors');
  tt.equal(await host.link(VH), null, 'deleteLink removed the host end');
  tt.equal(await inner.link('eth0'), null, 'and with it the peer');
  sub.close();
  sub.close(); // idempotent
  tt.equal(sub.running, false, 'close() stops the reader');

  // use after close, and the namespace going away
  inner.close();
  await rejectsCode(tt, () => inner.links(), 'EBADF', 'links() after close');
  await netnsDelete(NS);
  tt.notOk(fs.existsSync(netnsPath(NS)), 'netnsDelete removed the bind mount file');
  tt.notMatch(sh('ip', ['netns', 'list']), new RegExp(`^${NS}\\b`, 'm'), 'ip no longer lists it');
  await host.deleteLink(BR);
  tt.equal(await host.link(BR), null);
});
