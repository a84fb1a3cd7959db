# Copyright: permfix.containers contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""report.html: the permfix report as one self-contained page, rendered on the controller.

Controller-only (it imports Jinja2, ansible-core's own dependency), so it lives in
plugin_utils, not module_utils. One template, with autoescape: host names, paths and messages
are user data. The page loads nothing (a Content-Security-Policy of ``default-src 'none'``
says so to the browser too), is complete without JavaScript (every table is rendered here),
and a small inline script adds filters and sortable columns. The view model is computed in
Python so the template only lays it out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, StrictUndefined

from ansible_collections.permfix.containers.plugins.module_utils._core.findings import SEVERITIES

BAR_WIDTH = 320
BAR_HEIGHT = 18
SEVERITY_RANK = {name: index for index, name in enumerate(SEVERITIES)}

TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>permfix.containers audit report {{ report.generated_at }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em; color: #1b1b1b; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; }
#findings th { cursor: pointer; background: #f3f3f3; white-space: nowrap; }
#findings th[aria-sort=ascending]::after { content: " \25B2"; }
#findings th[aria-sort=descending]::after { content: " \25BC"; }
.error { color: #a40000; font-weight: bold; } .warning { color: #8a5a00; } .info { color: #245; }
details summary { cursor: pointer; } details dl { margin: .4em 0 .2em 1em; }
dt { font-weight: bold; } dd { margin: 0 0 .3em 1em; font-family: monospace; white-space: pre-wrap; }
form { margin: .5em 0; } form label { margin-right: 1em; }
svg text { font: 12px system-ui, sans-serif; }
</style>
</head>
<body>
<h1>permfix.containers audit report</h1>
<p>Generated at <time>{{ report.generated_at }}</time> (schema <code>{{ report.schema }}</code>).</p>

<h2>Summary</h2>
<table id="summary">
<tr><th class="n">hosts</th><th class="n">audited</th><th class="n">unreachable</th>
{% for name in severities %}<th class="n">{{ name }}</th>{% endfor %}</tr>
<tr><td class="n" data-count="hosts">{{ summary.hosts }}</td>
<td class="n" data-count="audited">{{ summary.hosts - summary.unreachable }}</td>
<td class="n" data-count="unreachable">{{ summary.unreachable }}</td>
{% for name in severities %}<td class="n {{ name }}"
    data-count="{{ name }}">{{ summary.findings[name] }}</td>{% endfor %}</tr>
</table>
{% if since %}
<p>Since the last run ({{ comparison.previous_generated_at or "unknown" }}):</p>
<table id="since">
<tr>{% for name in severities %}<th class="n">new {{ name }}</th>{% endfor %}<th class="n">unchanged</th>
<th class="n">resolved</th><th class="n">not verified</th></tr>
<tr>{% for name in severities %}<td class="n" data-since="new-{{ name }}">{{ since.new[name] }}</td>{% endfor %}
<td class="n" data-since="unchanged">{{ since.unchanged }}</td>
<td class="n" data-since="resolved">{{ since.resolved }}</td>
<td class="n" data-since="unverified">{{ comparison.unverified | length }}</td></tr>
</table>
<p>Hosts with new findings: {{ since.hosts_with_new | join(", ") or "none" }}.</p>
{% endif %}

<svg id="chart" role="img" aria-labelledby="chart-title" width="{{ chart.width }}" height="{{ chart.height }}"
     viewBox="0 0 {{ chart.width }} {{ chart.height }}">
<title id="chart-title">Findings by severity and by class</title>
{% for group in chart.groups %}
<text x="0" y="{{ group.y }}" font-weight="bold">{{ group.title }}</text>
{% for bar in group.bars %}
<g class="bar" data-chart="{{ group.name }}" data-name="{{ bar.name }}" data-count="{{ bar.count }}">
<text x="0" y="{{ bar.y + 13 }}">{{ bar.name }}</text>
<rect x="{{ chart.label }}" y="{{ bar.y }}" width="{{ bar.width }}" height="{{ bar_height }}"
      fill="{{ bar.colour }}"></rect>
<text x="{{ chart.label + bar.width + 6 }}" y="{{ bar.y + 13 }}">{{ bar.count }}</text>
</g>
{% endfor %}
{% endfor %}
</svg>

<h2>Findings</h2>
{% if rows %}
<form id="filters" hidden>
<label>host <select id="filter-host"><option value="">all</option>
{% for name in filter_hosts %}<option>{{ name }}</option>{% endfor %}</select></label>
<label>class <select id="filter-class"><option value="">all</option>
{% for name in filter_classes %}<option>{{ name }}</option>{% endfor %}</select></label>
<label>severity <select id="filter-severity"><option value="">all</option>
{% for name in filter_severities %}<option>{{ name }}</option>{% endfor %}</select></label>
<output id="shown">{{ rows | length }}</output> of {{ rows | length }} findings shown
</form>
<table id="findings">
<thead><tr>{% for column in columns %}
<th scope="col" data-column="{{ column }}">{{ column }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in rows %}
<tr class="finding" data-host="{{ row.host }}" data-class="{{ row.class }}" data-severity="{{ row.severity }}"
    data-id="{{ row.id }}">
<td>{{ row.host }}</td>
<td class="{{ row.severity }}" data-sort="{{ row.rank }}">{{ row.severity }}</td>
<td>{{ row.class }}</td>
<td>{{ row.subject }}</td>
<td>{{ row.container or "-" }}</td>
<td data-sort="{{ row.message }}"><details><summary>{{ row.message }}</summary>
<dl>
<dt>observed</dt><dd class="observed">{% for key, value in row.observed %}{{ key }}: {{ value }}
{% else %}-{% endfor %}</dd>
<dt>expected</dt><dd class="expected">{% for key, value in row.expected %}{{ key }}: {{ value }}
{% else %}-{% endfor %}</dd>
{% if row.evidence %}<dt>evidence{% if row.confidence %} ({{ row.confidence }}){% endif %}</dt>
<dd class="evidence">{% for item in row.evidence %}{{ item.source }} {{ item.key }}: {{ item.value }}
{% endfor %}</dd>{% endif %}
<dt>fix</dt><dd class="fix">{{ row.fix }}</dd>
{% if row.advice %}<dt>advice</dt><dd class="advice">{% for item in row.advice %}{{ item }}
{% endfor %}</dd>{% endif %}
<dt>id</dt><dd>{{ row.id }}</dd>
</dl></details></td>
<td>{{ row.change or "-" }}</td>
</tr>
{% endfor %}
</tbody>
</table>
{% else %}
<p>No findings.</p>
{% endif %}

{% if partial %}
<h2>Partial results</h2>
<table id="partial"><tr><th>host</th><th>what failed</th></tr>
{% for name, reason in partial %}<tr><td>{{ name }}</td><td>{{ reason }}</td></tr>{% endfor %}
</table>
{% endif %}
{% if unreachable %}
<h2>Unreachable hosts</h2>
<table id="unreachable"><tr><th>host</th><th>reason</th></tr>
{% for name, reason in unreachable %}<tr><td>{{ name }}</td><td>{{ reason }}</td></tr>{% endfor %}
</table>
{% endif %}
{% if clean %}
<h2>Hosts without findings</h2>
<p id="clean">{{ clean | length }}: {{ clean | join(", ") }}</p>
{% endif %}
{% for title, key in [("Resolved since the last run", "resolved"),
                       ("Not verified since the last run (the host was not fully audited)", "unverified")] %}
{% if comparison and comparison[key] %}
<h2>{{ title }}</h2>
<table id="{{ key }}"><tr><th>host</th><th>severity</th><th>class</th><th>message</th></tr>
{% for item in comparison[key] %}<tr><td>{{ item.host }}</td><td class="{{ item.severity }}">{{ item.severity }}</td>
<td>{{ item.class }}</td><td>{{ item.message }}</td></tr>{% endfor %}
</table>
{% endif %}
{% endfor %}

<script>
(function () {
  "use strict";
  var table = document.getElementById("findings");
  if (!table) { return; }
  var form = document.getElementById("filters");
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var pick = { host: "filter-host", "class": "filter-class", severity: "filter-severity" };
  function filter() {
    var shown = 0;
    rows.forEach(function (row) {
      var keep = Object.keys(pick).every(function (key) {
        var wanted = document.getElementById(pick[key]).value;
        return !wanted || row.getAttribute("data-" + key) === wanted;
      });
      row.hidden = !keep;
      if (keep) { shown += 1; }
    });
    document.getElementById("shown").textContent = String(shown);
  }
  function key(row, index) {
    var cell = row.cells[index];
    var value = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent;
    return value.trim();
  }
  function sort(header) {
    var index = header.cellIndex;
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(header.parentNode.cells, function (cell) { cell.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    rows.sort(function (a, b) {
      var x = key(a, index), y = key(b, index);
      var order = (x !== "" && y !== "" && !isNaN(x) && !isNaN(y)) ? x - y : x.localeCompare(y);
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  form.hidden = false;
  form.addEventListener("change", filter);
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header) {
    header.tabIndex = 0;
    header.addEventListener("click", function () { sort(header); });
    header.addEventListener("keydown", function (event) { if (event.key === "Enter") { sort(header); } });
  });
}());
</script>
</body>
</html>
"""

COLUMNS = ("host", "severity", "class", "subject", "container", "message", "change")
COLOURS = {"error": "#c0392b", "warning": "#d68910", "info": "#2e86c1"}


def _text(value: Any) -> str:
    """A value as one readable string (nested values as compact JSON)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _advice(item: Any) -> str:
    if isinstance(item, Mapping):
        operation = item.get("operation", "")
        rest = ", ".join(f"{key}={_text(value)}" for key, value in item.items() if key != "operation")
        return f"{operation}: {rest}" if operation and rest else str(operation or rest)
    return _text(item)


def _chart(summary: Mapping[str, Any]) -> dict[str, Any]:
    groups_in = [
        ("severity", "by severity", [(name, summary["findings"][name], COLOURS[name]) for name in SEVERITIES]),
        ("class", "by class", [(name, count, "#566573") for name, count in summary["by_class"].items()]),
    ]
    label = 10 + 8 * max(len(name) for _key, _title, bars in groups_in for name, _count, _colour in bars)
    top = max([1] + [count for _key, _title, bars in groups_in for _name, count, _colour in bars])
    y = 0
    groups = []
    for key, title, bars in groups_in:
        y += 18
        group: dict[str, Any] = {"name": key, "title": title, "y": y, "bars": []}
        y += 6
        for name, count, colour in bars:
            group["bars"].append({"name": name, "count": count, "colour": colour, "y": y,
                                  "width": round(BAR_WIDTH * count / top) if count else 0})
            y += BAR_HEIGHT + 4
        groups.append(group)
        y += 8
    return {"groups": groups, "label": label, "width": label + BAR_WIDTH + 60, "height": y}


def _row(host: str, finding: Mapping[str, Any]) -> dict[str, Any]:
    observed = dict(finding.get("observed") or {})
    evidence = observed.pop("evidence", None) or []
    confidence = observed.pop("confidence", None)
    return {
        "host": host,
        "id": finding["id"],
        "severity": finding["severity"],
        "rank": SEVERITY_RANK.get(finding["severity"], len(SEVERITY_RANK)),
        "class": finding["class"],
        "subject": finding["subject"],
        "container": finding.get("container"),
        "message": finding["message"],
        "change": finding.get("change"),
        "observed": [(key, _text(value)) for key, value in observed.items()],
        "expected": [(key, _text(value)) for key, value in (finding.get("expected") or {}).items()],
        "evidence": [{key: _text(item.get(key)) for key in ("source", "key", "value")}
                     for item in evidence if isinstance(item, Mapping)],
        "confidence": confidence,
        "fix": finding.get("fix") if finding.get("fixable") else f"not fixable automatically{_hint(finding)}",
        "advice": [_advice(item) for item in finding.get("advice") or []],
    }


def _hint(finding: Mapping[str, Any]) -> str:
    return f" ({finding['fix']})" if finding.get("fix") else ""


def render_html(report: Mapping[str, Any]) -> str:
    """report.html for ``report`` (built by ``build_report``)."""
    hosts = report["hosts"]
    summary = report["summary"]
    rows = [_row(name, finding) for name, entry in hosts.items() for finding in entry["findings"]]
    environment = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return environment.from_string(TEMPLATE).render(
        report=report,
        summary=summary,
        since=summary.get("since_last_run"),
        comparison=report.get("comparison") or {},
        severities=SEVERITIES,
        chart=_chart(summary),
        bar_height=BAR_HEIGHT,
        columns=COLUMNS,
        rows=rows,
        filter_hosts=sorted({row["host"] for row in rows}),
        filter_classes=sorted({row["class"] for row in rows}),
        filter_severities=[name for name in SEVERITIES if any(row["severity"] == name for row in rows)],
        partial=[(name, entry["reason"]) for name, entry in hosts.items()
                 if entry["reachable"] and entry.get("reason")],
        unreachable=[(name, entry.get("reason")) for name, entry in hosts.items() if not entry["reachable"]],
        clean=[name for name, entry in hosts.items()
               if entry["reachable"] and not entry["findings"] and not entry.get("reason")],
    )
