// sources/reload.ts: what a standalone reload builds and takes down, from two
// versions of a file (pure; the real reload is test/integration/standalone-reload.test.ts).
import t from 'tap';
import { parseConfig } from '../../src/domain/config';
import { diffConfig, emptyPart, reloadPhases } from '../../src/sources/reload';

function file(o: { nets?: string[]; cs?: string[]; extra?: string[] } = {}): ReturnType<typeof parseConfig> {
  const nets = o.nets ?? ['  - name: n1', '    subnet: 10.62.10.0/24', '    bridge: bnvu1', '  - name: n2', '    subnet: 10.62.11.0/24', '    bridge: bnvu2'];
  const cs = o.cs ?? ['  - name: a', '    network: n1', '    ip: 10.62.10.10', '  - name: b', '    network: n1', '    ip: 10.62.10.11', '  - name: c', '    network: n2', '    ip: 10.62.11.10'];
  return parseConfig(['networks:', ...nets, 'containers:', ...cs, ...(o.extra ?? []), ''].join('\n'), 'test.yaml');
}
const base = file();

t.test('the same file: nothing to do', async (t) => {
  const p = reloadPhases(base, base, diffConfig(base, base));
  t.ok(emptyPart(p.add) && emptyPart(p.takeDown) && emptyPart(p.rebuild), 'no topology call');
  t.same(p.up, { networks: [], containers: [], externals: [] });
  t.same(p.down, { networks: [], containers: [], externals: [] });
});

t.test('a container added: built alone, with its network only checked', async (t) => {
  const next = file({ cs: ['  - name: a', '    network: n1', '    ip: 10.62.10.10', '  - name: b', '    network: n1', '    ip: 10.62.10.11', '  - name: c', '    network: n2', '    ip: 10.62.11.10', '  - name: d', '    network: n2', '    ip: 10.62.11.11'] });
  const p = reloadPhases(base, next, diffConfig(base, next));
  t.same(p.add.containers.map((c) => c.name), ['d']);
  t.same(p.add.networks.map((n) => n.name), ['n2'], "its network is in the part (up checks its bridge, it builds nothing there)");
  t.same(p.up, { networks: [], containers: ['d'], externals: [] });
  t.ok(emptyPart(p.takeDown) && emptyPart(p.rebuild));
});

t.test('a publish or icc change is the dataplane\'s alone', async (t) => {
  const next = file({
    nets: ['  - name: n1', '    subnet: 10.62.10.0/24', '    bridge: bnvu1', '    icc: false', '  - name: n2', '    subnet: 10.62.11.0/24', '    bridge: bnvu2'],
    cs: ['  - name: a', '    network: n1', '    ip: 10.62.10.10', '    publish: ["31600:80"]', '  - name: b', '    network: n1', '    ip: 10.62.10.11', '  - name: c', '    network: n2', '    ip: 10.62.11.10'],
  });
  const p = reloadPhases(base, next, diffConfig(base, next));
  t.ok(emptyPart(p.add) && emptyPart(p.takeDown) && emptyPart(p.rebuild), 'no topology work');
});

t.test('a container whose address changed: taken down and built again; one removed: taken down', async (t) => {
  const next = file({ cs: ['  - name: a', '    network: n1', '    ip: 10.62.10.20', '  - name: c', '    network: n2', '    ip: 10.62.11.10'] });
  const p = reloadPhases(base, next, diffConfig(base, next));
  t.same(p.takeDown.containers.map((c) => c.name).sort(), ['a', 'b']);
  t.same(p.takeDown.networks, [], 'no bridge taken down');
  t.same(p.rebuild.containers.map((c) => c.name), ['a']);
  t.equal(p.rebuild.containers[0]!.ip, '10.62.10.20', 'from the new file');
  t.same(p.down.containers.sort(), ['a', 'b']);
  t.same(p.up.containers, ['a']);
});

t.test("a network whose subnet changed: it and its containers (a new one too) rebuilt; another network's untouched", async (t) => {
  const next = file({
    nets: ['  - name: n1', '    subnet: 10.62.20.0/24', '    bridge: bnvu1', '  - name: n2', '    subnet: 10.62.11.0/24', '    bridge: bnvu2'],
    cs: ['  - name: a', '    network: n1', '    ip: 10.62.20.10', '  - name: b', '    network: n1', '    ip: 10.62.20.11', '  - name: e', '    network: n1', '    ip: 10.62.20.12', '  - name: c', '    network: n2', '    ip: 10.62.11.10'],
  });
  const p = reloadPhases(base, next, diffConfig(base, next));
  t.ok(emptyPart(p.add), 'the new container waits for its network');
  t.same(p.down, { networks: ['n1'], containers: ['a', 'b'], externals: [] });
  t.same(p.up, { networks: ['n1'], containers: ['a', 'b', 'e'], externals: [] });
  t.same(p.rebuild.networks.map((n) => n.subnetCidr), ['10.62.20.0/24']);
});

t.test('a network removed with its containers; load-time settings named', async (t) => {
  const next = file({ nets: ['  - name: n1', '    subnet: 10.62.10.0/24', '    bridge: bnvu1'], cs: ['  - name: a', '    network: n1', '    ip: 10.62.10.10', '  - name: b', '    network: n1', '    ip: 10.62.10.11'], extra: ['settings:', '  nat:', '    portMin: 2000', '    portMax: 30000'] });
  const d = diffConfig(base, next);
  const p = reloadPhases(base, next, d);
  t.same(p.down, { networks: ['n2'], containers: ['c'], externals: [] });
  t.ok(emptyPart(p.add) && emptyPart(p.rebuild));
  t.same(d.loadTime, ['settings.nat']);
});
