// engine/hostwatch.ts HostFilter: which netlink events can change berth's
// desired state (a sync) and which cannot (counted, no sync). Pure: the
// events are built by hand in the addon's shapes (platform/native.ts).
import t from 'tap';
import { HostFilter } from '../../src/engine/hostwatch';
import type { NetlinkAddress, NetlinkEvent, NetlinkLink, NetlinkRoute } from '../../src/platform/netlink';

function link(ifindex: number, name: string, more: Partial<NetlinkLink> = {}): NetlinkLink {
  return {
    ifindex, name, kind: 'veth', slaveKind: '', master: 0, alias: '', up: false, lowerUp: false, operstate: 'DOWN', flags: 0, mtu: 1500,
    mac: `02:00:00:00:00:${ifindex.toString(16).padStart(2, '0')}`, linkType: 'ether', linkNetnsid: null, peerIfindex: 0, xdp: null, ...more,
  } as NetlinkLink;
}
function addr(ifindex: number, address: string, more: Partial<NetlinkAddress> = {}): NetlinkAddress {
  return { ifindex, family: address.includes(':') ? 6 : 4, address, prefixLen: address.includes(':') ? 64 : 24, broadcast: '', scope: 'global', flags: 0, label: '', ...more };
}
const ev = <T extends NetlinkEvent['type']>(type: T, action: 'new' | 'del', body: object): NetlinkEvent => ({ type, action, ...body }) as NetlinkEvent;

t.test('links: appear, go, and change in what the interface choice reads', async (t) => {
  const f = new HostFilter();
  f.seed([link(2, 'eth0', { up: true }), link(7, 'vethA', { master: 5 })], []);
  t.equal(f.relevant(ev('link', 'new', link(2, 'eth0', { up: true }))), false, 'a link announced again unchanged: no sync');
  t.equal(f.relevant(ev('link', 'new', link(7, 'vethA', { master: 5, up: true, lowerUp: true, operstate: 'UP' }))), false, 'a programmed veth coming up: no sync');
  t.equal(f.relevant(ev('link', 'new', link(7, 'vethA', { master: 5, mtu: 9000 }))), false, 'an MTU change: no sync');
  t.equal(f.relevant(ev('link', 'new', link(9, 'up1'))), true, 'a new link (maybe an uplink named in the file): sync');
  t.equal(f.relevant(ev('link', 'new', link(9, 'up1', { up: true }))), false, 'and it coming up: no sync');
  t.equal(f.relevant(ev('link', 'new', link(9, 'up2', { up: true }))), true, 'a rename: sync');
  t.equal(f.relevant(ev('link', 'new', link(9, 'up2', { up: true, master: 5 }))), true, 'a master set (no longer an auto uplink): sync');
  t.equal(f.relevant(ev('link', 'new', link(9, 'up2', { up: true, master: 5, alias: 'berth:veth:x' }))), true, 'an alias (berth marks its veths): sync');
  t.equal(f.relevant(ev('link', 'new', link(9, 'up2', { up: true, master: 5, alias: 'berth:veth:x', mac: '02:00:00:00:01:09' }))), true, 'a MAC change: sync');
  t.equal(f.relevant(ev('link', 'del', link(9, 'up2'))), true, 'a known link goes: sync');
  t.equal(f.relevant(ev('link', 'del', link(9, 'up2'))), true, 'a link never seen goes: sync (it may have come and gone unseen)');
});

t.test('addresses: appear and go; announcements again and IPv6 link-local do not count', async (t) => {
  const f = new HostFilter();
  f.seed([link(2, 'eth0')], [addr(2, '192.0.2.10'), addr(2, 'fe80::1', { scope: 'link' })]);
  t.equal(f.relevant(ev('addr', 'new', addr(2, '192.0.2.10', { flags: 0x80 }))), false, 'an address announced again (flags): no sync');
  t.equal(f.relevant(ev('addr', 'new', addr(2, '192.0.2.11'))), true, 'a new IPv4 address: sync');
  t.equal(f.relevant(ev('addr', 'new', addr(2, '2001:db8::10'))), true, 'a new global IPv6 address: sync');
  t.equal(f.relevant(ev('addr', 'new', addr(2, 'fe80::2', { scope: 'link' }))), false, 'an IPv6 link-local address: no sync (never programmed)');
  t.equal(f.relevant(ev('addr', 'new', addr(3, '192.0.2.11'))), true, 'the same address on another link: sync');
  t.equal(f.relevant(ev('addr', 'del', addr(2, '192.0.2.11'))), true, 'an address goes: sync');
  t.equal(f.relevant(ev('addr', 'new', addr(2, '192.0.2.11'))), true, 'and comes back: sync');
});

t.test('routes never count: the uplink choice does not look at them', async (t) => {
  const f = new HostFilter();
  f.seed([], []);
  const r: NetlinkRoute = { family: 4, dst: 'default', gateway: '192.0.2.1', ifindex: 2, table: 254, protocol: 4, scope: 0, routeType: 1, priority: 0 };
  t.equal(f.relevant(ev('route', 'new', r)), false);
  t.equal(f.relevant(ev('route', 'del', r)), false);
});

t.test('seed forgets what was there', async (t) => {
  const f = new HostFilter();
  f.seed([link(4, 'a')], [addr(4, '192.0.2.1')]);
  f.seed([], []);
  t.equal(f.relevant(ev('link', 'new', link(4, 'a'))), true, 'a link not in the new seed is new');
  t.equal(f.relevant(ev('addr', 'new', addr(4, '192.0.2.1'))), true, 'an address not in the new seed is new');
});

t.test('a source that names its interfaces: only those links count', async (t) => {
  const names = new Set(['up1', 'br1']);
  const f = new HostFilter(() => (n) => names.has(n));
  f.seed([link(3, 'br1', { kind: 'bridge' })], []);
  t.equal(f.relevant(ev('link', 'new', link(20, 'veth123'))), false, "a foreign veth appearing (Docker's): no sync");
  t.equal(f.relevant(ev('link', 'new', link(20, 'veth123', { master: 40 }))), false, 'it joining its bridge: no sync');
  t.equal(f.relevant(ev('link', 'del', link(20, 'veth123'))), false, 'it going: no sync');
  t.equal(f.relevant(ev('link', 'new', link(21, 'up1'))), true, 'the uplink named in the file appearing: sync');
  t.equal(f.relevant(ev('link', 'new', link(21, 'other'))), true, 'renamed away from the name: sync');
  t.equal(f.relevant(ev('link', 'new', link(3, 'br1', { kind: 'bridge', mac: '02:00:00:00:09:09' }))), true, "the file's bridge changing: sync");
  t.equal(f.relevant(ev('addr', 'new', addr(20, '192.0.2.99'))), true, 'an address on any link still counts (berth_host_addr holds them all)');
});
