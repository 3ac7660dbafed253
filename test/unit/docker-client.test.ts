// The Docker client against a fake Engine API on a unix socket.
import t from 'tap';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { DockerApiError, DockerClient, DockerEvent } from '../../src/sources/docker/client';

async function fakeDocker(t: { teardown(fn: () => void | Promise<void>): void }, handler: http.RequestListener): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-fake-docker-'));
  const sock = path.join(dir, 'docker.sock');
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(sock, r));
  t.teardown(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return sock;
}

t.test('GETs: networks, containers, 404 is null, errors carry the status', async (t) => {
  const seen: string[] = [];
  const sock = await fakeDocker(t, (req, res) => {
    seen.push(req.url!);
    const json = (code: number, v: unknown): void => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(v));
    };
    if (req.url === '/_ping') return void res.end('OK');
    if (req.url === '/networks') return json(200, [{ Name: 'bridge', Id: 'x', Driver: 'bridge' }]);
    if (req.url === '/containers/json') return json(200, [{ Id: 'c1' }]);
    if (req.url === '/containers/c1/json') return json(200, { Id: 'c1', Name: '/web', State: { Running: true, Pid: 1 }, NetworkSettings: {} });
    if (req.url === '/containers/gone/json') return json(404, { message: 'No such container: gone' });
    json(500, { message: 'boom' });
  });
  const c = new DockerClient({ socketPath: sock });
  t.teardown(() => c.close());
  t.equal(await c.ping(), true);
  t.same(await c.networks(), [{ Name: 'bridge', Id: 'x', Driver: 'bridge' }]);
  t.same(await c.containers(), [{ Id: 'c1' }]);
  t.equal((await c.container('c1'))!.Name, '/web');
  t.equal(await c.container('gone'), null);
  const err = await c.network('x').then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof DockerApiError && err.status === 500 && /boom/.test(err.message), 'HTTP 500 with the body');
  t.ok(seen.includes('/containers/c1/json'));
});

t.test('events: JSON lines (split across chunks), filters, abort', async (t) => {
  let url = '';
  const sock = await fakeDocker(t, (req, res) => {
    url = req.url!;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"Type":"container","Action":"start","Actor":{"ID":"a"}}\n{"Type":"net');
    setTimeout(() => res.write('work","Action":"connect","Actor":{"ID":"n","Attributes":{"container":"a"}}}\n'), 20);
    setTimeout(() => res.end(), 60);
  });
  const c = new DockerClient({ socketPath: sock });
  t.teardown(() => c.close());
  const got: DockerEvent[] = [];
  let opened = false;
  await c.events((e) => got.push(e), { onOpen: () => (opened = true) });
  t.ok(opened);
  t.same(got.map((e) => `${e.Type}:${e.Action}`), ['container:start', 'network:connect']);
  t.match(decodeURIComponent(url), /filters=\{"type":\["container","network"\]\}/);

  // an endless stream ends quietly when aborted
  const sock2 = await fakeDocker(t, (_req, res) => {
    res.writeHead(200);
    res.write('\n');
  });
  const c2 = new DockerClient({ socketPath: sock2 });
  t.teardown(() => c2.destroy());
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 50);
  await c2.events(() => undefined, { signal: ac.signal });
  t.pass('aborted');
});

t.test('an absent socket is an error, not a hang', async (t) => {
  const c = new DockerClient({ socketPath: '/nonexistent/docker.sock', timeoutMs: 2000 });
  t.teardown(() => c.close());
  t.equal(await c.ping(), false);
  await t.rejects(c.networks());
  await t.rejects(c.events(() => undefined));
});

t.test("a real dockerd 20.10's dual-stack answers (the captured fixture) come through typed, IPv6 fields and all", async (t) => {
  const cap = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', '..', 'test', 'fixtures', 'docker', 'dockerd-20.10-dualstack.json'), 'utf8')) as {
    networks: Array<{ Id: string; Name: string }>;
    inspect: Record<string, { Id: string }>;
    containers: Record<string, { Id: string }>;
  };
  const byPath = new Map<string, unknown>([['/networks', cap.networks]]);
  for (const n of Object.values(cap.inspect)) byPath.set(`/networks/${n.Id}`, n);
  for (const c of Object.values(cap.containers)) byPath.set(`/containers/${c.Id}/json`, c);
  byPath.set('/containers/json', Object.values(cap.containers).map((c) => ({ Id: c.Id })));
  const sock = await fakeDocker(t, (req, res) => {
    const v = byPath.get(req.url!);
    res.writeHead(v === undefined ? 404 : 200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(v ?? { message: 'no such thing' }));
  });
  const c = new DockerClient({ socketPath: sock });
  t.teardown(() => c.close());
  const nets = await c.networks();
  const net = nets.find((n) => n.Name === 'v6d-net')!;
  t.equal(net.EnableIPv6, true);
  t.equal(net.EnableIPv4, undefined, 'dockerd 20.10 has no EnableIPv4');
  t.same(net.IPAM?.Config, [{ Subnet: '10.89.1.0/24' }, { Subnet: 'fd89:1::/64' }], 'one IPAM entry per family, no IPv6 Gateway given');
  const inspected = await c.network(net.Id);
  t.same(Object.values(inspected.Containers ?? {}).map((e) => [e.IPv4Address, e.IPv6Address]), [['10.89.1.2/24', 'fd89:1::2/64']]);
  t.equal((await c.network(nets.find((n) => n.Name === 'v6d-no4')!.Id)).Options?.['com.docker.network.enable_ipv4'], 'false');
  const ids = await c.containers();
  t.equal(ids.length, 5);
  const infos = await Promise.all(ids.map((s) => c.container(s.Id)));
  const c1 = infos.find((x) => x?.Name === '/v6d-c1')!;
  const ep = Object.values(c1.NetworkSettings.Networks ?? {})[0]!;
  t.same([ep.IPAddress, ep.GlobalIPv6Address, ep.GlobalIPv6PrefixLen, ep.IPv6Gateway], ['10.89.1.2', 'fd89:1::2', 64, 'fd89:1::1']);
  t.same(c1.NetworkSettings.Ports?.['80/tcp'], [{ HostIp: '0.0.0.0', HostPort: '28961' }, { HostIp: '::', HostPort: '28961' }], '-p 28961:80: one binding per family');
  t.same(c1.NetworkSettings.Ports?.['82/tcp'], [{ HostIp: '::1', HostPort: '28963' }]);
  const c3 = infos.find((x) => x?.Name === '/v6d-c3')!;
  t.equal(Object.values(c3.NetworkSettings.Networks ?? {})[0]!.GlobalIPv6Address, '', 'no IPv6 on an IPv4 network: empty');
  t.same(c3.NetworkSettings.Ports?.['80/tcp'], [{ HostIp: '0.0.0.0', HostPort: '28966' }], 'and no :: binding');
});
