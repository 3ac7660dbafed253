// The control-plane bench's command line (bad values refused before anything
// starts, with the option named) and its report (every table from a document).
import t from 'tap';
import { CpDoc, cpOptions, renderControlplane } from '../../bench/controlplane';
import { gauge, eventLoop, percentile } from '../../bench/lib/cpproc';
import { summarize } from '../../bench/lib/stats';

t.test('options: defaults and refusals', async (t) => {
  t.same(cpOptions({}), { sizes: [0, 100, 1000], runs: 20, modes: ['docker', 'standalone'], restSeconds: 30, churn: 20, spawnContainers: 5, concurrency: 4 });
  t.match(cpOptions({ sizes: '0, 100', runs: 3, modes: 'docker', json: 'x.json' }), { sizes: [0, 100], runs: 3, modes: ['docker'], json: 'x.json' });
  t.throws(() => cpOptions({ sizes: '0,abc' }), /--sizes: expected an integer >= 0, got "abc"/);
  t.throws(() => cpOptions({ sizes: '1001' }), /--sizes: at most 1000/);
  t.throws(() => cpOptions({ sizes: '1,2,3,4,5,6' }), /--sizes: at most 5 sizes/);
  t.throws(() => cpOptions({ runs: 0 }), /--runs: expected an integer >= 1/);
  t.throws(() => cpOptions({ runs: 101 }), /--runs: at most 100/);
  t.throws(() => cpOptions({ modes: 'docker,k8s' }), /--modes: unknown mode "k8s"/);
  t.throws(() => cpOptions({ restSeconds: '1.5' }), /--rest-seconds: expected an integer/);
  t.equal(cpOptions({ churn: 999 }).churn, 250, 'churn capped at the 250 ports it has');
});

t.test('the /metrics readers and the percentile', async (t) => {
  const text = '# HELP x\nberth_nodejs_eventloop_lag_p99_seconds 0.0125\nberth_nodejs_eventloop_lag_max_seconds{a="b"} 0.25\n';
  t.equal(gauge(text, 'berth_nodejs_eventloop_lag_p99_seconds'), 0.0125);
  t.equal(gauge(text, 'berth_missing'), undefined);
  t.same(eventLoop(text), { p99Ms: 12.5, maxMs: 250 });
  t.equal(percentile([5, 1, 4, 2, 3, NaN], 90), 5);
  t.equal(percentile([5, 1, 4, 2, 3, 6, 7, 8, 9, 10], 90), 9);
  t.ok(Number.isNaN(percentile([], 50)));
});

t.test('the report has every table', async (t) => {
  const s = summarize([1, 2, 3]);
  const doc: CpDoc = {
    suite: 'controlplane',
    command: 'node dist/bench/run.js --suite controlplane',
    date: '2026-12-01T00:00:00Z',
    machine: { cpus: 2 },
    options: cpOptions({}),
    latency: [{ mode: 'docker', world: 'iptables', size: 100, latencyMs: s, p90Ms: 3, runMs: s, failed: 0, outcomes: { answer: 3 } }],
    program: [{ mode: 'docker', world: 'berth', size: 100, added: 100, startSeconds: 50, allAnsweringSeconds: 0.5, answered: 100 }],
    daemon: [{ mode: 'docker', size: 100, restSeconds: 30, cpuSelfPerMin: 1, cpuChildrenPerMin: 2, rssMiB: 90, eventLoopRest: { p99Ms: 10, maxMs: 20 }, scrapeMs: s, scrapeBytes: 4096, churn: { containers: 20, seconds: 30, p99Ms: 50, maxMs: 100, cpuSeconds: 3 }, restartSeconds: 2 }],
    spawns: [{ mode: 'docker', size: 100, restSeconds: 30, restPerMinute: {}, containers: 5, startSeconds: 9, start: { ip: 41, nsenter: 5 }, removeSeconds: 2, remove: { ip: 30 } }],
    errors: ['docker/berth: failed: x'],
    sizeSeconds: [{ mode: 'docker', world: 'berth', size: 100, seconds: 120 }],
    standalone: [{ size: 100, upSeconds: 20, runStartSeconds: 2, downSeconds: 5 }],
    notes: ['a note'],
    seconds: 300,
  };
  const out = renderControlplane(doc);
  t.match(out, /MODE\s+PATH\s+OTHERS\s+MEDIAN\s+P90/);
  t.match(out, /docker\s+Docker's iptables\s+100\s+2\.0\s+3\.0\s+1\.0-3\.0\s+3\s+0/);
  t.match(out, /Time to program N containers/);
  t.match(out, /1\.00\+2\.00\s+90\.0\s+10\.0\/20\.0/);
  t.match(out, /41 ip, 5 nsenter/);
  t.match(out, /none/, 'no spawns at rest');
  t.match(out, /Standalone: berth up/);
  t.match(out, /Seconds each size took/);
  t.match(out, /Errors\n {2}docker\/berth: failed: x/);
  t.notMatch(out, /partial/);
  t.match(renderControlplane({ ...doc, partial: true }), /partial: the run is still going or was cut short/);
});
