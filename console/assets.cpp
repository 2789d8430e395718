// console assets: Bootstrap's CSS and Chart.js from their Debian packages (libjs-bootstrap5,
// libjs-chart.js), read once from fixed paths; the console's own script and style compiled in.
// Nothing is fetched from the Internet; no request path ever names a file.
#include <fstream>
#include <sstream>

#include "console.hpp"

namespace mx::console {
namespace {

// The console's only script: progressive enhancement, the pages work without it.
const char* const console_js = R"JS('use strict';
function showAuthDetails() {
  const sel = document.getElementById('auth');
  if (!sel) return;
  for (const el of document.querySelectorAll('[data-auth]')) {
    el.classList.toggle('hidden', !el.dataset.auth.split(' ').includes(sel.value));
  }
}
function drawHistory(canvas) {
  if (typeof Chart === 'undefined') return;
  fetch(canvas.dataset.src, {credentials: 'same-origin'})
    .then((r) => r.json())
    .then((d) => {
      const colors = {accepted: '#198754', rejected: '#dc3545', tempfailed: '#fd7e14',
                      imported: '#0d6efd', failed: '#6f42c1'};
      const datasets = Object.keys(colors).map((k) => ({
        label: k, data: d[k], borderColor: colors[k], backgroundColor: colors[k],
        pointRadius: 0, tension: 0.2}));
      new Chart(canvas, {type: 'line', data: {labels: d.labels, datasets: datasets},
                         options: {animation: false, responsive: true,
                                   scales: {y: {beginAtZero: true}}}});
      canvas.dataset.drawn = 'yes';
    });
}
function drawLogCharts(canvases) {
  if (typeof Chart === 'undefined' || canvases.length === 0) return;
  fetch(canvases[0].dataset.src, {credentials: 'same-origin'})
    .then((r) => r.json())
    .then((d) => {
      const opts = {animation: false, responsive: true, scales: {y: {beginAtZero: true}}};
      for (const c of canvases) {
        let cfg = null;
        if (c.dataset.kind === 'hourly') {
          const colors = {received: '#0d6efd', delivered: '#198754', rejected: '#dc3545',
                          deferred: '#fd7e14', bounced: '#6f42c1'};
          cfg = {type: 'bar', data: {labels: d.hourly.map((h) => String(h.hour).padStart(2, '0')),
                 datasets: Object.keys(colors).map((k) => ({label: k, backgroundColor: colors[k],
                                                           data: d.hourly.map((h) => h[k])}))},
                 options: opts};
        } else if (c.dataset.kind === 'reasons') {
          const r = d.rejects.by_reason;
          cfg = {type: 'bar', data: {labels: Object.keys(r), datasets: [
                   {label: 'rejects', backgroundColor: '#dc3545', data: Object.values(r)}]},
                 options: Object.assign({indexAxis: 'y'}, opts, {scales: {x: {beginAtZero: true}}})};
        } else if (c.dataset.kind === 'delays') {
          const keys = ['p50', 'p90', 'p95', 'p99', 'max'];
          cfg = {type: 'bar', data: {labels: keys, datasets: [
                   {label: 'seconds', backgroundColor: '#0d6efd', data: keys.map((k) => d.delays[k])}]},
                 options: opts};
        }
        if (cfg) { new Chart(c, cfg); c.dataset.drawn = 'yes'; }
      }
    });
}
document.addEventListener('DOMContentLoaded', () => {
  const sel = document.getElementById('auth');
  if (sel) { sel.addEventListener('change', showAuthDetails); showAuthDetails(); }
  for (const f of document.querySelectorAll('form[data-confirm]')) {
    f.addEventListener('submit', (e) => { if (!window.confirm(f.dataset.confirm)) e.preventDefault(); });
  }
  for (const c of document.querySelectorAll('canvas.history')) drawHistory(c);
  drawLogCharts(document.querySelectorAll('canvas.logchart'));
});
)JS";

const char* const console_css = R"CSS(.hidden { display: none !important; }
.login { max-width: 24rem; }
pre.headers { white-space: pre-wrap; word-break: break-all; max-height: 40rem; overflow: auto;
              background: #f8f9fa; padding: .75rem; }
.up { color: #198754; font-weight: bold; }
.down { color: #dc3545; font-weight: bold; }
td form { display: inline; }
.chart-box { max-width: 60rem; }
.doctor-fail td { background: #f8d7da; }
.doctor-warn td { background: #fff3cd; }
td.hostile { word-break: break-all; }
)CSS";

std::string slurp(const char* path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return {};
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

void serve(httplib::Server& svr, const std::string& url, std::string body, const char* type,
           const char* missing_package) {
    svr.Get(url, [body = std::move(body), type, missing_package](const httplib::Request&,
                                                                 httplib::Response& res) {
        if (body.empty()) {
            res.status = 404;
            res.set_content(std::string("not installed: ") + missing_package + "\n", "text/plain");
            return;
        }
        res.headers.erase("Cache-Control");  // the default is no-store (pages)
        res.set_header("Cache-Control", "max-age=3600");
        res.set_content(body, type);
    });
}

}  // namespace

void install_assets(httplib::Server& svr) {
    serve(svr, "/static/bootstrap.min.css",
          slurp("/usr/share/javascript/bootstrap5/css/bootstrap.min.css"), "text/css",
          "libjs-bootstrap5");
    serve(svr, "/static/chart.min.js", slurp("/usr/share/javascript/chart.js/chart.min.js"),
          "application/javascript", "libjs-chart.js");
    serve(svr, "/static/console.js", console_js, "application/javascript", "");
    serve(svr, "/static/console.css", console_css, "text/css", "");
    svr.Get("/favicon.ico", [](const httplib::Request&, httplib::Response& res) {
        res.status = 204;  // none: browsers ask on every page
    });
}

}  // namespace mx::console
