// The claims on shared resources (engine/owners.ts): what a scope's desired state claims, and the
// desired state widened to the other scopes' claims, on reconcile and on release.
import t from 'tap';
import { Claim, claimOf, otherLiveClaims, withShared } from '../../src/engine/owners';
import type { DesiredState } from '../../src/engine/reconcile';

const up = (ifindex: number, ifname: string) => ({ ifindex, ifname, addr: `10.76.9.${ifindex}`, mac: '02:00:00:00:00:01' });
const net = (name: string) => ({ name, bridge: `br-${name}`, subnet: '10.76.8.0', prefixLen: 24, gateway: '10.76.8.1', icc: true });

t.test('claimOf records only what the desired state says', async (t) => {
  const d: DesiredState = { networks: [net('b'), net('a')], endpoints: [], uplinks: [up(7, 'x7')], served: [], socketHooks: true, hostAddrs: [], xdp: true };
  t.same(claimOf('file:a,b', d, { policy: '/p.yaml' }), { scope: 'file:a,b', networks: ['a', 'b'], socketHooks: true, hostAddrs: true, uplinks: [up(7, 'x7')], served: [], xdp: true, policy: '/p.yaml' });
  t.same(claimOf('s', { networks: [], endpoints: [] }), { scope: 's', networks: [] }, 'a scope that leaves them alone claims nothing');
});

t.test('withShared: the union while reconciling, the others only on release', async (t) => {
  const b: Claim = { scope: 'file:b', networks: ['b'], socketHooks: true, hostAddrs: true, uplinks: [up(5, 'x5')], served: [{ ifindex: 6, ifname: 'x6' }], xdp: false };
  const a: DesiredState = { networks: [net('a')], endpoints: [], uplinks: [], served: [], socketHooks: false, hostAddrs: [{ addr: '10.0.0.1', ifindex: 2 }] };
  const w = withShared(a, [b]);
  t.equal(w.socketHooks, true, "b's hooks stay");
  t.same(w.uplinks, [up(5, 'x5')], "b's uplink stays");
  t.same(w.served, [{ ifindex: 5, ifname: 'x5' }, { ifindex: 6, ifname: 'x6' }], 'served: every claim, uplinks included');
  t.same(w.hostAddrs, a.hostAddrs, 'host addresses: the fresh set');

  // an interface whose ifindex now names another interface is not served for b's claim
  const gone = withShared(a, [b], { present: (i, n) => i === 6 && n === 'x6' });
  t.same(gone.uplinks, []);
  t.same(gone.served, [{ ifindex: 6, ifname: 'x6' }]);

  const rel = withShared({ networks: [], endpoints: [], publish: [] }, [b], { release: true });
  t.match(rel, { socketHooks: true, uplinks: [up(5, 'x5')] }, 'release keeps what b needs');
  t.equal(rel.hostAddrs, undefined, 'host addresses left alone while b needs them');
  const last = withShared({ networks: [], endpoints: [], publish: [] }, [], { release: true });
  t.match(last, { socketHooks: false, uplinks: [], served: [], hostAddrs: [], xdp: false }, 'the last one out removes them all');
  t.equal(withShared({ networks: [], endpoints: [] }, [b]).socketHooks, undefined, 'a scope that leaves the hooks alone still does');
});

t.test('stale claims (none of their networks pinned) and the own claim do not count', async (t) => {
  const claims: Claim[] = [
    { scope: 'file:a', networks: ['a'] },
    { scope: 'file:gone', networks: ['gone'] },
    { scope: 'docker', networks: [] },
    { scope: 'file:me', networks: ['me'] },
  ];
  t.same(otherLiveClaims(claims, 'file:me', new Set(['a', 'me'])).map((c) => c.scope), ['file:a', 'docker']);
});
