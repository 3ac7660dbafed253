/** Bounded waits for servers started in a namespace (shared by tests and bench). */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const pexec = promisify(execFile);

/** Wait until something listens on the TCP port in the namespace ('' = the host). */
export async function waitListening(ns: string, port: number, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  const argv = ['ss', '-Hltn', `sport = :${port}`];
  while (Date.now() < end) {
    const out = await (ns ? pexec('ip', ['netns', 'exec', ns, ...argv], { timeout: 5000 }) : pexec(argv[0], argv.slice(1), { timeout: 5000 }))
      .then((r) => r.stdout)
      .catch(() => '');
    if (out.trim()) return;
    await new Promise((r) => setTimeout(r, 30));
  }
  throw new Error(`nothing listens on port ${port} in ${ns || 'the host'} after ${timeoutMs} ms`);
}
