/**
 * The live dashboard, served by the daemon next to /metrics: a static page
 * (src/observe/dashboard/static), the chart library from node_modules (uPlot; no CDN,
 * the page works offline) and `/api/snapshot`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Dataplane } from '../../platform/dataplane';
import type { Health, MapFillSampler, RouteHandler } from '../metrics';
import { readSnapshot } from './snapshot';

/** dist/src/observe/dashboard -> src/observe/dashboard/static (the page is not compiled). */
export const STATIC_DIR = path.resolve(__dirname, '..', '..', '..', '..', 'src', 'observe', 'dashboard', 'static');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

function files(): Record<string, string> {
  const uplot = path.dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));
  return {
    '/': path.join(STATIC_DIR, 'index.html'),
    '/index.html': path.join(STATIC_DIR, 'index.html'),
    '/app.js': path.join(STATIC_DIR, 'app.js'),
    '/style.css': path.join(STATIC_DIR, 'style.css'),
    '/vendor/uPlot.iife.min.js': path.join(uplot, 'uPlot.iife.min.js'),
    '/vendor/uPlot.min.css': path.join(uplot, 'uPlot.min.css'),
  };
}

export function dashboardRoutes(dp: Dataplane, health: Health, sampler: MapFillSampler): RouteHandler {
  const routes = files();
  return (req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    if (url === '/api/snapshot') {
      readSnapshot(dp, health, sampler)
        .then((s) => {
          res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
          res.end(JSON.stringify(s));
        })
        .catch((e: Error) => {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: e.message }));
        });
      return true;
    }
    const file = routes[url];
    if (!file) return false;
    fs.readFile(file, (err, body) => {
      if (err) {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`dashboard file missing: ${err.message}\n`);
        return;
      }
      res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-cache' });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
    return true;
  };
}
