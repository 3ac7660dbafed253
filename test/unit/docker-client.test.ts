// The Docker client against a fake Engine API on a unix socket.
import t from 'tap';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { DockerApiError, DockerClient, DockerEvent } from '../../src/docker/client';

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
