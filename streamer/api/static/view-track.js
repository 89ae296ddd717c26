/* A track's usage over time (one API call per window) and by territory. */
"use strict";

(function (S) {
  const MAX_POINTS = 96;


  /* A territory's uses in either shape the API may give: {create, play} or {uses: {...}}. */
  function territoryUses(value) {
    return value && typeof value.uses === "object" ? value.uses : value;
  }

  S.territoryBars = function (rows, key) {
    const max = Math.max(1, ...rows.map((row) => row[key]));
    return (value) => {
      const bar = S.el("span", {class: "bar"});
      bar.style.width = (100 * value / max).toFixed(1) + "%";
      return S.el("span", {class: "bar-cell"}, bar, S.el("span", {}, S.fmtInt(value)));
    };
  };

  S.registerView({
    id: "track",
    title: "Track",
    render(root, params, ctx) {
      const p = {track: params.track || "", window: params.window || S.defaultWindow,
                 points: params.points || "24"};
      const frame = S.frame(root, "A track's usage",
        "Creates and plays of one track per window, the latest window last, and where " +
        "they happened (by territory) when this worker counts territories.");
      frame.add(S.controls([
        {name: "track", label: "Track id", placeholder: "e.g. T1", size: 20, required: true},
        {name: "window", label: "Window", type: "select", options: S.windows},
        {name: "points", label: "Last windows", type: "select",
         options: ["12", "24", "48", "96"]},
      ], p, ctx.setParams));
      if (!p.track) {
        S.message(frame.message, "info", "Enter a track id (the Trending view links to " +
          "its tracks).");
        ctx.state("empty");
        return;
      }
      const path = "/v1/tracks/" + encodeURIComponent(p.track) + "/usage";

      S.loader(ctx, frame, async () => {
        const size = S.windowMs(p.window);
        const count = Math.min(MAX_POINTS, Number(p.points) || 24);
        const now = Date.now();
        const last = now - now % size;
        const starts = Array.from({length: count}, (_, i) => last - (count - 1 - i) * size);
        const answers = await S.mapLimit(starts, 6, (start) => S.api(path,
          {window: p.window, at: start}));
        const latest = answers[answers.length - 1];
        const byTerritory = await S.territories(path, {window: p.window, at: latest.start_ms});
        ctx.disposeCharts();
        frame.result.replaceChildren();
        const total = answers.reduce((sum, a) => sum + a.uses.create + a.uses.play, 0);
        const chartBox = S.el("div", {class: "chart", id: "chart-track"});
        frame.result.append(S.el("p", {class: "summary"}, "Track ",
          S.el("strong", {}, p.track), ": " + count + " windows of " + p.window + ", " +
          S.fmtInt(total) + " uses."), chartBox);
        S.chart(chartBox, {title: "Uses of " + p.track, x: answers.map((a) => a.start_ms),
          series: [
            {label: "creates", color: S.PALETTE[1], values: answers.map((a) => a.uses.create)},
            {label: "plays", color: S.PALETTE[0], values: answers.map((a) => a.uses.play)},
          ], y: {label: "uses"}}, ctx);
        const rows = answers.map((a) => ({start_ms: a.start_ms, create: a.uses.create,
                                          play: a.uses.play}));
        const columns = [{key: "start_ms", label: "Window start (UTC)",
                          format: (ms) => S.fmtTime(ms)},
                         {key: "create", label: "Creates", numeric: true},
                         {key: "play", label: "Plays", numeric: true}];
        frame.result.append(S.el("details", {class: "numbers"},
          S.el("summary", {}, "Numbers (table, CSV)"),
          S.downloadButton("Download CSV", "track-" + p.track + "-" + p.window + ".csv",
            () => S.csv(columns, rows)),
          S.table(columns, rows, {class: "series"})));

        const where = S.el("section", {class: "territories"},
          S.el("h3", {}, "By territory, window of " + S.fmtTime(latest.start_ms)));
        frame.result.append(where);
        if (byTerritory.note) {
          where.append(S.el("p", {class: "message info", role: "status"}, byTerritory.note));
        } else {
          const territoryRows = Object.entries(byTerritory.body.territories).map(([code, value]) => {
            const uses = territoryUses(value);
            return {territory: code, create: uses.create || 0, play: uses.play || 0,
                    total: (uses.create || 0) + (uses.play || 0)};
          }).sort((a, b) => b.total - a.total || a.territory.localeCompare(b.territory));
          if (!territoryRows.length) {
            where.append(S.el("p", {class: "message empty", role: "status"},
              "No uses in this window."));
          } else {
            where.append(S.table([
              {key: "territory", label: "Territory"},
              {key: "create", label: "Creates", numeric: true},
              {key: "play", label: "Plays", numeric: true},
              {key: "total", label: "Uses", numeric: true,
               format: S.territoryBars(territoryRows, "total")},
            ], territoryRows, {class: "territory"}));
          }
        }
        if (!total) {
          S.message(frame.message, "empty", "No uses of " + p.track + " in these windows " +
            "(is the id right? ids are case-sensitive).");
          return "empty";
        }
        return "ready";
      }, 30000);
    },
  });
})(window.Streamer);
