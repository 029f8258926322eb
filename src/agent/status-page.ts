// The agent's status page (http.ts serves it on loopback with `up --status-page`): one self-contained HTML document,
// no external resources, that draws Agent.status() and redraws it on every Server-Sent Event from /events (one per
// second while the page is open). Values go in with textContent only, never as HTML.
export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>autotunnel</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; margin: 24px; color: #111; background: #fff; }
  h1 { font-size: 24px; margin: 0 0 4px; }
  h2 { font-size: 18px; margin: 20px 0 6px; }
  .sub { color: #444; }
  table { border-collapse: collapse; }
  th, td { text-align: left; padding: 4px 14px 4px 0; vertical-align: top; }
  th { font-weight: 600; border-bottom: 1px solid #999; }
  td.mono, .mono { font-family: ui-monospace, monospace; font-size: 14px; }
  .path-direct { color: #064; font-weight: 600; }
  .path-punched { color: #036; font-weight: 600; }
  .path-relay { color: #840; font-weight: 600; }
  #live { font-size: 13px; color: #666; }
</style>
</head>
<body>
<h1 id="title">autotunnel</h1>
<div class="sub"><span id="ula" class="mono"></span> <span id="live">connecting...</span></div>
<h2>This host</h2>
<table id="self"></table>
<h2>Peers</h2>
<table id="peers"><thead><tr><th>Host</th><th>Path</th><th>Endpoint</th><th>ULA</th><th>Last handshake</th><th>In</th><th>Out</th></tr></thead><tbody></tbody></table>
<h2>Records</h2>
<table id="records"><tbody></tbody></table>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = String(text); if (cls) e.className = cls; return e; };
const kib = (n) => ((Number(n) || 0) / 1024).toFixed(1) + " KiB";
const ago = (iso) => { if (!iso) return "never"; const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000)); return s + " s ago"; };
function row(tbody, cells) { const tr = el("tr"); for (const [t, c] of cells) tr.appendChild(el("td", t, c)); tbody.appendChild(tr); }
function draw(s) {
  $("title").textContent = s.hostname + "." + s.domain;
  $("ula").textContent = (s.identity && s.identity.ula) || "";
  const self = $("self"); self.replaceChildren();
  const pm = s.portMapping;
  const reach = s.reachability;
  const pub = s.published || {};
  row(self, [["Port mapping"], [pm ? pm.protocol + " " + pm.external.address + ":" + pm.external.port + " via " + pm.gateway + ", " + (pm.lifetimeLeftSec === null ? "permanent" : pm.lifetimeLeftSec + " s left") : "none", "mono"]]);
  row(self, [["Reachable at"], [reach ? reach.endpoint.address + ":" + reach.endpoint.port + " (" + reach.nat + ")" : "not yet", "mono"]]);
  row(self, [["Published"], [pub.state + ", lease " + (pub.leaseSec ?? "-") + " s, " + pub.updates + " updates, " + pub.failures + " failures"]]);
  row(self, [["Agent"], ["pid " + s.pid + ", up " + s.uptimeSec + " s, version " + s.version]]);
  const tb = $("peers").tBodies[0]; tb.replaceChildren();
  for (const p of s.peers || []) {
    const path = String(p.path || "-");
    row(tb, [[p.name], [path, "path-" + path.split(" ")[0]], [p.endpoint || "-", "mono"], [p.ula || "-", "mono"], [ago(p.lastHandshake)], [kib(p.bytesIn)], [kib(p.bytesOut)]]);
  }
  if (!(s.peers || []).length) row(tb, [["no peers yet"]]);
  const rb = $("records").tBodies[0]; rb.replaceChildren();
  for (const r of pub.records || []) row(rb, [[r.text, "mono"], ["lease " + (r.leaseLeftSec ?? "-") + " s left"]]);
}
function connect() {
  const es = new EventSource("/events");
  es.onmessage = (ev) => { draw(JSON.parse(ev.data)); $("live").textContent = "live, " + new Date().toLocaleTimeString(); };
  es.onerror = () => { $("live").textContent = "agent not answering, retrying..."; };
}
fetch("/status.json").then((r) => r.json()).then(draw).catch(() => {}).finally(connect);
</script>
</body>
</html>
`
