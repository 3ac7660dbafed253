import t from 'tap';
import { CurrentState, DesiredState, Step, assignNetworkIds, plan } from '../../src/engine/reconcile';
import { Endpoint, EndpointFlags, NetworkMeta, endpointCodec, ipKeyCodec } from '../../src/platform/contract';

const desired: DesiredState = {
  networks: [
    { name: 'front', bridge: 'berth-front', subnet: '10.88.0.0', prefixLen: 24, gateway: '10.88.0.1', icc: true },
    { name: 'back', bridge: 'berth-back', subnet: '10.89.0.0', prefixLen: 24, gateway: '10.89.0.1', icc: false },
  ],
  endpoints: [
    { container: 'web', network: 'front', ip: '10.88.0.10', mac: '02:00:00:00:00:0a', ifindex: 10, ifname: 'bthaaaa' },
    { container: 'db', network: 'back', ip: '10.89.0.10', mac: '02:00:00:00:00:0b', ifindex: 11, ifname: 'bthbbbb' },
  ],
};
const scope = new Set(['front', 'back']);

const empty = (): CurrentState => ({
  networks: new Map(),
  endpoints: new Map(),
  byIp: new Map(),
  counters: new Set(),
  attachments: [],
  progIds: { ingress: 100, egress: 101 },
});

/** Apply a plan to an in-memory CurrentState, the way apply() does to the maps. */
function simulate(cur: CurrentState, steps: Step[], d: DesiredState): CurrentState {
  const networks = new Map(cur.networks);
  const endpoints = new Map(cur.endpoints);
  const byIp = new Map(cur.byIp);
  const counters = new Set(cur.counters);
  let attachments = [...cur.attachments];
  const ids = assignNetworkIds(d.networks, cur.networks);
  for (const s of steps) {
    if (s.op === 'put' && s.map === 'netMeta') {
      const n = d.networks.find((x) => s.what.startsWith(`network ${x.name} `))!;
      networks.set(ids.get(n.name)!, { name: n.name, bridge: n.bridge, subnet: n.subnet, prefix_len: n.prefixLen, gateway: n.gateway, flags: n.icc ? 1 : 0 } as NetworkMeta);
    } else if (s.op === 'put' && s.map === 'epByIfindex') {
      const ep = endpointCodec.decode(s.value);
      const e = d.endpoints.find((x) => x.ifindex === ep.ifindex)!;
      endpoints.set(ep.ifindex, { ep, meta: { container: e.container, ifname: e.ifname, network_id: ep.network_id } });
    } else if (s.op === 'put' && s.map === 'epByIp') {
      byIp.set(ipKeyCodec.decode(s.key).addr, endpointCodec.decode(s.value));
    } else if (s.op === 'put' && s.map === 'counters') {
      counters.add(`${s.key.readUInt32LE(0)}:${s.key.readUInt32LE(4)}`);
    } else if (s.op === 'attach') {
      attachments.push({ ifindex: s.ifindex, direction: 'ingress', progId: 100, live: true }, { ifindex: s.ifindex, direction: 'egress', progId: 101, live: true });
    } else if (s.op === 'detach') {
      attachments = attachments.filter((a) => a.ifindex !== s.ifindex);
    } else if (s.op === 'delete' && s.map === 'epByIp') {
      byIp.delete(ipKeyCodec.decode(s.key).addr);
    } else if (s.op === 'delete' && s.map === 'epByIfindex') {
      endpoints.delete(s.key.readUInt32LE(0));
    } else if (s.op === 'delete' && s.map === 'counters') {
      counters.delete(`${s.key.readUInt32LE(0)}:${s.key.readUInt32LE(4)}`);
    } else if (s.op === 'delete' && s.map === 'netMeta') {
      networks.delete(s.key.readUInt32LE(0));
    }
  }
  return { ...cur, networks, endpoints, byIp, counters, attachments };
}

t.test('from nothing: every entry is created, forwarding entries last', async (t) => {
  const steps = plan(desired, empty(), scope);
  const kinds = steps.map((s) => (s.op === 'put' || s.op === 'delete' ? `${s.op}:${s.map}` : s.op));
  t.equal(kinds.filter((k) => k === 'put:netMeta').length, 2);
  t.equal(kinds.filter((k) => k === 'put:counters').length, 4, 'two directions per veth');
  t.equal(kinds.filter((k) => k === 'attach').length, 2);
  t.equal(kinds.filter((k) => k === 'put:epByIp').length, 2);
  // for each endpoint, counters/meta/attach come before the forwarding entries
  for (const ifindex of [10, 11]) {
    const idx = (pred: (s: Step) => boolean) => steps.findIndex(pred);
    const attach = idx((s) => s.op === 'attach' && s.ifindex === ifindex);
    const fwd = idx((s) => s.op === 'put' && s.map === 'epByIfindex' && s.key.readUInt32LE(0) === ifindex);
    t.ok(attach >= 0 && attach < fwd, `attach before forwarding entry for ${ifindex}`);
  }
  const dbIp = steps.find((s) => s.op === 'put' && s.map === 'epByIp' && s.what.includes('db'))!;
  const ep = endpointCodec.decode((dbIp as { value: Buffer }).value) as Endpoint;
  t.equal(ep.flags & EndpointFlags.ICC, 0, 'icc off on back is decided once, in the entry');
  t.equal(ep.mac, '02:00:00:00:00:0b');
});

t.test('idempotent: planning again after applying gives nothing', async (t) => {
  const s1 = plan(desired, empty(), scope);
  const cur = simulate(empty(), s1, desired);
  t.same(plan(desired, cur, scope), [], 'check finds no drift');
});

t.test('removal: a container gone removes its entries, counters and hooks', async (t) => {
  const cur = simulate(empty(), plan(desired, empty(), scope), desired);
  const less: DesiredState = { networks: desired.networks, endpoints: desired.endpoints.slice(0, 1) };
  const steps = plan(less, cur, scope);
  t.ok(steps.every((s) => s.op === 'delete' || s.op === 'detach'), 'only deletions');
  t.ok(steps.some((s) => s.op === 'delete' && s.map === 'epByIp' && s.what.includes('10.89.0.10')));
  t.ok(steps.some((s) => s.op === 'detach' && s.ifindex === 11));
  t.equal(steps.filter((s) => s.op === 'delete' && s.map === 'counters').length, 2);
  // the ip entry goes before the ifindex entry (stop forwarding first)
  const ipDel = steps.findIndex((s) => s.op === 'delete' && s.map === 'epByIp');
  const ifDel = steps.findIndex((s) => s.op === 'delete' && s.map === 'epByIfindex');
  t.ok(ipDel < ifDel);
  t.same(plan(less, simulate(cur, steps, less), scope), []);
});

t.test('scope: networks outside it are never touched', async (t) => {
  const cur = simulate(empty(), plan(desired, empty(), scope), desired);
  const onlyFront: DesiredState = { networks: [desired.networks[0]], endpoints: [desired.endpoints[0]] };
  t.same(plan(onlyFront, cur, new Set(['front'])), [], 'back belongs to someone else');
  const downFront = plan({ networks: [], endpoints: [] }, cur, new Set(['front']));
  t.ok(downFront.length > 0);
  t.notOk(downFront.some((s) => s.what.includes('db') || s.what.includes('10.89.') || s.what.includes('back')), 'nothing of back');
});

t.test('a recreated container (new ifindex, same ip) moves the ip entry', async (t) => {
  const cur = simulate(empty(), plan(desired, empty(), scope), desired);
  const moved: DesiredState = { networks: desired.networks, endpoints: [desired.endpoints[0], { ...desired.endpoints[1], ifindex: 20 }] };
  const steps = plan(moved, cur, scope);
  t.notOk(steps.some((s) => s.op === 'delete' && s.map === 'epByIp'), 'ip entry is overwritten, never deleted');
  t.ok(steps.some((s) => s.op === 'put' && s.map === 'epByIp' && endpointCodec.decode(s.value).ifindex === 20));
  t.ok(steps.some((s) => s.op === 'detach' && s.ifindex === 11));
  t.same(plan(moved, simulate(cur, steps, moved), scope), []);
});

t.test('network ids are stable and reuse the lowest free id', async (t) => {
  const cur = new Map<number, NetworkMeta>([[2, { name: 'back', bridge: 'b', subnet: '10.89.0.0', prefix_len: 24, gateway: '10.89.0.1', flags: 0 }]]);
  const ids = assignNetworkIds(desired.networks, cur);
  t.equal(ids.get('back'), 2);
  t.equal(ids.get('front'), 1);
});

t.test('bad desired state is refused before any step', async (t) => {
  t.throws(() => plan({ ...desired, endpoints: [...desired.endpoints, { ...desired.endpoints[0], container: 'x', ip: '10.88.0.11' }] }, empty(), scope), /ifindex 10 used twice/);
  t.throws(() => plan(desired, empty(), new Set(['front'])), /outside the reconcile scope/);
});

t.test('stale hooks on vanished interfaces are detached', async (t) => {
  const cur = { ...empty(), attachments: [{ ifindex: 99, direction: 'ingress' as const, progId: 100, live: false }] };
  const steps = plan({ networks: [], endpoints: [] }, cur, scope);
  t.same(steps.map((s) => s.op), ['detach']);
});

t.test('served interfaces: berth_up_in on each, berth_uplink entries for the uplinks alone', async (t) => {
  const d: DesiredState = {
    ...desired,
    uplinks: [{ ifindex: 2, ifname: 'eth0', addr: '192.0.2.10', mac: '02:00:00:00:00:02' }],
    served: [
      { ifindex: 2, ifname: 'eth0' },
      { ifindex: 3, ifname: 'eth1' },
    ],
  };
  const cur: CurrentState = { ...empty(), progIds: { ingress: 100, egress: 101, uplink: 102 }, uplinks: new Map(), uplinkAttachments: [{ ifindex: 4, kind: 'tc', progId: 102, live: true }] };
  const steps = plan(d, cur, scope);
  t.same(steps.filter((s) => s.op === 'attachUplink').map((s) => (s as { ifindex: number }).ifindex), [2, 3], 'the uplink and the other served interface');
  t.same(steps.filter((s) => s.op === 'put' && s.map === 'uplink').map((s) => s.what), ['uplink eth0'], 'only the uplink gives a masquerade address');
  t.same(steps.filter((s) => s.op === 'put' && s.map === 'counters' && s.what.includes('eth1')).length, 2, 'counters for the served interface, both directions');
  t.same(steps.filter((s) => s.op === 'detachUplink').map((s) => (s as { ifindex: number }).ifindex), [4], 'an interface no longer served is detached');
  const onlyUplinks = plan({ ...d, served: undefined }, cur, scope);
  t.same(onlyUplinks.filter((s) => s.op === 'attachUplink').map((s) => (s as { ifindex: number }).ifindex), [2], 'served not given: the uplinks are served');
});

t.test('routed network: ROUTED flag and no MASQUERADE; its publishes keyed by container address and port, host port ignored', async (t) => {
  const { networkMetaCodec, publishKeyCodec, publishValueCodec, PublishFlags } = await import('../../src/platform/contract');
  const d: DesiredState = {
    networks: [
      { name: 'rt', bridge: 'berth-rt', subnet: '10.93.1.0', prefixLen: 24, gateway: '10.93.1.1', icc: true, masquerade: true, routed: true },
      { name: 'front', bridge: 'berth-front', subnet: '10.88.0.0', prefixLen: 24, gateway: '10.88.0.1', icc: true, masquerade: true },
    ],
    endpoints: [
      { container: 'rweb', network: 'rt', ip: '10.93.1.10', mac: '02:00:00:00:01:0a', ifindex: 20, ifname: 'bthrrrr' },
      { container: 'web', network: 'front', ip: '10.88.0.10', mac: '02:00:00:00:00:0a', ifindex: 10, ifname: 'bthaaaa' },
    ],
    publish: [
      { hostIp: '0.0.0.0', hostPort: 8080, proto: 'tcp', container: 'rweb', network: 'rt', ip: '10.93.1.10', port: 80, ifindex: 20, mac: '02:00:00:00:01:0a' },
      { hostIp: '127.0.0.1', hostPort: 8081, proto: 'tcp', container: 'rweb', network: 'rt', ip: '10.93.1.10', port: 80, ifindex: 20, mac: '02:00:00:00:01:0a' },
      { hostIp: '0.0.0.0', hostPort: 8080, proto: 'udp', container: 'rweb', network: 'rt', ip: '10.93.1.10', port: 53, ifindex: 20, mac: '02:00:00:00:01:0a' },
      { hostIp: '0.0.0.0', hostPort: 8080, proto: 'tcp', container: 'web', network: 'front', ip: '10.88.0.10', port: 80, ifindex: 10, mac: '02:00:00:00:00:0a' },
    ],
  };
  const steps = plan(d, empty(), new Set(['rt', 'front']));
  const br = steps.filter((s) => s.op === 'put' && s.map === 'netMeta').map((s) => networkMetaCodec.decode((s as { value: Buffer }).value).flags);
  t.same(br.sort(), [EndpointFlags.ICC | EndpointFlags.MASQUERADE, EndpointFlags.ICC | EndpointFlags.ROUTED].sort(), 'routed: ROUTED, never MASQUERADE');
  const ep = steps.find((s) => s.op === 'put' && s.map === 'epByIp' && s.what.includes('rweb'))!;
  t.equal(endpointCodec.decode((ep as { value: Buffer }).value).flags, EndpointFlags.ICC | EndpointFlags.ROUTED);
  const pubs = steps
    .filter((s) => s.op === 'put' && s.map === 'publish')
    .map((s) => {
      const k = publishKeyCodec.decode((s as { key: Buffer }).key);
      const v = publishValueCodec.decode((s as { value: Buffer }).value);
      return `${k.host_addr}:${k.host_port}/${k.proto} -> ${v.addr}:${v.port} flags ${v.flags}`;
    })
    .sort();
  t.same(pubs, [
    `0.0.0.0:8080/6 -> 10.88.0.10:80 flags 0`,
    `10.93.1.10:53/17 -> 10.93.1.10:53 flags ${PublishFlags.ROUTED}`,
    `10.93.1.10:80/6 -> 10.93.1.10:80 flags ${PublishFlags.ROUTED}`,
  ], 'the routed container port once (two host ports, one of them 127.0.0.1, open the same port); the nat network keeps host port 8080');
});

t.test('routed per family: ROUTED6 and v6 publishes keyed on the container addr6 for gateway_mode_ipv6=routed; each family its own mode', async (t) => {
  const { networkMetaCodec, publishKeyCodec, publishValueCodec, PublishFlags } = await import('../../src/platform/contract');
  const { networkFlags } = await import('../../src/engine/reconcile');
  const v6 = { prefixLen6: 64 } as const;
  const d: DesiredState = {
    networks: [
      // nat for IPv4, routed for IPv6
      { name: 'r6', bridge: 'berth-r6', subnet: '10.79.1.0', prefixLen: 24, gateway: '10.79.1.1', subnet6: 'fd79:1::', gateway6: 'fd79:1::1', ...v6, icc: true, masquerade: true, routed6: true },
      // routed for IPv4, nat for IPv6
      { name: 'r4', bridge: 'berth-r4', subnet: '10.79.2.0', prefixLen: 24, gateway: '10.79.2.1', subnet6: 'fd79:2::', gateway6: 'fd79:2::1', ...v6, icc: true, masquerade: true, routed: true },
    ],
    endpoints: [
      { container: 'a', network: 'r6', ip: '10.79.1.10', ip6: 'fd79:1::10', mac: '02:00:00:00:01:0a', ifindex: 20, ifname: 'bthr6' },
      { container: 'b', network: 'r4', ip: '10.79.2.10', ip6: 'fd79:2::10', mac: '02:00:00:00:02:0a', ifindex: 21, ifname: 'bthr4' },
    ],
    publish: [
      { hostIp: '0.0.0.0', hostPort: 8080, proto: 'tcp', container: 'a', network: 'r6', ip: '10.79.1.10', port: 80, ifindex: 20, mac: '02:00:00:00:01:0a' },
      { hostIp: '::', hostPort: 8080, proto: 'tcp', container: 'a', network: 'r6', ip: 'fd79:1::10', port: 80, ifindex: 20, mac: '02:00:00:00:01:0a' },
      { hostIp: '::', hostPort: 8081, proto: 'tcp', container: 'a', network: 'r6', ip: 'fd79:1::10', port: 80, ifindex: 20, mac: '02:00:00:00:01:0a' },
      { hostIp: '0.0.0.0', hostPort: 9090, proto: 'udp', container: 'b', network: 'r4', ip: '10.79.2.10', port: 53, ifindex: 21, mac: '02:00:00:00:02:0a' },
      { hostIp: '::', hostPort: 9090, proto: 'udp', container: 'b', network: 'r4', ip: 'fd79:2::10', port: 53, ifindex: 21, mac: '02:00:00:00:02:0a' },
    ],
  };
  const steps = plan(d, empty(), new Set(['r6', 'r4']));
  const flags = new Map(steps.filter((s) => s.op === 'put' && s.map === 'netMeta').map((s) => {
    const m = networkMetaCodec.decode((s as { value: Buffer }).value);
    return [m.name, m.flags];
  }));
  const F = EndpointFlags;
  t.equal(flags.get('r6'), F.ICC | F.MASQUERADE | F.ROUTED6 | F.IPV6, 'nat-v4 + routed-v6: ROUTED6, MASQUERADE kept for IPv4');
  t.equal(flags.get('r4'), F.ICC | F.MASQUERADE | F.ROUTED | F.IPV6, 'routed-v4 + nat-v6: ROUTED, MASQUERADE kept for NAT66');
  t.equal(networkFlags({ ...d.networks[0]!, routed: true }) & (F.MASQUERADE | F.ROUTED | F.ROUTED6), F.ROUTED | F.ROUTED6, 'routed in both families: no MASQUERADE');
  t.equal(networkFlags({ ...d.networks[0]!, internal: true }) & (F.ROUTED6 | F.MASQUERADE), 0, 'internal: never ROUTED6');
  t.equal(networkFlags({ name: 'x', bridge: 'x', subnet: '10.79.3.0', prefixLen: 24, gateway: '10.79.3.1', icc: true, masquerade: true, routed6: true }) & F.ROUTED6, 0, 'no subnet6: no ROUTED6');
  const ep = steps.find((s) => s.op === 'put' && s.map === 'epByIp6' && s.what.includes('-> a'))!;
  t.equal(endpointCodec.decode((ep as { value: Buffer }).value).flags & F.ROUTED6, F.ROUTED6, 'the endpoint carries ROUTED6');
  const pubs = steps
    .filter((s) => s.op === 'put' && s.map === 'publish')
    .map((s) => {
      const k = publishKeyCodec.decode((s as { key: Buffer }).key);
      const v = publishValueCodec.decode((s as { value: Buffer }).value);
      return `${k.host_addr}:${k.host_port}/${k.proto} -> ${v.addr}:${v.port} flags ${v.flags}`;
    })
    .sort();
  t.same(pubs, [
    `0.0.0.0:8080/6 -> 10.79.1.10:80 flags 0`,
    `10.79.2.10:53/17 -> 10.79.2.10:53 flags ${PublishFlags.ROUTED}`,
    `:::9090/17 -> fd79:2::10:53 flags 0`,
    `fd79:1::10:80/6 -> fd79:1::10:80 flags ${PublishFlags.ROUTED}`,
  ].sort(), 'each family its own mode: the routed one keyed on the container address and port (once), the nat one on the host port');
});
