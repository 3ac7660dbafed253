// The live dashboard in headless Chromium (Debian's `chromium`, driven by
// playwright-core): the daemon serves it on the metrics address over a test
// topology with traffic running; the page must show the test's containers
// and numbers that move. BERTH_UPDATE_SCREENSHOT=1 also writes
// docs/dashboard.png. scripts/ensure.sh test installs Chromium; without it
// the test is skipped, with the reason.
import t from 'tap';
import { spawn, ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startDaemon, Daemon } from '../../src/engine/daemon';
import { setQuiet } from '../../src/platform/log';
import { fixture } from '../lib/topo';

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const ROOT = path.resolve(__dirname, '..', '..', '..');

/** scripts/ensure.sh test installs Debian's chromium; without it the test says why it is skipped. */
function chromiumMissing(): string | undefined {
  return fs.existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is not installed (scripts/ensure.sh test installs it: apt-get install chromium)`;
}

const why = chromiumMissing();
{
  t.test('dashboard renders the topology and live traffic', { skip: why ? `dashboard test skipped: ${why}` : false }, async (t) => {
    setQuiet(true);
    const fx = fixture(t, 'obd', 30, [
      { key: 'a', containers: ['a1', 'a2'] },
      { key: 'b', containers: ['b1'] },
    ]);
    let daemon: Daemon | undefined;
    const pings: ChildProcess[] = [];
    t.teardown(async () => {
      for (const p of pings) if (p.exitCode === null) p.kill('SIGTERM');
      await daemon?.stop();
    });
    daemon = await startDaemon({ configPath: fx.cfgPath, pinRoot: fx.pinRoot, metrics: '127.0.0.1:0', startCommands: false, intervalMs: 60000, sweepMs: 60000 });
    t.match(daemon.dashboardUrl, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    // traffic for the whole test: a1 <-> a2 (redirected), a1 -> b1 (isolation drops); bounded by -c
    const ping = (from: string, to: string) => {
      const p = spawn('ip', ['netns', 'exec', fx.c(from), 'ping', '-q', '-i', '0.2', '-c', '150', '-W', '1', fx.ip(to)], { stdio: 'ignore' });
      pings.push(p);
    };
    ping('a1', 'a2');
    ping('a2', 'a1');
    ping('a1', 'b1');

    const res = await fetch(`${daemon.dashboardUrl}api/snapshot`);
    t.equal(res.status, 200);
    const snap = (await res.json()) as { containers: Array<{ container: string }> };
    t.same(snap.containers.map((c) => c.container).sort(), [fx.c('a1'), fx.c('a2'), fx.c('b1')].sort(), 'snapshot lists the containers');
    const vendor = await fetch(`${daemon.dashboardUrl}vendor/uPlot.iife.min.js`);
    t.equal(vendor.status, 200, 'chart library served locally');

    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const { chromium } = require('playwright-core') as typeof import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, headless: true });
    t.teardown(() => browser.close());
    const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
    const external: string[] = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(daemon!.dashboardUrl)) external.push(r.url());
    });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(daemon.dashboardUrl);
    for (const c of ['a1', 'a2', 'b1']) await page.waitForSelector(`tr[data-container="${fx.c(c)}"]`, { timeout: 15000 });
    t.pass('the three containers are listed');
    const packets = async (c: string) => Number((await page.textContent(`tr[data-container="${fx.c(c)}"] td.packets`))?.replace(/[^0-9.]/g, ''));
    await page.waitForFunction('Number(document.body.getAttribute("data-updates")) >= 3', undefined, { timeout: 15000 });
    const p1 = await packets('a1');
    await page.waitForTimeout(2500);
    const p2 = await packets('a1');
    t.ok(p2 > p1, `a1's packet count moves (${p1} -> ${p2})`);
    const rate = await page.textContent(`tr[data-container="${fx.c('a1')}"] td.rate`);
    t.ok(Number(rate) > 0, `a1 sends packets per second (${rate})`);
    await page.waitForSelector('#drops tr[data-reason="isolation"]', { timeout: 15000 });
    t.pass('isolation drops shown');
    t.equal(await page.locator('#chart-net canvas').count() > 0, true, 'charts drawn');
    t.equal(await page.textContent('#n-containers'), '3');
    t.same(external, [], 'no request leaves the daemon (works offline)');
    t.same(errors, [], 'no page errors');
    const shot = process.env.BERTH_UPDATE_SCREENSHOT === '1' ? path.join(ROOT, 'docs', 'dashboard.png') : path.join(os.tmpdir(), `berth-dashboard-${process.pid}.png`);
    await page.waitForTimeout(3000); // a few more points on the charts
    await page.screenshot({ path: shot, fullPage: true });
    t.comment(`screenshot: ${shot}`);
    if (!shot.startsWith(ROOT)) fs.rmSync(shot, { force: true });
  });
}
