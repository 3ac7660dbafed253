// The one deep freeze of the domain (src/domain/freeze.ts), used by the
// config file and the policy parsers.
import t from 'tap';
import { deepFreeze } from '../../src/domain/freeze';
import { parseConfig } from '../../src/domain/config';
import { parsePolicy } from '../../src/domain/policy';

t.test('deepFreeze freezes every object and array it reaches and returns its argument', async (t) => {
  const v = { a: [1, { b: 'x' }], c: { d: { e: [] as number[] } } };
  t.equal(deepFreeze(v), v, 'the same value back');
  for (const o of [v, v.a, v.a[1], v.c, v.c.d, v.c.d.e]) t.ok(Object.isFrozen(o));
  t.throws(() => {
    'use strict';
    (v.c.d.e as number[]).push(1);
  }, TypeError, 'a frozen array refuses a push');
});

t.test('deepFreeze walks below an object already frozen on its own', async (t) => {
  const inner = { n: 1 };
  const shallow = Object.freeze({ inner });
  deepFreeze({ shallow });
  t.ok(Object.isFrozen(inner), 'a shallow freeze does not stop the walk');
});

t.test('deepFreeze: shared values and cycles are visited once', async (t) => {
  const shared = { s: 1 };
  const cyc: { self?: unknown; shared: object; list: object[] } = { shared, list: [shared] };
  cyc.self = cyc;
  t.equal(deepFreeze(cyc), cyc, 'returns on a cycle');
  t.ok(Object.isFrozen(cyc) && Object.isFrozen(shared) && Object.isFrozen(cyc.list));
});

t.test('deepFreeze: primitives pass through; a Buffer is refused with a clear error', async (t) => {
  for (const p of [undefined, null, 0, 'x', true, 1n]) t.equal(deepFreeze(p), p);
  t.throws(() => deepFreeze({ b: Buffer.from('ab') }), /deepFreeze: a Buffer or typed array cannot be frozen/);
});

t.test('the config file and the policy are deeply frozen by it', async (t) => {
  const cfg = parseConfig('networks:\n  - name: n\n    subnet: 10.75.250.0/24\ncontainers:\n  - name: c\n    network: n\n    publish: ["8080:80"]\n');
  for (const o of [cfg, cfg.networks, cfg.networks[0], cfg.containers[0]!.publish, cfg.containers[0]!.publish[0], cfg.settings, cfg.settings.conntrack]) t.ok(Object.isFrozen(o));
  const p = parsePolicy('- action: deny\n  source: 10.75.0.0/16\n');
  for (const o of [p, p.rules, p.rules[0]]) t.ok(Object.isFrozen(o));
});
