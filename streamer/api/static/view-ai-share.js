/* AI share over time: one line per genre, and the uses by origin as stacked areas. */
"use strict";

(function (S) {
  const REFRESH_MS = 30000;


  function pick(byOrigin, origin, use) {
    const uses = byOrigin[origin] || {};
    return use === "all" ? Object.values(uses).reduce((a, b) => a + b, 0) : (uses[use] || 0);
  }

  /* AI share of uses at one point: (AI-assisted + AI-generated) / all; null without uses. */
  function usesShare(point, use) {
    const all = S.ORIGINS.reduce((sum, o) => sum + pick(point.uses_by_origin, o, use), 0);
    if (!all) return null;
    return (pick(point.uses_by_origin, "ai_assisted", use) +
            pick(point.uses_by_origin, "ai_generated", use)) / all;
  }

  S.registerView({
    id: "ai-share",
    title: "AI share",
    render(root, params, ctx) {
      const p = {genres: params.genres ?? "lofi, hyperpop, ambient",
                 window: params.window || S.defaultWindow, points: params.points || "24",
                 from: params.from || "", to: params.to || "", top: params.top || "20",
                 use: params.use || "all"};
      const frame = S.frame(root, "AI share over time",
        "Per window: the share of uses of AI-assisted and AI-generated tracks, per genre " +
        "(dashed: the AI share among the window's top trending tracks, where the API has " +
        "it), and the uses by origin. Several genres: separate them with commas; empty: " +
        "the whole catalog. From/to (UTC, e.g. 2026-12-01 or 2026-12-01T10:00Z) replace " +
        "'last windows'.");
      frame.add(S.controls([
        {name: "genres", label: "Genres", placeholder: "lofi, hyperpop", size: 24},
        {name: "window", label: "Window", type: "select", options: S.windows},
        {name: "points", label: "Last windows", type: "select",
         options: ["12", "24", "48", "96", "168", "336", "500"]},
        {name: "from", label: "From", placeholder: "YYYY-MM-DD", size: 16},
        {name: "to", label: "To", placeholder: "now", size: 16},
        {name: "use", label: "Uses", type: "select",
         options: [["all", "all uses"], ["create", "creates"], ["play", "plays"]]},
        {name: "top", label: "Top N", type: "select", options: ["10", "20", "50", "100"]},
      ], p, ctx.setParams));

      const genres = p.genres.split(",").map((g) => g.trim()).filter(Boolean);
      const scopes = genres.length ? genres : [null];

      S.loader(ctx, frame, async () => {
        let from = p.from, to = p.to;
        if (!from) {
          const size = S.windowMs(p.window);
          const end = to ? null : Date.now();
          if (size && end !== null) from = String(end - (Number(p.points) - 1) * size);
        }
        const answers = await Promise.all(scopes.map((genre) => S.api(
          genre ? "/v1/genres/" + encodeURIComponent(genre) + "/ai-share" : "/v1/ai-share",
          {window: p.window, from, to, top: p.top})));
        const x = answers[0].series.map((point) => point.start_ms);
        const name = (i) => scopes[i] || "all genres";
        const lines = [];
        answers.forEach((answer, i) => {
          const color = S.PALETTE[i % S.PALETTE.length];
          lines.push({label: name(i) + " (uses)", color,
                      values: answer.series.map((point) => usesShare(point, p.use))});
          if (answer.series.some((point) => point.trending_ai_share !== null)) {
            lines.push({label: name(i) + " (top " + answer.top + " trending)", color,
                        dash: [6, 4], width: 1.5,
                        values: answer.series.map((point) => point.trending_ai_share)});
          }
        });
        const total = answers.reduce((sum, answer) => sum + answer.series.reduce(
          (s, point) => s + S.ORIGINS.reduce((t, o) => t + pick(point.uses_by_origin, o,
                                                                  p.use), 0), 0), 0);
        ctx.disposeCharts();
        frame.result.replaceChildren();
        const range = S.el("p", {class: "summary"}, answers[0].points + " windows of " +
          answers[0].window + " from " + S.fmtTime(answers[0].from_ms) + " to " +
          S.fmtTime(answers[0].to_ms) + ".");
        const shareBox = S.el("div", {class: "chart", id: "chart-ai-share"});
        frame.result.append(range, shareBox);
        S.chart(shareBox, {title: "AI share", x, series: lines,
                           y: {label: "AI share", range: [0, 1], format: S.fmtPct}}, ctx);
        const grid = S.el("div", {class: "chart-grid"});
        frame.result.append(grid);
        answers.forEach((answer, i) => {
          const box = S.el("div", {class: "chart stacked", "data-genre": name(i)});
          grid.append(box);
          S.chart(box, {title: "Uses by origin: " + name(i), x, stacked: true, height: 220,
            series: S.ORIGINS.map((origin) => ({
              label: S.ORIGIN_LABELS[origin], color: S.ORIGIN_COLORS[origin],
              fill: S.ORIGIN_FILLS[origin],
              values: answer.series.map((point) => pick(point.uses_by_origin, origin, p.use)),
            })), y: {label: "uses"}}, ctx);
        });
        const details = S.el("details", {class: "numbers"}, S.el("summary", {},
          "Numbers (table, CSV)"));
        answers.forEach((answer, i) => {
          const columns = [
            {key: "start_ms", label: "Window start (UTC)", format: (ms) => S.fmtTime(ms)},
            ...S.ORIGINS.map((o) => ({key: o, label: S.ORIGIN_LABELS[o], numeric: true})),
            {key: "ai_share_of_uses", label: "AI share of uses", numeric: true, format: S.fmtPct},
            {key: "trending_ai_share", label: "AI share of top " + answer.top, numeric: true,
             format: S.fmtPct},
          ];
          const rows = answer.series.map((point) => ({
            start_ms: point.start_ms,
            ...Object.fromEntries(S.ORIGINS.map((o) => [o, pick(point.uses_by_origin, o,
                                                                   p.use)])),
            ai_share_of_uses: usesShare(point, p.use),
            trending_ai_share: point.trending_ai_share,
          }));
          details.append(S.el("h3", {}, name(i)),
            S.downloadButton("Download CSV", "ai-share-" + (scopes[i] || "catalog") + "-" +
              answer.window + ".csv", () => S.csv(columns, rows)),
            S.table(columns, rows, {class: "series"}));
        });
        frame.result.append(details);
        if (!total) {
          S.message(frame.message, "empty", "No uses counted in this range" +
            (genres.length ? " for " + genres.join(", ") : "") + ": the charts are flat.");
          return "empty";
        }
        return "ready";
      }, p.to ? null : REFRESH_MS);
    },
  });
})(window.Streamer);
