// berth dashboard: polls /api/snapshot every second, computes rates from
// successive snapshots and draws them with uPlot (served locally).
(function () {
  'use strict';
  var POLL_MS = 1000;
  var KEEP = 300; // points of history
  var COLORS = ['#4fb3ff', '#5fd38d', '#ffb347', '#ff6b6b', '#c38fff', '#5ee7e7', '#f78fb3', '#d4d46a', '#9aa5ff', '#ff9f6b'];
  var prev = null;
  var hist = { t: [], net: {}, ctr: {}, drops: {}, ct: [] };
  var charts = {};

  function $(id) { return document.getElementById(id); }
  function fmtNum(n) {
    if (!isFinite(n)) return '–';
    var a = Math.abs(n);
    if (a >= 1e9) return (n / 1e9).toFixed(2) + 'G';
    if (a >= 1e6) return (n / 1e6).toFixed(2) + 'M';
    if (a >= 1e4) return (n / 1e3).toFixed(1) + 'k';
    if (a >= 100 || n === Math.round(n)) return String(Math.round(n));
    return n.toFixed(1);
  }
  function fmtBytes(n) {
    if (!isFinite(n)) return '–';
    var u = ['B', 'kB', 'MB', 'GB', 'TB'];
    var i = 0;
    while (Math.abs(n) >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(1) : String(Math.round(n))) + ' ' + u[i];
  }
  function rate(cur, old, dt) { return old === undefined || dt <= 0 ? 0 : Math.max(0, (cur - old) / dt); }
  function esc(s) { return String(s).replace(/[&<>"']/g, function (c) { return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]; }); }
  function rows(tbody, html) { $(tbody).querySelector('tbody').innerHTML = html.join(''); }

  function push(series, key, v, len) {
    if (!series[key]) { series[key] = []; for (var i = 0; i < len - 1; i++) series[key].push(null); }
    series[key].push(v);
  }
  function trim() {
    if (hist.t.length <= KEEP) return;
    var cut = hist.t.length - KEEP;
    hist.t.splice(0, cut);
    hist.ct.splice(0, cut);
    [hist.net, hist.ctr, hist.drops].forEach(function (s) { Object.keys(s).forEach(function (k) { s[k].splice(0, cut); }); });
  }

  function chart(id, series, fmt) {
    var el = $(id);
    var keys = Object.keys(series).sort();
    var sig = keys.join('|');
    var data = [hist.t].concat(keys.map(function (k) { return series[k]; }));
    var c = charts[id];
    if (!c || c.sig !== sig) {
      if (c) c.plot.destroy();
      var opts = {
        width: Math.max(300, el.clientWidth || 500),
        height: 200,
        legend: { show: true },
        scales: { x: { time: true } },
        axes: [
          { stroke: '#8a96a3', grid: { stroke: '#26303a' } },
          { stroke: '#8a96a3', grid: { stroke: '#26303a' }, size: 60, values: function (u, vals) { return vals.map(fmt); } },
        ],
        series: [{}].concat(keys.map(function (k, i) {
          return { label: k || '(none)', stroke: COLORS[i % COLORS.length], width: 1.5, value: function (u, v) { return v == null ? '–' : fmt(v); } };
        })),
      };
      c = charts[id] = { sig: sig, plot: new uPlot(opts, data, el) };
    } else {
      c.plot.setData(data);
    }
  }

  function render(s) {
    var dt = prev ? s.time - prev.time : 0;
    var old = {};
    if (prev) prev.containers.concat(prev.uplinks).forEach(function (e) { old[e.ifindex] = e; });
    var oldDrops = prev ? prev.drops : {};
    var len = hist.t.length + 1;
    hist.t.push(s.time);

    var total = { bps: 0, pps: 0, drops: 0 };
    var perNet = {};
    // an address with a port: [v6]:port, so that the port is not read as part of an IPv6 address
    function hostPort(a, p) { return (String(a).indexOf(':') >= 0 ? '[' + a + ']' : a) + ':' + p; }
    var trs = s.containers.map(function (e) {
      var o = old[e.ifindex];
      var sp = rate(e.fromContainer.packets, o && o.fromContainer.packets, dt);
      var rp = rate(e.toContainer.packets, o && o.toContainer.packets, dt);
      var sb = rate(e.fromContainer.bytes, o && o.fromContainer.bytes, dt);
      var rb = rate(e.toContainer.bytes, o && o.toContainer.bytes, dt);
      var dr = rate(e.fromContainer.drops + e.toContainer.drops, o && o.fromContainer.drops + o.toContainer.drops, dt);
      total.bps += sb + rb; total.pps += sp + rp; total.drops += dr;
      var n = perNet[e.network] || (perNet[e.network] = { bps: 0, pps: 0 });
      n.bps += sb + rb; n.pps += sp + rp;
      push(hist.ctr, e.container, sb + rb, len);
      var packets = e.fromContainer.packets + e.toContainer.packets;
      return '<tr data-container="' + esc(e.container) + '"><td>' + esc(e.container) + '</td><td class="addresses">' + esc((e.addresses || []).join(' ')) + '</td><td>' + esc(e.network) + '</td><td>' + esc(e.interface) +
        '</td><td class="n rate">' + fmtNum(sp) + '</td><td class="n">' + fmtNum(rp) + '</td><td class="n' + (sb + rb > 0 ? ' hot' : '') + '">' + fmtBytes(sb) +
        '</td><td class="n">' + fmtBytes(rb) + '</td><td class="n' + (dr > 0 ? ' bad' : '') + '">' + fmtNum(dr) + '</td><td class="n packets">' + fmtNum(packets) +
        '</td><td class="n">' + fmtNum(e.redirected) + '</td><td class="n">' + e.programs + '</td></tr>';
    });
    rows('containers', trs);
    // series of containers/networks that went away get a null point
    Object.keys(hist.ctr).forEach(function (k) { if (hist.ctr[k].length < len) hist.ctr[k].push(null); });

    s.networks.forEach(function (n) { push(hist.net, n.network, (perNet[n.network] || { bps: 0 }).bps, len); });
    Object.keys(hist.net).forEach(function (k) { if (hist.net[k].length < len) hist.net[k].push(null); });
    rows('networks', s.networks.map(function (n) {
      var r = perNet[n.network] || { bps: 0, pps: 0 };
      return '<tr><td>' + esc(n.network) + '</td><td class="n">' + n.endpoints + '</td><td class="n">' + fmtNum(r.pps) + '</td><td class="n">' + fmtBytes(r.bps) + '</td><td class="n">' + fmtNum(n.drops) + '</td></tr>';
    }));

    var reasons = Object.keys(s.drops).sort();
    reasons.forEach(function (r) { push(hist.drops, r, rate(s.drops[r], oldDrops[r], dt), len); });
    Object.keys(hist.drops).forEach(function (k) { if (hist.drops[k].length < len) hist.drops[k].push(0); });
    rows('drops', reasons.length ? reasons.map(function (r) {
      return '<tr data-reason="' + esc(r) + '"><td>' + esc(r) + '</td><td class="n">' + fmtNum(s.drops[r]) + '</td><td class="n">' + fmtNum(rate(s.drops[r], oldDrops[r], dt)) + '</td></tr>';
    }) : ['<tr><td colspan="3" class="muted">no drops</td></tr>']);

    hist.ct.push(s.conntrack.entries);
    trim();

    rows('ports', s.ports.length ? s.ports.map(function (p) {
      return '<tr><td>' + esc(hostPort(p.hostIp, p.hostPort)) + '</td><td>' + esc(p.proto) + '</td><td>' + esc(p.container) + '</td><td>' + esc(hostPort(p.containerIp, p.containerPort)) + '</td><td>' + (p.loopbackOnly ? 'host only' : 'any') + '</td></tr>';
    }) : ['<tr><td colspan="5" class="muted">none</td></tr>']);
    rows('maps', s.maps.map(function (m) {
      return '<tr><td>' + esc(m.map) + '</td><td class="n">' + fmtNum(m.entries) + '</td><td class="n">' + fmtNum(m.maxEntries) + '</td><td class="n">' + (m.ratio * 100).toFixed(1) + '%</td></tr>';
    }));

    $('version').textContent = 'v' + s.version;
    $('n-containers').textContent = s.containers.length;
    $('n-networks').textContent = s.networks.length;
    $('total-rate').textContent = fmtBytes(total.bps) + '/s';
    $('total-pps').textContent = fmtNum(total.pps) + ' packets/s';
    $('drop-rate').textContent = fmtNum(total.drops) + '/s';
    $('drop-total').textContent = fmtNum(reasons.reduce(function (a, r) { return a + s.drops[r]; }, 0)) + ' total';
    $('ct-entries').textContent = fmtNum(s.conntrack.entries);
    $('ct-detail').textContent = 'of ' + fmtNum(s.conntrack.capacity) + ' · ' + fmtNum(s.conntrack.created) + ' created · ' + fmtNum(s.conntrack.evicted) + ' evicted';
    $('nat').textContent = fmtNum(s.nat.retries) + ' / ' + fmtNum(s.nat.failures);
    $('n-ports').textContent = s.ports.length;
    var st = $('status');
    st.textContent = s.health.lastError ? 'error: ' + s.health.errorClass : 'ok';
    st.title = s.health.lastError || '';
    st.className = 'status ' + (s.health.lastError ? 'err' : 'ok');
    $('updated').textContent = 'updated ' + new Date(s.time * 1000).toLocaleTimeString();

    chart('chart-net', hist.net, fmtBytes);
    chart('chart-ctr', hist.ctr, fmtBytes);
    chart('chart-drops', hist.drops, fmtNum);
    chart('chart-ct', { entries: hist.ct }, fmtNum);
    prev = s;
    document.body.setAttribute('data-updates', String((Number(document.body.getAttribute('data-updates')) || 0) + 1));
  }

  function poll() {
    fetch('api/snapshot', { cache: 'no-store' })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then(render)
      .catch(function (e) { var st = $('status'); st.textContent = 'disconnected'; st.title = String(e); st.className = 'status err'; })
      .then(function () { setTimeout(poll, POLL_MS); });
  }
  poll();
})();
