/* streamer web page: the core every view uses (API client, router, tables, charts, CSV).
 *
 * A view is one object given to Streamer.registerView({id, title, render}); the router
 * shows it at #<id>?<params>, so a new view (statements, say) is one more file and one
 * more <script> line in index.html, nothing else. Views read only the public query API
 * through Streamer.api(), which turns every failure into an ApiError with a sentence a
 * person can act on.
 */
"use strict";

(function () {
  const S = {};
  window.Streamer = S;

  const TOKEN_KEY = "streamer.token";
  const views = [];
  let current = null; // {view, cleanups}

  S.windows = (document.querySelector('meta[name="streamer-windows"]').content || "1m,1h,1d")
    .split(",").filter(Boolean);
  S.defaultWindow = S.windows[Math.min(1, S.windows.length - 1)];
  const UNITS = {ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000};
  /* "1h" -> 3600000: window names are durations (STREAMER_WINDOWS). */
  S.windowMs = function (name) {
    const match = /^(\d+)(ms|s|m|h|d)$/.exec(name);
    return match ? Number(match[1]) * UNITS[match[2]] : null;
  };
  S.ORIGINS = ["human", "ai_assisted", "ai_generated"];
  S.ORIGIN_LABELS = {human: "human", ai_assisted: "AI-assisted", ai_generated: "AI-generated",
                     unknown: "unknown"};
  S.ORIGIN_COLORS = {human: "#4c78a8", ai_assisted: "#f2a541", ai_generated: "#d6404e"};
  /* opaque tints: stacked areas are painted over each other */
  S.ORIGIN_FILLS = {human: "#b7cde4", ai_assisted: "#f9dba8", ai_generated: "#efa9af"};
  S.PALETTE = ["#1b6ca8", "#d6404e", "#2a9d8f", "#8e5ac8", "#e07b00", "#5c6b73", "#b5179e",
               "#3a7d44"];

  // -- DOM helpers ------------------------------------------------------------------

  S.el = function (tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  };

  S.fmtInt = (n) => (n === null || n === undefined) ? "–" : Number(n).toLocaleString("en-US");
  S.fmtPct = (x) => (x === null || x === undefined) ? "–" : (100 * x).toFixed(1) + " %";
  S.fmtTime = function (ms, withTime = true) {
    const iso = new Date(ms).toISOString();
    return withTime ? iso.slice(0, 16).replace("T", " ") + " UTC" : iso.slice(0, 10);
  };
  /* micro-shares as an exact decimal string of uses (weighted_micro / 1,000,000) */
  S.fmtMicro = function (micro) {
    const sign = micro < 0 ? "-" : "";
    const digits = String(Math.abs(micro)).padStart(7, "0");
    const whole = digits.slice(0, -6), frac = digits.slice(-6).replace(/0+$/, "");
    return sign + Number(whole).toLocaleString("en-US") + (frac ? "." + frac : "");
  };

  S.originBadge = function (origin) {
    return S.el("span", {class: "badge badge-" + origin, title: "ai_origin: " + origin},
                S.ORIGIN_LABELS[origin] || origin);
  };

  /* A message box; kind: error | empty | info | loading. Replaces the previous one. */
  S.message = function (box, kind, text) {
    box.replaceChildren();
    if (!text) { box.hidden = true; return; }
    box.hidden = false;
    box.className = "message " + kind;
    box.setAttribute("role", kind === "error" ? "alert" : "status");
    box.append(text);
  };

  /* columns: [{key, label, numeric, format(value, row)}]; rows: objects. */
  S.table = function (columns, rows, options = {}) {
    const head = S.el("tr", {}, columns.map((c) => S.el("th", {scope: "col",
      class: c.numeric ? "num" : null}, c.label)));
    const body = rows.map((row) => S.el("tr", {}, columns.map((c) => {
      const value = row[c.key];
      const shown = c.format ? c.format(value, row) : (c.numeric ? S.fmtInt(value) : value);
      return S.el("td", {class: c.numeric ? "num" : null, "data-key": c.key,
                         "data-value": typeof value === "object" ? null : value}, shown);
    })));
    const table = S.el("table", {class: "data " + (options.class || "")},
      options.caption ? S.el("caption", {}, options.caption) : null,
      S.el("thead", {}, head), S.el("tbody", {}, body));
    return S.el("div", {class: "table-wrap"}, table);
  };

  // -- CSV ------------------------------------------------------------------------

  S.csv = function (columns, rows) {
    const quote = (v) => {
      const text = v === null || v === undefined ? "" : String(v);
      return /[",\n\r]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
    };
    const lines = [columns.map((c) => quote(c.key)).join(",")];
    for (const row of rows) lines.push(columns.map((c) => quote(row[c.key])).join(","));
    return lines.join("\r\n") + "\r\n";
  };

  S.downloadButton = function (label, filename, makeText) {
    return S.el("button", {type: "button", class: "download", onclick: () => {
      const blob = new Blob([makeText()], {type: "text/csv;charset=utf-8"});
      const link = S.el("a", {href: URL.createObjectURL(blob), download: filename});
      document.body.append(link);
      link.click();
      setTimeout(() => { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
    }}, label);
  };

  // -- API ------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(kind, message, status) {
      super(message);
      this.kind = kind; // unreachable | token | status | bad
      this.status = status || null;
    }
  }
  S.ApiError = ApiError;

  S.token = () => sessionStorage.getItem(TOKEN_KEY);

  /* The answer with by=territory, or a note saying why there is none: a worker without
   * territory counters for this window (400 naming `by`) or one that does not know
   * `by` at all (an answer without `territories`). */
  S.territories = async function (path, params) {
    try {
      const body = await S.api(path, {...params, by: "territory"});
      if (!body.territories) {
        return {note: "This worker does not count territories (the API answered without " +
                      "'territories' for by=territory)."};
      }
      return {body};
    } catch (err) {
      if (err instanceof ApiError && err.status === 400) {
        return {note: "No territories here: " + err.message.replace(/^.*?: (?=by)/, "")};
      }
      throw err;
    }
  };

  S.api = async function (path, params = {}) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") query.set(key, value);
    }
    const url = path + (query.toString() ? "?" + query : "");
    const headers = {Accept: "application/json"};
    const token = S.token();
    if (token) headers.Authorization = "Bearer " + token;
    let response;
    try {
      response = await fetch(url, {headers, cache: "no-store"});
    } catch (err) {
      throw new ApiError("unreachable", "The worker at " + location.host + " does not answer " +
        "(it may be stopped or restarting): " + url + " failed. Retry once it is up.");
    }
    let body = null;
    try { body = await response.json(); } catch (err) { body = null; }
    if (response.status === 401) {
      showTokenBox(true);
      throw new ApiError("token", "The API answered 401: " + ((body && body.error) ||
        "a token is needed") + ". Enter this worker's token above.", 401);
    }
    if (!response.ok) {
      const detail = body && body.error ? body.error : "no error message";
      throw new ApiError("status", "The API answered " + response.status + " for " + url +
        ": " + detail, response.status);
    }
    if (body === null || typeof body !== "object") {
      throw new ApiError("bad", "The API answered " + url + " with something that is not " +
        "JSON (a proxy in between?).", response.status);
    }
    return body;
  };

  /* fn over items with at most `limit` calls in flight; results in order. */
  S.mapLimit = async function (items, limit, fn) {
    const results = new Array(items.length);
    let next = 0;
    async function worker() {
      while (next < items.length) {
        const index = next++;
        results[index] = await fn(items[index], index);
      }
    }
    await Promise.all(Array.from({length: Math.min(limit, items.length)}, worker));
    return results;
  };

  function showTokenBox(show) {
    document.getElementById("token-box").hidden = !show;
    if (show) document.getElementById("token-input").focus();
  }

  // -- charts ---------------------------------------------------------------------

  /* x-axis labels: UTC days when ticks are a day or more apart, else HH:MM (with the day
   * on the first tick and at midnight). */
  function utcTicks(u, ticks, axis, space, increment) {
    return ticks.map((t, i) => {
      const iso = new Date(t * 1000).toISOString();
      const day = iso.slice(5, 10), time = iso.slice(11, 16);
      if (increment >= 86400) return day;
      return i === 0 || time === "00:00" ? day + "\n" + time : time;
    });
  }

  /* A uPlot chart that follows its box's width. spec: {title, x: [...ms], series:
   * [{label, values, color, fill, dash, format}], y: {label, format, range}, stacked}.
   * With `stacked`, series are drawn as stacked areas (values added up in order) while
   * the legend shows each series' own value. */
  S.chart = function (box, spec, ctx) {
    box.replaceChildren();
    const xs = spec.x.map((ms) => ms / 1000);
    const raw = spec.series.map((s) => s.values);
    let drawn = raw;
    if (spec.stacked) {
      const sums = xs.map(() => 0);
      drawn = raw.map((values) => values.map((v, i) => (sums[i] += v || 0)));
      drawn = drawn.slice().reverse(); // the tallest first, each next one painted over it
    }
    const ordered = spec.stacked ? spec.series.slice().reverse() : spec.series;
    const rawOrdered = spec.stacked ? raw.slice().reverse() : raw;
    const yFormat = (spec.y && spec.y.format) || S.fmtInt;
    const series = [{label: "window (UTC)", value: (u, v) => v === null ? "–" :
      S.fmtTime(v * 1000)}].concat(ordered.map((s, index) => ({
        label: s.label,
        stroke: s.color,
        width: s.width || 2,
        dash: s.dash,
        fill: s.fill || undefined,
        points: {show: xs.length <= 60},
        value: (u, v, si, idx) => idx === null ? "–" : yFormat(rawOrdered[index][idx]),
      })));
    const width = () => Math.max(280, box.clientWidth || 600);
    const opts = {
      title: spec.title,
      width: width(),
      height: spec.height || (window.innerWidth < 600 ? 220 : 300),
      series,
      scales: {x: xs.length === 1 ? {time: true, range: [xs[0] - 43200, xs[0] + 43200]}
                                  : {time: true},
               y: spec.y && spec.y.range ? {range: spec.y.range} : {}},
      // Axes in UTC, 24 h, like the tables (uPlot would use the browser's time zone).
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      axes: [{values: utcTicks, space: 60},
             {label: spec.y && spec.y.label, size: 70,
              values: (u, ticks) => ticks.map((t) => yFormat(t))}],
      legend: {live: true},
      cursor: {drag: {x: false, y: false}},
    };
    const plot = new uPlot(opts, [xs].concat(drawn), box);
    box.dataset.points = String(xs.length);
    box.dataset.series = String(spec.series.length);
    const resize = new ResizeObserver(() => plot.setSize({width: width(), height: opts.height}));
    resize.observe(box);
    if (ctx) ctx.charts.push(() => { resize.disconnect(); plot.destroy(); });
    return plot;
  };

  // -- forms ----------------------------------------------------------------------

  /* fields: [{name, label, type: text|select|date|number|checkbox, options, placeholder,
   * size}]; values: current params. onSubmit gets the form's values. */
  S.controls = function (fields, values, onSubmit, submitLabel = "Show") {
    const form = S.el("form", {class: "controls"});
    for (const f of fields) {
      const id = "f-" + f.name;
      let input;
      if (f.type === "select") {
        input = S.el("select", {id, name: f.name},
          f.options.map((o) => {
            const [value, label] = Array.isArray(o) ? o : [o, o];
            return S.el("option", {value, selected: String(values[f.name] ?? "") === String(value)},
                        label);
          }));
      } else {
        input = S.el("input", {id, name: f.name, type: f.type || "text",
          value: values[f.name] ?? "", placeholder: f.placeholder, size: f.size,
          autocomplete: "off", spellcheck: "false", required: f.required});
      }
      form.append(S.el("label", {for: id, class: "field"}, S.el("span", {}, f.label), input));
    }
    form.append(S.el("button", {type: "submit"}, submitLabel));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const data = {};
      for (const f of fields) data[f.name] = form.elements[f.name].value.trim();
      onSubmit(data);
    });
    return form;
  };

  // -- router ---------------------------------------------------------------------

  S.registerView = function (view) { views.push(view); };

  function parseHash() {
    const hash = location.hash.replace(/^#\/?/, "");
    const [id, query] = hash.split("?");
    return {id: id || views[0].id, params: Object.fromEntries(new URLSearchParams(query || ""))};
  }

  S.href = function (id, params = {}) {
    const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" &&
      v !== null && v !== undefined));
    return "#" + id + (query.toString() ? "?" + query : "");
  };

  function route() {
    if (current) current.cleanups.forEach((fn) => fn());
    const {id, params} = parseHash();
    const view = views.find((v) => v.id === id) || views[0];
    for (const link of document.querySelectorAll("#nav a")) {
      link.setAttribute("aria-current", link.dataset.view === view.id ? "page" : "false");
    }
    const main = document.getElementById("view");
    const root = S.el("section", {class: "view", id: "view-" + view.id, "data-state": "loading"});
    main.replaceChildren(root);
    document.title = view.title + " · streamer";
    const cleanups = [];
    current = {view, cleanups};
    const ctx = {
      params,
      charts: [],
      /* destroys the charts drawn so far (before a refresh draws new ones) */
      disposeCharts: () => { ctx.charts.splice(0).forEach((fn) => fn()); },
      onCleanup: (fn) => cleanups.push(fn),
      setParams: (next) => { location.hash = S.href(view.id, next); },
      every: (ms, fn) => { const t = setInterval(fn, ms); cleanups.push(() => clearInterval(t)); },
      /* data-state for a person's eye (and the browser tests): loading|ready|empty|error */
      state: (state) => { root.dataset.state = state; },
    };
    cleanups.push(() => ctx.disposeCharts());
    Promise.resolve(view.render(root, params, ctx)).catch((err) => {
      const box = root.querySelector(".message") || root.appendChild(S.el("div"));
      S.message(box, "error", err.message || String(err));
      ctx.state("error");
    });
  }

  S.start = function () {
    const nav = document.getElementById("nav");
    nav.replaceChildren(...views.map((v) => S.el("a", {href: "#" + v.id, "data-view": v.id},
                                                  v.title)));
    document.getElementById("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, document.getElementById("token-input").value);
      showTokenBox(false);
      route();
    });
    window.addEventListener("hashchange", route);
    route();
  };

  /* The usual frame of a view: heading, controls, message box, result area. */
  S.frame = function (root, title, intro) {
    const message = S.el("div", {class: "message", hidden: true});
    const result = S.el("div", {class: "result"});
    root.append(S.el("h2", {}, title), intro ? S.el("p", {class: "intro"}, intro) : null);
    return {message, result, add: (...nodes) => root.append(...nodes, message, result)};
  };

  /* Runs load() now (and every `refreshMs` if given); load's errors become messages, and
   * what was shown before an error stays, dimmed, as no longer current. */
  S.loader = function (ctx, frame, load, refreshMs) {
    let running = false;
    async function run() {
      if (running) return;
      running = true;
      try {
        const state = await load();
        frame.result.classList.remove("stale");
        ctx.state(state || "ready");
        if (!state || state === "ready") S.message(frame.message, "", "");
      } catch (err) {
        frame.result.classList.add("stale");
        S.message(frame.message, "error", err.message || String(err));
        ctx.state("error");
      } finally {
        running = false;
      }
    }
    run();
    if (refreshMs) ctx.every(refreshMs, run);
    return run;
  };
})();
